"""A small stand-in accelerator with the ports of docs/ARCHITECTURE.md section 5.

It lets the UART/protocol path be tested without the real PE array, with a result that depends
on every loaded word and every input value so a lost or reordered byte shows up:

- ``W[a]`` (signed 16-bit, a = 0..15) is written by loads to ``mem 0``; word 0 of ``mem N+4``
  (layer 0 ``in_features``) is snooped like the real accelerator's descriptor.
- For the input vector ``x``: ``logit[k] = (W[k mod 16] << 16) + sum(x) + (h ^ k)`` (int32
  wrap-around) where ``h`` is a position-sensitive hash (``h = rotl32(h, 1) ^ x[j]`` over the
  inputs in order, from 0); ``n_out = W[15] & 0xFF`` logits if non-zero, else 10. (Cheap enough
  to synthesise: ``hw.build --mock-accelerator`` measures the UART/protocol path.)
- Input words carry ``input_lanes`` values (one lane is taken per clock; lanes past
  ``in_features - 1`` are ignored).
- ``o_error`` bit 0: ``W[0] == 0x7FFF``; bit 1 (sticky): ``last`` was not on the word of input
  ``in_features - 1`` or came too early; ``W[1] == 0x7FFF`` makes it never answer (hang).
- ``o_cycles``: clocks from the first offered input word to the last logit of the previous
  inference; ``o_argmax``: index of its largest logit (lowest on ties).
"""
from amaranth import Module, Signal, Array, Mux, signed
from amaranth.lib import wiring

from gateware.config import accelerator_ports

__all__ = ["MockAccelerator", "mock_logits"]


def mock_logits(weights, x):
    """Reference of :class:`MockAccelerator`: ``weights`` 16 signed words, ``x`` the inputs."""
    n_out = (weights[15] & 0xFF) or 10
    sx = sum(int(v) for v in x)
    h = 0
    for v in x:
        h = (((h << 1) | (h >> 31)) & 0xFFFFFFFF) ^ int(v)
    out = []
    for k in range(n_out):
        v = ((weights[k % 16] << 16) + sx + (h ^ k)) & 0xFFFFFFFF
        out.append(v - (1 << 32) if v >> 31 else v)
    return out


class MockAccelerator(wiring.Component):
    """See the module docstring. ``config`` is an :class:`gateware.config.AcceleratorConfig`."""

    def __init__(self, config):
        self.config = config
        super().__init__(accelerator_ports(config, error_shape=2))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        w = Array(Signal(signed(16), name=f"w{i}") for i in range(16))
        in_features = Signal(16)
        sx = Signal(32)
        h = Signal(32)
        j = Signal(16)                      # index of the input in lane ``lane``
        K = cfg.input_lanes
        lane = Signal(range(K))
        k = Signal(8)
        counter = Signal(32)
        counting = Signal()
        bad_last = Signal()
        n_out = Signal(8)
        best = Signal(signed(32))
        m.d.comb += n_out.eq(Mux(w[15][:8] != 0, w[15][:8], 10))

        with m.If(counting):
            m.d.sync += counter.eq(counter + 1)
        m.d.comb += self.o_error.eq((w[0] == 0x7FFF) | (bad_last << 1))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_load.ready.eq(1)
                with m.If(self.i_load.valid):
                    ld = self.i_load.payload
                    with m.If((ld.mem == 0) & (ld.addr < 16)):
                        m.d.sync += w[ld.addr[:4]].eq(ld.data)
                    with m.If((ld.mem == cfg.mem_layers) & (ld.addr == 0)):
                        m.d.sync += in_features.eq(ld.data)
                with m.If(self.i_input.valid):
                    m.d.sync += [sx.eq(0), h.eq(0), j.eq(0), lane.eq(0), counting.eq(1),
                                 counter.eq(1)]
                    m.next = "IN"
            with m.State("IN"):
                # One lane per clock; the word is taken after its last lane or after the final
                # input (lanes past in_features - 1 are ignored).
                m.d.comb += self.o_busy.eq(1)
                with m.If(self.i_input.valid):
                    v = self.i_input.payload.value[lane]
                    final = j == in_features - 1
                    with m.If(j < in_features):
                        m.d.sync += [sx.eq(sx + v), h.eq(h.rotate_left(1) ^ v)]
                    m.d.sync += [j.eq(j + 1), lane.eq(lane + 1)]
                    with m.If((lane == K - 1) | final):
                        m.d.comb += self.i_input.ready.eq(1)
                        m.d.sync += lane.eq(0)
                        with m.If(self.i_input.payload.last):
                            m.d.sync += bad_last.eq(bad_last | ~final)
                            m.next = "OUT"
                        with m.Elif(final | (j >= in_features)):
                            m.d.sync += bad_last.eq(1)
                m.d.sync += k.eq(0)
            with m.State("OUT"):
                m.d.comb += self.o_busy.eq(1)
                with m.If(w[1] != 0x7FFF):
                    m.d.comb += [
                        self.o_logit.valid.eq(1),
                        self.o_logit.payload.index.eq(k),
                        self.o_logit.payload.value.eq(
                            (w[k[:4]].as_unsigned() << 16) + sx + (h ^ k)),
                        self.o_logit.payload.last.eq(k == n_out - 1),
                    ]
                with m.If(self.o_logit.valid & self.o_logit.ready):
                    m.d.sync += k.eq(k + 1)
                    value = self.o_logit.payload.value.as_signed()
                    with m.If((k == 0) | (value > best)):
                        m.d.sync += [best.eq(value), self.o_argmax.eq(k)]
                    with m.If(k == n_out - 1):
                        m.d.sync += [counting.eq(0), self.o_cycles.eq(counter)]
                        m.next = "IDLE"
        return m
