"""Accelerator (central unit + N PEs + sequencer) on Verilator against sw.golden, every logit bit.

Random sparse models (``sw.golden.random_int_model``, packed by ``sw.pack``) for N = 1..4 with
random input idles and logit back-pressure; inputs include an all-zero vector and an all-255
(saturating) one. The real LeNet-300-100 (``models/lenet300.npz``) runs on MNIST test images
when the model file exists.
"""
import numpy as np
import pytest

from tb.accelerator.run import run_case
from tb.accelerator.vectors import case_from_int_model, model_case, random_case
from tb.runner import ROOT, SimulationFailed

LENET = ROOT / "models" / "lenet300.npz"

CASES = {
    # name: (n_pes, sizes, density, seed, extra random_int_model arguments)
    "n1": (1, [60, 40, 10], 0.25, 1, {}),
    "n2": (2, [64, 48, 10], 0.2, 2, {}),
    "n3_deep": (3, [40, 30, 20, 12], 0.4, 3, {}),
    "n4": (4, [80, 50, 10], 0.2, 4, {}),
    "n4_few_logits": (4, [30, 20, 3], 0.5, 5, {}),
    "n3_long_gaps": (3, [50, 200, 10], 0.03, 6, {}),
    "n2_no_saturation": (2, [40, 40, 10], 0.3, 7, {"saturate": False}),
    "n4_dense_in": (4, [300, 24, 10], 0.1, 8, {}),
}


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_accelerator_random_models(name):
    n_pes, sizes, density, seed, kw = CASES[name]
    case = random_case(n_pes, sizes, density, seed, n_inputs=5, **kw)
    stats = run_case(name, case, p_valid=0.7, p_ready=0.6, seed=seed)
    assert len(stats["inferences"]) == len(case["inputs"])


@pytest.mark.sim
@pytest.mark.parametrize("lanes", [1, 3])
def test_accelerator_input_lanes(lanes):
    """One and three (not a power of two) input values per ``i_input`` word, 61 inputs (the
    final word partly used), random stalls: bit exact (the other cases use the default 16)."""
    from tb.accelerator.vectors import sim_config
    case = random_case(2, [61, 40, 10], 0.25, 12, n_inputs=5,
                       config=sim_config(2, input_lanes=lanes))
    assert case["config"]["input_lanes"] == lanes
    stats = run_case(f"lanes{lanes}", case, p_valid=0.7, p_ready=0.6, seed=12)
    assert len(stats["inferences"]) == len(case["inputs"])


def _cycles(name, case, stall_seed=None):
    """Cycles per inference of ``case`` run without stalls (bit exact: the testbench compares
    every logit), after a run under random valid/ready stalls when ``stall_seed`` is given."""
    if stall_seed is not None:
        run_case(f"{name}_stalls", case, p_valid=0.7, p_ready=0.6, seed=stall_seed)
    return [st["cycles"] for st in run_case(name, case)["inferences"]]


@pytest.mark.sim
@pytest.mark.slow   # (CI time: the on/off cycle comparison builds two models)
def test_accelerator_requant_overlap_on_and_off():
    """The iCEBreaker's configuration (``requant_overlap=False``: one accumulator bank, each
    layer requantized before the next starts) is bit exact under random stalls, and the
    default overlap really hides requantization: the same inputs take fewer cycles with it."""
    from tb.accelerator.vectors import sim_config
    cycles = {}
    for overlap in (False, True):
        case = random_case(2, [60, 48, 40, 10], 0.25, 13, n_inputs=4,
                           config=sim_config(2, requant_overlap=overlap))
        assert case["config"]["requant_overlap"] == overlap
        cycles[overlap] = _cycles(f"overlap{int(overlap)}", case,
                                  stall_seed=None if overlap else 13)
    # two hidden layers of 24 and 20 rows per PE are requantized behind the next layer
    assert all(on < off for on, off in zip(cycles[True], cycles[False])), cycles


