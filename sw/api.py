"""Python API of the compression pipeline (the stages of ``python -m sw.compress``).

Example (an ONNX classifier and a labelled ``.npz`` data set)::

    from sw.api import compress
    result = compress("model.onnx", data="data.npz", out="out", pack=True)
    print(result.report["metrics"]["error"], result.report["metrics"]["ratio"])
    result.model          # sw.modelfile.CompressedModel (calibrated: sw.golden runs it)

``model`` is an ONNX file (``sw.onnx_import``) or a built-in architecture name (``"lenet300"``,
``"lenet5"``: trained from scratch); ``data`` an ``.npz`` file (``sw.dataset``) or ``None`` for
MNIST. Keyword options are those of ``python -m sw.compress`` with ``_`` for ``-`` (``density``
and ``bits`` also take a dict per layer or one number; a flag such as ``float_only`` takes
``True``). ``out=None`` writes no files. Errors raise the pipeline's exceptions
(:data:`ERRORS`), each with a message saying what is wrong.
"""
from pathlib import Path

from sw.compress import CompressError, CompressResult, build_parser, resolve, run
from sw.dataset import DataError
from sw.mnist import MnistNotFoundError
from sw.modelfile import ModelFormatError
from sw.nn import ARCHS, NNError
from sw.onnx_import import OnnxImportError
from sw.prune import PruneError
from sw.quantize import QuantizeError
from sw.train import TrainError

__all__ = ["compress", "CompressResult", "ERRORS"]

#: Exceptions :func:`compress` raises on bad input (all ``ValueError`` subclasses or
#: ``FileNotFoundError``).
ERRORS = (CompressError, DataError, MnistNotFoundError, ModelFormatError, NNError,
          OnnxImportError, PruneError, QuantizeError, TrainError)


def _option(key, value):
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    return [flag, str(value)]


def compress(model="lenet300", data=None, *, out=None, log=print, **options):
    """Run the compression pipeline and return the compressed model and its report.

    Parameters
    ----------
    model : str or pathlib.Path
        An ONNX file, or ``"lenet300"`` / ``"lenet5"``.
    data : str or pathlib.Path, optional
        Labelled ``.npz`` data set (default: MNIST).
    out : str or pathlib.Path, optional
        Directory for the model file, the report and (``pack=True``) the memory images; ``None``
        writes nothing.
    log : callable or None
        Receives the progress and summary lines (``None``: silent).
    **options
        ``python -m sw.compress`` options, e.g. ``density=0.1`` or ``density={"fc1": 0.08}``,
        ``bits=4``, ``prune_steps=3``, ``prune_epochs=1``, ``finetune_epochs=1``, ``pes=4``,
        ``pack=True``, ``board="icebreaker"``, ``subset=2000``, ``seed=0``, ``quiet=True``.

    Returns
    -------
    sw.compress.CompressResult
        ``model`` (``sw.modelfile.CompressedModel``), ``report`` (dict, with ``metrics``),
        ``path`` (model file or ``None``), ``packed`` (``sw.pack.PackedImages`` or ``None``),
        ``float_model`` (``sw.nn.Model``).
    """
    argv = ["--model", str(model)] if str(model) in ARCHS else ["--onnx", str(model)]
    if data is not None:
        argv += ["--data", str(data)]
    for key, value in options.items():
        argv += _option(key, value)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        raise CompressError(f"bad options {options}") from None
    args.argv = argv + ([] if out is None else ["--out", str(out)])
    resolve(args)
    args.out = None if out is None else str(Path(out))
    return run(args, log=log or (lambda s: None))
