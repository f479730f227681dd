"""Smoke testbench: checks that the cocotb/Verilator tool chain can fail and pass."""
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from tb.bench import params


@cocotb.test()
async def add_registered(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    bias = params().get("bias", 0)
    for a, b in [(3, 250), (255, 255), (0, 0)]:
        dut.a.value = a
        dut.b.value = b
        await ClockCycles(dut.clk, 2)
        assert int(dut.o.value) == a + b + bias, f"{a}+{b} gave {int(dut.o.value)}"