@pytest.mark.sim
@pytest.mark.slow   # (CI time: the on/off cycle comparison builds two models)
def test_accelerator_early_start_on_and_off():
    """The early start (default: a layer starts once the previous broadcast is complete; a PE
    still busy keeps the start waiting) and the start after every PE took its end token are
    both bit exact under random stalls, and the early start takes fewer cycles on the same
    inputs (4 PEs, three hidden layers: every boundary overlaps the busiest PE's tail)."""
    from tb.accelerator.vectors import sim_config
    cycles = {}
    for early in (False, True):
        case = random_case(4, [90, 64, 48, 40, 10], 0.2, 16, n_inputs=4,
                           config=sim_config(4, early_start=early))
        assert case["config"]["early_start"] == early
        cycles[early] = _cycles(f"early{int(early)}", case, stall_seed=16)
    assert all(on <= off for on, off in zip(cycles[True], cycles[False])), cycles
    assert sum(cycles[True]) < sum(cycles[False]), cycles


@pytest.mark.sim
@pytest.mark.slow   # (CI time: the on/off cycle comparison builds two models)
def test_accelerator_column_skip():
    """The column skip table (``column_skip``, default) is bit exact under random stalls, saves
    cycles on a model whose PEs have many empty columns (4 PEs, 8 % density), and a gateware
    without it (the iCEBreaker's) runs the same images bit exact; so does a table that was never
    loaded (all zeros: nothing skipped)."""
    from tb.accelerator.vectors import sim_config
    cycles = {}
    for skip in (False, True):
        # one pointer port: with two, a PE's empty columns cost about as little as skipping
        # them (one pointer-port cycle each, hidden behind the decoder) on this small model
        case = random_case(4, [96, 64, 40, 10], 0.08, 14, n_inputs=4,
                           config=sim_config(4, column_skip=skip, pointer_ports=1))
        assert case["config"]["column_skip"] == skip
        # the packer writes the table either way (mem 2N+5)
        assert any(mem == 2 * 4 + 5 for mem, _, _ in case["loads"])
        if skip:
            unloaded = dict(case, loads=[w for w in case["loads"] if w[0] != 2 * 4 + 5])
            cycles["unloaded"] = _cycles("skip_unloaded", unloaded)
        cycles[skip] = _cycles(f"skip{int(skip)}", case, stall_seed=14 if skip else None)
    assert all(on < off for on, off in zip(cycles[True], cycles[False])), cycles
    assert all(on < off for on, off in zip(cycles[True], cycles["unloaded"])), cycles


@pytest.mark.sim
@pytest.mark.slow   # (CI time: the on/off cycle comparison builds two models)
def test_accelerator_board_pointer_ports():
    """The iCEBreaker's configuration (one pointer port, no overlap, one input value per word,
    2-deep broadcast FIFO: ``boards/icebreaker.py``'s profile) is bit exact under random stalls, and two pointer ports
    take fewer cycles on the same inputs: no more on the all-zero and the all-255 inputs (every
    column follows its neighbour: one pointer read each either way), fewer on the random ones
    (a 200-input layer at 30 % non-zero: short columns, most needing both pointers)."""
    from boards import get_board
    from tb.accelerator.vectors import sim_config
    board = get_board("icebreaker").profile.config_fields()
    assert board.pop("pointer_ports") == 1
    cycles = {}
    for ports in (1, 2):
        case = random_case(2, [200, 40, 10], 0.1, 14, n_inputs=4, act_density=0.3,
                           config=sim_config(2, pointer_ports=ports, **board))
        assert case["config"]["pointer_ports"] == ports
        cycles[ports] = _cycles(f"ports{ports}", case, stall_seed=14 if ports == 1 else None)
    assert all(two <= one for one, two in zip(cycles[1], cycles[2])), cycles
    assert all(two < one for one, two in zip(cycles[1][2:], cycles[2][2:])), cycles


@pytest.mark.sim
@pytest.mark.slow   # (CI time: the on/off cycle comparison builds two models)
def test_accelerator_stream_words():
    """16-bit stream words (the iCEBreaker's ``stream_words = 1``) are bit exact under random
    stalls in the default configuration otherwise (skip table, overlap, two pointer ports; the
    other tests run 32-bit ones), and 32-bit words take fewer cycles on the same inputs: 4 PEs
    share a 200-input layer at 30 % non-zero, so most of a PE's columns hold one or two codes
    and many of them straddle a 16-bit word boundary."""
    from tb.accelerator.vectors import sim_config
    cycles = {}
    for words in (1, 2):
        case = random_case(4, [200, 40, 10], 0.1, 15, n_inputs=4, act_density=0.3,
                           config=sim_config(4, stream_words=words))
        assert case["config"]["stream_words"] == words
        cycles[words] = _cycles(f"words{words}", case, stall_seed=15 if words == 1 else None)
    assert all(two <= one for one, two in zip(cycles[1], cycles[2])), cycles
    assert sum(cycles[2]) < sum(cycles[1]), cycles


