"""The image store of convolutional networks: layer 0's dense input into the feature-map buffer
(docs/ARCHITECTURE.md section 5; part of :class:`gateware.central.CentralUnit` with
``config.conv``)."""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from contract.memmap import CONV_DIM_BITS

from .config import input_layout
from .conv_fmap import fmap_addr_bits

__all__ = ["ImageStore"]


class ImageStore(wiring.Component):
    """Writes a ``C x H x W`` input image, one value per cycle, into the feature-map buffer.

    Value ``i = (c * H + y) * W + x`` of the dense input (``K = input_lanes`` per word, lane 0
    first) goes to address ``i`` of *every* bank (:class:`gateware.conv_fmap.
    FeatureMapBuffer`; the same cycle, so replication costs nothing), zeros included (the
    buffer holds the previous image): the patch reader then takes N neighbours of a kernel row
    per cycle, one from each bank. The count of stored values (``o_stored``) lets layer 0's
    patch reads follow the store (:class:`gateware.conv_patch.PatchGenerator`), so the image
    is read while it arrives. The buffer needs ``C * H * W`` entries per bank for it.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``input_lanes``, ``act_bits``, ``fmap_depth`` and ``max_features``.

    Attributes
    ----------
    i_input : In(stream.Signature(input_layout(config)))
        The dense image, ``last`` on the word holding value ``C * H * W - 1`` (its lanes past
        it are ignored). A word is accepted in the cycle its last value is written (K cycles,
        fewer for the final word).
    i_start : In(1)
        Layer 0's first pass begins: the store restarts with the geometry on ``i_channels``,
        ``i_height``, ``i_width`` (sampled).
    i_channels, i_height, i_width : In(max_features bits), In(CONV_DIM_BITS), In(CONV_DIM_BITS)
    o_in_take : Out(1)
        A value of the offered word is stored this cycle (the first one of an inference starts
        the cycle counter).
    o_we : Out(N)
        Bit ``p``: write ``o_wdata`` at ``o_waddr`` into bank ``p`` (of the half layer 0
        reads; all banks at once).
    o_waddr : Out(fmap_addr_bits)
    o_wdata : Out(act_bits)
    o_stored : Out(16)
        Values stored since the start (registers).
    o_done : Out(1)
        The whole image is stored (until the next ``i_start``).
    o_error : Out(1)
        Sticky: ``last`` was not on the word of the final value (the image ends at whichever
        comes first; values past it are not stored).
    """

    def __init__(self, config):
        self.cfg = config
        n, a = config.n_pes, config.act_bits
        G = CONV_DIM_BITS
        super().__init__({
            "i_input": In(stream.Signature(input_layout(config))),
            "i_start": In(1),
            "i_channels": In(config.max_features.bit_length()),
            "i_height": In(G),
            "i_width": In(G),
            "o_in_take": Out(1),
            "o_we": Out(n),
            "o_waddr": Out(fmap_addr_bits(config)),
            "o_wdata": Out(a),
            "o_stored": Out(16),
            "o_done": Out(1, init=1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, K = cfg.n_pes, cfg.input_lanes
        inp = self.i_input.payload
        total = Signal(16)              # C * H * W
        lane = Signal(range(K))
        stored = self.o_stored
        done = self.o_done
        with m.If(self.i_start):
            m.d.sync += [total.eq(self.i_channels * self.i_height * self.i_width),
                         lane.eq(0), stored.eq(0), done.eq(0)]
        value = Signal(cfg.act_bits)
        m.d.comb += value.eq(inp.value[0])
        for j in range(1, K):
            with m.If(lane == j):
                m.d.comb += value.eq(inp.value[j])
        write = Signal()
        final = Signal()                # the value written is the image's last one
        m.d.comb += [
            write.eq(~done & self.i_input.valid),
            final.eq(stored + 1 == total),
            self.o_in_take.eq(write),
            self.o_waddr.eq(stored),
            self.o_wdata.eq(value),
            self.o_we.eq(Mux(write, (1 << N) - 1, 0)),
            # the word is taken with its last lane, or with the image's last value
            self.i_input.ready.eq(write & ((lane == K - 1) | final)),
        ]
        with m.If(write):
            m.d.sync += [stored.eq(stored + 1), lane.eq(Mux(lane == K - 1, 0, lane + 1))]
            with m.If(final | (inp.last & (lane == K - 1))):
                m.d.sync += [done.eq(1), lane.eq(0)]
            # ``last`` must be on the word of the final value
            with m.If(final & ~inp.last):
                m.d.sync += self.o_error.eq(1)
            with m.If(~final & inp.last & (lane == K - 1)):
                m.d.sync += self.o_error.eq(1)
        return m
