"""Run :mod:`tb.accelerator.test_accelerator` for a case (used by the tests and hw.bench)."""
from gateware.accelerator import Accelerator
from tb.accelerator.vectors import config_from_case
from tb.runner import run_bench

__all__ = ["run_case"]


def run_case(name, case, *, p_valid=1.0, p_ready=1.0, seed=1, testcase=None, errors=False):
    """Simulate ``case`` (dict of :mod:`tb.accelerator.vectors`); returns the stats dict
    ``{"load_cycles", "inferences": [{"cycles", "wall_cycles", "prediction"}...]}`` (``None``
    when ``testcase`` names another cocotb test than the golden comparison). ``errors`` enables
    the cocotb test ``accelerator_flags_errors``.

    Raises
    ------
    tb.runner.SimulationFailed
        if any logit, index, argmax or error flag differs from the golden model.
    """
    return run_bench(Accelerator(config_from_case(case)), toplevel="accelerator",
                     test_module="tb.accelerator.test_accelerator", name=f"accel_{name}",
                     testcase=testcase,
                     params={"case": case, "p_valid": p_valid, "p_ready": p_ready, "seed": seed,
                             "errors": errors})
