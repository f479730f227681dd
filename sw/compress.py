"""Deep Compression pipeline on MNIST: train -> prune + retrain -> quantize + fine-tune -> file.

Command line::

    python -m sw.compress --model lenet300|lenet5 [--out DIR] [--subset N] [--seed S] [...]

Stages: dense training (SGD, momentum, weight decay, cosine LR), iterative magnitude pruning
with masked retraining (``sw.prune``), per-layer k-means weight sharing with centroid
fine-tuning (``sw.quantize``), integer calibration (``sw.golden.calibrate``, fc models only),
saving (``sw.modelfile``) and the size report (``sw.report``). The float test error is measured
on all 10,000 test images (unless ``--subset``) after every stage.

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

from sw.cli import command  # noqa: E402
from sw.golden import GoldenError, IntModel, calibrate, infer  # noqa: E402
from sw.mnist import load_mnist  # noqa: E402
from sw.modelfile import CompressedModel, LayerRecord, save_model  # noqa: E402
from sw.nn import ARCHS, build_model  # noqa: E402
from sw.prune import format_sensitivity, iterative_prune, sensitivity  # noqa: E402
from sw.quantize import (INIT_METHODS, CentroidSGD, QuantizeError,  # noqa: E402
                         limit_joint_symbols_all, quantize_model)
from sw.report import build_report, plot_layers, write_report  # noqa: E402
from sw.train import TrainConfig, train  # noqa: E402

__all__ = ["CompressError", "DEFAULTS", "build_parser", "resolve", "run", "to_compressed_model",
           "main"]


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
}


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


def _default_symbol_depth():
    try:
        from gateware.config import AcceleratorConfig
        return int(AcceleratorConfig().symbol_depth)
    except ImportError:  # gateware dependencies missing: the documented default
        return 256


def build_parser():
    """The command line's options (``python -m sw.compress``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.compress",
                                 description="Deep Compression of LeNet on MNIST (NumPy).")
    ap.add_argument("--model", choices=ARCHS, default="lenet300")
    ap.add_argument("--out", default="models", help="output directory (model + report)")
    ap.add_argument("--name", help="file stem (default: the model name)")
    ap.add_argument("--subset", type=int, help="use only N training / test images (tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=float, help="dense training epochs")
    ap.add_argument("--lr", type=float, help="dense learning rate")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--shift", type=int,
                    help="random translation augmentation in pixels (0 = off; default 1)")
    ap.add_argument("--prune-steps", type=int)
    ap.add_argument("--prune-epochs", type=float, help="retraining epochs per pruning step")
    ap.add_argument("--prune-lr", type=float)
    ap.add_argument("--density", help="final density per layer, e.g. ip1=0.045,ip2=0.07")
    ap.add_argument("--bits", help="index bits: one number for all layers or name=b,...")
    ap.add_argument("--init", choices=INIT_METHODS, default="linear",
                    help="k-means centroid initialisation")
    ap.add_argument("--finetune-epochs", type=float)
    ap.add_argument("--finetune-lr", type=float)
    ap.add_argument("--pes", type=int, default=4, help="PE count of the hardware accounting")
    ap.add_argument("--gap-bits", type=int,
                    help="relative-index (gap) width (default: lenet300 5, lenet5 4)")
    ap.add_argument("--huff-max-len", type=int, default=12)
    ap.add_argument("--act-bits", type=int, default=8)
    ap.add_argument("--max-symbols", type=int,
                    help="joint Huffman symbols allowed over all layers, for every PE count of "
                         "--symbol-pes with the rows in training order or balanced (the "
                         "accelerator's symbol table depth; 0 = no limit; fc models only; "
                         "default: lenet300 1024, else AcceleratorConfig().symbol_depth)")
    ap.add_argument("--symbol-pes", default="1,2,4,8",
                    help="PE counts the symbol limit holds for (comma-separated)")
    ap.add_argument("--no-sensitivity", action="store_true",
                    help="skip the per-layer pruning sensitivity scan")
    ap.add_argument("--cache", help="directory caching the dense / pruned weights between runs")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return ap


