"""Reliability of the simulated board with the real accelerator (issue 12).

Recovery: after any abort (accelerator watchdog, RESET after an accelerator error, the reset
pin) the very next inference is bit-exact with sw.golden (tb/top/test_recovery.py), in the
default configuration and in the iCEBreaker's (the boards/icebreaker.py profile, simulated
memories).
"""
import pytest

from gateware.config import AcceleratorConfig

# (the default configuration's top is the UART-level protocol fuzz's too: one Verilator build)
CLOCK_HZ, DIVISOR, TIMEOUT, ACCEL_TIMEOUT = 12_000_000, 4, 2000, 3000


def board_config(n_pes=1):
    """The iCEBreaker build's accelerator settings with simulation memories."""
    from boards import get_board
    return AcceleratorConfig(n_pes=n_pes, **get_board("icebreaker").profile.config_fields())


CONFIGS = {"default": lambda: AcceleratorConfig(n_pes=1), "icebreaker": board_config}


@pytest.mark.sim
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_first_inference_after_abort_is_exact(config):
    from gateware.top import SimTop
    from tb.runner import run_bench
    top = SimTop(CONFIGS[config](), clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR,
                 timeout=TIMEOUT, accel_timeout=ACCEL_TIMEOUT)
    run_bench(top, toplevel="sim_top", test_module="tb.top.test_recovery",
              name=f"top_recovery_{config}",
              params={"clock_hz": CLOCK_HZ, "divisor": DIVISOR, "timeout": TIMEOUT,
                      "accel_timeout": ACCEL_TIMEOUT})
