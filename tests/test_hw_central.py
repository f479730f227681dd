"""CentralUnit on Verilator (cocotb) with behavioural PEs: broadcast, merge, barrier, logits."""
import pytest

from gateware.central import CentralUnit
from gateware.config import AcceleratorConfig
from tb.runner import SimulationFailed, run_bench

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
    # above 16 PEs a skip table entry is two load words
    "n20_k4_skip2": (20, 4, "60,45,10", 18, 0.7, 0.7, True, 2),
    # the two cases above with the skip table's read registered (the ULX3S profile): one more
    # cycle of latency
    "n4_k4_skip2_reg": (4, 4, "45,33,12", 16, 0.6, 0.5, True, 2, True),
    "n4_skip2_reg_no_stalls": (4, 4, "64,48,10", 13, 1.0, 1.0, True, 2, True),
}


def _run(name, n, k, sizes, seed, p_valid, p_ready, skip=False, width=1, reg=False,
         testcase=None, inputs=5, **checks):
    """Run the bench (all its cocotb tests unless ``testcase``) on a central unit for ``n`` PEs,
    ``k`` input lanes, with the column skip table when ``skip`` (``width`` words per cycle; its
    read registered when ``reg``); ``checks``: ``break_order`` / ``break_skip`` expect wrong
    behaviour (the bench must fail)."""
    cfg = AcceleratorConfig(n_pes=n, input_lanes=k, column_skip=skip, broadcast_width=width,
                            colskip_register=reg)
    run_bench(CentralUnit(cfg), toplevel="central", test_module="tb.central.test_central",
              name=f"central_{name}", testcase=testcase,
              params={"n": n, "k": k, "sizes": [int(v) for v in sizes.split(",")],
                      "seed": seed, "inputs": inputs, "p_valid": p_valid, "p_ready": p_ready,
                      "skip": skip, "width": width, "reg": reg, **checks})


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CASES))
def test_central(name):
    _run(name, *CASES[name])


@pytest.mark.sim
def test_central_testbench_can_fail():
    """Expecting the merged broadcast in PE emission order instead of sorted must fail."""
    with pytest.raises(SimulationFailed):
        _run("broken_order", 2, 1, "40,30,20,10", 1, 1.0, 1.0, inputs=2,
             testcase="central_broadcast_merge_order", break_order=True)


@pytest.mark.sim
def test_central_skip_testbench_can_fail():
    """With the skip table loaded, expecting every column at every PE must fail."""
    with pytest.raises(SimulationFailed):
        _run("n4_k4_skip_broken", *CASES["n4_k4_skip"],
             testcase="central_broadcast_merge_order", break_skip=True)


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
