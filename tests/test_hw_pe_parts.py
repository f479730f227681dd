"""The PE's sub-components on Amaranth's simulator against reference functions, with random idle
and back-pressure, their memories modelled by the testbench (one-cycle reads that hold): the
pointer fetch (gateware.pe_pointers), the word fetch (gateware.pe_words), the accumulate
pipeline (gateware.pe_accumulate), the requantization engine (gateware.pe_requant), the data
port arbiter (gateware.pe_arbiter), the header reads (gateware.pe_header) and the accumulator
banks with the clearing sweep (gateware.pe_accbanks); each with a mutated expectation that must
fail."""
import random

import pytest
from amaranth.sim import Simulator

from gateware.config import AcceleratorConfig
from gateware.pe_accbanks import AccumulatorBanks
from gateware.pe_accumulate import Accumulate
from gateware.pe_arbiter import DataPortArbiter
from gateware.pe_header import LayerHeader
from gateware.pe_pointers import PointerFetch
from gateware.pe_requant import Requantize
from gateware.pe_words import WordFetch


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _requant_model(t, s, bits=8):
    return min(max((t + ((1 << (s - 1)) if s else 0)) >> s, 0), (1 << bits) - 1)


# ---- pointer fetch -------------------------------------------------------------------------

def rtl_pointers(cfg, ptr_image, ptr_base, words2, acts, in_features, *, p_valid, p_ready, seed):
    """Activations ``(col, value)`` into a ``PointerFetch`` over the pointer memory
    ``ptr_image``; return the segments ``(start, end, value)`` and the error pulse count."""
    dut = PointerFetch(cfg, 2, 16)
    rng = random.Random(seed)
    two = cfg.pointer_ports == 2
    segs = []
    errors = [0]

    async def bench(ctx):
        ctx.set(dut.i_ptr_base, ptr_base)
        ctx.set(dut.i_ptr_words2, words2)
        ctx.set(dut.i_in_features, in_features)
        ctx.set(dut.i_restart, 1)
        await ctx.tick()
        ctx.set(dut.i_restart, 0)
        ctx.set(dut.i_run, 1)
        pending = list(acts)
        idle = 0
        while idle < 20:
            offer = bool(pending) and rng.random() < p_valid
            ctx.set(dut.i_act.valid, offer)
            if offer:
                ctx.set(dut.i_act.payload, {"col": pending[0][0], "value": pending[0][1]})
            ready = rng.random() < p_ready
            ctx.set(dut.o_seg.ready, ready)
            if ready and ctx.get(dut.o_seg.valid):
                s = ctx.get(dut.o_seg.payload)
                segs.append((s.start, s.end, s.value))
            errors[0] += ctx.get(dut.o_error)
            took = offer and ctx.get(dut.i_act.ready)
            reads = [(ctx.get(dut.o_addr), dut.i_rdata)]
            if two:
                reads.append((ctx.get(dut.o_addr2), dut.i_rdata2))
            re = ctx.get(dut.o_re)
            busy = ctx.get(dut.o_issuing) or ctx.get(dut.o_returning) or ctx.get(dut.o_seg.valid)
            await ctx.tick()
            if re:
                for addr, port in reads:
                    ctx.set(port, ptr_image[addr])
            if took:
                pending.pop(0)
            idle = 0 if (pending or busy) else idle + 1

    _simulate(dut, bench)
    return segs, errors[0]


