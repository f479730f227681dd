"""Reliability of the simulated board with the real accelerator (issue 12).

Recovery: after any abort (accelerator watchdog, RESET after an accelerator error, the reset
pin) the very next inference is bit-exact with sw.golden (tb/top/test_recovery.py), in the
default configuration and in the iCEBreaker's (hw.build BOARD_* settings, simulated memories).
"""
import pytest

from gateware.config import AcceleratorConfig

# (the default configuration's top is the UART-level protocol fuzz's too: one Verilator build)
CLOCK_HZ, DIVISOR, TIMEOUT, ACCEL_TIMEOUT = 12_000_000, 4, 2000, 3000
VERILATOR_ARGS = ["--output-split", "0", "--output-split-cfuncs", "0"]


def board_config(n_pes=1):
    """The iCEBreaker build's accelerator settings with simulation memories."""
    from hw import build
    return AcceleratorConfig(n_pes=n_pes, fifo_depth=build.BOARD_FIFO_DEPTH,
                             input_lanes=build.BOARD_INPUT_LANES,
                             requant_overlap=build.BOARD_REQUANT_OVERLAP,
                             column_skip=build.BOARD_COLUMN_SKIP,
                             pointer_ports=build.BOARD_POINTER_PORTS,
                             stream_words=build.BOARD_STREAM_WORDS)


CONFIGS = {"default": lambda: AcceleratorConfig(n_pes=1), "icebreaker": board_config}


@pytest.mark.sim
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_first_inference_after_abort_is_exact(config):
    from gateware.top import SimTop
    from tb.runner import run_testbench
    top = SimTop(CONFIGS[config](), clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR,
                 timeout=TIMEOUT, accel_timeout=ACCEL_TIMEOUT)
    run_testbench(top, toplevel="sim_top", test_module="tb.top.test_recovery",
                  build_name="top_n1" if config == "default" else f"top_n1_{config}",
                  build_args=VERILATOR_ARGS,
                  extra_env={"REC_CLOCK_HZ": CLOCK_HZ, "REC_DIVISOR": DIVISOR,
                             "REC_TIMEOUT": TIMEOUT, "REC_ACCEL_TIMEOUT": ACCEL_TIMEOUT})
