"""Deep Compression pipeline: train (or import) -> prune + retrain -> quantize + fine-tune -> file.

Command line::

    python -m sw.compress --model lenet300|lenet5|mlp1024 [--data DATA.npz] [--out DIR] [...]
    python -m sw.compress --onnx MODEL.onnx [--data DATA.npz] [--pack] [...]

Stages (functions shared by the built-in and the imported models; ``sw.api.compress`` runs them
from Python): the data set (:func:`load_data`: MNIST or a labelled ``.npz``, ``sw.dataset``),
the dense model (:func:`source_model`: a built-in one trained with SGD, momentum, weight decay,
cosine LR, or an ONNX classifier imported by ``sw.onnx_import``), iterative magnitude pruning
with masked retraining (:func:`prune_stage`, ``sw.prune``), per-layer k-means weight sharing
with centroid fine-tuning (:func:`quantize_stage`, ``sw.quantize``), integer calibration
(:func:`calibrate_stage`, ``sw.golden.calibrate``; fc layers and conv layers with ReLU and
2 x 2 max-pool), saving (``sw.modelfile``),
the size report (``sw.report``) and, with ``--pack``, the memory images (:func:`pack_stage`,
``sw.pack``). The float test error is measured on all test images (unless ``--subset``) after
every stage.

OpenBLAS is limited to one thread (``OPENBLAS_NUM_THREADS=1`` unless set): the matrices are
small and a multi-threaded BLAS slows down by an order of magnitude when the cores are shared.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dataclasses import dataclass  # noqa: E402

from boards.registry import get_board  # noqa: E402
from contract.config import AcceleratorConfig  # noqa: E402
from contract.widths import WIDTH_DEFAULTS  # noqa: E402
from sw.cli import command  # noqa: E402
from sw.dataset import load_dataset  # noqa: E402
from sw.golden import GoldenError, IntModel, calibrate, conv_geometry, infer  # noqa: E402
from sw.modelfile import (CompressedModel, LayerRecord, ModelFormatError,  # noqa: E402
                          load_model, save_model)
from sw.nn import ARCHS, MaxPool2, ReLU, build_model  # noqa: E402
from sw.onnx_import import fold_input_scale, import_onnx  # noqa: E402
from sw.pack import PackError, PackLimits, pack, sized_limits  # noqa: E402
from sw.prune import (drop_dead_neurons, format_sensitivity, iterative_prune,  # noqa: E402
                      sensitivity)
from sw.quantize import (CentroidSGD, INIT_METHODS, QuantizeError,  # noqa: E402
                         limit_joint_symbols_all,
                         quantize_model)
from sw.report import build_report, plot_layers, write_report  # noqa: E402
from sw.train import TrainConfig, train  # noqa: E402

__all__ = ["CompressError", "CompressResult", "DEFAULTS", "build_parser", "resolve", "run",
           "to_compressed_model", "load_data", "source_model", "prune_stage", "quantize_stage",
           "calibrate_stage", "pack_stage", "default_density", "main"]


class CompressError(ValueError):
    """Bad command-line options or a pipeline stage that cannot run."""


#: Per-architecture defaults (the committed models were made with these).
DEFAULTS = {
    "lenet300": {
        "epochs": 30, "lr": 0.05, "shift": 1,
        "prune_steps": 6, "prune_epochs": 8, "prune_lr": 0.02,
        "density": {"ip1": 0.045, "ip2": 0.07, "ip3": 0.2},
        "bits": {"ip1": 4, "ip2": 4, "ip3": 4},
        "finetune_epochs": 6, "finetune_lr": 0.002,
        # 5-bit relative indices (the paper's choice for fc layers): with 4 bits the filler
        # zeros of the 4.5 %-dense ip1 alone cost ~20 % extra PE cycles. The larger joint
        # alphabet (~700 symbols) gets a 1024-entry symbol table (hw.build sizes it).
        "gap_bits": 5, "max_symbols": 1024,
    },
    "lenet5": {
        "epochs": 8, "lr": 0.05, "shift": 1,
        "prune_steps": 3, "prune_epochs": 2, "prune_lr": 0.02,
        "density": {"conv1": 0.66, "conv2": 0.10, "ip1": 0.05, "ip2": 0.15},
        "bits": {"conv1": 4, "conv2": 4, "ip1": 4, "ip2": 4},
        "finetune_epochs": 1, "finetune_lr": 0.002,
        "gap_bits": 4, "max_symbols": None,   # None: AcceleratorConfig().symbol_depth
    },
    # 784-1024-1024-10 (7x LeNet-300-100's weights, the model that needs the PE array): a short
    # schedule (one epoch is ~7x LeNet-300-100's), lower densities (the wider layers are more
    # redundant), LeNet-300-100's 4-bit indices, 5-bit gaps and 1024-entry symbol table
    "mlp1024": {
        "epochs": 12, "lr": 0.05, "shift": 1,
        "prune_steps": 5, "prune_epochs": 2, "prune_lr": 0.02,
        "density": {"ip1": 0.05, "ip2": 0.04, "ip3": 0.1},
        "bits": {"ip1": 4, "ip2": 4, "ip3": 4},
        "finetune_epochs": 2, "finetune_lr": 0.002,
        "gap_bits": 5, "max_symbols": 1024,
    },
    # an imported (already trained) model: no dense training, short masked retraining (its
    # training recipe is unknown), 5-bit gaps as for LeNet-300-100;
    # densities by layer size (default_density), DEFAULT_BITS everywhere
    "onnx": {
        "epochs": 0, "lr": 0.01, "shift": 0,
        "prune_steps": 3, "prune_epochs": 2, "prune_lr": 0.02,
        "finetune_epochs": 1, "finetune_lr": 0.002,
        "gap_bits": 5, "max_symbols": 1024,
    },
}
#: Index bits of an imported model's layers (the accelerator's default IDX_BITS).
DEFAULT_BITS = 4
#: (smallest weight count, final density) of an imported layer, largest first.
ONNX_DENSITY = ((100_000, 0.08), (10_000, 0.1), (2_000, 0.2), (700, 0.25), (0, 0.66))


def _kv(text, cast, what):
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise CompressError(f"--{what} expects name=value[,name=value...], got {text!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = cast(v)
        except ValueError:
            raise CompressError(f"--{what}: bad value {v!r} for {k!r}") from None
    return out


def build_parser():
    """The command line's options (``python -m sw.compress``)."""
    ap = argparse.ArgumentParser(
        prog="python -m sw.compress",
        description="Deep Compression (NumPy) of LeNet on MNIST or of an ONNX classifier on any "
                    "labelled .npz data set.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", choices=ARCHS, default=None,
                     help="built-in architecture, trained from scratch (default: lenet300)")
    src.add_argument("--onnx", metavar="FILE",
                     help="trained ONNX classifier to compress instead (sw.onnx_import)")
    ap.add_argument("--data", metavar="NPZ",
                    help="labelled data set (.npz with x_train, y_train, x_test, y_test; "
                         "sw.dataset); default: MNIST")
    ap.add_argument("--input-scale", type=float,
                    help="the data's value of one input step: value = byte * S (default: found "
                         "from the data: 1/255, 1/256 or 1)")
    ap.add_argument("--out", help="output directory (model + report; default: models, or "
                                  "out with --onnx)")
    ap.add_argument("--name", help="file stem (default: the model name or the ONNX file stem)")
    ap.add_argument("--subset", type=int, help="use only N training / test images (tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-from", metavar="NPZ",
                    help="start from a compressed model file's weights (codebook[index]) and "
                         "pruning masks instead of random weights (its layers must have the "
                         "built-in model's names and shapes): --epochs then retrain it masked, "
                         "e.g. the Caffe LeNet-5 weights with the ReLU added after the convs")
    ap.add_argument("--epochs", type=float,
                    help="dense training epochs (--onnx: further training, default 0)")
    ap.add_argument("--lr", type=float, help="dense learning rate")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--shift", type=int,
                    help="random translation augmentation in pixels of 28 x 28 images (0 = off; "
                         "default 1, --onnx 0)")
    ap.add_argument("--prune-steps", type=int)
    ap.add_argument("--prune-epochs", type=float,
                    help="masked retraining epochs per pruning step (0: prune without "
                         "retraining)")
    ap.add_argument("--prune-lr", type=float)
    ap.add_argument("--density",
                    help="final density: one number for all layers or per layer, e.g. "
                         "ip1=0.045,ip2=0.07")
    ap.add_argument("--bits", help="index bits: one number for all layers or name=b,...")
    ap.add_argument("--init", choices=INIT_METHODS, default="linear",
                    help="k-means centroid initialisation")
    ap.add_argument("--finetune-epochs", type=float)
    ap.add_argument("--finetune-lr", type=float)
    ap.add_argument("--pes", type=int,
                    help="PE count of the hardware accounting (default 4) and of --pack "
                         "(default: the board's)")
    ap.add_argument("--gap-bits", type=int,
                    help="relative-index (gap) width (default: lenet300, mlp1024 and --onnx 5, "
                         "lenet5 4)")
    ap.add_argument("--huff-max-len", type=int, default=WIDTH_DEFAULTS["huff_max_len"])
    ap.add_argument("--act-bits", type=int, default=WIDTH_DEFAULTS["act_bits"])
    ap.add_argument("--max-symbols", type=int,
                    help="joint Huffman symbols allowed over all layers, for every PE count of "
                         "--symbol-pes with the rows in training order or balanced (the "
                         "accelerator's symbol table depth; 0 = no limit; fc models only; "
                         "default: lenet300, mlp1024 and --onnx 1024, else AcceleratorConfig()"
                         ".symbol_depth)")
    ap.add_argument("--symbol-pes", default="1,2,4,8",
                    help="PE counts the symbol limit holds for (comma-separated)")
    ap.add_argument("--pack", action="store_true",
                    help="also pack the model for --pes PEs on --board (sw.pack) into "
                         "OUT/NAME_pack")
    ap.add_argument("--board", default="icebreaker", help="board of --pack (boards/registry.py)")
    ap.add_argument("--float-only", action="store_true",
                    help="--onnx: compress the float model only (no accelerator limits checked, "
                         "no integer calibration, no packing)")
    ap.add_argument("--no-sensitivity", action="store_true",
                    help="skip the per-layer pruning sensitivity scan")
    ap.add_argument("--cache", help="directory caching the dense / pruned weights between runs")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return ap


