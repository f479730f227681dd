"""ProcessingElement on Verilator (cocotb) against the golden model, bit exact.

Each case packs a random sparse integer model (``sw.golden.random_int_model`` + ``sw.pack``),
runs every layer for a few inputs through PE ``index`` and compares every output word with
``sw.golden.infer``. Cycle counts are printed (``-s``) and checked against loose throughput bounds.
The PE is built with one and with two pointer-memory read ports (``pointer_ports``).
"""
import pytest

from gateware.config import AcceleratorConfig
from gateware.pe import ProcessingElement
from tb.pe.vectors import make_pe_case, pe_config
from tb.runner import SimulationFailed, run_bench


PORTS = [1, 2]      # pointer_ports


def _run(name, n_pes, index, case, *, ports=2, p_valid=1.0, p_ready=1.0, seed=1,
         testcase="pe_matches_golden"):
    """Run cocotb ``testcase`` of tb/pe/test_pe.py on PE ``index`` of ``n_pes`` with ``ports``
    pointer-memory read ports; returns the per-layer cycle statistics (``pe_matches_golden``)."""
    config = dict(case["config"], pointer_ports=ports)
    return run_bench(ProcessingElement(AcceleratorConfig(**config), index), toplevel="pe",
                     test_module="tb.pe.test_pe", name=f"pe_{name}", testcase=testcase,
                     params={"case": dict(case, config=config), "p_valid": p_valid,
                             "p_ready": p_ready, "seed": seed})


def _report(name, stats):
    cols = sum(s["acts"] for s in stats)
    syms = sum(s["symbols"] for s in stats)
    ccyc = sum(s["column_cycles"] for s in stats)
    tcyc = sum(s["total_cycles"] for s in stats)
    rows = sum(s["rows"] for s in stats)
    print(f"\n{name}: {len(stats)} layer runs, {cols} columns, {syms} symbols, {rows} rows: "
          f"{ccyc} column-phase cycles ({ccyc / max(cols, 1):.2f}/column, "
          f"{ccyc / max(syms, 1):.2f}/symbol), {tcyc} total")
    for s in stats:
        print(f"  in{s['input']} L{s['layer']}: {s['acts']} cols {s['symbols']} syms "
              f"{s['macs']} macs(all PEs) {s['rows']} rows -> {s['column_cycles']} + "
              f"{s['total_cycles'] - s['column_cycles']} cycles")
    return ccyc, syms, cols


SMALL = dict(sizes=[60, 40, 10], density=0.25, n_inputs=3)

CASES = {
    # name: (n_pes, index, model/input parameters)
    "n1": (1, 0, dict(SMALL, seed=11)),
    "n2_pe1": (2, 1, dict(SMALL, seed=12)),
    "n4_pe3": (4, 3, dict(sizes=[50, 70, 12], density=0.3, seed=13, n_inputs=3)),
    "n4_pe2_sparse_gaps": (4, 2, dict(sizes=[40, 200, 10], density=0.03, seed=14, n_inputs=3)),
    "n2_pe0_dense3": (2, 0, dict(sizes=[30, 24, 20, 10], density=0.6, seed=15, n_inputs=2)),
    # bias shifts 16..31 go through the requantizer's 16- and 24-bit byte shifts
    "n1_big_bias_shifts": (1, 0, dict(SMALL, seed=18, max_bias_shift=31)),   # shifts 16, 25
}


