"""Run :mod:`tb.accelerator.test_accelerator` for a case: the helper lives with the flow tools
(``hw.verilator``, used by ``hw.bench``); re-exported here for the testbenches."""
from hw.verilator import VERILATOR_ARGS, build_name, run_case

__all__ = ["run_case", "build_name", "VERILATOR_ARGS"]
