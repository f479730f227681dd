"""Harness for the checks of the shared stream drivers (:mod:`tb.stream`).

Ports: ``i_fifo`` -> a 4-deep FIFO -> ``o_fifo`` (a well-behaved DUT: words in order, valid held
until taken), ``i_wire`` -> ``o_wire`` combinationally (``o_wire`` breaks the stream rules
exactly as the bench drives ``i_wire``: the bench plays a faulty DUT through it). 16-bit words.
"""
from amaranth import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamHarness"]


class StreamHarness(wiring.Component):
    i_fifo: In(stream.Signature(16))
    o_fifo: Out(stream.Signature(16))
    i_wire: In(stream.Signature(16))
    o_wire: Out(stream.Signature(16))

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=16, depth=4)
        wiring.connect(m, wiring.flipped(self.i_fifo), buf.w_stream)
        wiring.connect(m, buf.r_stream, wiring.flipped(self.o_fifo))
        wiring.connect(m, wiring.flipped(self.i_wire), wiring.flipped(self.o_wire))
        return m