def default_density(n_weights):
    """Final density of an imported layer of ``n_weights`` weights: the paper's LeNet densities
    by layer size (235K weights 8 %, 30K 9 %, 5K 19 %, 1K 26 %, 500 66 %)."""
    for size, density in ONNX_DENSITY:
        if n_weights >= size:
            return density
    return ONNX_DENSITY[-1][1]


def _per_layer(text, cast, what, kind, defaults, names):
    """``defaults`` updated by an option: ``name=value,...`` or one value for every layer."""
    out = dict(defaults)
    if not text:
        return out
    if "=" in text:
        out.update(_kv(text, cast, what))
        return out
    try:
        value = cast(text)
    except ValueError:
        raise CompressError(f"--{what} must be {kind} or name=value list, got {text!r}") \
            from None
    return {k: value for k in names}


def _layer_maps(args, names, density, bits):
    """Per-layer density / bits from the defaults and ``--density`` / ``--bits``."""
    dens = _per_layer(args.density, float, "density", "a number", density, names)
    bits = _per_layer(args.bits, int, "bits", "an integer", bits, names)
    unknown = sorted((set(dens) | set(bits)) - set(names))
    if unknown:
        raise CompressError(f"unknown layers {unknown} for {args.model}; layers are "
                            f"{sorted(names)}")
    for k, v in dens.items():
        if not 0 < v <= 1:
            raise CompressError(f"density of {k} must be in (0, 1], got {v}")
    for k, v in bits.items():
        if not 1 <= v <= 8:
            raise CompressError(f"bits of {k} must be 1..8, got {v}")
        if v + args.gap_bits > 16:
            raise CompressError(f"bits of {k} ({v}) + gap bits ({args.gap_bits}) exceed 16")
    args.density_map, args.bits_map = dens, bits