def _pointer_case(cfg, words2, seed, n_cols=60):
    rng = random.Random(seed)
    ptrs = [0]
    for _ in range(n_cols):
        ptrs.append(ptrs[-1] + rng.choice([0, 0, 3, 12, 17, 40, 300]))
    ptr_base = 5
    image = [rng.randrange(1 << 16) for _ in range(ptr_base)]
    for p in ptrs:
        image += [p >> 16, p & 0xFFFF] if words2 else [p]
    image += [0] * 8
    cols = sorted(rng.sample(range(n_cols), n_cols // 2))
    cols += [n_cols + 3]                                  # past in_features: dropped, error
    acts = [(c, rng.randrange(1, 256)) for c in cols]
    expect = [(ptrs[c], ptrs[c + 1], v) for c, v in acts[:-1] if ptrs[c + 1] > ptrs[c]]
    return image, ptr_base, acts, n_cols, expect


@pytest.mark.parametrize("ports, words2", [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_pointer_fetch(ports, words2):
    cfg = AcceleratorConfig(n_pes=1, pointer_ports=ports)
    image, base, acts, n_cols, expect = _pointer_case(cfg, words2, ports * 2 + words2)
    segs, errors = rtl_pointers(cfg, image, base, words2, acts, n_cols, p_valid=0.7,
                                p_ready=0.6, seed=1)
    assert (segs, errors) == (expect, 1)


def test_pointer_fetch_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=1, pointer_ports=1)
    image, base, acts, n_cols, expect = _pointer_case(cfg, 0, 9)
    expect[3] = (expect[3][0], expect[3][1] + 1, expect[3][2])
    segs, _ = rtl_pointers(cfg, image, base, 0, acts, n_cols, p_valid=0.8, p_ready=0.8, seed=2)
    assert segs != expect


# ---- word fetch ----------------------------------------------------------------------------

def rtl_words(cfg, memory, stream_base, segments, *, p_valid, p_ready, seed):
    """Segments ``(start, end, value)`` into a ``WordFetch`` over the data memory ``memory``;
    return the decoder's segments ``(offset, nbits, tag)`` and the stream words."""
    dut = WordFetch(cfg, 2, 2)
    rng = random.Random(seed)
    dsegs, words = [], []

    async def bench(ctx):
        ctx.set(dut.i_stream_base, stream_base)
        ctx.set(dut.i_restart, 1)
        await ctx.tick()
        ctx.set(dut.i_restart, 0)
        ctx.set(dut.i_run, 1)
        pending = list(segments)
        idle = 0
        while idle < 20:
            offer = bool(pending) and rng.random() < p_valid
            ctx.set(dut.i_seg.valid, offer)
            if offer:
                s, e, v = pending[0]
                ctx.set(dut.i_seg.payload, {"start": s, "end": e, "value": v})
            for port, out in ((dut.o_dseg, dsegs), (dut.o_word, words)):
                ready = rng.random() < p_ready
                ctx.set(port.ready, ready)
                if ready and ctx.get(port.valid):
                    p = ctx.get(port.payload)
                    out.append(p if port is dut.o_word else (p.offset, p.nbits, p.tag))
            took = offer and ctx.get(dut.i_seg.ready)
            req, addr = ctx.get(dut.o_req), ctx.get(dut.o_addr)
            busy = ctx.get(dut.o_busy)
            await ctx.tick()
            if req:
                word = memory[addr]
                if cfg.stream_words == 2:
                    word = word << 16 | memory[addr + 1]
                ctx.set(dut.i_rdata, word)
            if took:
                pending.pop(0)
            idle = 0 if (pending or busy) else idle + 1

    _simulate(dut, bench)
    return dsegs, words


def _words_case(cfg, seed, n=40):
    rng = random.Random(seed)
    memory = [rng.randrange(1 << 16) for _ in range(1200)]
    stream_base = 100
    bit, segments = 7, []
    for _ in range(n):
        nbits = rng.choice([1, 5, 12, 16, 17, 31, 70])
        segments.append((bit, bit + nbits, rng.randrange(256)))
        bit += nbits + rng.choice([0, 0, 0, 9, 40])       # gaps: columns of other PEs' rows
    SW = cfg.stream_words
    dsegs = [(s % 16, e - s, v) for s, e, v in segments]
    words = []
    for s, e, _ in segments:
        for a in range(s // 16, (e - 1) // 16 + 1, SW):
            w = memory[stream_base + a]
            words.append(w << 16 | memory[stream_base + a + 1] if SW == 2 else w)
    return memory, stream_base, segments, dsegs, words


@pytest.mark.parametrize("stream_words", [1, 2])
def test_word_fetch(stream_words):
    cfg = AcceleratorConfig(n_pes=1, stream_words=stream_words)
    memory, base, segments, dsegs, words = _words_case(cfg, stream_words)
    got = rtl_words(cfg, memory, base, segments, p_valid=0.7, p_ready=0.6, seed=3)
    assert got == (dsegs, words)


def test_word_fetch_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=1, stream_words=1)
    memory, base, segments, dsegs, words = _words_case(cfg, 4)
    words[5] ^= 1
    assert rtl_words(cfg, memory, base, segments, p_valid=0.8, p_ready=0.8, seed=4) != \
        (dsegs, words)


# ---- accumulate ----------------------------------------------------------------------------

def rtl_accumulate(cfg, codebook, layer, columns, rows_local, acc_base, *, p_valid, seed):
    """Columns ``(value, [(idx, gap), ...])`` as symbols into an ``Accumulate`` whose
    accumulator (transparent one-cycle read) the testbench holds; return the accumulators and
    the error pulse count."""
    dut = Accumulate(cfg)
    rng = random.Random(seed)
    acc = [0] * cfg.max_rows_per_pe
    mask = (1 << cfg.acc_bits) - 1
    result = {}

    async def bench(ctx):
        for a, w in enumerate(codebook):
            ctx.set(dut.i_cb_we, 1)
            ctx.set(dut.i_cb_addr, a)
            ctx.set(dut.i_cb_data, w & 0xFFFF)
            await ctx.tick()
        ctx.set(dut.i_cb_we, 0)
        ctx.set(dut.i_layer_index, layer)
        ctx.set(dut.i_rows_local, rows_local)
        ctx.set(dut.i_acc_base, acc_base)
        syms = [(idx | gap << cfg.idx_bits, value, k == 0)
                for value, col in columns for k, (idx, gap) in enumerate(col)]
        errors = 0
        for _ in range(4 * len(syms) + 10):
            offer = bool(syms) and rng.random() < p_valid
            ctx.set(dut.i_sym.valid, offer)
            if offer:
                sym, value, first = syms[0]
                ctx.set(dut.i_sym.payload, {"symbol": sym, "tag": value, "first": first})
                syms.pop(0)
            errors += ctx.get(dut.o_error)
            raddr = ctx.get(dut.o_acc_addr)
            write = (ctx.get(dut.o_acc_waddr), ctx.get(dut.o_acc_wdata)) \
                if ctx.get(dut.o_acc_we) else None
            await ctx.tick()
            if write:
                acc[write[0]] = write[1] & mask
            ctx.set(dut.i_acc_data, acc[raddr])           # transparent: sees this write
        result.update(acc=[a - (1 << cfg.acc_bits) if a >> (cfg.acc_bits - 1) else a
                           for a in acc], errors=errors)

    _simulate(dut, bench)
    return result


def _accumulate_case(cfg, seed, layer=2):
    rng = random.Random(seed)
    codebook = [rng.randrange(-30000, 30000) for _ in range(cfg.max_layers << cfg.idx_bits)]
    rows_local, acc_base = 20, 7
    columns, want, errors = [], [0] * cfg.max_rows_per_pe, 0
    for _ in range(30):
        value = rng.randrange(1, 256)
        col, row = [], -1
        for _ in range(rng.randrange(1, 8)):
            idx, gap = rng.randrange(1 << cfg.idx_bits), rng.choice([0, 0, 1, 3, 9])
            col.append((idx, gap))
            row += gap + 1
            if row < rows_local:
                want[acc_base + row] += value * codebook[layer << cfg.idx_bits | idx]
            else:
                errors += 1
        columns.append((value, col))
    return codebook, layer, columns, rows_local, acc_base, want, errors


@pytest.mark.parametrize("p_valid", [1.0, 0.5])
def test_accumulate(p_valid):
    cfg = AcceleratorConfig(n_pes=1)
    codebook, layer, columns, rows, base, want, errors = _accumulate_case(cfg, 5)
    got = rtl_accumulate(cfg, codebook, layer, columns, rows, base, p_valid=p_valid, seed=6)
    assert errors > 0
    assert (got["acc"], got["errors"]) == (want, errors)


def test_accumulate_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=1)
    codebook, layer, columns, rows, base, want, _ = _accumulate_case(cfg, 7)
    want[base + 2] += 1
    got = rtl_accumulate(cfg, codebook, layer, columns, rows, base, p_valid=0.8, seed=8)
    assert got["acc"] != want


# ---- requantize ----------------------------------------------------------------------------

def rtl_requant(cfg, index, acc, biases, params, *, p_ready, p_free, seed):
    """Requantize ``params`` (rows, bias_base, acc_base, last, shift, bias_shift) with the
    accumulators ``acc`` and the data memory ``biases`` (address -> word); return the outputs
    ``(row, value)`` up to the ``end`` token and the accumulators afterwards."""
    dut = Requantize(cfg, index, 5, 5)
    rng = random.Random(seed)
    acc = list(acc)
    mask = (1 << cfg.acc_bits) - 1
    out = []

    async def bench(ctx):
        for name in ("rows", "bias_base", "acc_base", "last", "shift", "bias_shift"):
            ctx.set(getattr(dut, f"i_{name}"), params[name])
        ctx.set(dut.i_start, 1)
        await ctx.tick()
        ctx.set(dut.i_start, 0)
        for _ in range(20 * params["rows"] + 50):
            ready = rng.random() < p_ready
            ctx.set(dut.o_out.ready, ready)
            ctx.set(dut.i_mem_free, rng.random() < p_free)
            if ready and ctx.get(dut.o_out.valid):
                o = ctx.get(dut.o_out.payload)
                if o.end:
                    break
                out.append((o.row, o.value))
            bias = biases.get(ctx.get(dut.o_bias_addr)) if ctx.get(dut.o_bias_re) else None
            raddr = ctx.get(dut.o_acc_raddr) if ctx.get(dut.o_acc_re) else None
            clear = ctx.get(dut.o_acc_waddr) if ctx.get(dut.o_acc_we) else None
            await ctx.tick()
            if bias is not None:
                ctx.set(dut.i_rdata, bias & 0xFFFF)
            elif not cfg.requant_overlap or rng.random() < 0.5:
                pass                                      # the data port holds
            else:
                ctx.set(dut.i_rdata, rng.randrange(1 << 16))   # another client's read
            if raddr is not None:
                ctx.set(dut.i_acc_data, acc[raddr] & mask)
            if clear is not None:
                acc[clear] = 0
        await ctx.tick()
        assert ctx.get(dut.o_idle)

    _simulate(dut, bench)
    return out, acc


def _requant_case(cfg, index, last, seed):
    rng = random.Random(seed)
    rows, acc_base, bias_base = 30, 11, 200
    shift, bias_shift = rng.randrange(4, 14), rng.randrange(0, 12)
    acc = [rng.randrange(-(1 << 20), 1 << 20) if rng.random() < 0.8 else 0
           for _ in range(cfg.max_rows_per_pe)]
    biases = {bias_base + r: rng.randrange(-2000, 2000) for r in range(rows)}
    out = []
    for r in range(rows):
        t = acc[acc_base + r] + (biases[bias_base + r] << bias_shift)
        if last:
            out.append((r, t & ((1 << cfg.acc_bits) - 1)))   # (local rows)
        elif _requant_model(t, shift):
            out.append((r, _requant_model(t, shift)))
    cleared = [0 if acc_base <= a < acc_base + rows else v for a, v in enumerate(acc)]
    params = dict(rows=rows, bias_base=bias_base, acc_base=acc_base, last=last, shift=shift,
                  bias_shift=bias_shift)
    return acc, biases, params, out, cleared


@pytest.mark.parametrize("overlap, last", [(True, False), (True, True), (False, False),
                                           (False, True)])
def test_requantize(overlap, last):
    cfg = AcceleratorConfig(n_pes=3, requant_overlap=overlap)
    acc, biases, params, want, cleared = _requant_case(cfg, 2, last, int(overlap) * 2 + last)
    out, acc_after = rtl_requant(cfg, 2, acc, biases, params, p_ready=0.6, p_free=0.6, seed=9)
    assert any(v for _, v in want)
    assert (out, acc_after) == (want, cleared)


def test_requantize_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=3)
    acc, biases, params, want, _ = _requant_case(cfg, 1, False, 10)
    want[2] = (want[2][0], want[2][1] ^ 1)
    out, _ = rtl_requant(cfg, 1, acc, biases, params, p_ready=0.7, p_free=0.7, seed=11)
    assert out != want


def rtl_requant_passes(cfg, index, layers, *, p_ready, p_free, seed):
    """Requantize conv passes with overlapping passes (``cfg.conv`` and ``cfg.early``).

    ``layers``: list of ``(params, biases, passes)``, ``passes`` a list of accumulator lists
    (one per pass, rows ``acc_base ..`` of the pass's bank, the banks alternating); every pass
    after a layer's first starts as soon as ``o_ready`` allows (after 0-2
    idle cycles), a layer's first pass once ``o_idle``. Returns the outputs ``(row, value)``
    of every pass, the cycles a start was taken while rows were still in the stages, and the
    check that a bank's accumulators were all cleared and not owned by the engine when the
    next pass of that bank was put into it."""
    dut = Requantize(cfg, index, 5, 5)
    rng = random.Random(seed)
    mask = (1 << cfg.acc_bits) - 1
    R = cfg.max_rows_per_pe
    banks = [[0] * R, [0] * R]
    outs, info = [], {"overlapped": 0, "clean": True}

    async def bench(ctx):
        k = 0                                   # passes started (bank k % 2)
        pending = []                            # passes started, outputs not all seen
        starts = [(li, first) for li, (_, _, passes) in enumerate(layers)
                  for first in [True] + [False] * (len(passes) - 1)]
        pass_acc = [a for _, _, passes in layers for a in passes]
        wait = 0
        data_next = None
        for _ in range(5000):
            ctx.set(dut.i_start, 0)
            if k < len(starts) and wait == 0:
                li, first = starts[k]
                params, _, _ = layers[li]
                if ctx.get(dut.o_idle) if first else ctx.get(dut.o_ready):
                    bank = k % 2
                    base = params["acc_base"]
                    rows = range(base, base + params["rows"])
                    info["clean"] &= all(banks[bank][a] == 0 for a in rows)
                    info["clean"] &= not (ctx.get(dut.o_acc_busy) >> bank) & 1
                    for r, a in enumerate(rows):
                        banks[bank][a] = pass_acc[k][r]
                    for name in ("rows", "bias_base", "acc_base", "shift", "bias_shift"):
                        ctx.set(getattr(dut, f"i_{name}"), params[name])
                    ctx.set(dut.i_last, 0)
                    ctx.set(dut.i_dense, 1)
                    ctx.set(dut.i_bank, bank)
                    ctx.set(dut.i_start, 1)
                    info["overlapped"] += not ctx.get(dut.o_idle)
                    pending.append([])
                    k += 1
                    wait = rng.randrange(3)
            elif wait:
                wait -= 1
            ready = rng.random() < p_ready
            ctx.set(dut.o_out.ready, ready)
            ctx.set(dut.i_mem_free, rng.random() < p_free)
            if ready and ctx.get(dut.o_out.valid):
                o = ctx.get(dut.o_out.payload)
                cur = len(outs)
                if o.end:
                    outs.append(pending[cur])
                else:
                    pending[cur].append((o.row, o.value))
            li = starts[min(k, len(starts)) - 1][0] if k else 0
            biases = layers[li][1]
            bias = biases.get(ctx.get(dut.o_bias_addr)) if ctx.get(dut.o_bias_re) else None
            rd = ((ctx.get(dut.o_acc_rbank), ctx.get(dut.o_acc_raddr))
                  if ctx.get(dut.o_acc_re) else None)
            clear = ((ctx.get(dut.o_acc_wbank), ctx.get(dut.o_acc_waddr))
                     if ctx.get(dut.o_acc_we) else None)
            await ctx.tick()
            ctx.set(dut.i_rdata, bias & 0xFFFF if bias is not None
                    else rng.randrange(1 << 16))        # another client's read
            if rd is not None:
                ctx.set(dut.i_acc_data, banks[rd[0]][rd[1]] & mask)
            if clear is not None:
                banks[clear[0]][clear[1]] = 0
            if len(outs) == len(starts):
                break
        await ctx.tick()
        assert ctx.get(dut.o_idle)

    _simulate(dut, bench)
    return outs, info


def _requant_layers(cfg, index, seed):
    """Two conv layers of passes (the second with other biases, rows and shifts), the golden
    outputs of every pass (dense: zeros included)."""
    rng = random.Random(seed)
    layers, want = [], []
    for rows, n_passes, bias_base in ((3, 7, 40), (5, 4, 90)):
        params = dict(rows=rows, bias_base=bias_base, acc_base=rng.randrange(0, 20),
                      shift=rng.randrange(4, 12), bias_shift=rng.randrange(0, 10))
        biases = {bias_base + r: rng.randrange(-3000, 3000) for r in range(rows)}
        passes = [[rng.randrange(-(1 << 18), 1 << 18) if rng.random() < 0.7 else 0
                   for _ in range(rows)] for _ in range(n_passes)]
        layers.append((params, biases, passes))
        for acc in passes:
            want.append([(r,
                          _requant_model(acc[r] + (biases[bias_base + r]
                                                   << params["bias_shift"]), params["shift"]))
                         for r in range(rows)])
    return layers, want


@pytest.mark.parametrize("p_ready, p_free", [(1.0, 1.0), (0.6, 0.5), (0.9, 0.2)])
def test_requantize_overlapping_passes(p_ready, p_free):
    """Conv passes back to back, two layers: each pass is taken while the previous one's last
    rows (other bank) are still in the stages, also with back-pressure on the output and a
    seldom free data memory."""
    cfg = AcceleratorConfig(n_pes=3, fmap_depth=256)
    assert cfg.conv and cfg.early
    layers, want = _requant_layers(cfg, 2, int(p_free * 10))
    got, info = rtl_requant_passes(cfg, 2, layers, p_ready=p_ready, p_free=p_free, seed=5)
    assert got == want
    assert info["clean"] and info["overlapped"] > 0
    assert any(v for p in want for _, v in p) and any(not v for p in want for _, v in p)


def test_requantize_overlapping_passes_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=3, fmap_depth=256)
    layers, want = _requant_layers(cfg, 1, 3)
    got, _ = rtl_requant_passes(cfg, 1, layers, p_ready=0.8, p_free=0.6, seed=6)
    want[8][1] = (want[8][1][0], want[8][1][1] ^ 1)
    assert got != want