def test_accelerator_saturation_is_exercised():
    """The random cases really contain saturated hidden activations and zero inputs."""
    from sw.golden import infer, random_int_model
    n_pes, sizes, density, seed, kw = CASES["n4"]
    im = random_int_model(sizes, density, seed)
    case = random_case(n_pes, sizes, density, seed, n_inputs=5, **kw)
    res = infer(im, np.array(case["inputs"]))
    assert (res.activations[0] == 255).any() and (res.activations[0] == 0).any()
    assert not np.any(case["inputs"][0])


@pytest.mark.sim
def test_accelerator_back_to_back_cycles():
    """No stalls: ``o_cycles`` is the hardware's count and stays near the PE-work bound."""
    case = random_case(2, [120, 60, 10], 0.2, 11, n_inputs=4)
    stats = run_case("cycles", case)
    for st, ideal, bound, x in zip(stats["inferences"], case["ideal"], case["pe_bound"],
                                   case["inputs"]):
        assert st["cycles"] <= st["wall_cycles"]
        # the dense input takes in_features cycles; each layer adds a fixed latency
        assert st["cycles"] >= min(len(x), ideal)
        assert st["cycles"] <= max(len(x), 2 * bound) + 200, (st, ideal, bound)


@pytest.mark.sim
def test_accelerator_detects_wrong_logit():
    """A single flipped expected bit makes the testbench fail (the comparison is exact)."""
    n_pes, sizes, density, seed, kw = CASES["n2"]
    case = random_case(n_pes, sizes, density, seed, n_inputs=3, **kw)
    case["logits"][2][3] ^= 1 << 17
    with pytest.raises(SimulationFailed):
        run_case("broken", case, seed=3)


@pytest.mark.sim
def test_accelerator_lenet_shaped_random_bench():
    """LeNet-300-100 dimensions (784 inputs, pointer tables of 785 entries) on MNIST images,
    through the benchmark's code path (``hw.bench.run_bench``)."""
    from hw.bench import _model, format_table, run_bench
    im, _ = _model(None, True)
    rows = run_bench(im, [4], 3, offset=7, log=lambda *a: None)
    assert rows[0]["status"] == "bit-exact", rows
    assert rows[0]["cycles_mean"] >= 784            # the dense input alone takes 784 cycles
    assert rows[0]["ratio_mean"] >= 1.0
    assert "bit-exact" in format_table(rows)


def test_bench_config_follows_model_widths():
    """hw.bench simulates the gateware built for the model: its gap/index widths, tables grown
    (powers of two) to the model's rows and joint symbols; the packer accepts it."""
    from hw.bench import bench_config
    from sw.golden import random_int_model
    im = random_int_model([200, 60, 10], density=0.3, seed=2, gap_bits=5, idx_bits=3)
    cfg = bench_config(im, 1, fifo_depth=4)
    assert (cfg.gap_bits, cfg.idx_bits, cfg.fifo_depth, cfg.n_pes) == (5, 3, 4, 1)
    assert cfg.max_rows_per_pe == 256 and cfg.symbol_depth == 512     # defaults suffice
    big = random_int_model([300, 300, 10], density=0.3, seed=2, gap_bits=6)
    cfg = bench_config(big, 1)
    assert cfg.gap_bits == 6 and cfg.max_rows_per_pe == 512 and cfg.symbol_depth >= 512
    case_from_int_model(big, np.zeros((1, 300), dtype=np.int64), cfg)     # packs


def test_bench_config_deeper_fifos_for_conv_models():
    """A model with conv layers is simulated with CONV_FIFO_DEPTH-deep broadcast FIFOs unless a
    depth is given; an fc model keeps the default depth."""
    from contract.config import AcceleratorConfig
    from hw.simcase import CONV_FIFO_DEPTH, bench_config
    from sw.golden import random_conv_model, random_int_model
    conv = random_conv_model(seed=1)
    assert CONV_FIFO_DEPTH > AcceleratorConfig().fifo_depth
    assert bench_config(conv, 2).fifo_depth == CONV_FIFO_DEPTH
    assert bench_config(conv, 2, fifo_depth=4).fifo_depth == 4
    fc = random_int_model([50, 20, 10], density=0.3, seed=1)
    assert bench_config(fc, 2).fifo_depth == AcceleratorConfig().fifo_depth


