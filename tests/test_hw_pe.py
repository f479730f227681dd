"""ProcessingElement on Verilator (cocotb) against the golden model, bit exact.

Each case packs a random sparse integer model (``sw.golden.random_int_model`` + ``sw.pack``),
runs every layer for a few inputs through PE ``index`` and compares every output word with
``sw.golden.infer``. Cycle counts are printed (``-s``) and checked against loose throughput bounds.
"""
import json

import pytest

from hw.pe import ProcessingElement
from tb.pe.vectors import make_pe_case, pe_config, save_case
from tb.runner import ROOT, SimulationFailed, run_testbench


def _run(name, n_pes, index, case, *, p_valid=1.0, p_ready=1.0, seed=1):
    depth = case["pe_mem_depth"]
    build = f"pe_n{n_pes}_i{index}" + ("" if depth == 4096 else f"_d{depth}") + (
        "" if case["max_rows_per_pe"] == 256 else f"_r{case['max_rows_per_pe']}") + (
        "" if case["symbol_depth"] == 512 else f"_s{case['symbol_depth']}")
    folder = ROOT / "build" / "sim" / build
    folder.mkdir(parents=True, exist_ok=True)
    vec = folder / f"{name}.json"
    stats = folder / f"{name}.stats.json"
    save_case(case, vec)
    if stats.exists():
        stats.unlink()
    cfg = pe_config(n_pes, pe_mem_depth=depth, max_rows_per_pe=case["max_rows_per_pe"],
                    symbol_depth=case["symbol_depth"])
    run_testbench(ProcessingElement(cfg, index), toplevel="pe",
                  test_module="tb.pe.test_pe", build_name=build,
                  extra_env={"PE_VECTORS": vec, "PE_STATS": stats, "PE_P_VALID": p_valid,
                             "PE_P_READY": p_ready, "PE_SEED": seed})
    return json.loads(stats.read_text())


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
@pytest.mark.parametrize("name", sorted(CASES))
def test_pe_golden(name):
    n_pes, index, kw = CASES[name]
    case = make_pe_case(n_pes, index, **kw)
    stats = _run(name, n_pes, index, case, p_valid=0.7, p_ready=0.6, seed=len(name))
    assert len(stats) == len(case["inputs"]) * len(case["layers"])


@pytest.mark.sim
def test_pe_two_word_pointers():
    """A layer whose stream exceeds 65535 bits uses 2-word (high, low) column pointers."""
    cfg = pe_config(1, pe_mem_depth=8192)
    case = make_pe_case(1, 0, [200, 200, 10], 0.3, seed=31, n_inputs=2, act_density=0.3,
                        zero_input=False, config=cfg, empty_columns=False)
    assert case["layers"][0]["ptr_words2"] == 1 and case["layers"][1]["ptr_words2"] == 0
    stats = _run("ptr2", 1, 0, case, p_valid=0.9, p_ready=0.8, seed=4)
    _report("2-word pointers N=1", stats)


@pytest.mark.sim
def test_pe_throughput():
    """No stalls: cycles per column and per symbol.

    Long columns (about 12 symbols per column and PE) are decode bound: one symbol per cycle
    plus a fixed per-layer latency. Short columns (about 2 symbols) are bound by the single
    memory port: 1-2 pointer words plus 1-2 stream words per column.
    """
    dense = make_pe_case(2, 1, [120, 100, 10], 0.25, seed=21, n_inputs=2, act_density=0.4)
    stats = _run("throughput_dense", 2, 1, dense)
    _report("long columns N=2 PE1", stats)
    for s in stats:
        if s["layer"] == 0 and s["acts"]:
            assert s["column_cycles"] <= 1.1 * s["symbols"] + 30, s
    sparse = make_pe_case(4, 1, [200, 80, 10], 0.1, seed=22, n_inputs=2, act_density=0.3)
    stats = _run("throughput_sparse", 4, 1, sparse)
    _report("short columns N=4 PE1", stats)
    for s in stats:
        if s["acts"]:
            assert s["column_cycles"] <= 3.5 * s["acts"] + 30, s


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

    from hw.pe import round_shift_saturate

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
