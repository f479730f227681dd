"""The PE data memory's port: its four clients on one address bus (part of
:class:`gateware.pe.ProcessingElement`)."""
import functools
import operator

from amaranth import Module, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DataPortArbiter"]


class DataPortArbiter(wiring.Component):
    """Address and read strobe of the data memory's port from its clients.

    The clients are mutually exclusive by construction (load writes: PE idle; header reads:
    the header phase; stream word reads: the column engine's run phase; bias reads: the
    requantization engine, only in cycles without a header or word read), so no client waits
    and the address is an OR of the gated client addresses (no priority multiplexer).

    Parameters
    ----------
    addr_bits : int
        Width of a data memory address.

    Attributes
    ----------
    i_load_we, i_load_addr : In(1), In(addr_bits)
        Load write (the write strobe goes to the memory directly).
    i_header_re, i_header_addr : In(1), In(addr_bits)
        Layer header read.
    i_word_re, i_word_addr : In(1), In(addr_bits)
        Stream word read.
    i_bias_re, i_bias_addr : In(1), In(addr_bits)
        Bias read.
    o_addr : Out(addr_bits)
        The memory address: the selected client's (0 with none).
    o_re : Out(1)
        A client reads this cycle.
    """

    def __init__(self, addr_bits):
        super().__init__({
            "i_load_we": In(1), "i_load_addr": In(addr_bits),
            "i_header_re": In(1), "i_header_addr": In(addr_bits),
            "i_word_re": In(1), "i_word_addr": In(addr_bits),
            "i_bias_re": In(1), "i_bias_addr": In(addr_bits),
            "o_addr": Out(addr_bits),
            "o_re": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        terms = [(self.i_load_we, self.i_load_addr), (self.i_header_re, self.i_header_addr),
                 (self.i_word_re, self.i_word_addr), (self.i_bias_re, self.i_bias_addr)]
        gated = [Mux(sel, addr, 0) for sel, addr in terms]
        m.d.comb += [self.o_re.eq(Cat(sel for sel, _ in terms[1:]).any()),
                     self.o_addr.eq(functools.reduce(operator.or_, gated))]
        return m
