"""cocotb testbench of gateware.huffman.HuffmanDecoder against sw.huffman (tb/huffman/vectors.py).

Parameters (:func:`tb.bench.params`): ``config`` (``AcceleratorConfig`` fields of the decoder),
``cases`` (list of cases from :func:`tb.huffman.vectors.make_case`), ``p_valid`` / ``p_ready``
(per-cycle probability that a segment / word is offered and that the output is ready) and
``seed``; the bench result is the cycles per case. Every symbol, tag and first-flag is compared
in order, and ``o_error`` must match the reference.
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from gateware.config import AcceleratorConfig, LoadWrite
from gateware.huffman import segment_layout, symbol_out_layout
from tb.bench import check_sequence, params, save_result
from tb.pe.layouts import pack_fields, unpack_fields
from tb.stream import StreamSink, StreamSource, random_pauses


async def run_case(dut, cfg, case, ports, timeout=20000):
    """Load the case's tables, stream its segments and words, return (outputs, cycles, error).

    ``ports`` are the stream drivers: ``load``, ``seg``, ``word`` (sources) and ``sym`` (sink).
    """
    MAX = cfg.huff_max_len
    L = case["layer"]
    tables = []
    for l in range(MAX):
        tables.append(pack_fields(LoadWrite, mem=cfg.mem_huff_limit, addr=L * MAX + l,
                                  data=case["limit"][l]))
        tables.append(pack_fields(LoadWrite, mem=cfg.mem_huff_base, addr=L * MAX + l,
                                  data=case["base"][l]))
    for k, s in enumerate(case["symbols"]):
        tables.append(pack_fields(LoadWrite, mem=cfg.mem_huff_symbols, addr=case["sym_base"] + k,
                                  data=s))
    await ports["load"].run(dut.clk, tables)
    dut.i_layer_index.value = L
    dut.i_sym_base.value = case["sym_base"]
    dut.i_start.value = 1
    await FallingEdge(dut.clk)
    dut.i_start.value = 0

    sl = segment_layout(8)
    ol = symbol_out_layout(cfg, 8)
    seg, word, sym = ports["seg"], ports["word"], ports["sym"]
    seg.send(pack_fields(sl, offset=s["offset"], nbits=s["nbits"], tag=s["tag"])
             for s in case["segments"])
    word.send(w for s in case["segments"] for w in s["words"])
    got = []
    for cyc in range(1, timeout):
        seg.drive()
        word.drive()
        sym.drive()
        await ReadOnly()
        seg.sample()
        word.sample()
        out = sym.sample()
        if out is not None:
            f = unpack_fields(ol, out)
            got.append([f["symbol"], f["tag"], f["first"]])
        done = seg.idle and word.idle and not int(dut.o_busy.value)
        err = int(dut.o_error.value)
        await FallingEdge(dut.clk)
        if done:
            break
    else:
        raise AssertionError(f"{case['kind']}: decoder still busy after {timeout} cycles "
                             f"({len(got)}/{len(case['expect'])} symbols, {seg.sent} segments, "
                             f"{word.sent} words consumed)")
    seg.valid.value = 0
    word.valid.value = 0
    sym.stop()
    return got, cyc, err


@cocotb.test()
async def decoder_matches_reference(dut):
    """Symbols, tags and segment-first flags equal sw.huffman's decode, with random stalls."""
    p = params()
    cfg = AcceleratorConfig(**p["config"])
    cases = p["cases"]
    rng = random.Random(p.get("seed", 1))
    # one generator for every stall, drawn in the order the ports are stepped
    ports = {"load": StreamSource(dut, "i_load"),
             "seg": StreamSource(dut, "i_seg", pause=random_pauses(p.get("p_valid", 1.0), rng)),
             "word": StreamSource(dut, "i_word", pause=random_pauses(p.get("p_valid", 1.0), rng)),
             "sym": StreamSink(dut, "o_sym", pause=random_pauses(p.get("p_ready", 1.0), rng))}
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for port in ports.values():
        port.clear()
    for sig in (dut.i_start, dut.i_layer_index, dut.i_sym_base):
        sig.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    stats = []
    for n, case in enumerate(cases):
        got, cycles, err = await run_case(dut, cfg, case, ports)
        exp = case["expect"]
        check_sequence(got, exp, f"case {n} ({case['kind']}) symbols")
        assert bool(err) == case["error"], \
            f"case {n} ({case['kind']}): o_error={err}, expected {int(case['error'])}"
        stats.append({"kind": case["kind"], "symbols": len(exp), "cycles": cycles,
                      "segments": len(case["segments"])})
    save_result(stats)
