"""Test vectors for one processing element, built from the golden model and the packer.

:func:`make_pe_case` draws a random sparse integer model (``sw.golden.random_int_model``), packs
it for ``N`` PEs (``sw.pack.pack``) and runs ``sw.golden.infer``; it returns a JSON-serialisable
dict with everything a PE testbench needs: the load words the PE keeps, the layer descriptors,
and per input vector and layer the broadcast ``(col, value)`` list and the exact expected outputs
of PE ``index`` (global row, value as an unsigned ``acc_bits`` word).
"""
import dataclasses

import numpy as np

from contract.config import AcceleratorConfig
from contract.memmap import DESC_FLAGS, DESC_WORD, DESC_WORDS
from hw.simcase import load_case, save_case
from sw.golden import infer, random_int_model
from sw.huffman import HuffmanCode
from sw.pack import PackLimits, pack
from sw.sparse import encode_columns

__all__ = ["make_pe_case", "pe_config", "save_case", "load_case"]


def pe_config(n_pes, **kw):
    """``AcceleratorConfig`` used by the PE tests (small private memory: fast simulation).

    Keyword arguments override fields (``pe_mem_depth``, ``symbol_depth``...).
    """
    kw.setdefault("pe_mem_depth", 4096)
    kw.setdefault("symbol_depth", 512)
    return AcceleratorConfig(n_pes=n_pes, **kw)


def _descriptors(words, n_layers):
    out = []
    for i in range(n_layers):
        d = dict(zip(DESC_WORD, (int(v) for v in words[DESC_WORDS * i:DESC_WORDS * (i + 1)])))
        out.append({"index": i, "in_features": d["in_features"],
                    "out_features": d["out_features"],
                    **{flag: d["flags"] >> bit & 1 for flag, bit in DESC_FLAGS.items()},
                    "shift": d["shift"], "bias_shift": d["bias_shift"],
                    "sym_base": d["sym_base"]})
    return out


def make_pe_case(n_pes, index, sizes, density, seed, n_inputs=3, *, zero_input=True,
                 act_density=0.5, config=None, **model_kw):
    """Vectors for PE ``index`` of ``n_pes`` on a random model.

    Parameters
    ----------
    n_pes, index : int
        PE count and the PE under test.
    sizes : list of int
        Feature counts ``[in, hidden..., out]``.
    density : float
        Weight density of the random model.
    seed : int
    n_inputs : int
        Input vectors (the first is all-zero when ``zero_input``).
    act_density : float
        Fraction of non-zero input pixels.
    config : AcceleratorConfig, optional
        Hardware limits for the packer (default :func:`pe_config`).
    model_kw
        Passed to ``random_int_model`` (``empty_columns``, ``long_gaps``, ``saturate``...).

    Returns
    -------
    dict
        ``{"n_pes", "index", "config": {AcceleratorConfig fields}, "loads": [[mem, addr,
        data]...], "layers": [descriptor...],
        "inputs": [[{"acts": [[col, value]...], "expect": [[row, value]...],
        "symbols": int, "macs": int}, ...per layer], ...per input], "longest_code": int}``
    """
    cfg = config or pe_config(n_pes)
    rng = np.random.default_rng(seed + 1000)
    im = random_int_model(sizes, density, seed, act_bits=cfg.act_bits,
                          idx_bits=cfg.idx_bits, gap_bits=cfg.gap_bits,
                          huff_max_len=cfg.huff_max_len, **model_kw)
    packed = pack(im, n_pes, board="sim", limits=PackLimits.from_config(cfg))
    for mem in (index, cfg.mem_pointers + index):
        if len(packed.images[mem]) > cfg.pe_mem_depth:
            raise ValueError(f"PE {index} image {mem} of {len(packed.images[mem])} words exceeds "
                             f"the test memory of {cfg.pe_mem_depth}")
    loads = [[int(mem), int(addr), int(word)] for mem, addr, word in packed.load_words(True)
             if mem in (index, cfg.mem_pointers + index)
             or cfg.mem_codebook <= mem <= cfg.mem_huff_symbols]
    layers = _descriptors(packed.images[cfg.mem_layers], len(im.layers))
    amax = (1 << cfg.act_bits) - 1
    x = rng.integers(1, amax + 1, size=(n_inputs, sizes[0]))
    x = x * (rng.random((n_inputs, sizes[0])) < act_density)
    if zero_input:
        x[0] = 0
    res = infer(im, x)
    enc = [encode_columns(l.index, n_pes, im.gap_bits, im.idx_bits).pes[index]
           for l in im.layers]
    mask = (1 << cfg.acc_bits) - 1
    cases = []
    for n in range(n_inputs):
        per_layer = []
        for li, l in enumerate(im.layers):
            a = res.inputs[li][n]
            cols = np.flatnonzero(a)
            acts = [[int(c), int(a[c])] for c in cols]
            outv = res.activations[li][n]
            rows = range(index, l.out_features, n_pes)
            if l.last:
                expect = [[int(r), int(outv[r]) & mask] for r in rows]
            else:
                expect = [[int(r), int(outv[r])] for r in rows if outv[r] != 0]
            cp = enc[li].col_ptr
            symbols = int(sum(cp[c + 1] - cp[c] for c in cols))
            macs = int((l.index[:, cols] != 0).sum())
            per_layer.append({"acts": acts, "expect": expect, "symbols": symbols,
                              "macs": macs})
        cases.append(per_layer)
    # the longest Huffman code of any layer (the packer's codes: one per layer, its symbols)
    longest = max(int(HuffmanCode.from_symbols(encode_columns(
        l.index, n_pes, im.gap_bits, im.idx_bits).all_symbols(), cfg.huff_max_len).lengths.max())
                  for l in im.layers)
    return {"n_pes": n_pes, "index": index, "config": dataclasses.asdict(cfg),
            "loads": loads, "layers": layers, "inputs": cases, "longest_code": longest}