def resolve(args):
    """Fill architecture defaults into parsed arguments and validate them.

    With ``--onnx`` the per-layer maps (``density_map``, ``bits_map``) are made by
    :func:`source_model` once the layers are known.
    """
    if args.onnx is None and args.model is None:
        args.model = "lenet300"
    if args.onnx is not None:
        args.model = args.name or Path(args.onnx).stem
    key = "onnx" if args.onnx is not None else args.model
    d = DEFAULTS[key]
    for k in ("epochs", "lr", "shift", "prune_steps", "prune_epochs", "prune_lr",
              "finetune_epochs", "finetune_lr", "gap_bits", "max_symbols"):
        if getattr(args, k) is None:
            setattr(args, k, d[k])
    if args.out is None:
        args.out = "out" if args.onnx is not None else "models"
    for option, path in (("--out", args.out), ("--cache", args.cache)):
        # (found now, not after minutes of training when the files are written)
        if path and Path(path).exists() and not Path(path).is_dir():
            raise CompressError(f"{option} {path} exists and is not a directory")
    args.pack_pes = args.pes
    if args.pes is None:
        args.pes = 4
    if args.max_symbols is None:
        args.max_symbols = AcceleratorConfig().symbol_depth
    if not 1 <= args.gap_bits <= 15:
        raise CompressError(f"--gap-bits must be 1..15, got {args.gap_bits}")
    try:
        args.symbol_pes_list = [int(v) for v in args.symbol_pes.split(",") if v.strip()]
    except ValueError:
        raise CompressError(f"--symbol-pes must be comma-separated integers, not "
                            f"{args.symbol_pes!r}") from None
    if not args.symbol_pes_list or min(args.symbol_pes_list) < 1:
        raise CompressError("--symbol-pes needs PE counts >= 1")
    if args.onnx is None:
        _layer_maps(args, list(d["bits"]), d["density"], d["bits"])
    if args.init_from is not None:
        if args.onnx is not None:
            raise CompressError("--init-from applies to the built-in models, not --onnx")
        if not Path(args.init_from).is_file():
            raise CompressError(f"--init-from {args.init_from}: no such file")
    if args.float_only and args.onnx is None:
        raise CompressError("--float-only applies to --onnx models")
    if args.subset is not None and args.subset < 10:
        raise CompressError(f"--subset must be >= 10, got {args.subset}")
    min_epochs = 0 if args.onnx is not None else 1e-9
    if args.prune_steps < 0 or args.epochs < min_epochs or args.prune_epochs < 0 \
            or args.pes < 1 or args.max_symbols < 0:
        raise CompressError("epochs must be > 0 (--onnx: >= 0), prune steps and epochs >= 0, "
                            "pes >= 1, max symbols >= 0")
    return args