def resolve(args):
    """Fill architecture defaults into parsed arguments and validate them."""
    d = DEFAULTS[args.model]
    for k in ("epochs", "lr", "shift", "prune_steps", "prune_epochs", "prune_lr",
              "finetune_epochs", "finetune_lr", "gap_bits", "max_symbols"):
        if getattr(args, k) is None:
            setattr(args, k, d[k])
    if args.max_symbols is None:
        args.max_symbols = _default_symbol_depth()
    for option, path in (("--out", args.out), ("--cache", args.cache)):
        # (found now, not after minutes of training when the files are written)
        if path and Path(path).exists() and not Path(path).is_dir():
            raise CompressError(f"{option} {path} exists and is not a directory")
    if not 1 <= args.gap_bits <= 15:
        raise CompressError(f"--gap-bits must be 1..15, got {args.gap_bits}")
    try:
        args.symbol_pes_list = [int(v) for v in args.symbol_pes.split(",") if v.strip()]
    except ValueError:
        raise CompressError(f"--symbol-pes must be comma-separated integers, not "
                            f"{args.symbol_pes!r}") from None
    if not args.symbol_pes_list or min(args.symbol_pes_list) < 1:
        raise CompressError("--symbol-pes needs PE counts >= 1")
    dens = dict(d["density"])
    if args.density:
        dens.update(_kv(args.density, float, "density"))
    bits = dict(d["bits"])
    if args.bits:
        if "=" in args.bits:
            bits.update(_kv(args.bits, int, "bits"))
        else:
            try:
                b = int(args.bits)
            except ValueError:
                raise CompressError(f"--bits must be an integer or name=b list, got "
                                    f"{args.bits!r}") from None
            bits = {k: b for k in bits}
    unknown = sorted((set(dens) | set(bits)) - set(d["bits"]))
    if unknown:
        raise CompressError(f"unknown layers {unknown} for {args.model}; layers are "
                            f"{sorted(d['bits'])}")
    for k, v in dens.items():
        if not 0 < v <= 1:
            raise CompressError(f"density of {k} must be in (0, 1], got {v}")
    for k, v in bits.items():
        if not 1 <= v <= 8:
            raise CompressError(f"bits of {k} must be 1..8, got {v}")
        if v + args.gap_bits > 16:
            raise CompressError(f"bits of {k} ({v}) + gap bits ({args.gap_bits}) exceed 16")
    if args.subset is not None and args.subset < 10:
        raise CompressError(f"--subset must be >= 10, got {args.subset}")
    if args.prune_steps < 0 or args.epochs <= 0 or args.pes < 1 or args.max_symbols < 0:
        raise CompressError("epochs must be > 0, prune steps >= 0, pes >= 1, max symbols >= 0")
    args.density_map, args.bits_map = dens, bits
    return args


def to_compressed_model(model, codebooks, metrics=None):
    """``sw.modelfile.CompressedModel`` of a quantized ``sw.nn.Model``."""
    layers = []
    wl = model.weight_layers
    for i, l in enumerate(wl):
        q = codebooks[l.name]
        meta = {}
        if l.kind == "conv":
            meta = {"stride": 1, "padding": 0, "pool": 2, "relu_before_pool": False}
        layers.append(LayerRecord(name=l.name, kind=l.kind, index=q.index.astype(np.uint8),
                                  codebook=q.codebook.astype(np.float32),
                                  bias=l.b.astype(np.float32), idx_bits=int(q.bits),
                                  relu=bool(l.relu) and i < len(wl) - 1, meta=meta))
    return CompressedModel(arch=model.arch, input_shape=list(model.input_shape), layers=layers,
                           metrics=dict(metrics or {}))


def _cache_path(args, stage):
    if not args.cache:
        return None
    key = {"model": args.model, "seed": args.seed, "subset": args.subset, "epochs": args.epochs,
           "lr": args.lr, "wd": args.weight_decay, "batch": args.batch, "shift": args.shift}
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


def run(args, log=print):
    """Run the whole pipeline for resolved ``args``; returns ``(model_path, report dict)``."""
    t0 = time.time()
    data = load_mnist(subset=args.subset, seed=args.seed)
    xtr, ytr = data.train.images, data.train.labels
    xte, yte = data.test.images, data.test.labels
    log(f"MNIST: {len(ytr)} training, {len(yte)} test images")
    quiet = None if args.quiet else log
    model = build_model(args.model, args.seed)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                      batch=args.batch, shift=args.shift, seed=args.seed)
    metrics = {}
    cp = _cache_path(args, "dense")
    if cp is not None and cp.exists():
        _load_params(cp, model)
        log(f"dense weights from cache {cp}")
    else:
        train(model, xtr, ytr, cfg, log=quiet, tag="dense")
        if cp is not None:
            _save_params(cp, model, {})
    metrics["dense_error"] = model.error(xte, yte)
    log(f"dense {args.model}: float test error {100 * metrics['dense_error']:.2f}% on "
        f"{len(yte)} test images ({time.time() - t0:.0f}s)")

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

    cm = to_compressed_model(model, books, metrics)
    if fc:
        try:
            cm = calibrate(cm, xtr, ytr, act_bits=args.act_bits, gap_bits=args.gap_bits,
                           huff_max_len=args.huff_max_len, seed=args.seed)
        except GoldenError as e:
            raise CompressError(f"integer calibration failed: {e}") from None
        res = infer(IntModel.from_model(cm), data.test.uint8())
        metrics["integer_error"] = float((res.prediction != yte).mean())
        log(f"integer model ({args.act_bits}-bit activations): test error "
            f"{100 * metrics['integer_error']:.2f}%")
    else:
        log("integer calibration skipped: the accelerator runs fully-connected models only")
    stem = args.name or args.model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"prune_history": prune_hist, "sensitivity_md": sens_md,
             "command": "python -m sw.compress " + " ".join(args.argv),
             "seconds": time.time() - t0}
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
    path = out / f"{stem}.npz"
    save_model(path, cm)
    md, js = write_report(rep, out, stem)
    log(f"wrote {path}, {md}, {js}")
    for key, s in st.items():
        log(f"size [{key}]: {s['total_bytes']} bytes of {s['dense_bytes']} dense -> "
            f"{s['ratio']:.1f}x")
    log(f"RESULT {args.model}: float test error {100 * metrics['error']:.2f}% "
        + (f"(integer {100 * metrics['integer_error']:.2f}%) " if "integer_error" in metrics
           else "")
        + f"compression {metrics['ratio']:.1f}x (separate codes {metrics['ratio_separate']:.1f}x,"
        f" hardware {args.pes} PEs {metrics[f'ratio_hw_{args.pes}pe']:.1f}x)")
    return path, rep


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
