"""The protocol engine's input buffer: an input vector is written value by value while its frame
arrives and streamed into the accelerator only once the frame has been checked."""
from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from gateware.config import AcceleratorConfig, input_layout

__all__ = ["InputBuffer"]


class InputBuffer(wiring.Component):
    """``max_features`` activation values in words of ``input_lanes`` values (one EBR-backed
    memory written by byte lane), replayed as the accelerator's input stream.

    Parameters
    ----------
    config : AcceleratorConfig
        ``input_lanes`` (K, a power of two) values per word, ``act_bits`` (A) per value,
        ``max_features`` values.

    Attributes
    ----------
    i_wen : In(1)
        Write ``i_wvalue`` at value index ``i_windex`` this clock.
    i_windex : In(range(max_features + 1))
        Value index: lane ``i_windex mod K`` of word ``i_windex / K``.
    i_wvalue : In(A)
        The value.
    i_length : In(range(max_features + 1))
        Values per vector (layer 0's ``in_features``), >= 1, held while ``o_busy``.
    i_start : In(1)
        Stream the vector (values ``0 .. i_length - 1``) into ``o_input`` from the next clock.
        Ignored while ``o_busy``.
    o_input : Out(stream.Signature(input_layout(config)))
        K values per word, ``last`` on the word that holds value ``i_length - 1``; the final
        word's lanes past it are whatever the buffer held.
    o_busy : Out(1)
        Streaming; low again the clock after the ``last`` word was taken.
    """

    def __init__(self, config=AcceleratorConfig()):
        self.config = config
        fw = config.max_features.bit_length()
        super().__init__({
            "i_wen": In(1),
            "i_windex": In(fw),
            "i_wvalue": In(config.act_bits),
            "i_length": In(fw),
            "i_start": In(1),
            "o_input": Out(stream.Signature(input_layout(config))),
            "o_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        K = cfg.input_lanes
        L = K.bit_length() - 1              # log2(K)
        A = cfg.act_bits
        fw = len(self.i_length)
        # ``no_rw_check``: the buffer is never read while it is written (a frame is written
        # completely, then streamed), so yosys need not emulate read-during-write (it would add
        # a bypass register and multiplexer around the EBR).
        m.submodules.mem = mem = Memory(shape=K * A, depth=-(-cfg.max_features // K), init=[],
                                        attrs={"no_rw_check": 1})
        wr = mem.write_port(granularity=A)
        rd = mem.read_port()
        m.d.comb += [
            wr.addr.eq(self.i_windex[L:]),
            wr.en.eq(Mux(self.i_wen, Cat(self.i_windex[:L] == j for j in range(K)), 0)),
            wr.data.eq(Cat(*[self.i_wvalue] * K)),
        ]

        # Streaming: ``word`` is the next word to read; the memory's synchronous read feeds an
        # output register (``o_input.valid``) that advances when it is empty or taken.
        word = Signal(fw)
        n_words = Signal(fw)                # ceil(i_length / K)
        at_end = Signal()                   # every word has been read
        last = Signal()
        out = self.o_input
        m.d.comb += [rd.addr.eq(word), out.payload.value.eq(rd.data), out.payload.last.eq(last),
                     n_words.eq((self.i_length + (K - 1)) >> L)]
        with m.If(~self.o_busy):
            with m.If(self.i_start):
                m.d.sync += [self.o_busy.eq(1), word.eq(0), at_end.eq(0), out.valid.eq(0)]
        with m.Else():
            advance = ~out.valid | out.ready
            m.d.comb += rd.en.eq(advance)
            with m.If(advance):
                with m.If(at_end):
                    m.d.sync += out.valid.eq(0)
                with m.Else():
                    m.d.sync += [out.valid.eq(1), last.eq(word + 1 == n_words),
                                 word.eq(word + 1), at_end.eq(word + 1 == n_words)]
            with m.If(out.valid & out.ready & last):
                m.d.sync += [out.valid.eq(0), self.o_busy.eq(0)]
        return m