# ---- data port arbiter ---------------------------------------------------------------------

def test_data_port_arbiter():
    """The selected client's address (0 with none) and the read strobe, for every client."""
    dut = DataPortArbiter(14)
    clients = ("load", "header", "word", "bias")
    got, want = [], []

    async def bench(ctx):
        for sel in (None,) + clients:
            for k, name in enumerate(clients):
                ctx.set(getattr(dut, f"i_{name}_{'we' if name == 'load' else 're'}"),
                        name == sel)
                ctx.set(getattr(dut, f"i_{name}_addr"), 1000 + 7 * k)
            got.append((ctx.get(dut.o_addr), ctx.get(dut.o_re)))
            want.append((1000 + 7 * clients.index(sel) if sel else 0,
                         int(sel not in (None, "load"))))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
    want[2] = (want[2][0] + 1, want[2][1])
    assert got != want


# ---- layer header --------------------------------------------------------------------------

def rtl_header(cfg, memory, layer):
    """Read layer ``layer``'s header from ``memory`` with a ``LayerHeader``; return its
    outputs, the read count and the error pulses."""
    dut = LayerHeader(cfg)
    result = {}

    async def bench(ctx):
        ctx.set(dut.i_layer_index, layer)
        ctx.set(dut.i_start, 1)
        await ctx.tick()
        ctx.set(dut.i_start, 0)
        ctx.set(dut.i_active, 1)
        reads = errors = 0
        for _ in range(12):
            last = ctx.get(dut.o_last)
            addr = ctx.get(dut.o_addr) if ctx.get(dut.o_re) else None
            errors += ctx.get(dut.o_error)
            await ctx.tick()
            if addr is not None:
                reads += 1
                ctx.set(dut.i_rdata, memory[addr])
            if last:
                ctx.set(dut.i_active, 0)
        result.update({k: ctx.get(getattr(dut, f"o_{k}")) for k in
                       ("ptr_base", "stream_base", "bias_base", "rows_local", "acc_base")},
                      reads=reads, errors=errors)

    _simulate(dut, bench)
    return result