def _conv_meta(model):
    """Per conv layer of ``model`` its input shape and what follows it up to the next weight
    layer (a 2 x 2 max pooling, a ReLU before it), as the model file records them."""
    meta, current = {}, None
    h = np.zeros((1,) + tuple(model.input_shape), dtype=np.float32)
    for i, l in enumerate(model.layers):
        if any(l is w for w in model.weight_layers):
            current = (i, meta.setdefault(l.name, {
                "stride": 1, "padding": 0, "pool": 1, "relu_before_pool": False,
                "in_shape": [int(v) for v in h.shape[1:]]})) if l.kind == "conv" else None
        elif current is not None and isinstance(l, MaxPool2):
            current[1]["pool"] = 2
            current[1]["relu_before_pool"] = any(isinstance(x, ReLU)
                                                 for x in model.layers[current[0]:i])
        h = l.forward(h)
    return meta


def to_compressed_model(model, codebooks, metrics=None):
    """``sw.modelfile.CompressedModel`` of a quantized ``sw.nn.Model``."""
    layers = []
    wl = model.weight_layers
    conv = _conv_meta(model)
    for i, l in enumerate(wl):
        q = codebooks[l.name]
        # a ReLU anywhere before the next weight layer (pooling commutes with it)
        nxt = model.layers.index(wl[i + 1]) if i + 1 < len(wl) else len(model.layers)
        relu = any(isinstance(x, ReLU) for x in model.layers[model.layers.index(l):nxt])
        layers.append(LayerRecord(name=l.name, kind=l.kind, index=q.index.astype(np.uint8),
                                  codebook=q.codebook.astype(np.float32),
                                  bias=l.b.astype(np.float32), idx_bits=int(q.bits),
                                  relu=relu and i < len(wl) - 1, meta=conv.get(l.name, {})))
    return CompressedModel(arch=model.arch, input_shape=list(model.input_shape), layers=layers,
                           metrics=dict(metrics or {}))


