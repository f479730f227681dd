"""The Huffman decoder's sub-components on Amaranth's simulator: the table loader
(gateware.huffman_tables: load port, saturated monotone ``limit`` registers, table reads) and the
lookup pipeline (gateware.huffman_lookup: codes to symbols under back-pressure) against
reference functions, with a mutated expectation that must fail each."""
import random

import pytest
from amaranth.sim import Simulator

from gateware.config import AcceleratorConfig
from gateware.huffman_lookup import HuffmanLookup
from gateware.huffman_tables import HuffmanTables


def _expected_limits(raw, max_len):
    """The ``limit`` registers the loader makes of one layer's raw table words."""
    out, prev = [], 0
    for l, word in enumerate(raw):
        sat = min(word, 1 << max_len)
        kept = sat & ~(((1 << max_len) - 1) >> (l + 1))     # round down to the kept bits
        prev = max(prev, kept)
        out.append(prev >> (max_len - l - 1))
    return out


def rtl_tables(cfg, tables, layer, reads, *, mutate=False):
    """Load every layer's ``limit``/``base`` words and the symbols into a ``HuffmanTables``,
    start ``layer``, and return the limit registers after the load, the number of cycles
    ``o_loading`` was high, and the ``(base, symbol)`` data read at the ``reads`` addresses."""
    dut = HuffmanTables(cfg)
    result = {}

    async def bench(ctx):
        writes = ([(cfg.mem_huff_limit, a, w) for a, w in enumerate(tables["limit"])]
                  + [(cfg.mem_huff_base, a, w) for a, w in enumerate(tables["base"])]
                  + [(cfg.mem_huff_symbols, a, w) for a, w in enumerate(tables["symbols"])]
                  + [(99, 0, 0xFFFF)])                # another memory id: ignored
        for mem, addr, word in writes:
            ctx.set(dut.i_load.valid, 1)
            ctx.set(dut.i_load.payload, {"mem": mem, "addr": addr, "data": word})
            assert ctx.get(dut.i_load.ready)
            await ctx.tick()
        ctx.set(dut.i_load.valid, 0)
        ctx.set(dut.i_layer_index, layer)
        ctx.set(dut.i_start, 1)
        await ctx.tick()
        ctx.set(dut.i_start, 0)
        loading = 0
        while ctx.get(dut.o_loading):
            loading += 1
            await ctx.tick()
        result["loading"] = loading
        result["limits"] = [ctx.get(dut.o_limit[f"l{l + 1}"]) for l in range(cfg.huff_max_len)]
        got = []
        for length, sym_addr in reads:
            ctx.set(dut.i_base_rd.addr, length)
            ctx.set(dut.i_base_rd.en, 1)
            ctx.set(dut.i_sym_rd.addr, sym_addr)
            ctx.set(dut.i_sym_rd.en, 1)
            await ctx.tick()
            ctx.set(dut.i_base_rd.en, 0)
            ctx.set(dut.i_sym_rd.en, 0)
            ctx.set(dut.i_base_rd.addr, 0)
            await ctx.tick()                          # data holds while en is low
            got.append((ctx.get(dut.i_base_rd.data), ctx.get(dut.i_sym_rd.data)))
        result["reads"] = got

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result


def _tables_case(cfg, seed):
    rng = random.Random(seed)
    MAX = cfg.huff_max_len
    n = cfg.max_layers * MAX
    # mostly increasing limits, with decreasing and oversized (> 2^MAX) entries mixed in
    limit = [min(0xFFFF, (l % MAX + 1) * rng.randrange(1 << (MAX - 3)) + rng.choice([0, 5000]))
             for l in range(n)]
    base = [rng.randrange(1 << 16) for _ in range(n)]
    symbols = [rng.randrange(1 << (cfg.idx_bits + cfg.gap_bits)) for _ in range(64)]
    return dict(limit=limit, base=base, symbols=symbols)


