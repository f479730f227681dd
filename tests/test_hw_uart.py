"""UART: divider computation (pure Python) and the cocotb loopback tests on Verilator."""
import pytest

from gateware.uart import UARTError, UARTRx, UARTTx, uart_divisor
from tb.runner import run_bench
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
    run_bench(UARTHarness(DIVISORS), toplevel="uart_harness", test_module="tb.uart.test_uart",
              name="uart", params={"divisors": list(DIVISORS)})


@pytest.mark.parametrize("depth", [2, 8])
def test_byte_fifo_keeps_order_and_fills_to_depth(depth):
    import random
    from collections import deque
    from amaranth.sim import Simulator
    from gateware.uart import ByteFIFO
    dut = ByteFIFO(depth)
    rng = random.Random(depth)
    model, out, most = deque(), [], [0]

    async def bench(ctx):
        n = 0
        for _ in range(3000):
            push = rng.random() < 0.5
            pop = rng.random() < (0.2 if _ < 1500 else 0.8)      # fill it, then drain it
            ctx.set(dut.i_data.valid, push)
            ctx.set(dut.i_data.payload, n & 0xFF)
            ctx.set(dut.o_data.ready, pop)
            if push and ctx.get(dut.i_data.ready):
                model.append(n & 0xFF)
                n += 1
            if pop and ctx.get(dut.o_data.valid):
                out.append(ctx.get(dut.o_data.payload))
            most[0] = max(most[0], n - len(out))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert out == list(model)[:len(out)] and len(out) > 500
    # the memory and the output register: depth + 1 bytes, never more
    assert most[0] == depth + 1


def test_byte_fifo_depth_checked():
    import warnings
    from gateware.uart import ByteFIFO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="power of two"):
            ByteFIFO(100)