def _cache_path(args, stage):
    if not args.cache:
        return None
    key = {"model": args.model, "seed": args.seed, "subset": args.subset, "epochs": args.epochs,
           "lr": args.lr, "wd": args.weight_decay, "batch": args.batch, "shift": args.shift}
    if getattr(args, "source_digest", None):     # --onnx / --data: the files' contents
        key["source"] = args.source_digest
    if getattr(args, "init_from", None):
        key["init"] = _digest(args.init_from)
    if stage == "pruned":
        key.update({"steps": args.prune_steps, "pe": args.prune_epochs, "plr": args.prune_lr,
                    "density": sorted(args.density_map.items())})
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(args.cache) / f"{args.model}_{stage}_{h}.npz"


def _save_params(path, model, extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    arrs = {}
    for n, (W, b, m) in model.get_params().items():
        arrs[f"{n}.W"], arrs[f"{n}.b"] = W, b
        if m is not None:
            arrs[f"{n}.mask"] = m
    arrs["extra"] = np.frombuffer(json.dumps(extra).encode(), dtype=np.uint8)
    np.savez(path, **arrs)


def _load_params(path, model):
    try:
        # (from bytes: np.load leaves the file open when the zip is damaged)
        with np.load(io.BytesIO(Path(path).read_bytes()), allow_pickle=False) as z:
            params = {l.name: (z[f"{l.name}.W"], z[f"{l.name}.b"],
                               z[f"{l.name}.mask"] if f"{l.name}.mask" in z.files else None)
                      for l in model.weight_layers}
            extra = json.loads(z["extra"].tobytes().decode())
        model.set_params(params)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CompressError(f"cache file {path} is unreadable ({type(e).__name__}: {e}); "
                            "delete it to recompute") from None
    return extra


@dataclass
class CompressResult:
    """What :func:`run` produced.

    Attributes
    ----------
    model : sw.modelfile.CompressedModel
        The compressed model (calibrated when the accelerator runs it).
    report : dict
        The paper-style report (``sw.report.build_report``) with ``metrics``.
    path : pathlib.Path or None
        The model file written (``None`` when ``out`` is ``None``).
    packed : sw.pack.PackedImages or None
        Memory images (``pack``).
    float_model : sw.nn.Model
        The compressed float network (``W = codebook[index]``).
    """
    model: CompressedModel
    report: dict
    path: Path = None
    packed: object = None
    float_model: object = None


def _digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        if p is not None:
            h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def load_data(args, log):
    """Stage 0: the labelled data set (MNIST or ``--data``), as ``sw.dataset.Dataset``."""
    data = load_dataset(args.data, args.input_scale, args.subset, args.seed)
    log(f"{data.name}: {len(data.y_train)} training, {len(data.y_test)} test samples of "
        f"{data.features} features (input value = byte * {data.input_scale:.6g}), "
        f"{data.classes} classes")
    if args.shift and data.features != 784:
        raise CompressError(f"--shift translates 28 x 28 images; the data has {data.features} "
                            "features per sample (use --shift 0)")
    return data


def source_model(args, data, log, metrics, imported=None):
    """Stage 1: the dense float model: a built-in one trained on ``data``, or the ``--onnx``
    model imported (``sw.onnx_import``; ``imported`` if already done), moved to the
    ``byte / 256`` input, optionally trained further (``--epochs``)."""
    t0 = time.time()
    quiet = None if args.quiet else log
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                      batch=args.batch, shift=args.shift, seed=args.seed)
    if args.onnx is not None:
        imp = imported or import_onnx(args.onnx, name=args.model, hardware=not args.float_only)
        model = fold_input_scale(imp.model, data.input_scale)
        for l in model.weight_layers:
            log(f"  {l.name} <- {imp.sources[l.name]}: {l.kind} {tuple(l.W.shape)}")
        for note in imp.folded:
            log(f"  {note}")
        wl = model.weight_layers
        _layer_maps(args, [l.name for l in wl],
                    {l.name: default_density(l.W.size) for l in wl},
                    {l.name: DEFAULT_BITS for l in wl})
        metrics["input_scale"] = data.input_scale
        metrics["onnx_layers"] = dict(imp.sources)
    else:
        model = build_model(args.model, args.seed)
        if args.init_from is not None:
            _init_from(model, args.init_from, log)
            metrics["init_from"] = str(args.init_from)
    if model.input_shape[0] != data.features:
        raise CompressError(f"{data.name} has {data.features} features per sample; the model "
                            f"takes {model.input_shape[0]}")
    classes = model.weight_layers[-1].W.shape[0]
    if data.classes > classes:
        raise CompressError(f"{data.name} has labels up to {data.classes - 1}; the model has "
                            f"{classes} outputs")
    if data.name != "mnist":
        metrics["data"] = data.name
    cp = _cache_path(args, "dense")
    if cp is not None and cp.exists():
        _load_params(cp, model)
        log(f"dense weights from cache {cp}")
    elif args.epochs > 0:
        train(model, data.x_train, data.y_train, cfg, log=quiet, tag="dense")
        if cp is not None:
            _save_params(cp, model, {})
    metrics["dense_error"] = model.error(data.x_test, data.y_test)
    log(f"dense {args.model}: float test error {100 * metrics['dense_error']:.2f}% on "
        f"{len(data.y_test)} test images ({time.time() - t0:.0f}s)")
    return model


