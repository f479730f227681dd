"""CentralUnit on Verilator (cocotb) with behavioural PEs: broadcast, merge, barrier, logits."""
import pytest

from gateware.central import CentralUnit
from gateware.config import AcceleratorConfig
from tb.accelerator.run import VERILATOR_ARGS
from tb.runner import SimulationFailed, run_testbench

CASES = {
    # name: (N, K input lanes, sizes, seed, p_valid, p_ready); input lengths that are not a
    # multiple of K leave unused lanes in the final word
    "n1": (1, 1, "30,20,10", 1, 0.7, 0.6),
    "n1_k4": (1, 4, "30,20,10", 7, 0.7, 0.6),
    "n2": (2, 1, "40,30,20,10", 2, 0.7, 0.6),
    "n2_k2": (2, 2, "41,30,10", 8, 0.6, 0.7),
    "n3_k4": (3, 4, "25,31,17,7", 3, 0.5, 0.4),
    "n4_few_logits": (4, 4, "20,9,3", 4, 0.8, 0.5),
    "n4_no_stalls": (4, 4, "64,48,10", 5, 1.0, 1.0),
    "n2_k3_no_stalls": (2, 3, "50,20,10", 9, 1.0, 1.0),
    "n1_k1_no_stalls": (1, 1, "37,20,10", 10, 1.0, 1.0),
    "n8": (8, 4, "50,70,10", 6, 0.7, 0.7),
    # with the column skip table (random masks), one or two words per cycle
    "n1_skip": (1, 1, "30,20,10", 11, 0.7, 0.6, True, 1),
    "n1_k4_skip2": (1, 4, "30,20,10", 15, 0.7, 0.6, True, 2),
    "n4_k4_skip": (4, 4, "45,33,12", 12, 0.6, 0.5, True, 1),
    "n4_k4_skip2": (4, 4, "45,33,12", 16, 0.6, 0.5, True, 2),
    "n4_skip2_no_stalls": (4, 4, "64,48,10", 13, 1.0, 1.0, True, 2),
    "n3_k3_skip2_no_stalls": (3, 3, "50,20,10", 17, 1.0, 1.0, True, 2),
    "n8_k16_skip2": (8, 16, "70,50,10", 14, 0.7, 0.7, True, 2),
}


def _run(name, n, k, sizes, seed, p_valid, p_ready, skip=False, width=1, testcase=None,
         env=()):
    run_testbench(CentralUnit(AcceleratorConfig(n_pes=n, input_lanes=k, column_skip=skip,
                                                broadcast_width=width)),
                  toplevel="central", test_module="tb.central.test_central",
                  build_name=f"central_n{n}_k{k}" + (f"_skip{width}" if skip else ""),
                  build_args=VERILATOR_ARGS, testcase=testcase,
                  extra_env={"CENTRAL_N": n, "CENTRAL_K": k, "CENTRAL_SIZES": sizes,
                             "CENTRAL_SEED": seed,
                             "CENTRAL_INPUTS": 5, "CENTRAL_P_VALID": p_valid,
                             "CENTRAL_P_READY": p_ready, "CENTRAL_SKIP": int(skip),
                             "CENTRAL_WIDTH": width,
                             **dict(env)})


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_central(name):
    _run(name, *CASES[name])


@pytest.mark.sim
def test_central_testbench_can_fail():
    """Expecting the merged broadcast in PE emission order instead of sorted must fail."""
    with pytest.raises(SimulationFailed):
        run_testbench(CentralUnit(AcceleratorConfig(n_pes=2, input_lanes=1,
                                                    column_skip=False)),
                      toplevel="central", test_module="tb.central.test_central",
                      build_name="central_n2_k1",
                      build_args=VERILATOR_ARGS, testcase="central_broadcast_merge_order",
                      extra_env={"CENTRAL_N": 2, "CENTRAL_K": 1, "CENTRAL_SIZES": "40,30,20,10",
                                 "CENTRAL_SEED": 1, "CENTRAL_INPUTS": 2,
                                 "CENTRAL_P_VALID": 1.0, "CENTRAL_P_READY": 1.0,
                                 "CENTRAL_BREAK": 1})


@pytest.mark.sim
def test_central_skip_testbench_can_fail():
    """With the skip table loaded, expecting every column at every PE must fail."""
    with pytest.raises(SimulationFailed):
        _run("n4_k4_skip", *CASES["n4_k4_skip"], testcase="central_broadcast_merge_order",
             env={"CENTRAL_BREAK_SKIP": 1})


def test_input_lanes_config_and_packing():
    """``input_lanes`` is validated; one ``i_input`` word carries K values, lane 0 lowest; the
    driver puts ``last`` on the final word and fills its unused lanes."""
    from gateware.config import input_layout
    from tb.accelerator.driver import pack_input_words
    from tb.pe.layouts import unpack_fields
    for bad in (0, 17):
        with pytest.raises(ValueError, match="input_lanes"):
            AcceleratorConfig(input_lanes=bad)
    cfg = AcceleratorConfig(input_lanes=4)
    layout = input_layout(cfg)
    assert layout.size == 4 * cfg.act_bits + 1
    words = [unpack_fields(layout, w) for w in pack_input_words(cfg, [1, 2, 3, 4, 5], fill=9)]
    assert [w["value"] for w in words] == [0x04030201, 0x09090905]
    assert [w["last"] for w in words] == [0, 1]
    one = AcceleratorConfig(input_lanes=1)          # K = 1: the former {value, last} payload
    assert input_layout(one).size == one.act_bits + 1
    assert pack_input_words(one, [7, 0]) == [7, 1 << 8]
