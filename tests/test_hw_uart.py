"""UART: divider computation (pure Python) and the cocotb loopback tests on Verilator."""
import pytest

from gateware.uart import UARTError, UARTRx, UARTTx, uart_divisor
from tb.runner import run_testbench
from tb.uart.harness import UARTHarness

# 4: 3 Mbaud at 12 MHz and 6 Mbaud at 24 MHz (the FT2232H's 12 MHz / 2); 8: the iCEBreaker's
# 3 Mbaud at 24 MHz. The receiver's tolerance test runs at each.
DIVISORS = (4, 5, 7, 8, 16)


def test_divisor_default():
    assert uart_divisor(12_000_000, 3_000_000) == 4
    assert uart_divisor(24_000_000, 115200) == 208
    assert uart_divisor(24_000_000, 3_000_000) == 8
    assert uart_divisor(24_000_000, 6_000_000) == 4


def test_12_mbaud_needs_48_mhz():
    """The receiver votes three samples around the bit centre: 4 clocks per bit at least, so
    12 Mbaud (the FT2232H's fastest rate) needs a 48 MHz clock, which the iCEBreaker's design
    (fmax ~26 MHz) does not reach."""
    with pytest.raises(UARTError, match="at least 4 clocks per bit"):
        uart_divisor(24_000_000, 12_000_000)
    assert uart_divisor(48_000_000, 12_000_000) == 4


@pytest.mark.parametrize("clk,baud", [(12_000_000, 4_000_000), (12_000_000, 2_600_000),
                                      (0, 9600)])
def test_divisor_rejects(clk, baud):
    with pytest.raises(UARTError):
        uart_divisor(clk, baud)


def test_component_rejects_small_divisor():
    with pytest.raises(UARTError, match="4..65535"):
        UARTTx(3)
    with pytest.raises(UARTError):
        UARTRx(2.5)


@pytest.mark.sim
def test_uart_cocotb():
    run_testbench(UARTHarness(DIVISORS), toplevel="uart_harness",
                  test_module="tb.uart.test_uart", build_name="uart",
                  extra_env={"UART_DIVISORS": ",".join(map(str, DIVISORS))})
