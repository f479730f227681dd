"""The central unit's lane filter: layer 0's dense input words to non-zero broadcast words
(docs/ARCHITECTURE.md section 5; part of :class:`gateware.central.CentralUnit`)."""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .config import broadcast_layout, input_layout

__all__ = ["LaneFilter"]


class LaneFilter(wiring.Component):
    """Zero filter over ``K = input_lanes`` lanes per input word.

    Lane ``j`` of word ``k`` is column ``k*K + j``; per cycle the lowest lane still to push (a
    priority encoder over K lanes) is handed over (with ``bcast_width == 2`` and K > 1 the next
    one too); the word is accepted in the cycle its last non-zero lane is handed over, or at
    once when it has none. Lanes past column ``in_features - 1`` (on the final word) are
    ignored.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``input_lanes``, ``bcast_width`` and ``act_bits``.
    in_features_bits : int
        Width of ``i_in_features``.

    Attributes
    ----------
    i_input : In(stream.Signature(input_layout(config)))
        Dense input words (unsigned ``act_bits`` lanes), ``last`` on the word holding input
        ``in_features - 1``. Ready only while ``i_active``, in the cycle the word's last
        non-zero lane is handed over (at once for a word without one).
    i_in_features : In(in_features_bits)
        The layer's input count; stable from ``i_start`` on.
    i_start : In(1)
        Layer 0 starts: the column count restarts at 0.
    i_active : In(1)
        The broadcast is in its input phase (nothing is handed over or accepted otherwise).
    i_can_take : In(1)
        The broadcast side takes words this cycle.
    o_take : Out(1).array(bcast_width)
        Word ``k`` (``o_take_data[k]``) is handed over this cycle (word 1 only with word 0);
        only with ``i_can_take``.
    o_take_data : Out(broadcast_layout(config)).array(bcast_width)
        ``(column, value)`` of the handed-over lanes; zero while not ``i_active``.
    o_in_take : Out(1)
        The offered input word is consumed from this cycle (a lane handed over or the word
        accepted).
    o_last : Out(1)
        The final input word (``last`` or column ``in_features - 1``) is accepted this cycle.
    o_error : Out(1)
        Sticky: ``last`` was not on the word of input ``in_features - 1`` (the input ends at
        whichever comes first).
    """

    def __init__(self, config, in_features_bits):
        self.cfg = config
        w = config.bcast_width
        self.in_features_bits = in_features_bits
        super().__init__({
            "i_input": In(stream.Signature(input_layout(config))),
            "i_in_features": In(in_features_bits),
            "i_start": In(1),
            "i_active": In(1),
            "i_can_take": In(1),
            "o_take": Out(1).array(w),
            "o_take_data": Out(broadcast_layout(config)).array(w),
            "o_in_take": Out(1),
            "o_last": Out(1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        A, W, K = cfg.act_bits, cfg.bcast_width, cfg.input_lanes
        inp = self.i_input.payload
        in_features = self.i_in_features
        IFW = self.in_features_bits
        can_take = self.i_can_take
        take = self.o_take[0]
        err_input = self.o_error
        at_end = Signal()                        # the word holds column in_features - 1
        lane_ok = Signal(K)                      # lane j is an input (column < in_features)
        # K > 1: ``at_end`` and the final word's lane mask are registers (set at the layer start
        # from the stable ``i_layer``, at_end again with every word): no carry chain of
        # in_features - 1 in front of the lane logic and ``i_input.ready``.
        at_end_next = Signal()                   # at_end for the word after this one
        at_end_first = Signal()                  # at_end for word 0
        last_mask = Signal(K, init=(1 << K) - 1)  # lanes of the final word that are inputs
        if K == 1:
            # as with one value per word before: at_end only steers the state
            wcol = Signal(IFW)
            m.d.comb += [at_end.eq(wcol + 1 == in_features), lane_ok.eq(1)]
            word_step = wcol.eq(wcol + 1)
            word_reset = wcol.eq(0)
        elif K & (K - 1) == 0:
            # word index ``wcol``: column = Cat(lane, wcol); the final word and its last lane
            # are the high and low bits of in_features - 1
            L = K.bit_length() - 1
            wcol = Signal(max(1, IFW - L))
            last_col = Signal(IFW)
            m.d.comb += [last_col.eq(in_features - 1),
                         at_end_first.eq(last_col[L:] == 0),
                         at_end_next.eq(wcol + 1 == last_col[L:]),
                         lane_ok.eq(Mux(at_end, last_mask, (1 << K) - 1))]
            first_mask = Cat(last_col[:L] >= j for j in range(K))
            word_step = wcol.eq(wcol + 1)
            word_reset = wcol.eq(0)
        else:
            col = Signal(IFW + 1)                # column of lane 0 (a multiple of K)
            m.d.comb += [at_end_first.eq(K >= in_features),
                         at_end_next.eq(col + 2 * K >= in_features),
                         lane_ok.eq(Mux(at_end, last_mask, (1 << K) - 1))]
            first_mask = Cat((in_features - 1) % K >= j for j in range(K))
            word_step = col.eq(col + K)
            word_reset = col.eq(0)
        at_end_regs = [] if K == 1 else [at_end.eq(at_end_first), last_mask.eq(first_mask)]
        pend = Signal(K, init=(1 << K) - 1)
        todo = Signal(K)                         # lanes to push: non-zero, inputs, not pushed
        m.d.comb += todo.eq(Cat((inp.value[j] != 0) & lane_ok[j] & pend[j] for j in range(K)))
        # Per cycle the lowest lane still to push is taken (and, with W = 2, the next one too).
        lanes2 = W == 2 and K > 1
        picks = []                               # (one-hot lane, column, value) per taken word
        left = todo
        for k in range(2 if lanes2 else 1):
            one = Signal(K, name=f"lane_onehot{k}")     # lowest lane of ``left`` (or 0)
            nxt = Signal(K, name=f"lanes_left{k}")      # ``left`` without it
            m.d.comb += [one.eq(left & -left), nxt.eq(left & ~one)]
            lane = Signal(range(K), name=f"lane{k}")
            m.d.comb += lane.eq(0)
            for j in range(1, K):
                with m.If(one[j]):
                    m.d.comb += lane.eq(j)
            value = Signal(A, name=f"lane_value{k}")    # AND-OR of the one-hot lane
            m.d.comb += value.eq(0)
            for j in range(K):
                with m.If(one[j]):
                    m.d.comb += value.eq(inp.value[j])
            if K == 1:
                lane_col = wcol
            elif K & (K - 1) == 0:
                lane_col = Cat(lane, wcol)
            else:
                lane_col = col + lane
            picks.append((one, lane_col, value))
            left = nxt
        rest = left                              # lanes still to push after this cycle
        with m.If(self.i_active):
            m.d.comb += [
                self.i_input.ready.eq((rest == 0) & ((todo == 0) | can_take)),
                take.eq(self.i_input.valid & (todo != 0) & can_take),
                self.o_in_take.eq(self.i_input.valid & (self.i_input.ready | take)),
            ]
            for k, (one, lane_col, value) in enumerate(picks):
                m.d.comb += [self.o_take_data[k].col.eq(lane_col),
                             self.o_take_data[k].value.eq(value)]
                if k:
                    m.d.comb += self.o_take[k].eq(take & (one != 0))
            with m.If(self.i_input.valid & self.i_input.ready):
                m.d.sync += [word_step, pend.eq(pend.init)]
                if K > 1:
                    m.d.sync += at_end.eq(at_end_next)
                with m.If(inp.last | at_end):
                    m.d.comb += self.o_last.eq(1)
                    with m.If(inp.last != at_end):
                        m.d.sync += err_input.eq(1)
            with m.Elif(take):
                m.d.sync += pend.eq(rest)

        with m.If(self.i_start):
            m.d.sync += [word_reset, *at_end_regs]
        return m
