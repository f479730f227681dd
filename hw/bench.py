"""Cycle benchmark of the accelerator on Verilator against the ideal bound.

::

    python -m hw.bench [--model models/lenet300.npz] [--images K] [--pes 1,2,4,8]
                       [--board NAME] [--offset I] [--random-model] [--fifo-depth D] [--lanes K]
                       [--no-overlap] [--no-skip] [--pointer-ports P] [--stream-words S]
                       [--no-early]
                       [--balance data|greedy|none] [--json FILE]

For every PE count the accelerator (``gateware.accelerator.Accelerator``, default
``AcceleratorConfig(n_pes=N)``) is simulated on K MNIST test images back to back, with no
stalls on its ports. Every logit is compared with ``sw.golden.infer`` (the run fails on any
difference). The table shows ``o_cycles`` per inference (first accepted input to final logit),
the ideal bound of docs/ARCHITECTURE.md section 6 (``sw.golden.ideal_cycles``), their ratio
(target <= 1.25), the PE-work bound (most symbols, fillers included, any PE decodes; one per
cycle), the bit-exact result and the top-1 accuracy on those images.

``--board NAME`` simulates the configuration that board builds (its feature profile in
``boards/<name>.py``; ``--pes`` then defaults to the board's PE count); the feature flags below
override single features.

``--random-model`` benchmarks a random sparse model with the LeNet-300-100 shape instead of a
model file (for when no trained model exists yet).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from boards import get_board
from hw.simcase import bench_config, case_from_int_model
from hw.verilator import SimulationFailed, run_case
from sw.balance import BalanceError, METHODS, balance_model
from sw.cli import EXIT_MISMATCH, EXIT_OK, ToolError, add_column_code, command, huffman_of
from sw.golden import GoldenError, IntModel, images_to_uint8, load_mnist, random_int_model
from sw.modelfile import ModelFormatError, load_model
from sw.pack import PackError

__all__ = ["BenchError", "bench_config", "board_features", "run_bench", "format_table",
           "build_parser", "main"]


class BenchError(ToolError):
    """The benchmark cannot run (missing model, bad arguments)."""


def _model(path, random_model):
    if random_model:
        return (random_int_model([784, 300, 100, 10], 0.08, 1, n_indices=7),
                "random 784-300-100-10 (density 0.08, 7 clusters)")
    p = Path(path)
    if not p.exists():
        raise BenchError(f"model file {p} not found (build it with the compression pipeline, or "
                         "use --random-model)")
    try:
        return IntModel.from_model(load_model(p)), str(p)
    except (ModelFormatError, GoldenError) as e:
        raise BenchError(f"cannot use {p}: {e}") from None


def board_features(board, **given):
    """The feature profile of ``board`` (a ``boards/`` name or ``None``) as ``bench_config`` /
    ``run_bench`` keywords, with the ``given`` ones that are not ``None`` taking precedence."""
    features = {}
    if board is not None:
        try:
            features = get_board(board).profile.config_fields()
        except ValueError as exc:
            raise BenchError(str(exc)) from None
    features.update({k: v for k, v in given.items() if v is not None})
    return features


def run_bench(int_model, n_pes_list, n_images, offset=0, log=print, balance=True, **features):
    """Simulate every PE count; returns a list of result dicts (one per PE count).

    ``balance``: renumber hidden neurons per PE count as ``sw.pack --balance`` does for the board
    (``sw.balance.balance_model``: ``"data"`` or ``True``, ``"greedy"``, ``"none"`` or
    ``False``; same logits; the PE-work bound is that of the balanced model). Each row's
    ``balance`` says which method was used. ``features``: ``AcceleratorConfig`` fields for
    :func:`hw.simcase.bench_config` (``None``: the default)."""
    xs, ys = load_mnist()["test"]
    if not 0 <= offset < len(ys) or n_images < 1:
        raise BenchError(f"images {offset}..{offset + n_images - 1} outside the test set")
    x = images_to_uint8(xs[offset:offset + n_images])
    y = ys[offset:offset + n_images]
    rows = []
    original = int_model
    for n in n_pes_list:
        try:
            int_model, _, info = balance_model(original, n, balance)
        except BalanceError as e:
            raise BenchError(str(e)) from None
        cfg = bench_config(int_model, n, **features)
        row = {"n_pes": n, "images": int(len(y)), "max_rows_per_pe": cfg.max_rows_per_pe,
               "symbol_depth": cfg.symbol_depth, "balance": info["method"]}
        try:
            case = case_from_int_model(int_model, x, cfg, labels=y)
        except PackError as e:
            row.update(status=f"does not fit: {e}")
            rows.append(row)
            log(f"N={n}: {row['status']}")
            continue
        log(f"N={n}: simulating {len(y)} images ...")
        try:
            stats = run_case(f"bench_{len(y)}_{offset}", case)
        except SimulationFailed as e:
            row.update(status="MISMATCH", detail=str(e)[:2000])
            rows.append(row)
            log(f"N={n}: {row['status']}: {row['detail']}")
            continue
        cyc = np.array([s["cycles"] for s in stats["inferences"]], dtype=np.float64)
        ideal = np.array(case["ideal"], dtype=np.float64)
        bound = np.array(case["pe_bound"], dtype=np.float64)
        ratio = cyc / np.maximum(ideal, 1)
        pred = np.array([s["prediction"] for s in stats["inferences"]])
        row.update(status="bit-exact", cycles_mean=float(cyc.mean()), cycles_max=int(cyc.max()),
                   ideal_mean=float(ideal.mean()), ratio_mean=float(cyc.sum() / ideal.sum()),
                   ratio_max=float(ratio.max()), pe_bound_mean=float(bound.mean()),
                   accuracy=float((pred == y).mean()), load_cycles=stats["load_cycles"])
        rows.append(row)
    return rows


def format_table(rows):
    """Markdown table of :func:`run_bench` results."""
    out = ["| N | images | cycles mean | cycles max | ideal mean | cycles/ideal | worst image "
           "| PE-work bound | check | top-1 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "bit-exact":
            out.append(f"| {r['n_pes']} | {r['images']} | | | | | | | {r['status']} | |")
            continue
        out.append(f"| {r['n_pes']} | {r['images']} | {r['cycles_mean']:.1f} | "
                   f"{r['cycles_max']} | {r['ideal_mean']:.1f} | {r['ratio_mean']:.3f} | "
                   f"{r['ratio_max']:.3f} | {r['pe_bound_mean']:.1f} | bit-exact | "
                   f"{100 * r['accuracy']:.1f}% |")
    return "\n".join(out)


def build_parser():
    """The command line's options (``python -m hw.bench``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/lenet300.npz", help="calibrated dcmodel file")
    ap.add_argument("--images", type=int, default=20, help="MNIST test images per PE count")
    ap.add_argument("--offset", type=int, default=0, help="first MNIST test image")
    ap.add_argument("--pes", default=None,
                    help="comma-separated PE counts (default: 1,2,4,8, or the board's)")
    ap.add_argument("--board", default=None,
                    help="simulate this board's configuration (boards/NAME.py feature profile)")
    ap.add_argument("--random-model", action="store_true",
                    help="random sparse 784-300-100-10 model instead of --model")
    ap.add_argument("--fifo-depth", type=int, default=None,
                    help="broadcast FIFO depth (default: the AcceleratorConfig default, 8)")
    ap.add_argument("--no-overlap", action="store_true",
                    help="requantize each layer before the next one starts (the iCEBreaker "
                         "build's configuration; default: overlapped)")
    ap.add_argument("--no-skip", action="store_true",
                    help="no column skip table: every PE gets every non-zero activation (the "
                         "iCEBreaker build's configuration; default: with the table)")
    ap.add_argument("--lanes", type=int, default=None,
                    help="input values per input word (default: the AcceleratorConfig default, "
                         "16)")
    ap.add_argument("--pointer-ports", type=int, default=None, choices=(1, 2),
                    help="read ports of each PE's pointer memory (default: the "
                         "AcceleratorConfig default, 2; the iCEBreaker build uses 1)")
    ap.add_argument("--stream-words", type=int, default=None, choices=(1, 2),
                    help="16-bit memory words each PE's word fetch reads and decoder takes per "
                         "cycle (default: the AcceleratorConfig default, 2; the iCEBreaker "
                         "build uses 1)")
    ap.add_argument("--segment-queue", type=int, default=None,
                    help="entries of each PE's column-segment queues (default: automatic, 2 "
                         "with one PE and 4 with more; the iCEBreaker build uses 1)")
    add_column_code(ap)
    ap.add_argument("--no-early", action="store_true",
                    help="start a layer only when every PE has taken the previous one's end "
                         "token (default: as soon as it is in every FIFO; the iCEBreaker build "
                         "has no requantization overlap and so no early start)")
    ap.add_argument("--balance", choices=METHODS, default="data",
                    help="renumber hidden neurons as sw.pack does (default data: greedy refined "
                         "on the first 2000 MNIST training images; greedy; none = keep the "
                         "model's neuron order)")
    ap.add_argument("--no-balance", action="store_const", const="none", dest="balance",
                    help="same as --balance none")
    ap.add_argument("--json", help="also write the results to this JSON file")
    return ap


