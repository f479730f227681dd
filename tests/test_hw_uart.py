"""UART: divider computation (pure Python) and the cocotb loopback tests on Verilator."""
import pytest

from gateware.uart import UARTError, UARTRx, UARTTx, uart_divisor
from tb.runner import run_bench
from tb.uart.harness import UARTHarness

DIVISORS = (4, 5, 7, 16)


def test_divisor_default():
    assert uart_divisor(12_000_000, 3_000_000) == 4
    assert uart_divisor(24_000_000, 115200) == 208


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
    run_bench(UARTHarness(DIVISORS), toplevel="uart_harness", test_module="tb.uart.test_uart",
              name="uart", params={"divisors": list(DIVISORS)})