@pytest.mark.parametrize("rows, bias0, bad", [(30, 100, False), (600, 100, True),
                                               (30, 500, True)])
def test_layer_header(rows, bias0, bad):
    cfg = AcceleratorConfig(n_pes=1)
    memory = {a: 7 * a + 1 for a in range(16)}
    memory.update({2: bias0, 8: 40, 9: 900, 10: 300, 11: rows})
    got = rtl_header(cfg, memory, 2)
    want = dict(ptr_base=40, stream_base=900, bias_base=300,
                rows_local=min(rows, cfg.max_rows_per_pe),
                acc_base=(300 - bias0) % cfg.max_rows_per_pe, reads=5, errors=int(bad))
    assert got == want
    want["stream_base"] += 1
    assert got != want


# ---- accumulator banks ---------------------------------------------------------------------

@pytest.mark.parametrize("overlap", [True, False])
def test_accumulator_banks(overlap):
    """The clearing sweep after reset (every row 0, max_rows_per_pe cycles), then writes and
    transparent reads of the accumulate side, and the requantizer's precedence on its bank."""
    cfg = AcceleratorConfig(n_pes=1, requant_overlap=overlap)
    dut = AccumulatorBanks(cfg)
    n_banks = 2 if overlap else 1
    got = {}

    async def bench(ctx):
        clearing = 0
        while ctx.get(dut.o_clearing):
            clearing += 1
            ctx.set(dut.i_col_we, 1)                      # ignored while clearing
            ctx.set(dut.i_col_waddr, 5)
            ctx.set(dut.i_col_wdata, 1234)
            await ctx.tick()
        got["clearing"] = clearing
        for bank in range(n_banks):
            ctx.set(dut.i_col_bank, bank)
            ctx.set(dut.i_col_we, 1)
            ctx.set(dut.i_col_waddr, 9)
            ctx.set(dut.i_col_wdata, -77 - bank)
            ctx.set(dut.i_col_addr, 9)
            await ctx.tick()                              # read and write of row 9 together
            ctx.set(dut.i_col_we, 0)
            got[f"transparent{bank}"] = ctx.get(dut.o_col_data)
            ctx.set(dut.i_col_addr, 5)
            await ctx.tick()
            got[f"cleared{bank}"] = ctx.get(dut.o_col_data)
        # the requantizer owns the last bank: the accumulate side's write there is dropped
        rq_bank = n_banks - 1
        ctx.set(dut.i_rq_active, 1)
        ctx.set(dut.i_rq_bank, rq_bank)
        ctx.set(dut.i_col_bank, rq_bank)
        ctx.set(dut.i_col_we, 1)
        ctx.set(dut.i_col_waddr, 9)
        ctx.set(dut.i_col_wdata, 555)
        ctx.set(dut.i_rq_re, 1)
        ctx.set(dut.i_rq_raddr, 9)
        await ctx.tick()
        ctx.set(dut.i_col_we, 0)
        ctx.set(dut.i_rq_re, 0)
        got["rq_read"] = ctx.get(dut.o_rq_data)
        ctx.set(dut.i_rq_we, 1)
        ctx.set(dut.i_rq_waddr, 9)
        await ctx.tick()
        ctx.set(dut.i_rq_we, 0)
        ctx.set(dut.i_rq_re, 1)
        await ctx.tick()
        got["rq_after_clear"] = ctx.get(dut.o_rq_data)

    _simulate(dut, bench)
    want = {"clearing": cfg.max_rows_per_pe, "rq_read": -77 - (n_banks - 1), "rq_after_clear": 0}
    for bank in range(n_banks):
        want.update({f"transparent{bank}": -77 - bank, f"cleared{bank}": 0})
    assert got == want
    want["rq_read"] = 555
    assert got != want