@command
def main(argv=None):
    args = build_parser().parse_args(argv)
    features = board_features(
        args.board, fifo_depth=args.fifo_depth, input_lanes=args.lanes,
        requant_overlap=False if args.no_overlap else None,
        column_skip=False if args.no_skip else None, pointer_ports=args.pointer_ports,
        stream_words=args.stream_words, segment_queue_depth=args.segment_queue,
        huffman=huffman_of(args.column_code))
    if args.pes is None:
        args.pes = str(get_board(args.board).default_pes) if args.board else "1,2,4,8"
    try:
        pes = [int(v) for v in args.pes.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--pes must be comma-separated integers, not {args.pes!r}") from None
    if not pes or any(not 1 <= n <= 64 for n in pes):
        raise BenchError("--pes values must be 1..64")
    im, name = _model(args.model, args.random_model)
    print(f"model: {name}; {args.images} MNIST test images from #{args.offset}")
    if args.fifo_depth is not None and not 2 <= args.fifo_depth <= 1024:
        raise BenchError("--fifo-depth must be 2..1024")
    if args.lanes is not None and not 1 <= args.lanes <= 16:
        raise BenchError("--lanes must be 1..16")
    if args.segment_queue is not None and not 1 <= args.segment_queue <= 16:
        raise BenchError("--segment-queue must be 1..16")
    rows = run_bench(im, pes, args.images, args.offset, balance=args.balance,
                     early_start=False if args.no_early else None, **features)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": name, "results": rows}, indent=1))
    return EXIT_OK if all(r["status"] == "bit-exact" for r in rows) else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
