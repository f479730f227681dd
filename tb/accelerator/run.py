"""Run :mod:`tb.accelerator.test_accelerator` for a case: the helper lives with the flow tools
(``hw.verilator``, used by ``hw.bench``); re-exported here for the testbenches."""
from hw.verilator import run_case

__all__ = ["run_case"]
