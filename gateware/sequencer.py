"""Layer sequencer: layer descriptors, layer starts and the inference cycle counter.

The sequencer owns the ``layers`` memory (mem ``N+4``, 8 words per layer, docs/ARCHITECTURE.md
section 4). It keeps one *prefetched* descriptor: while layer ``L`` runs it reads the descriptor
of the layer that comes next (``L + 1``, or layer 0 of the next inference after the last layer),
so a layer starts one cycle after the previous layer's broadcast is complete (``i_bdone``:
every PE took its end token, or with the early start the token is in every PE FIFO; the PEs
requantize the previous layer while the next one runs) and an inference
starts one cycle after ``i_go``, except right after a load into the layers memory (6 extra
cycles for the first descriptor read).

A descriptor is the last one when its ``last`` flag is set or when it is descriptor
``max_layers - 1`` (then ``o_error`` is set: the model forgot the flag).

With conv support (``config.conv``) the descriptor's feature-map geometry is read too, and a
conv layer runs as one *pass* per output position ``(oy, ox)`` (raster order, ``OH x OW`` =
``(H - KH + 1) x (W - KW + 1)``): after a pass's ``i_bdone`` the same layer starts again
(``o_layer.pos_y``, ``pos_x`` advanced, ``repeat`` set) until the last position, then the next
layer. ``o_layer.bank`` alternates with every start (the PEs' accumulator bank: a pass is
requantized while the next one accumulates).
"""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring, memory
from amaranth.lib.wiring import In, Out

from contract.memmap import CONV_FIELDS, DESC_FLAGS, DESC_WORD, DESC_WORDS
from contract.widths import SHIFT_BITS, WORD_BITS

from .config import layer_config_layout

__all__ = ["LayerSequencer"]


