"""Run a cocotb testbench on Verilator: the runner lives with the flow tools (``hw.verilator``,
used by ``hw.bench``); re-exported here for the testbenches."""
from hw.verilator import (DEFAULT_BUILD_ARGS, ROOT, SIM_DIR, SimulationFailed, build_model,
                          new_run_dir, run_bench, run_testbench, verilator_env)

__all__ = ["verilator_env", "run_testbench", "run_bench", "SimulationFailed", "ROOT",
           "DEFAULT_BUILD_ARGS", "SIM_DIR", "build_model", "new_run_dir"]
