"""The simulation tool chain runs, and a failing cocotb test fails the pytest test."""
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tb.runner import SimulationFailed, run_bench


class _Adder(wiring.Component):
    a: In(8)
    b: In(8)
    o: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a + self.b)
        return m


@pytest.mark.sim
def test_cocotb_passes():
    run_bench(_Adder(), toplevel="adder", test_module="tb.smoke.test_smoke", name="smoke")


@pytest.mark.sim
def test_cocotb_failure_is_reported():
    with pytest.raises(SimulationFailed):
        run_bench(_Adder(), toplevel="adder", test_module="tb.smoke.test_smoke", name="smoke",
                  params={"bias": 1})
