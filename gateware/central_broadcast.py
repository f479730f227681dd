"""The central unit's broadcast side: the PE FIFOs (a ring of registers) and the column skip
stage in front of them (docs/ARCHITECTURE.md sections 5 and 7; parts of
:class:`gateware.central.CentralUnit`)."""
from amaranth import Module, Signal, Cat, Mux, Array
from amaranth.lib import wiring, data, memory, stream
from amaranth.lib.wiring import In, Out

from .config import broadcast_layout

__all__ = ["BroadcastRing", "ColumnSkip"]


class BroadcastRing(wiring.Component):
    """The N broadcast FIFOs (depth ``fifo_depth``), up to ``bcast_width`` words in per cycle.

    Without the column skip table (``config.skip_columns``) every word enters all N FIFOs at
    once, so they hold the same words: one ring of ``fifo_depth`` registers, a write pointer and
    per PE a read pointer and a level. The ring is written only when no PE's level is at the
    depth (then no unread entry is overwritten). Registers, not block RAM: N copies of a small
    FIFO would cost N EBRs. With the table a word enters only the FIFOs of the PEs with work in
    its column: one ring per PE, a ``lib.memory`` with an asynchronous read port (the ECP5's and
    Gowin's distributed RAM; flip-flops on the iCE40, as before). Distributed RAM has one write
    port, so with two words a cycle the ring is two banks of ``fifo_depth / 2`` entries, even
    and odd slots: the two words of a cycle go to consecutive slots, one in each bank. As
    registers written at any slot from either word, the 16 rings of the 16-PE ULX3S build were
    most of the central unit's 21k LUT4.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``fifo_depth``, ``skip_columns``, ``bcast_width``, ``feature_bits``
        and ``act_bits``.

    Attributes
    ----------
    i_push : In(1)
        Words ``i_push_data[k]`` enter the FIFOs of the PEs in ``i_push_to[k]`` this cycle.
        No back-pressure: the writer asserts it only when each of those FIFOs has room
        (``o_level``); without the skip table ``i_push_to[0]`` must be all ones.
    i_push_data : In(broadcast_layout(config)).array(bcast_width)
        The words (``col`` is kept to ``feature_bits`` bits); word 1 only with word 0.
    i_push_to : In(N).array(bcast_width)
        Per word, bit ``p``: it enters PE ``p``'s FIFO.
    o_act : Out(stream.Signature(broadcast_layout(config))).array(N)
        Per-PE FIFO outputs, one cycle after the push. ``valid``/payload come from registers
        through the ring's read multiplexer; ``ready`` pops.
    o_level : Out(range(fifo_depth + 1)).array(N)
        Words in each PE's FIFO (registers).
    o_room : Out(bcast_width).array(N)
        Per PE, bit ``j``: its FIFO has room for ``j + 1`` more words (``o_level <= depth - j -
        1``). Registers, worked out from the next level, so that the writer's room check (the
        broadcast hand-shake, on the 16-PE ULX3S build's critical path) has no adder in it.
    o_end_pop : Out(N)
        Bit ``p``: PE ``p`` pops an ``end`` word this cycle.
    """

    def __init__(self, config):
        self.cfg = config
        n, w, d = config.n_pes, config.bcast_width, config.fifo_depth
        bl = broadcast_layout(config)
        super().__init__({
            "i_push": In(1),
            "i_push_data": In(bl).array(w),
            "i_push_to": In(n).array(w),
            "o_act": Out(stream.Signature(bl)).array(n),
            "o_level": Out(range(d + 1)).array(n),
            # (an empty FIFO has room for every word of a cycle: fifo_depth >= bcast_width)
            "o_room": Out(w, init=(1 << w) - 1).array(n),
            "o_end_pop": Out(n),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, D, W = cfg.n_pes, cfg.fifo_depth, cfg.bcast_width
        slot = data.StructLayout({"col": cfg.feature_bits, "value": cfg.act_bits, "end": 1})
        rptrs = [Signal(range(D), name=f"rptr{p}") for p in range(N)]
        levels = list(self.o_level)
        push, push_datas, push_to = self.i_push, self.i_push_data, self.i_push_to

        def wrap_add(x, k):
            """``(x + k) mod D`` for ``0 <= x < D``, ``0 <= k <= W``."""
            t = x + k
            return Mux(t >= D, t - D, t)

        def word(k):
            """Push word ``k`` as a ring slot (``col`` kept to ``feature_bits`` bits)."""
            d = push_datas[k]
            return Cat(d.col[:cfg.feature_bits], d.value, d.end)

        if cfg.skip_columns:
            heads = [self._memory_ring(m, p, slot, word, rptrs[p], wrap_add) for p in range(N)]
        else:
            heads = self._shared_ring(m, slot, word, rptrs, wrap_add)

        end_pops = []                   # per PE: it takes an end token this cycle
        for p in range(N):
            act = self.o_act[p]
            head = heads[p]
            pop = Signal(name=f"act_pop{p}")
            end_pops.append(pop & head.end)
            m.d.comb += [
                act.valid.eq(levels[p] != 0),
                act.payload.col.eq(head.col),
                act.payload.value.eq(head.value),
                act.payload.end.eq(head.end),
                pop.eq(act.valid & act.ready),
            ]
            with m.If(pop):
                m.d.sync += rptrs[p].eq(Mux(rptrs[p] == D - 1, 0, rptrs[p] + 1))
            pushed = [push & push_to[k][p] for k in range(W)]
            m.d.sync += levels[p].eq(levels[p] + sum(pushed) - pop)
            # room for j + 1 words after this cycle: the compares are made on this cycle's
            # level for each count of words in (0 .. W), with and without a pop, and the late
            # push and pop bits only select among them
            for j in range(W):
                def room_after(n):
                    return Mux(pop, levels[p] + n - 1 <= D - 1 - j, levels[p] + n <= D - 1 - j)
                if W == 1:
                    room_next = Mux(pushed[0], room_after(1), room_after(0))
                else:
                    room_next = Mux(pushed[0] & pushed[1], room_after(2),
                                    Mux(pushed[0] | pushed[1], room_after(1), room_after(0)))
                m.d.sync += self.o_room[p][j].eq(room_next)
        m.d.comb += self.o_end_pop.eq(Cat(*end_pops))
        return m

    def _shared_ring(self, m, slot, word, rptrs, wrap_add):
        """Without the skip table (one word a cycle, into every FIFO): one ring of registers
        for all N FIFOs; their heads."""
        cfg = self.cfg
        N, D = cfg.n_pes, cfg.fifo_depth
        assert cfg.bcast_width == 1
        ring = Array(Signal(slot, name=f"ring_{k}") for k in range(D))
        wptr = Signal(range(D), name="wptr")
        with m.If(self.i_push):
            m.d.sync += [ring[wptr].eq(word(0)), wptr.eq(wrap_add(wptr, 1))]
        return [ring[rptrs[p]] for p in range(N)]

    def _memory_ring(self, m, p, slot, word, rptr, wrap_add):
        """PE ``p``'s ring (skip table): a memory, two one-write-port banks with two words a
        cycle (even ``fifo_depth``); its head at ``rptr``."""
        cfg = self.cfg
        D, W = cfg.fifo_depth, cfg.bcast_width
        w = [self.i_push & self.i_push_to[k][p] for k in range(W)]
        wptr = Signal(range(D), name=f"wptr{p}")
        m.d.sync += wptr.eq(wrap_add(wptr, sum(w)))
        # word 1 takes the slot after word 0's, or wptr's when word 0 skips this PE
        pos = [wptr, wrap_add(wptr, w[0])][:W]
        banks = W if D % W == 0 else 1
        mems = [memory.Memory(shape=slot, depth=D // banks, init=[]) for _ in range(banks)]
        for b, mem in enumerate(mems):
            m.submodules[f"ring{p}_{b}"] = mem
        if banks == 1:
            for k in range(W):
                wp = mems[0].write_port()
                m.d.comb += [wp.addr.eq(pos[k]), wp.data.eq(word(k)), wp.en.eq(w[k])]
            rp = mems[0].read_port(domain="comb")
            m.d.comb += rp.addr.eq(rptr)
            return rp.data
        # two banks: slot s is entry s // 2 of bank s % 2. wptr's bank takes word 0, or word 1
        # when word 0 skips this PE; the other bank takes word 1 when both come.
        first = Mux(w[0], word(0), word(1))             # the word for slot wptr
        heads = []
        for b, mem in enumerate(mems):
            wp = mem.write_port()
            at_wptr = wptr[0] if b else ~wptr[0]        # this bank holds slot wptr
            m.d.comb += [
                wp.addr.eq(Mux(at_wptr, wptr, pos[1]) >> 1),
                wp.data.eq(Mux(at_wptr, first, word(1))),
                wp.en.eq(Mux(at_wptr, w[0] | w[1], w[0] & w[1])),
            ]
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(rptr >> 1)
            heads.append(rp.data)
        head = Signal(slot, name=f"head{p}")
        m.d.comb += head.eq(Mux(rptr[0], heads[1], heads[0]))
        return head


class ColumnSkip(wiring.Component):
    """Column skip stage: a taken word waits while its skip bits are read (one cycle; two with
    ``colskip_register``), then enters only the FIFOs of the PEs with work in its column.

    The table (memory id ``2N+5``) has per layer and column one bit per PE, set when the PE's
    share of the column is empty; the layers' columns back to back, layer 0 first. The words
    taken in one cycle wait in a holding register while their entries (the layer's first
    entry + column) are read from the table, then enter the FIFOs of the PEs whose bit is
    clear (the ``end`` token enters all), once each of those has room for its words. With
    ``config.colskip_register`` a second holding register keeps the PE masks in flip-flops:
    the block RAM's clock-to-out delay (5.8 ns on the ECP5) then stays out of the FIFO-room
    check and the hand-shake back to the word sources (the ULX3S build's critical path
    without it) for one more cycle of latency; a full pipeline still takes a word every cycle.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``fifo_depth``, ``bcast_width``, ``colskip_depth`` and
        ``colskip_register``.

    Attributes
    ----------
    i_take : In(1).array(bcast_width)
        Word ``k`` (``i_take_data[k]``) is handed over this cycle; word 1 only with word 0.
        Only while ``o_can_take``.
    i_take_data : In(broadcast_layout(config)).array(bcast_width)
        The taken words.
    o_can_take : Out(1)
        The (first) holding register is empty or moves on this cycle (it does not depend on
        ``i_take``).
    o_push, o_push_data, o_push_to : Out(1), Out(broadcast_layout).array(W), Out(N).array(W)
        To :class:`BroadcastRing`: the held words enter the FIFOs in ``o_push_to``, one cycle
        (two with ``colskip_register``) after they were taken at the earliest (later while a
        FIFO they go to is full).
    i_room : In(bcast_width).array(N)
        Per FIFO, bit ``j``: it has room for ``j + 1`` more words (:attr:`BroadcastRing.o_room`,
        registers).
    o_busy : Out(1)
        A word is held (nothing may follow the ``end`` token until it is pushed).
    i_start : In(1)
        A layer starts (``i_layer_index``, ``i_in_features``): its entries follow the previous
        layer's in the table (layer 0 at entry 0).
    i_layer_index : In(log2(max_layers))
    i_in_features : In(feature count width)
    i_skip_we, i_skip_addr, i_skip_data : In(1), In(16), In(16)
        Write ``i_skip_data`` (bit ``p``: PE ``p``'s share is empty) into entry
        ``i_skip_addr``; above 16 PEs into word ``i_skip_addr % colskip_words`` (PEs
        ``16w..16w+15``) of entry ``i_skip_addr // colskip_words``. Writes past the table are
        dropped. Only while idle.
    """

    def __init__(self, config, layer_index_bits, in_features_bits):
        self.cfg = config
        n, w, d = config.n_pes, config.bcast_width, config.fifo_depth
        bl = broadcast_layout(config)
        super().__init__({
            "i_take": In(1).array(w),
            "i_take_data": In(bl).array(w),
            "o_can_take": Out(1),
            "o_push": Out(1),
            "o_push_data": Out(bl).array(w),
            "o_push_to": Out(n).array(w),
            "i_room": In(w).array(n),
            "o_busy": Out(1),
            "i_start": In(1),
            "i_layer_index": In(layer_index_bits),
            "i_in_features": In(in_features_bits),
            "i_skip_we": In(1),
            "i_skip_addr": In(16),
            "i_skip_data": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, W = cfg.n_pes, cfg.bcast_width
        bl = broadcast_layout(cfg)
        takes, take_datas = self.i_take, self.i_take_data
        push, push_to, rooms = self.o_push, self.o_push_to, self.i_room
        SA = (cfg.colskip_depth - 1).bit_length()
        in_table = self.i_skip_addr < cfg.colskip_table_words
        if cfg.colskip_words == 1:
            sk = memory.Memory(shape=N, depth=cfg.colskip_depth, init=[])
            sk_wr = sk.write_port()
            m.d.comb += [sk_wr.addr.eq(self.i_skip_addr), sk_wr.data.eq(self.i_skip_data[:N]),
                         sk_wr.en.eq(self.i_skip_we & in_table)]
        else:
            # above 16 PEs an entry is several 16-bit load words: a memory as wide as they
            # are, written a word (a granule) at a time
            G = cfg.colskip_words
            GB = G.bit_length() - 1
            sk = memory.Memory(shape=16 * G, depth=cfg.colskip_depth, init=[])
            sk_wr = sk.write_port(granularity=16)
            m.d.comb += [
                sk_wr.addr.eq(self.i_skip_addr >> GB),
                sk_wr.data.eq(Cat(*[self.i_skip_data] * G)),
                sk_wr.en.eq(Cat(self.i_skip_we & in_table & (self.i_skip_addr[:GB] == g)
                                for g in range(G))),
            ]
        m.submodules.colskip = sk
        sk_rds = [sk.read_port() for _ in range(W)]
        sk_base = Signal(SA)        # the current layer's first table entry
        sk_next = Signal(SA + 1)    # the next layer's (this layer's base + in_features)
        # stage 1: the taken words while their table entries are read
        held = [Signal(bl, name=f"held{k}") for k in range(W)]
        held_valid = [Signal(name=f"held_valid{k}") for k in range(W)]
        # the PE mask of each held word (the end token goes to every PE)
        held_to = [Mux(held[k].end, (1 << N) - 1, ~sk_rds[k].data[:N]) for k in range(W)]
        # stage 2: the words with their PE masks (in flip-flops with ``colskip_register``,
        # else stage 1 itself with the table's read data)
        if cfg.colskip_register:
            ready = [Signal(bl, name=f"ready{k}") for k in range(W)]
            ready_valid = [Signal(name=f"ready_valid{k}") for k in range(W)]
            ready_to = [Signal(N, name=f"ready_to{k}") for k in range(W)]
        else:
            ready, ready_valid = held, held_valid
            ready_to = held_to
        fits = Signal(N)            # every PE has room for the stage-2 words it gets
        stage2_free = Signal()      # stage 2 is empty or pushes this cycle
        move = Signal()             # stage 1 moves into stage 2 (or, unregistered, is pushed)
        for k in range(W):
            m.d.comb += [
                sk_rds[k].addr.eq(sk_base + take_datas[k].col[:SA]),
                # (read whenever stage 1 can take a word, taken or not: it is then empty or
                # moves on, so its entry is no longer needed; `take` itself comes through the
                # word sources, after `o_can_take`)
                sk_rds[k].en.eq(self.o_can_take),
                push_to[k].eq(Mux(ready_valid[k], ready_to[k], 0)),
                self.o_push_data[k].eq(ready[k]),
            ]
        for p in range(N):
            # room for the words PE p gets from stage 2: none, one (either) or both
            if W == 1:
                m.d.comb += fits[p].eq(~push_to[0][p] | rooms[p][0])
            else:
                a, b = push_to[0][p], push_to[1][p]
                m.d.comb += fits[p].eq(Mux(a & b, rooms[p][1], ~(a | b) | rooms[p][0]))
        m.d.comb += [
            push.eq(ready_valid[0] & fits.all()),
            stage2_free.eq(~ready_valid[0] | push),
            move.eq(held_valid[0] & stage2_free),
            self.o_busy.eq(held_valid[0] | ready_valid[0]),
        ]
        # (without the register stage 2 is stage 1, so this is ``stage2_free``)
        m.d.comb += self.o_can_take.eq(~held_valid[0] | stage2_free)
        for k in range(W):
            # (the table's read data holds while stage 1 waits: it is read only while stage 1
            # can take)
            with m.If(self.o_can_take):
                m.d.sync += [held[k].eq(take_datas[k]), held_valid[k].eq(takes[k])]
            if cfg.colskip_register:
                with m.If(move):
                    m.d.sync += [ready[k].eq(held[k]), ready_valid[k].eq(held_valid[k]),
                                 ready_to[k].eq(held_to[k])]
                with m.Elif(push):
                    m.d.sync += ready_valid[k].eq(0)

        # the layer's entries follow the previous layer's in the column skip table
        with m.If(self.i_start):
            with m.If(self.i_layer_index == 0):
                m.d.sync += [sk_base.eq(0), sk_next.eq(self.i_in_features)]
            with m.Else():
                m.d.sync += [sk_base.eq(sk_next), sk_next.eq(sk_next + self.i_in_features)]
        return m
