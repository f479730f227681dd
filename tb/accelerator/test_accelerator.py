"""cocotb testbench of gateware.accelerator.Accelerator against the golden model, every logit bit.

Parameters (:func:`tb.bench.params`):

``case``
    A case of :mod:`tb.accelerator.vectors` (config, load words, inputs, golden logits).
``p_valid``, ``p_ready``, ``seed``
    Stall injection of :class:`tb.accelerator.driver.AcceleratorDriver` (1.0 = none).
``errors``
    Enables ``accelerator_flags_errors``.

The bench result is the per-inference results (cycles, prediction).

The model is loaded once; the inputs run back to back. For every input: all logits, their
indices, ``last``, ``o_argmax`` equal the golden model and ``o_error`` stays 0.
"""
import cocotb

from tb.accelerator.driver import AcceleratorDriver
from tb.accelerator.vectors import config_from_case
from tb.bench import params, save_result


@cocotb.test()
async def accelerator_matches_golden(dut):
    """Load the images, run every input and compare with sw.golden bit for bit."""
    p = params()
    case = p["case"]
    cfg = config_from_case(case)
    drv = AcceleratorDriver(dut, cfg, p_valid=p.get("p_valid", 1.0), p_ready=p.get("p_ready", 1.0),
                            seed=p.get("seed", 1))
    await drv.reset()
    load_cycles = await drv.load(case["loads"])
    assert int(dut.o_error.value) == 0, f"o_error {int(dut.o_error.value):#x} after loading"
    mask = (1 << cfg.acc_bits) - 1
    stats = []
    for n, (x, exp) in enumerate(zip(case["inputs"], case["logits"])):
        res = await drv.infer(x, n_logits=len(exp))
        if res.error:
            raise AssertionError(f"input {n}: o_error = {res.error:#x}")
        if res.indices != list(range(len(exp))):
            raise AssertionError(f"input {n}: logit indices {res.indices}")
        got = [v & mask for v in res.logits]
        want = [v & mask for v in exp]
        if got != want:
            bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
            raise AssertionError(f"input {n}: logits {res.logits} expected {exp} (differ at {bad})")
        if res.argmax != case["argmax"][n]:
            raise AssertionError(f"input {n}: argmax {res.argmax} expected {case['argmax'][n]}")
        stats.append({"cycles": res.cycles, "wall_cycles": res.wall_cycles,
                      "prediction": res.argmax})
    save_result({"load_cycles": load_cycles, "inferences": stats})


@cocotb.test(skip=not params().get("errors"))
async def accelerator_flags_errors(dut):
    """A short input vector sets ``o_error.input`` (the inference still completes), a load word
    for an unknown memory id sets ``o_error.load``; loads are refused while busy."""
    from gateware.accelerator import error_layout
    case = params()["case"]
    cfg = config_from_case(case)
    bit = {name: field.offset for name, field in error_layout}
    drv = AcceleratorDriver(dut, cfg)
    await drv.reset()
    await drv.load(case["loads"])
    assert int(dut.o_error.value) == 0
    short = case["inputs"][1][:-cfg.input_lanes]       # one input word short
    res = await drv.infer(short, n_logits=len(case["logits"][1]))
    assert res.error == 1 << bit["input"], f"o_error {res.error:#x} after a short input"
    assert len(res.logits) == len(case["logits"][1])
    await drv.load([(cfg.n_mem_ids, 0, 1)])
    err = int(dut.o_error.value)
    assert err == (1 << bit["input"]) | (1 << bit["load"]), f"o_error {err:#x} after a bad load"