@pytest.mark.parametrize("max_len, layer", [(12, 0), (12, 3), (9, 2)])
def test_table_loader(max_len, layer):
    cfg = AcceleratorConfig(n_pes=1, huff_max_len=max_len)
    tables = _tables_case(cfg, 10 + layer)
    MAX = cfg.huff_max_len
    reads = [(length, (7 * length) % 64) for length in range(1, MAX + 1)]
    got = rtl_tables(cfg, tables, layer, reads)
    assert got["limits"] == _expected_limits(tables["limit"][layer * MAX:][:MAX], MAX)
    assert got["loading"] == MAX + 2
    assert got["reads"] == [(tables["base"][layer * MAX + length - 1], tables["symbols"][a])
                            for length, a in reads]


def test_table_loader_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=1)
    tables = _tables_case(cfg, 11)
    got = rtl_tables(cfg, tables, 1, [])
    want = _expected_limits(tables["limit"][cfg.huff_max_len:][:cfg.huff_max_len],
                            cfg.huff_max_len)
    want[3] ^= 1
    assert got["limits"] != want


def rtl_lookup(cfg, codes, base, symbols, sym_base, *, p_valid, p_ready, seed):
    """Feed ``codes`` ``(peek, length, tag, first)`` into a ``HuffmanLookup`` whose table ports
    are served by the testbench (``base``: per length, ``symbols``: per address, one-cycle
    reads) with random idle and back-pressure; return the emitted ``(symbol, tag, first)``."""
    dut = HuffmanLookup(cfg, tag_bits=8)
    rng = random.Random(seed)
    out = []

    async def bench(ctx):
        ctx.set(dut.i_sym_base, sym_base)
        pending = list(codes)
        cycles = 0
        while len(out) < len(codes):
            cycles += 1
            assert cycles < 20 * len(codes) + 100, "lookup pipeline hangs"
            offer = bool(pending) and rng.random() < p_valid
            if offer:
                peek, length, tag, first = pending[0]
                ctx.set(dut.i_code.payload, {"peek": peek, "length": length, "tag": tag,
                                             "first": first})
            ctx.set(dut.i_code.valid, offer)
            ready = rng.random() < p_ready
            ctx.set(dut.o_sym.ready, ready)
            if ctx.get(dut.o_sym.valid) and ready:
                p = ctx.get(dut.o_sym.payload)
                out.append((p.symbol, p.tag, p.first))
            took = offer and ctx.get(dut.i_code.ready)
            reads = [(dut.o_base_rd, base), (dut.o_sym_rd, symbols)]
            issued = [(port, table[ctx.get(port.addr)]) for port, table in reads
                      if ctx.get(port.en)]
            await ctx.tick()
            for port, word in issued:                  # one-cycle synchronous reads
                ctx.set(port.data, word)
            if took:
                pending.pop(0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def _lookup_case(cfg, seed, n=300):
    rng = random.Random(seed)
    MAX = cfg.huff_max_len
    base = [rng.randrange(1 << 16) for _ in range(16)]
    symbols = [rng.randrange(1 << (cfg.idx_bits + cfg.gap_bits)) for _ in range(cfg.symbol_depth)]
    codes = [(rng.randrange(1 << MAX), rng.randrange(1, MAX + 1), rng.randrange(256),
              rng.randrange(2)) for _ in range(n)]
    sym_base = rng.randrange(1 << 16)
    depth_bits = (cfg.symbol_depth - 1).bit_length()
    expect = [(symbols[((sym_base + base[length] + (peek >> (MAX - length))) & 0xFFFF)
                       & ((1 << depth_bits) - 1)], tag, first)
              for peek, length, tag, first in codes]
    return codes, base, symbols, sym_base, expect


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.6, 0.5), (0.9, 0.3)])
def test_lookup_pipeline(p_valid, p_ready):
    cfg = AcceleratorConfig(n_pes=1)
    codes, base, symbols, sym_base, expect = _lookup_case(cfg, 3)
    got = rtl_lookup(cfg, codes, base, symbols, sym_base, p_valid=p_valid, p_ready=p_ready,
                     seed=4)
    assert got == expect


def test_lookup_pipeline_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=1)
    codes, base, symbols, sym_base, expect = _lookup_case(cfg, 5, n=40)
    expect[17] = (expect[17][0] ^ 1,) + expect[17][1:]
    got = rtl_lookup(cfg, codes, base, symbols, sym_base, p_valid=0.8, p_ready=0.7, seed=6)
    assert got != expect