def test_accumulator_banks_two_passes_in_the_requantizer():
    """Overlapping conv passes: the requantizer may own both banks at once (a pass's first
    rows behind the previous pass's last ones), reading one bank while it clears a row of the
    other; the accumulate side's writes to an owned bank are dropped, to a free bank kept."""
    cfg = AcceleratorConfig(n_pes=1, fmap_depth=256)
    assert cfg.conv and cfg.early
    dut = AccumulatorBanks(cfg)
    got = {}

    async def bench(ctx):
        while ctx.get(dut.o_clearing):
            await ctx.tick()
        for bank in range(2):                             # row 4 = 40 + bank in each bank
            ctx.set(dut.i_col_bank, bank)
            ctx.set(dut.i_col_we, 1)
            ctx.set(dut.i_col_waddr, 4)
            ctx.set(dut.i_col_wdata, 40 + bank)
            await ctx.tick()
        ctx.set(dut.i_col_we, 0)
        # both banks owned: read row 4 of bank 1 while clearing row 4 of bank 0
        ctx.set(dut.i_rq_busy, 0b11)
        ctx.set(dut.i_rq_rbank, 1)
        ctx.set(dut.i_rq_raddr, 4)
        ctx.set(dut.i_rq_re, 1)
        ctx.set(dut.i_rq_wbank, 0)
        ctx.set(dut.i_rq_waddr, 4)
        ctx.set(dut.i_rq_we, 1)
        ctx.set(dut.i_col_bank, 0)                        # dropped: bank 0 is owned
        ctx.set(dut.i_col_we, 1)
        ctx.set(dut.i_col_waddr, 6)
        ctx.set(dut.i_col_wdata, 66)
        await ctx.tick()
        ctx.set(dut.i_rq_we, 0)
        ctx.set(dut.i_rq_re, 0)
        ctx.set(dut.i_col_we, 0)
        ctx.set(dut.i_rq_wbank, 1)                        # the read data of bank 1, held
        got["rq_read1"] = ctx.get(dut.o_rq_data)
        await ctx.tick()
        got["rq_held1"] = ctx.get(dut.o_rq_data)
        # bank 1 released: the accumulate side writes and reads it again
        ctx.set(dut.i_rq_busy, 0b01)
        ctx.set(dut.i_col_bank, 1)
        ctx.set(dut.i_col_we, 1)
        ctx.set(dut.i_col_waddr, 7)
        ctx.set(dut.i_col_wdata, 77)
        await ctx.tick()
        ctx.set(dut.i_col_we, 0)
        ctx.set(dut.i_col_addr, 7)
        await ctx.tick()
        got["col7_bank1"] = ctx.get(dut.o_col_data)
        ctx.set(dut.i_rq_busy, 0)
        for bank, row in ((0, 4), (0, 6), (1, 4)):
            ctx.set(dut.i_col_bank, bank)
            ctx.set(dut.i_col_addr, row)
            await ctx.tick()
            got[f"bank{bank}_row{row}"] = ctx.get(dut.o_col_data)

    _simulate(dut, bench)
    want = {"rq_read1": 41, "rq_held1": 41, "col7_bank1": 77, "bank0_row4": 0, "bank0_row6": 0,
            "bank1_row4": 41}
    assert got == want
    want["bank0_row6"] = 66
    assert got != want
