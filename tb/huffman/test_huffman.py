"""cocotb testbench of gateware.huffman.HuffmanDecoder against sw.huffman (tb/huffman/vectors.py).

Environment: ``HUFF_VECTORS`` (JSON list of cases from :func:`tb.huffman.vectors.make_case`),
``HUFF_P_VALID`` / ``HUFF_P_READY`` (per-cycle probability that a segment / word is offered and
that the output is ready), ``HUFF_SEED``, ``HUFF_STATS`` (optional JSON output: cycles per case).
Every symbol, tag and first-flag is compared in order, and ``o_error`` must match the reference.
"""
import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from gateware.config import AcceleratorConfig, LoadWrite
from gateware.huffman import segment_layout, symbol_out_layout
from tb.pe.layouts import pack_fields, unpack_fields

CFG = AcceleratorConfig(n_pes=2)


async def _load(dut, mem, addr, data):
    await FallingEdge(dut.clk)
    dut.i_load__valid.value = 1
    dut.i_load__payload.value = pack_fields(LoadWrite, mem=mem, addr=addr, data=data)


async def run_case(dut, case, rng, p_valid, p_ready, timeout=20000):
    """Load the case's tables, stream its segments and words, return (outputs, cycles, error)."""
    MAX = CFG.huff_max_len
    L = case["layer"]
    for l in range(MAX):
        await _load(dut, CFG.mem_huff_limit, L * MAX + l, case["limit"][l])
        await _load(dut, CFG.mem_huff_base, L * MAX + l, case["base"][l])
    for k, s in enumerate(case["symbols"]):
        await _load(dut, CFG.mem_huff_symbols, case["sym_base"] + k, s)
    await FallingEdge(dut.clk)
    dut.i_load__valid.value = 0
    dut.i_layer_index.value = L
    dut.i_sym_base.value = case["sym_base"]
    dut.i_start.value = 1
    await FallingEdge(dut.clk)
    dut.i_start.value = 0

    sl = segment_layout(8)
    ol = symbol_out_layout(CFG, 8)
    segs = [pack_fields(sl, offset=s["offset"], nbits=s["nbits"], tag=s["tag"])
            for s in case["segments"]]
    words = [w for s in case["segments"] for w in s["words"]]
    si = wi = 0
    seg_on = word_on = False
    got = []
    for cyc in range(1, timeout):
        if si < len(segs) and not seg_on:
            seg_on = rng.random() < p_valid
            dut.i_seg__payload.value = segs[si]
        if wi < len(words) and not word_on:
            word_on = rng.random() < p_valid
            dut.i_word__payload.value = words[wi]
        dut.i_seg__valid.value = int(seg_on)
        dut.i_word__valid.value = int(word_on)
        ready = rng.random() < p_ready
        dut.o_sym__ready.value = int(ready)
        await ReadOnly()
        if seg_on and int(dut.i_seg__ready.value):
            si += 1
            seg_on = False
        if word_on and int(dut.i_word__ready.value):
            wi += 1
            word_on = False
        if ready and int(dut.o_sym__valid.value):
            f = unpack_fields(ol, dut.o_sym__payload.value)
            got.append([f["symbol"], f["tag"], f["first"]])
        done = (si == len(segs) and wi == len(words) and not int(dut.o_busy.value))
        err = int(dut.o_error.value)
        await FallingEdge(dut.clk)
        if done:
            break
    else:
        raise AssertionError(f"{case['kind']}: decoder still busy after {timeout} cycles "
                             f"({len(got)}/{len(case['expect'])} symbols, {si} segments, "
                             f"{wi} words consumed)")
    dut.i_seg__valid.value = 0
    dut.i_word__valid.value = 0
    dut.o_sym__ready.value = 0
    return got, cyc, err


@cocotb.test()
async def decoder_matches_reference(dut):
    """Symbols, tags and segment-first flags equal sw.huffman's decode, with random stalls."""
    cases = json.loads(Path(os.environ["HUFF_VECTORS"]).read_text())
    p_valid = float(os.environ.get("HUFF_P_VALID", "1"))
    p_ready = float(os.environ.get("HUFF_P_READY", "1"))
    rng = random.Random(int(os.environ.get("HUFF_SEED", "1")))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for sig in (dut.i_load__valid, dut.i_start, dut.i_seg__valid, dut.i_word__valid,
                dut.o_sym__ready, dut.i_layer_index, dut.i_sym_base):
        sig.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    stats = []
    for n, case in enumerate(cases):
        got, cycles, err = await run_case(dut, case, rng, p_valid, p_ready)
        exp = case["expect"]
        if got != exp:
            bad = next((k for k, (g, e) in enumerate(zip(got, exp)) if g != e),
                       min(len(got), len(exp)))
            raise AssertionError(
                f"case {n} ({case['kind']}): {len(got)} symbols, expected {len(exp)}; first "
                f"difference at #{bad}: got {got[bad] if bad < len(got) else None}, expected "
                f"{exp[bad] if bad < len(exp) else None}")
        assert bool(err) == case["error"], \
            f"case {n} ({case['kind']}): o_error={err}, expected {int(case['error'])}"
        stats.append({"kind": case["kind"], "symbols": len(exp), "cycles": cycles,
                      "segments": len(case["segments"])})
    if os.environ.get("HUFF_STATS"):
        with open(os.environ["HUFF_STATS"], "w") as f:
            json.dump(stats, f)
