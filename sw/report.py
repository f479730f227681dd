"""Size accounting and the paper's per-layer compression table.

Everything a decoder needs is counted, in the layout of docs/ARCHITECTURE.md sections 3-4 (16-bit
words): per PE and layer the 4-word header, the column-pointer table (``in + 1`` bit offsets of
1 word, or 2 words when some PE's stream of the layer reaches 65,536 bits), the coded stream
rounded up to whole words, the biases (16-bit ``bias_q``); shared per layer: the codebook
(``2^idx_bits`` 16-bit ``cb_q`` words), the 8-word layer descriptor and, when Huffman coded, the
decoder tables (``limit`` and ``base``: ``huff_max_len`` words each, plus one word per
symbol). The reference is the dense float32 network (weights and biases, 4 bytes each).

Three codings of the sparse entries (each non-zero weight plus the fillers of long gaps):

- ``"pq"`` (pruning + quantization): fixed ``gap_bits + idx_bits`` bits per entry.
- ``"separate"`` (P+Q+H as in the paper): one Huffman code for the weight indices and one for
  the gaps (relative indices), two sets of tables.
- ``"joint"`` (the hardware's): one Huffman code per layer over the joint symbols
  ``(gap << idx_bits) | index``; with the PE count of the accelerator this is exactly what
  ``sw.pack`` writes.

Conv layers are counted as their ``(out_channels, in_channels * kh * kw)`` index matrix.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contract.memmap import DESC_WORDS, HEADER_WORDS
from contract.widths import WORD_BITS
from sw.cli import command
from sw.huffman import HuffmanCode
from sw.modelfile import load_model, save_model
from sw.prune import drop_dead_neurons
from sw.sparse import encode_columns, split_symbol

__all__ = ["ReportError", "CODINGS", "layer_storage", "model_storage", "paper_table",
           "build_report", "write_report", "format_markdown", "plot_layers", "refresh",
           "build_parser", "main"]

CODINGS = ("pq", "separate", "joint")
WORD = WORD_BITS


class ReportError(ValueError):
    """Unknown coding or an inconsistent model."""


def _words(bits):
    return -(-int(bits) // WORD)


def _matrix(layer):
    idx = np.asarray(layer.index)
    return idx.reshape(idx.shape[0], -1)


def _code(symbols, max_len):
    if len(symbols) == 0:
        return None
    return HuffmanCode.from_symbols(symbols, max_len)


def _table_words(code, max_len):
    return 0 if code is None else 2 * max_len + len(code)


def layer_storage(layer, n_pes=1, coding="joint", gap_bits=4, huff_max_len=12):
    """Storage of one layer under a coding.

    Parameters
    ----------
    layer : sw.modelfile.LayerRecord
    n_pes : int
        Rows are interleaved over this many PEs (1 = the paper's single CSC matrix).
    coding : str
        ``"pq"``, ``"separate"`` or ``"joint"``.
    gap_bits : int
        Relative-index width.
    huff_max_len : int
        Longest Huffman code.

    Returns
    -------
    dict
        Counts (entries, fillers, stream bits per PE) and word totals per part
        (``header``, ``pointers``, ``streams``, ``biases``, ``codebook``, ``tables``,
        ``descriptor``), ``total_bits`` and ``dense_bits``.
    """
    if coding not in CODINGS:
        raise ReportError(f"coding must be one of {CODINGS}, not {coding!r}")
    m = _matrix(layer)
    ib = int(layer.idx_bits)
    enc = encode_columns(m, n_pes, gap_bits, ib)
    syms = enc.all_symbols()
    gaps, idxs = split_symbol(syms, ib)
    tables = 0
    if coding == "pq":
        pe_lens = [np.full(len(pe.symbols), gap_bits + ib, dtype=np.int64) for pe in enc.pes]
        codes = {}
    elif coding == "joint":
        code = _code(syms, huff_max_len)
        codes = {"joint": code}
        pe_lens = [code.symbol_lengths(pe.symbols) if code else np.zeros(0, np.int64)
                   for pe in enc.pes]
        tables = _table_words(code, huff_max_len)
    else:
        ci, cg = _code(idxs, huff_max_len), _code(gaps, huff_max_len)
        codes = {"index": ci, "gap": cg}
        pe_lens = []
        for pe in enc.pes:
            g, i = split_symbol(pe.symbols, ib)
            pe_lens.append(ci.symbol_lengths(i) + cg.symbol_lengths(g) if len(i)
                           else np.zeros(0, np.int64))
        tables = _table_words(ci, huff_max_len) + _table_words(cg, huff_max_len)
    per_pe = [int(l.sum()) for l in pe_lens]
    ptr_words = 1 if max(per_pe, default=0) < 65536 else 2
    in_f = m.shape[1]
    out_f = m.shape[0]
    words = {
        "header": HEADER_WORDS * n_pes,
        "pointers": n_pes * (in_f + 1) * ptr_words,
        "streams": sum(_words(b) for b in per_pe),
        "biases": out_f,
        "codebook": 1 << ib,
        "tables": tables,
        "descriptor": DESC_WORDS,
    }
    total_bits = WORD * sum(words.values())
    nnz = int((m != 0).sum())
    n_fill = sum(pe.n_fillers for pe in enc.pes)
    all_lens = np.concatenate(pe_lens) if pe_lens else np.zeros(0, np.int64)
    out = {
        "name": layer.name, "kind": layer.kind, "shape": list(layer.index.shape),
        "weights": int(m.size), "nonzeros": nnz, "density": nnz / max(1, m.size),
        "entries": int(len(syms)), "fillers": int(n_fill), "idx_bits": ib,
        "gap_bits": int(gap_bits), "n_pes": int(n_pes), "coding": coding,
        "stream_bits_per_pe": per_pe, "stream_bits": int(sum(per_pe)),
        "ptr_words": ptr_words, "words": words, "total_bits": int(total_bits),
        "dense_bits": 32 * (int(m.size) + out_f),
        "n_symbols": {k: (0 if c is None else len(c)) for k, c in codes.items()},
    }
    if coding == "separate" and len(syms):
        out["index_bits_avg"] = float(codes["index"].encoded_bits(idxs) / len(syms))
        out["gap_bits_avg"] = float(codes["gap"].encoded_bits(gaps) / len(syms))
    elif coding == "pq":
        out["index_bits_avg"] = float(ib)
        out["gap_bits_avg"] = float(gap_bits)
    out["bits_per_entry"] = float(all_lens.mean()) if len(all_lens) else 0.0
    return out


def _gap_bits(model, gap_bits):
    """``gap_bits``, or (``None``) the model's integer section's, else 4."""
    if gap_bits is not None:
        return gap_bits
    integer = getattr(model, "integer", None)
    return int(integer.gap_bits) if integer is not None else 4


def model_storage(model, n_pes=1, coding="joint", gap_bits=None, huff_max_len=12):
    """:func:`layer_storage` for every layer plus totals (``total_bytes``, ``ratio``);
    ``gap_bits=None``: the model's (integer section), else 4."""
    gap_bits = _gap_bits(model, gap_bits)
    layers = [layer_storage(l, n_pes, coding, gap_bits, huff_max_len) for l in model.layers]
    words = {k: sum(l["words"][k] for l in layers) for k in layers[0]["words"]}
    total_bits = sum(l["total_bits"] for l in layers)
    dense_bits = sum(l["dense_bits"] for l in layers)
    return {"coding": coding, "n_pes": int(n_pes), "layers": layers,
            "words": words, "bytes": {k: 2 * v for k, v in words.items()},
            "total_bytes": total_bits // 8, "dense_bytes": dense_bits // 8,
            "ratio": dense_bits / max(1, total_bits),
            "nonzeros": sum(l["nonzeros"] for l in layers),
            "weights": sum(l["weights"] for l in layers)}


def paper_table(model, gap_bits=None, huff_max_len=12):
    """Rows of the paper's Table 2 style per-layer table (single PE, paper's codings).

    ``weight bits`` are the bits per stored entry spent on the weight (cluster) index,
    ``index bits`` those spent on the relative index (gap); ``rate`` is everything stored for
    the layer (including pointers, codebook, biases and tables) over its dense float32 size.
    """
    gap_bits = _gap_bits(model, gap_bits)
    pq = model_storage(model, 1, "pq", gap_bits, huff_max_len)
    h = model_storage(model, 1, "separate", gap_bits, huff_max_len)
    rows = []
    for a, b in zip(pq["layers"], h["layers"]):
        rows.append({"layer": a["name"], "weights": a["weights"], "density": a["density"],
                     "weight_bits_pq": a["index_bits_avg"],
                     "weight_bits_pqh": b.get("index_bits_avg", 0.0),
                     "index_bits_pq": a["gap_bits_avg"],
                     "index_bits_pqh": b.get("gap_bits_avg", 0.0),
                     "rate_pq": a["total_bits"] / a["dense_bits"],
                     "rate_pqh": b["total_bits"] / b["dense_bits"]})
    ent = sum(l["entries"] for l in h["layers"])
    tot = {"layer": "total", "weights": pq["weights"],
           "density": pq["nonzeros"] / max(1, pq["weights"]),
           "weight_bits_pq": sum(l["index_bits_avg"] * l["entries"] for l in pq["layers"])
           / max(1, ent),
           "weight_bits_pqh": sum(l.get("index_bits_avg", 0) * l["entries"]
                                  for l in h["layers"]) / max(1, ent),
           "index_bits_pq": sum(l["gap_bits_avg"] * l["entries"] for l in pq["layers"])
           / max(1, ent),
           "index_bits_pqh": sum(l.get("gap_bits_avg", 0) * l["entries"]
                                 for l in h["layers"]) / max(1, ent),
           "rate_pq": 1.0 / pq["ratio"], "rate_pqh": 1.0 / h["ratio"]}
    return rows + [tot]


def build_report(model, n_pes=4, gap_bits=None, huff_max_len=12, extra=None):
    """All numbers of the report as a JSON-serialisable dict.

    Parameters
    ----------
    model : sw.modelfile.CompressedModel
    n_pes : int
        PE count of the hardware accounting (joint coding).
    gap_bits, huff_max_len : int
        (``gap_bits=None``: the model's integer section's, else 4.)
    extra : dict, optional
        Merged in (training history, errors, command line...).
    """
    gap_bits = _gap_bits(model, gap_bits)
    rep = {
        "arch": model.arch,
        "metrics": dict(model.metrics),
        "paper_table": paper_table(model, gap_bits, huff_max_len),
        "storage": {
            "pq": model_storage(model, 1, "pq", gap_bits, huff_max_len),
            "separate": model_storage(model, 1, "separate", gap_bits, huff_max_len),
            "joint": model_storage(model, 1, "joint", gap_bits, huff_max_len),
            f"joint_{n_pes}pe": model_storage(model, n_pes, "joint", gap_bits, huff_max_len),
        },
        "hardware_pes": int(n_pes),
    }
    rep["codebooks"] = {l.name: [float(v) for v in l.codebook] for l in model.layers}
    if extra:
        rep.update(extra)
    return rep


def _pct(v):
    return f"{100 * v:.2f}%"


def format_markdown(rep):
    """Markdown text of a :func:`build_report` result."""
    m = rep["metrics"]
    st = rep["storage"]
    hw = st[f"joint_{rep['hardware_pes']}pe"]
    lines = [f"# Compressed {rep['arch']}", ""]
    if m:
        lines.append("## Errors (all test images)")
        lines.append("")
        for k in sorted(m):
            v = m[k]
            if k.endswith("error") and isinstance(v, (int, float)):
                lines.append(f"- {k}: {_pct(v)}")
        lines.append("")
    lines += ["## Per-layer table (paper style, one CSC matrix, separate Huffman codes)", "",
              "Weight bits = bits per stored entry for the cluster index, index bits = for the "
              "relative index (gap); fillers count as entries. Rate = everything stored for "
              "the layer (streams, pointers, codebook, biases, Huffman tables) / dense "
              "float32 size.", "",
              "| layer | #weights | weights% (P) | weight bits P+Q | P+Q+H | index bits P+Q | "
              "P+Q+H | rate P+Q | rate P+Q+H |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["paper_table"]:
        lines.append(f"| {r['layer']} | {r['weights']} | {_pct(r['density'])} | "
                     f"{r['weight_bits_pq']:.1f} | {r['weight_bits_pqh']:.2f} | "
                     f"{r['index_bits_pq']:.1f} | {r['index_bits_pqh']:.2f} | "
                     f"{_pct(r['rate_pq'])} | {_pct(r['rate_pqh'])} |")
    lines += ["", "## Total size, everything counted", "",
              "| coding | PEs | streams | pointers | biases | codebooks | Huffman tables | "
              "headers+descr. | total bytes | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"pq": "P+Q (fixed gap+index bits)", "separate": "P+Q+H, separate index/gap codes",
             "joint": "P+Q+H, joint (gap,index) code"}
    for key, s in st.items():
        b = s["bytes"]
        nm = names.get(key, f"P+Q+H joint, hardware ({s['n_pes']} PEs, = sw.pack)")
        lines.append(f"| {nm} | {s['n_pes']} | {b['streams']} | {b['pointers']} | "
                     f"{b['biases']} | {b['codebook']} | {b['tables']} | "
                     f"{b['header'] + b['descriptor']} | {s['total_bytes']} | "
                     f"{s['ratio']:.1f}x |")
    lines += ["", f"Dense float32 reference: {hw['dense_bytes']} bytes "
              f"({hw['weights']} weights + biases); {hw['nonzeros']} non-zero weights "
              f"({_pct(hw['nonzeros'] / max(1, hw['weights']))}).", ""]
    lines += ["## Per-layer detail (hardware coding)", "",
              "| layer | shape | non-zeros | fillers | joint symbols | bits/entry | "
              "ptr words | stream bits |", "|---|---|---|---|---|---|---|---|"]
    for l in hw["layers"]:
        lines.append(f"| {l['name']} | {'x'.join(map(str, l['shape']))} | {l['nonzeros']} | "
                     f"{l['fillers']} | {l['n_symbols'].get('joint', 0)} | "
                     f"{l['bits_per_entry']:.2f} | {l['ptr_words']} | {l['stream_bits']} |")
    if rep.get("sensitivity_md"):
        lines += ["", "## Pruning sensitivity (one layer pruned, no retraining)", "",
                  rep["sensitivity_md"]]
    if rep.get("prune_history"):
        lines += ["", "## Pruning iterations", "", "| step | densities (quality) | error after "
                  "pruning | after retraining |", "|---|---|---|---|"]
        for p in rep["prune_history"]:
            ds = ", ".join(f"{k} {_pct(v)} (q={p['quality'][k]:.2f})"
                           for k, v in p["density"].items())
            ep = "" if p["error_pruned"] is None else _pct(p["error_pruned"])
            er = "" if p["error_retrained"] is None else _pct(p["error_retrained"])
            lines.append(f"| {p['step']} | {ds} | {ep} | {er} |")
    if rep.get("command"):
        lines += ["", "## Command", "", f"`{rep['command']}`"]
    if rep.get("plot_note"):
        lines += ["", rep["plot_note"]]
    return "\n".join(lines) + "\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def plot_layers(model, path, float_weights=None):
    """Histogram of each layer's surviving weights with its codebook marked.

    Returns ``None`` on success or a note string when matplotlib is not installed.
    """
    try:
        # lazy: matplotlib is optional (the [plot] extra) and slow to import
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: after matplotlib.use (the headless backend)
    except ImportError:
        return "(plot skipped: matplotlib is not installed; `pip install matplotlib`)"
    n = len(model.layers)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3))
    axes = np.atleast_1d(axes)
    for ax, l in zip(axes, model.layers):
        w = (float_weights or {}).get(l.name)
        if w is None:
            w = l.weights()
        w = np.asarray(w).ravel()
        w = w[w != 0]
        ax.hist(w, bins=100, color="0.6")
        for c in l.codebook[1:]:
            ax.axvline(float(c), color="r", lw=0.7)
        ax.set_title(f"{l.name}: {w.size} weights, {(1 << l.idx_bits) - 1} clusters")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_report(rep, out_dir, stem):
    """Write ``STEM_report.md`` and ``STEM_report.json`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{stem}_report.md"
    js = out / f"{stem}_report.json"
    md.write_text(format_markdown(rep), encoding="utf-8")
    slim = json.loads(json.dumps(rep, default=_json_default))
    js.write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return md, js


#: Report fields of the run that made a model (kept when its report is refreshed).
RUN_FIELDS = ("prune_history", "sensitivity_md", "command", "seconds", "plot_note")


def refresh(path, n_pes=4, drop_dead=False):
    """Recount the sizes of the model file ``path`` with the current layout (e.g. after the
    descriptor grew) and rewrite its size metrics, ``STEM_report.md`` and ``STEM_report.json``
    beside it (the training run's fields of an existing report are kept). Returns the new
    report.

    ``drop_dead``: first clear the model's dead hidden neurons (:func:`sw.prune.
    drop_dead_neurons`, as ``sw.compress`` does since it has it; the logits do not change),
    recording them in the ``dead_neurons`` metric and the layers' kept fraction in ``density``.
    """
    path = Path(path)
    model = load_model(path)
    if drop_dead:
        model, _ = drop_dead_neurons(model)
    stem = path.name[:-len(".npz")] if path.name.endswith(".npz") else path.stem
    old = path.parent / f"{stem}_report.json"
    extra = {}
    if old.exists():
        prev = json.loads(old.read_text(encoding="utf-8"))
        extra = {k: prev[k] for k in RUN_FIELDS if k in prev}
        n_pes = int(prev.get("hardware_pes", n_pes))
    rep = build_report(model, n_pes=n_pes, extra=extra)
    st = rep["storage"]
    model.metrics.update({"ratio": st["joint"]["ratio"], "ratio_separate": st["separate"]["ratio"],
                          f"ratio_hw_{n_pes}pe": st[f"joint_{n_pes}pe"]["ratio"],
                          "total_bytes": st["joint"]["total_bytes"]})
    rep["metrics"] = dict(model.metrics)
    save_model(path, model)
    write_report(rep, path.parent, stem)
    return rep


def build_parser():
    """The command line's options (``python -m sw.report``)."""
    ap = argparse.ArgumentParser(prog="python -m sw.report",
                                 description="sizes of a compressed model, everything the "
                                             "hardware reads counted")
    ap.add_argument("model", help="dcmodel .npz file")
    ap.add_argument("--pes", type=int, default=4, help="PE count of the hardware accounting")
    ap.add_argument("--write", action="store_true",
                    help="also rewrite the model's size metrics and its STEM_report.md/.json")
    ap.add_argument("--drop-dead", action="store_true",
                    help="with --write: first clear the hidden neurons no weight reads "
                         "(sw.prune.drop_dead_neurons; the logits do not change)")
    return ap


@command
def main(argv=None):
    """Command line: print the sizes per coding (and rewrite the report with ``--write``)."""
    args = build_parser().parse_args(argv)
    if args.pes < 1:
        raise ReportError(f"--pes must be >= 1, not {args.pes}")
    if args.drop_dead and not args.write:
        raise ReportError("--drop-dead rewrites the model: give --write too")
    if args.write:
        st = refresh(args.model, args.pes, drop_dead=args.drop_dead)["storage"]
    else:
        model = load_model(args.model)
        st = build_report(model, n_pes=args.pes)["storage"]
    for key, s in st.items():
        print(f"size [{key}]: {s['total_bytes']} bytes of {s['dense_bytes']} dense -> "
              f"{s['ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