def _init_from(model, path, log):
    """Set ``model``'s weights, biases and pruning masks from the compressed model file
    ``path`` (``W = codebook[index]``, mask ``index != 0``)."""
    try:
        cm = load_model(path)
    except ModelFormatError as e:
        raise CompressError(f"--init-from {path}: {e}") from None
    src = {l.name: l for l in cm.layers}
    params = {}
    for layer in model.weight_layers:
        rec = src.get(layer.name)
        if rec is None or rec.shape != tuple(layer.W.shape):
            have = "missing" if rec is None else f"shape {list(rec.shape)}"
            raise CompressError(f"--init-from {path}: layer {layer.name!r} of {model.arch} "
                                f"(shape {list(layer.W.shape)}) is {have} in the file")
        params[layer.name] = (rec.weights(), rec.bias, rec.index != 0)
    model.set_params(params)
    log(f"weights and pruning masks from {path} ("
        + ", ".join(f"{l.name} {100 * l.density():.1f}%" for l in model.weight_layers) + ")")


def prune_stage(args, model, data, log, metrics):
    """Stage 2: sensitivity scan and iterative pruning with masked retraining."""
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    quiet = None if args.quiet else log
    sens_md = None
    if not args.no_sensitivity:
        sens = sensitivity(model, xte, yte)
        sens_md = format_sensitivity(sens)
        log("pruning sensitivity (error % per layer vs fraction pruned, no retraining):")
        log(sens_md)
    prune_hist = []
    cp = _cache_path(args, "pruned")
    if args.prune_steps and cp is not None and cp.exists():
        prune_hist = _load_params(cp, model)["history"]
        log(f"pruned weights from cache {cp}")
    elif args.prune_steps:
        pcfg = TrainConfig(epochs=args.prune_epochs, lr=args.prune_lr,
                           weight_decay=args.weight_decay, batch=args.batch, shift=args.shift,
                           seed=args.seed + 1)
        hist = iterative_prune(model, xtr, ytr, args.density_map, args.prune_steps, pcfg,
                               xte, yte, log=log, train_log=quiet)
        prune_hist = [h.__dict__ for h in hist]
        if cp is not None:
            _save_params(cp, model, {"history": prune_hist})
    metrics["pruned_error"] = model.error(xte, yte)
    metrics["density"] = {l.name: l.density() for l in model.weight_layers}
    log(f"pruned: float test error {100 * metrics['pruned_error']:.2f}%, densities "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics["density"].items()))
    return prune_hist, sens_md