@pytest.mark.sim
@pytest.mark.parametrize("ports", PORTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_pe_golden(name, ports):
    n_pes, index, kw = CASES[name]
    case = make_pe_case(n_pes, index, **kw)
    stats = _run(name, n_pes, index, case, ports=ports, p_valid=0.7, p_ready=0.6,
                 seed=len(name))
    assert len(stats) == len(case["inputs"]) * len(case["layers"])


def _two_word_case():
    cfg = pe_config(1, pe_mem_depth=8192)
    case = make_pe_case(1, 0, [200, 200, 10], 0.3, seed=31, n_inputs=2, act_density=0.3,
                        zero_input=False, config=cfg, empty_columns=False)
    assert case["layers"][0]["ptr_words2"] == 1 and case["layers"][1]["ptr_words2"] == 0
    return case


@pytest.mark.sim
@pytest.mark.parametrize("ports", PORTS)
def test_pe_two_word_pointers(ports):
    """A layer whose stream exceeds 65535 bits uses 2-word (high, low) column pointers."""
    stats = _run("ptr2", 1, 0, _two_word_case(), ports=ports, p_valid=0.9, p_ready=0.8, seed=4)
    _report(f"2-word pointers N=1, {ports} pointer port(s)", stats)


@pytest.mark.sim
@pytest.mark.parametrize("max_len,words", [(12, 1), (8, 1), (8, 2), (15, 1), (15, 2)])
def test_pe_code_length_limit_and_stream_words(max_len, words):
    """PEs built for Huffman codes of up to ``max_len`` bits (8: the limit binds, the longest
    codes have 8 bits; 15, the most the packer allows: this random model's codes reach 11 bits,
    codes of the full 15 bits are covered by tests/test_hw_huffman.py) reading 16-bit
    (``stream_words = 1``) or 32-bit stream words, bit exact under random stalls."""
    cfg = pe_config(2, huff_max_len=max_len, stream_words=words)
    case = make_pe_case(2, 1, [120, 100, 10], 0.25, seed=21, n_inputs=3, config=cfg)
    assert case["longest_code"] == min(max_len, 11)
    stats = _run(f"limit{max_len}_w{words}", 2, 1, case, p_valid=0.7, p_ready=0.6, seed=max_len)
    assert len(stats) == len(case["inputs"]) * len(case["layers"])


@pytest.mark.sim
def test_pe_one_entry_segment_queues():
    """The iCEBreaker's 1-entry column-segment queues (``segment_queue_depth = 1``, one pointer
    port) are bit exact under random stalls, and without stalls take more cycles than the
    automatic 2 entries on the same short columns (the queues are really one entry deep)."""
    case = make_pe_case(1, 0, [200, 80, 10], 0.1, seed=22, n_inputs=2, act_density=0.3)
    cycles = {}
    for depth, stall in ((1, True), (1, False), (0, False)):
        run = dict(case, config=dict(case["config"], segment_queue_depth=depth))
        stats = _run(f"segq{depth}_{'stalls' if stall else 'fast'}", 1, 0, run, ports=1,
                     **(dict(p_valid=0.7, p_ready=0.6, seed=5) if stall else {}))
        assert len(stats) == len(case["inputs"]) * len(case["layers"])
        if not stall:
            cycles[depth] = sum(s["column_cycles"] for s in stats)
    assert cycles[1] > cycles[0], cycles


def _sparse_case():
    return make_pe_case(4, 1, [200, 80, 10], 0.1, seed=22, n_inputs=2, act_density=0.3)


@pytest.mark.sim
@pytest.mark.parametrize("ports", PORTS)
def test_pe_throughput(ports):
    """No stalls: cycles per column and per symbol.

    Long columns (about 12 symbols per column and PE) are decode bound: one symbol per cycle
    plus a fixed per-layer latency. Short columns (about 2 symbols) are bound by the pointer
    port (one port: 1-2 pointer reads per column; two: one) and the stream words (1-2 per
    column, one per cycle into the decoder).
    """
    dense = make_pe_case(2, 1, [120, 100, 10], 0.25, seed=21, n_inputs=2, act_density=0.4)
    stats = _run("throughput_dense", 2, 1, dense, ports=ports)
    _report(f"long columns N=2 PE1, {ports} pointer port(s)", stats)
    for s in stats:
        if s["layer"] == 0 and s["acts"]:
            assert s["column_cycles"] <= 1.1 * s["symbols"] + 30, s
    stats = _run("throughput_sparse", 4, 1, _sparse_case(), ports=ports)
    _report(f"short columns N=4 PE1, {ports} pointer port(s)", stats)
    for s in stats:
        if s["acts"]:
            assert s["column_cycles"] <= (3.5 if ports == 1 else 2.5) * s["acts"] + 30, s


@pytest.mark.sim
def test_pe_two_pointer_ports_faster_on_short_columns():
    """Short columns (0-3 symbols per PE, 30 % of the inputs non-zero, so most columns need
    both of their pointers): two pointer ports take fewer column-phase cycles than one, with
    the same (golden) outputs. On mostly empty columns (layer 1: 27 columns, about 10 symbols)
    the fetch takes one column per cycle: one port needs two reads per column."""
    case = _sparse_case()
    cyc = {}
    for ports in PORTS:
        stats = _run("faster", 4, 1, case, ports=ports)
        _report(f"short columns N=4 PE1, {ports} pointer port(s)", stats)
        cyc[ports] = [(s["acts"], s["symbols"], s["column_cycles"]) for s in stats]
    fixed = 25          # start pulse, header, pipeline fill and drain
    for (acts, syms, one), (_, _, two) in zip(cyc[1], cyc[2]):
        assert two <= one, cyc
        if acts >= 20 and 2 * syms < acts:
            assert two <= acts + fixed < one, cyc
    assert sum(c for *_, c in cyc[2]) < 0.9 * sum(c for *_, c in cyc[1]), cyc


def _decreasing_pointer_case(case, chained):
    """``case`` cut to layer 0 and one input that broadcasts column ``c`` (after ``c - 1`` when
    ``chained``: its start is then the previous column's end, else a pointer read), with
    ``ptr[c + 1]`` made smaller than ``ptr[c]``; for 2-word pointers in the high word only (the
    low word grows). Returns the broken case and the unbroken one (same broadcast)."""
    n_pes, index = case["n_pes"], case["index"]
    pmem = n_pes + 5 + index
    data = {a: d for m, a, d in case["loads"] if m == index}
    ptrs = {a: d for m, a, d in case["loads"] if m == pmem}
    desc = case["layers"][0]
    pw2 = desc["ptr_words2"]
    base = data.get(0, 0)                     # header word 0 of layer 0: ptr_base

    def ptr(c):
        a = base + (c << pw2)
        return (ptrs.get(a, 0) << 16 | ptrs.get(a + 1, 0)) if pw2 else ptrs.get(a, 0)

    c = next(c for c in range(1, desc["in_features"])
             if ptr(c) >= (1 << 16 if pw2 else 1) and ptr(c + 1) > ptr(c))
    bad = ((ptr(c) >> 16) - 1) << 16 | 0xFFFF if pw2 else ptr(c) - 1
    a = base + ((c + 1) << pw2)
    words = {a: bad >> 16, a + 1: bad & 0xFFFF} if pw2 else {a: bad}
    loads = [[m, ad, d] for m, ad, d in case["loads"] if not (m == pmem and ad in words)]
    loads += [[pmem, ad, d] for ad, d in words.items()]
    acts = ([[c - 1, 3]] if chained else []) + [[c, 5]]
    run = [{"acts": acts, "expect": [], "symbols": 0, "macs": 0}]
    good = dict(case, layers=[desc], inputs=[run])
    return dict(good, loads=loads), good


@pytest.mark.sim
@pytest.mark.parametrize("ports", PORTS)
@pytest.mark.parametrize("kind", ["fresh", "chained", "two_word"])
def test_pe_decreasing_pointer_sets_error(kind, ports):
    """``ptr[c + 1] < ptr[c]`` sets ``o_error`` (the column is not decoded), whether the start
    pointer was read with the end (two ports), before it (one port) or is the previous column's
    end (``chained``), and for 2-word pointers whose high word decreases; the same broadcast on
    the unbroken pointers leaves ``o_error`` low (``pe_flags_error`` fails)."""
    case = _two_word_case() if kind == "two_word" else _sparse_case()
    bad, good = _decreasing_pointer_case(case, chained=kind == "chained")
    n_pes, index = case["n_pes"], case["index"]
    _run(f"decreasing_{kind}", n_pes, index, bad, ports=ports, testcase="pe_flags_error")
    with pytest.raises(SimulationFailed, match="o_error not set"):
        _run(f"decreasing_{kind}_ok", n_pes, index, good, ports=ports,
             testcase="pe_flags_error")


@pytest.mark.sim
@pytest.mark.parametrize("name", ["n4_pe3", "n2_pe0_dense3"])
def test_pe_early_start(name):
    """Early start (the default configuration): each next layer's start arrives while the
    column engine still works on the previous layer and waits for its hand-over; outputs bit
    exact under random stalls (tb/pe/test_pe.py ``pe_early_start``)."""
    n_pes, index, kw = CASES[name]
    case = make_pe_case(n_pes, index, **kw)
    _run(f"early_{name}", n_pes, index, case, p_valid=0.7, p_ready=0.6, seed=21,
         testcase="pe_early_start")


@pytest.mark.sim
def test_pe_second_waiting_start_errors():
    """Early start: one start may wait; a second one sets ``o_error``."""
    n_pes, index, kw = CASES["n1"]
    _run("two_waiting", n_pes, index, make_pe_case(n_pes, index, **kw),
         testcase="pe_second_waiting_start_errors")


@pytest.mark.sim
def test_pe_early_start_testbench_can_fail():
    """The early-start testbench compares exactly: a flipped expected bit fails it."""
    n_pes, index, kw = CASES["n4_pe3"]
    case = make_pe_case(n_pes, index, **kw)
    exp = next(v["expect"] for inp in case["inputs"] for v in inp[1:] if v["expect"])
    exp[0][1] ^= 1
    with pytest.raises(SimulationFailed):
        _run("early_broken", n_pes, index, case, testcase="pe_early_start")


@pytest.mark.sim
def test_pe_detects_wrong_expectation():
    """A single flipped expected bit makes the testbench fail (the comparison is exact)."""
    n_pes, index, kw = CASES["n2_pe1"]
    case = make_pe_case(n_pes, index, **kw)
    exp = case["inputs"][1][0]["expect"]
    assert exp, "case needs a non-empty expectation"
    exp[len(exp) // 2][1] ^= 1
    with pytest.raises(SimulationFailed):
        _run("broken", n_pes, index, case, seed=3)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("n_pes", [1, 4])
def test_pe_lenet_shape(n_pes):
    """Cycle report on a LeNet-300-100-shaped random model (784-300-100-10, 9% dense)."""
    depth = 16384 if n_pes == 1 else 4096
    cfg = pe_config(n_pes, pe_mem_depth=depth, max_rows_per_pe=512, symbol_depth=1024)
    case = make_pe_case(n_pes, n_pes - 1, [784, 300, 100, 10], 0.09, seed=41, n_inputs=2,
                        act_density=0.2, zero_input=False, config=cfg)
    stats = _run(f"lenet_n{n_pes}", n_pes, n_pes - 1, case)
    _report(f"LeNet-shaped N={n_pes} PE{n_pes - 1}", stats)


def _requant_model(t, s, bits=8):
    return min(max((t + ((1 << (s - 1)) if s else 0)) >> s, 0), (1 << bits) - 1)


def test_round_shift_saturate_exhaustive_shifts():
    """The requantizer's log shifter with its saturation flag against section 1's formula, for
    every shift 0..31 and accumulators around each saturation and rounding edge (Python sim)."""
    import random

    from amaranth import Elaboratable, Module, Signal, signed
    from amaranth.sim import Simulator

    from gateware.pe import round_shift_saturate

    class Dut(Elaboratable):
        def __init__(self):
            self.t, self.s, self.y = Signal(signed(32)), Signal(5), Signal(8)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(round_shift_saturate(m, self.t, self.s, 8))
            return m

    rng = random.Random(5)
    cases = []
    for s in range(32):
        edges = [0, 1, (255 << s), (256 << s), (1 << (s + 8)) - (1 << s >> 1),
                 (1 << max(s - 1, 0)), (3 << s >> 1), (1 << 31) - 1, -1, -(1 << 31)]
        vals = {v + d for v in edges for d in (-2, -1, 0, 1, 2)}
        vals |= {rng.randrange(-(1 << 31), 1 << 31) for _ in range(8)}
        vals |= {rng.randrange(0, 1 << min(31, s + 9)) for _ in range(8)}
        cases += [(v, s) for v in sorted(vals) if -(1 << 31) <= v < (1 << 31)]
    dut = Dut()
    bad = []

    async def bench(ctx):
        for t, s in cases:
            ctx.set(dut.t, t)
            ctx.set(dut.s, s)
            got = ctx.get(dut.y)
            if got != _requant_model(t, s):
                bad.append((t, s, got, _requant_model(t, s)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert len(cases) > 32 * 40
    assert not bad, bad[:5]