def test_bench_refuses_missing_model(tmp_path, capsys):
    from hw.bench import main
    assert main(["--model", str(tmp_path / "none.npz"), "--pes", "2"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["--random-model", "--pes", "two"]) == 1
    assert "--pes" in capsys.readouterr().err


def _lenet(n_images, offset, n_pes=4):
    if not LENET.exists():
        pytest.skip(f"{LENET.relative_to(ROOT)} not built yet (python -m sw.compress)")
    case = model_case(LENET, n_pes, n_images, offset)
    stats = run_case(f"lenet_{n_images}_{offset}", case, p_valid=0.9, p_ready=0.8)
    pred = [s["prediction"] for s in stats["inferences"]]
    assert pred == case["argmax"]
    return case, stats


@pytest.mark.sim
def test_accelerator_lenet300_mnist():
    """The real compressed LeNet-300-100 on 20 MNIST test images, bit exact."""
    _lenet(20, 0)


@pytest.mark.sim
@pytest.mark.slow
def test_accelerator_lenet300_mnist_many():
    """200 more MNIST test images (slow)."""
    _lenet(200, 20)


@pytest.mark.sim
def test_accelerator_error_flags():
    """Short input vector -> ``o_error.input``; load to an unknown memory -> ``o_error.load``."""
    n_pes, sizes, density, seed, kw = CASES["n2"]
    case = random_case(n_pes, sizes, density, seed, n_inputs=2, **kw)
    run_case("errors", case, testcase="accelerator_flags_errors", errors=True)


@pytest.mark.sim
@pytest.mark.parametrize("board", ["ulx3s", "orangecrab", "tang_primer_20k"])
def test_accelerator_board_profiles(board):
    """Each larger board's configuration (its feature profile in ``boards/<name>.py`` and the
    generic block-RAM memories of its family, on 4 PEs and a 2048-word PE memory, the depth
    ``hw.build`` gives LeNet-300-100 there) is bit exact under random stalls on a 70-input
    layer (a partly used final input word with 4 lanes) and two more. Boards with the same
    profile share one Verilator model."""
    from boards import get_board
    from hw.build import board_config
    from tb.accelerator.vectors import sim_config
    spec = get_board(board)
    n = min(spec.default_pes, 4)
    built = board_config(spec, n, pe_mem_depth=2048)
    assert built.memory == "lib"
    case = random_case(n, [70, 40, 10], 0.2, 20, n_inputs=4,
                       config=sim_config(n, pe_mem_depth=2048, **spec.profile.config_fields()))
    assert {k: case["config"][k] for k in spec.profile.config_fields()} == \
        spec.profile.config_fields()
    stats = run_case(f"board_{board}", case, p_valid=0.7, p_ready=0.6, seed=spec.id)
    assert len(stats["inferences"]) == len(case["inputs"])


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("board", ["ulx3s", "orangecrab", "tang_primer_20k"])
def test_board_configuration_lenet300(board):
    """The configuration each larger board builds - as ``hw.build`` makes it: its feature
    profile, its default PE count, LeNet-300-100's widths, the memory plan's cuts (PE memory
    depth, accumulator rows and so the output banks) and the hidden neurons balanced as the
    build packs them - bit exact on MNIST test images (every logit bit against sw.golden)."""
    from boards import get_board
    from hw.build import board_config, memory_depth_for, size_config
    from hw.simcase import case_from_int_model
    from sw.balance import balance_model
    from sw.golden import IntModel
    from sw.mnist import load_mnist
    from sw.modelfile import load_model
    spec = get_board(board)
    model = ROOT / "models" / "lenet300.npz"
    cfg = memory_depth_for(model, size_config(model, board_config(spec)), spec)
    assert cfg.n_pes == spec.default_pes and cfg.max_rows_per_pe < 256
    im, _, _ = balance_model(IntModel.from_model(load_model(model)), cfg.n_pes, "data")
    te = load_mnist().test
    case = case_from_int_model(im, te.uint8()[:3], cfg, labels=te.labels[:3])
    stats = run_case(f"lenet300_{board}", case)
    assert [s["prediction"] for s in stats["inferences"]] == case["argmax"]