def quantize_stage(args, model, data, log, metrics):
    """Stage 3: k-means weight sharing, the joint-symbol budget, centroid fine-tuning."""
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    quiet = None if args.quiet else log
    books = quantize_model(model, args.bits_map, args.init, args.seed)
    metrics["quantized_error"] = model.error(xte, yte)
    log(f"quantized ({args.init} init, bits {args.bits_map}): float test error "
        f"{100 * metrics['quantized_error']:.2f}%")
    fc = all(l.kind == "fc" for l in model.weight_layers)
    if args.max_symbols and fc:
        try:
            lim = limit_joint_symbols_all(books, args.gap_bits, args.max_symbols,
                                          args.symbol_pes_list)
        except QuantizeError as e:
            raise CompressError(f"symbol limit: {e}") from None
        for l in model.weight_layers:
            l.W = books[l.name].weights()
        worst = max(lim["symbols_before"], key=lim["symbols_before"].get)
        metrics["symbol_limit"] = {**lim, "max_symbols": args.max_symbols,
                                   "gap_bits": args.gap_bits, "pes": args.symbol_pes_list}
        metrics["symbol_limited_error"] = model.error(xte, yte)
        log(f"joint symbols ({args.gap_bits}-bit gaps), worst layout {worst}: "
            f"{lim['symbols_before'][worst]} -> {max(lim['symbols_after'].values())} "
            f"(<= {args.max_symbols}; all: {lim['symbols_after']}); weights moved to a "
            f"neighbouring cluster: {lim['moved']}; float test error "
            f"{100 * metrics['symbol_limited_error']:.2f}%")
    if args.finetune_epochs > 0:
        fcfg = TrainConfig(epochs=args.finetune_epochs, lr=args.finetune_lr, weight_decay=0.0,
                           batch=args.batch, shift=args.shift, seed=args.seed + 2)
        train(model, xtr, ytr, fcfg, updater=CentroidSGD(model, books, fcfg.momentum),
              log=quiet, tag="finetune")
    metrics["error"] = model.error(xte, yte)
    metrics["test_images"] = int(len(yte))
    log(f"compressed {args.model}: float test error {100 * metrics['error']:.2f}% on "
        f"{len(yte)} test images (after centroid fine-tuning)")
    return books


def calibrate_stage(args, cm, data, log, metrics):
    """Stage 4: the integer section (``sw.golden.calibrate``) and the integer test error;
    ``cm`` unchanged when the accelerator does not run the model (a conv layer it cannot run:
    stride, padding, pooling, no ReLU)."""
    try:
        conv_geometry(cm)
    except GoldenError as e:
        log(f"integer calibration skipped: {e}")
        return cm
    if args.float_only:
        log("integer calibration skipped (--float-only)")
        return cm
    try:
        cm = calibrate(cm, data.x_train, data.y_train, act_bits=args.act_bits,
                       gap_bits=args.gap_bits, huff_max_len=args.huff_max_len, seed=args.seed)
    except GoldenError as e:
        raise CompressError(f"integer calibration failed: {e}") from None
    res = infer(IntModel.from_model(cm), data.test_uint8(), trace=False)
    metrics["integer_error"] = float((res.prediction != data.y_test).mean())
    log(f"integer model ({args.act_bits}-bit activations): test error "
        f"{100 * metrics['integer_error']:.2f}%")
    return cm


