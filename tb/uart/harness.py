"""UART test harness: one transmitter/receiver pair per clock divider in a single module.

Ports per divider ``d`` (prefix ``d{d}_``): ``i_data`` (TX byte stream), ``o_tx`` (TX line),
``i_rx`` (external line), ``i_ext`` (1: the receiver listens to ``i_rx``, 0: to its own
transmitter), ``o_data`` (RX byte stream), ``o_frame_error``, ``o_overrun``.
"""
from amaranth import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gateware.uart import UARTRx, UARTTx

__all__ = ["UARTHarness"]


class UARTHarness(wiring.Component):
    def __init__(self, divisors):
        self.divisors = list(divisors)
        ports = {}
        for d in self.divisors:
            ports.update({
                f"d{d}_i_data": In(stream.Signature(8)),
                f"d{d}_o_tx": Out(1, init=1),
                f"d{d}_i_rx": In(1, init=1),
                f"d{d}_i_ext": In(1),
                f"d{d}_o_data": Out(stream.Signature(8)),
                f"d{d}_o_frame_error": Out(1),
                f"d{d}_o_overrun": Out(1),
            })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for d in self.divisors:
            p = lambda name: getattr(self, f"d{d}_{name}")  # noqa: E731
            m.submodules[f"tx{d}"] = tx = UARTTx(d)
            m.submodules[f"rx{d}"] = rx = UARTRx(d)
            wiring.connect(m, wiring.flipped(p("i_data")), tx.i_data)
            wiring.connect(m, rx.o_data, wiring.flipped(p("o_data")))
            m.d.comb += [
                p("o_tx").eq(tx.o_tx),
                rx.i_rx.eq(Mux(p("i_ext"), p("i_rx"), tx.o_tx)),
                p("o_frame_error").eq(rx.o_frame_error),
                p("o_overrun").eq(rx.o_overrun),
            ]
        return m