class LayerSequencer(wiring.Component):
    """Descriptor fetch, ``i_start`` generation and cycle counting.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig

    Attributes
    ----------
    i_we : In(1)
        Write strobe of the layers memory (a load word for mem ``N+4``); aborts a descriptor
        read in progress and invalidates the prefetched descriptor.
    i_addr : In(16)
        Word address of the write (addresses ``>= 8 * max_layers`` are ignored).
    i_data : In(16)
        Word to write.
    i_go : In(1)
        Request to start an inference (input available); acted on while ``o_idle``.
    i_pes_idle : In(1)
        A layer may start (a start is only issued then): all PE column engines and the central
        unit's broadcast side are idle (the accelerator asks for everything idle before the
        first layer of an inference).
    i_done : In(1)
        Pulse from the central unit: the last layer's outputs are all collected.
    i_bdone : In(1)
        Pulse from the central unit: the current layer's broadcast is complete and every PE
        took its end token, or (early start) the token is in every PE FIFO: the next layer
        may start.
    o_layer : Out(layer_config_layout(config))
        Descriptor of the current layer, stable from ``o_start`` to the next ``o_start``.
    o_start : Out(1)
        One-cycle pulse: layer ``o_layer.index`` begins.
    o_idle : Out(1)
        No inference in progress.
    o_error : Out(1)
        Sticky: descriptor ``max_layers - 1`` has no ``last`` flag.
    i_first : In(1)
        The first input word of an inference is transferred this cycle (starts the counter).
    i_last_logit : In(1)
        The final logit is transferred this cycle (stops the counter).
    o_cycles : Out(32)
        Cycles from the first input transfer to the final logit transfer of the last completed
        inference (``t_last - t_first``), from the cycle after that transfer until the cycle
        after the next inference's first input transfer (it counts during an inference).
    """

    def __init__(self, config):
        self.cfg = config
        super().__init__({
            "i_we": In(1),
            "i_addr": In(16),
            "i_data": In(16),
            "i_go": In(1),
            "i_pes_idle": In(1),
            "i_done": In(1),
            "i_bdone": In(1),
            "o_layer": Out(layer_config_layout(config)),
            "o_start": Out(1),
            "o_idle": Out(1),
            "o_error": Out(1),
            "i_first": In(1),
            "i_last_logit": In(1),
            "o_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        L = cfg.max_layers
        depth = DESC_WORDS * L
        lay = layer_config_layout(cfg)

        m.submodules.mem = mem = memory.Memory(shape=WORD_BITS, depth=depth, init=[])
        wp = mem.write_port()
        rd = mem.read_port()
        m.d.comb += [wp.addr.eq(self.i_addr), wp.data.eq(self.i_data),
                     wp.en.eq(self.i_we & (self.i_addr < depth))]

        IDLE, RUN, NEXT, REPEAT = range(4)
        state = Signal(range(4))
        cur = self.o_layer
        m.d.comb += self.o_idle.eq(state == IDLE)

        # ---- descriptor prefetch -----------------------------------------------------------
        nxt = Signal(lay)
        nxt_valid = Signal()
        target = Signal(range(L))
        m.d.comb += target.eq(Mux((state == IDLE) | cur.last, 0, cur.index + 1))
        conv = cfg.conv
        last_word = DESC_WORD[CONV_FIELDS[-1]] if conv else DESC_WORD["sym_base"]
        fetching = Signal()
        f_idx = Signal(range(L))
        fk = Signal(range(DESC_WORDS))           # word being requested
        fk_d = Signal(range(DESC_WORDS))         # word on rd.data
        fv_d = Signal()
        m.d.comb += [rd.addr.eq(f_idx * DESC_WORDS + fk), rd.en.eq(fetching)]
        m.d.sync += fv_d.eq(0)
        with m.If(self.i_we):
            m.d.sync += [nxt_valid.eq(0), fetching.eq(0)]
        with m.Elif(fetching):
            m.d.sync += [fk.eq(fk + 1), fk_d.eq(fk), fv_d.eq(1)]
            with m.If(fk == last_word):                 # the last word used
                m.d.sync += fetching.eq(0)
        with m.Elif(~(nxt_valid & (nxt.index == target))):
            m.d.sync += [fetching.eq(1), f_idx.eq(target), fk.eq(0), nxt_valid.eq(0)]
        with m.If(fv_d & ~self.i_we):
            word = rd.data
            with m.Switch(fk_d):
                with m.Case(DESC_WORD["in_features"]):
                    m.d.sync += [nxt.in_features.eq(word), nxt.index.eq(f_idx)]
                with m.Case(DESC_WORD["out_features"]):
                    m.d.sync += nxt.out_features.eq(word)
                with m.Case(DESC_WORD["flags"]):
                    m.d.sync += [getattr(nxt, flag).eq(word[bit])
                                 for flag, bit in DESC_FLAGS.items()]
                with m.Case(DESC_WORD["shift"]):
                    m.d.sync += nxt.shift.eq(word[:SHIFT_BITS])
                with m.Case(DESC_WORD["bias_shift"]):
                    m.d.sync += nxt.bias_shift.eq(word[:SHIFT_BITS])
                with m.Case(DESC_WORD["sym_base"]):
                    m.d.sync += nxt.sym_base.eq(word)
                    if not conv:
                        m.d.sync += nxt_valid.eq(1)
                if conv:
                    for name in CONV_FIELDS:
                        if name not in lay.members:
                            continue            # (``pool``: always 2)
                        with m.Case(DESC_WORD[name]):
                            m.d.sync += getattr(nxt, name).eq(word)
                            if name == CONV_FIELDS[-1]:
                                m.d.sync += nxt_valid.eq(1)

        # ---- layer starts ------------------------------------------------------------------
        ready = Signal()
        m.d.comb += ready.eq(nxt_valid & (nxt.index == target) & ~fetching & self.i_pes_idle
                             & ~self.i_we)
        begin = Signal()
        m.d.sync += self.o_start.eq(begin)
        with m.If(begin):
            m.d.sync += [cur.eq(nxt), state.eq(RUN)]
            with m.If(nxt.index == L - 1):
                m.d.sync += cur.last.eq(1)
                with m.If(~nxt.last):
                    m.d.sync += self.o_error.eq(1)
        more_pos = Signal()             # a conv layer has positions left after this pass
        if conv:
            # the position (0, 0) of a new layer; the bank alternates with every start
            again = Signal()
            last_x = Signal()
            m.d.comb += [
                last_x.eq(cur.pos_x + 1 == cur.out_width),
                more_pos.eq(cur.conv & ~(last_x & (cur.pos_y + 1 == cur.out_height))),
            ]
            with m.If(begin):
                m.d.sync += [cur.pos_y.eq(0), cur.pos_x.eq(0), cur.repeat.eq(0),
                             cur.bank.eq(~cur.bank)]
            m.d.sync += self.o_start.eq(begin | again)
            with m.If(again):
                m.d.sync += [cur.repeat.eq(1), cur.bank.eq(~cur.bank), state.eq(RUN),
                             cur.pos_x.eq(Mux(last_x, 0, cur.pos_x + 1))]
                with m.If(last_x):
                    m.d.sync += cur.pos_y.eq(cur.pos_y + 1)
        with m.Switch(state):
            with m.Case(IDLE):
                m.d.comb += begin.eq(self.i_go & ready)
            with m.Case(RUN):
                with m.If(cur.last & self.i_done):
                    m.d.sync += state.eq(IDLE)
                with m.If(~cur.last & self.i_bdone):
                    if conv:
                        # the next pass starts in this cycle if it may (else from REPEAT)
                        with m.If(more_pos & self.i_pes_idle):
                            m.d.comb += again.eq(1)
                        with m.Else():
                            m.d.sync += state.eq(Mux(more_pos, REPEAT, NEXT))
                    else:
                        m.d.sync += state.eq(NEXT)
            with m.Case(NEXT):
                m.d.comb += begin.eq(ready)
            if conv:
                with m.Case(REPEAT):
                    # the next pass of the conv layer: its descriptor is the current one
                    m.d.comb += again.eq(self.i_pes_idle)

        # ---- cycle counter -----------------------------------------------------------------
        # The counter stops on the final logit and is ``o_cycles`` itself until the next
        # inference's first input restarts it (no second 32-bit register: 30 iCE40 logic cells).
        # The first input's take (the central unit's hand-shake with every PE FIFO's room)
        # restarts it a cycle late, from a register, with the cycle already gone counted: on
        # the 16-PE ULX3S build that hand-shake ran on into the counter's 32 resets (47 MHz).
        counter = self.o_cycles
        counting = Signal()
        first = Signal()
        m.d.sync += first.eq(self.i_first & ~counting)
        with m.If(counting & ~self.i_last_logit):
            m.d.sync += counter.eq(counter + 1)
        with m.If(first & ~counting):
            m.d.sync += [counter.eq(2), counting.eq(1)]
        with m.If(self.i_last_logit & counting):
            m.d.sync += counting.eq(0)
        return m