def pack_stage(args, cm, data, out, stem, log):
    """Stage 6 (``--pack``): memory images for ``--pes`` PEs on ``--board`` (``sw.pack``)."""
    if cm.integer is None:
        log("packing skipped: the model has no integer section")
        return None
    balance = "data" if data.name == "mnist" else "greedy"
    try:
        board = get_board(args.board)
        n = args.pack_pes or board.default_pes
        # (the board's column code: Huffman, or fixed-width entries for its gateware)
        limits = sized_limits(cm, n, PackLimits(huffman=board.profile.huffman), balance=balance)
        packed = pack(cm, n, args.board, limits=limits, x=data.test_uint8(), balance=balance)
    except (PackError, GoldenError, ValueError) as e:
        raise CompressError(f"packing failed: {e}") from None
    t = packed.manifest["totals"]
    where = ""
    if out is not None:
        packed.save(out / f"{stem}_pack")
        where = f" -> {out / (stem + '_pack')}"
    log(f"packed for {n} PEs on {args.board} ({balance} balance){where}: "
        f"{t['total_bytes']} bytes, {t['compression_ratio']:.1f}x")
    return packed


def run(args, log=print):
    """Run the whole pipeline for resolved ``args``; returns a :class:`CompressResult`.

    ``args.out = None`` writes no files.
    """
    t0 = time.time()
    # the graph first: a refused graph fails before the data set is read
    imported = None if args.onnx is None else \
        import_onnx(args.onnx, name=args.model, hardware=not args.float_only)
    data = load_data(args, log)
    if args.cache and (args.onnx or args.data):
        args.source_digest = _digest(args.onnx, args.data)
    metrics = {}
    model = source_model(args, data, log, metrics, imported)
    prune_hist, sens_md = prune_stage(args, model, data, log, metrics)
    books = quantize_stage(args, model, data, log, metrics)
    cm = calibrate_stage(args, to_compressed_model(model, books, metrics), data, log, metrics)
    cm, dead = drop_dead_neurons(cm)
    if dead:
        # (the accelerator would broadcast their bias-only outputs to every PE)
        log("dead neurons dropped (no weight of the next layer reads them): "
            + ", ".join(f"{name} {n}" for name, n in dead.items()))
        metrics.update(dead_neurons=cm.metrics["dead_neurons"],
                       density=cm.metrics["density"])

    stem = args.name or args.model
    out = None if args.out is None else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    extra = {"prune_history": prune_hist, "sensitivity_md": sens_md,
             "command": "python -m sw.compress " + " ".join(getattr(args, "argv", [])),
             "seconds": time.time() - t0}
    if out is not None:
        plot_note = plot_layers(cm, out / f"{stem}_weights.png")
        if plot_note:
            extra["plot_note"] = plot_note
    rep = build_report(cm, n_pes=args.pes, gap_bits=args.gap_bits,
                       huff_max_len=args.huff_max_len, extra=extra)
    st = rep["storage"]
    metrics["ratio"] = st["joint"]["ratio"]
    metrics["ratio_separate"] = st["separate"]["ratio"]
    metrics[f"ratio_hw_{args.pes}pe"] = st[f"joint_{args.pes}pe"]["ratio"]
    metrics["total_bytes"] = st["joint"]["total_bytes"]
    cm.metrics = dict(metrics)
    rep["metrics"] = dict(metrics)
    path = None
    if out is not None:
        path = out / f"{stem}.npz"
        save_model(path, cm)
        md, js = write_report(rep, out, stem)
        log(f"wrote {path}, {md}, {js}")
    for key, s in st.items():
        log(f"size [{key}]: {s['total_bytes']} bytes of {s['dense_bytes']} dense -> "
            f"{s['ratio']:.1f}x")
    packed = pack_stage(args, cm, data, out, stem, log) if args.pack else None
    log(f"RESULT {args.model}: float test error {100 * metrics['error']:.2f}% "
        + (f"(integer {100 * metrics['integer_error']:.2f}%) " if "integer_error" in metrics
           else "")
        + f"compression {metrics['ratio']:.1f}x (separate codes {metrics['ratio_separate']:.1f}x,"
        f" hardware {args.pes} PEs {metrics[f'ratio_hw_{args.pes}pe']:.1f}x)")
    return CompressResult(cm, rep, path, packed, model)


@command
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    resolve(args)
    run(args, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
