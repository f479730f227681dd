"""Central unit: zero filtering, broadcast to the PE FIFOs, merging and ordering of PE outputs.

Per layer (started by ``i_start`` with ``i_layer`` stable until the next ``i_start``) the unit
runs four phases (docs/ARCHITECTURE.md sections 5 and 7):

1. *Broadcast*. Layer 0: the dense input stream, ``K = input_lanes`` values per word; lane
   ``j`` of word ``k`` is column ``k*K + j`` and only the non-zero ones are pushed, lowest
   column first, one per cycle (a word without non-zero inputs is skipped in one cycle).
   Later layers: the previous layer's non-zero outputs from the N output banks, merged smallest
   row first (each bank is sorted, so the broadcast is in ascending column order and a PE can
   reuse the end pointer of the previous column); a bank is exhausted once it is read to its
   end *and* its PE's end token of the previous layer was collected. A word enters all N
   FIFOs in the same cycle and waits while any FIFO is full.

   With the *column skip table* (``config.skip_columns``: per layer and column one bit per PE,
   set when the PE's share of the column is empty; memory id ``2N+5``) a taken word waits one
   cycle in a holding register while its entry is read, then enters only the FIFOs of the PEs
   whose bit is clear (each PE has its own ring), once those have room: a PE never spends a
   cycle on a column it has no weights in. With ``bcast_width == 2`` two words are taken per
   cycle (layer 0: the two lowest non-zero lanes; later layers: the heads of the two
   lowest-numbered banks that have one, as soon as they have it: bank order, no longer
   ascending) and a PE's ring takes both in one cycle.
2. *End token*: one ``end`` word into all FIFOs; the collect of this layer begins. When every
   PE has taken the token (its column engine hands the layer to its requantization engine),
   ``o_bdone`` pulses: the sequencer starts the next layer, whose broadcast (phase 1) runs
   while this layer's outputs are still being collected. With the early start
   (``config.early``) the broadcast side is free as soon as the token is in every FIFO
   (``o_bend``, the sequencer's start signal then): the next layer's words follow it into the
   FIFOs while busy PEs finish this layer, and ``o_bdone`` still marks every PE taking it.
3. *Collect* (concurrent with the next layer's broadcast) until all N PE ``end`` tokens are
   received. Hidden layer: PE ``p``'s non-zero outputs ``(row, value)`` are appended to bank
   ``p`` (one write port per bank, so the PEs never wait). Last layer: the logits are forwarded
   in index order, row ``r`` from PE ``r mod N``, onto ``o_logit`` with ``last`` on row
   ``out_features - 1``; ``o_argmax`` follows (lowest index wins ties).
4. After the last layer's collect ``o_done`` pulses for one cycle (the inference is complete).

A bank is written in phase 3 of layer L and read in phase 1 of layer L + 1, concurrently (an
entry is read only once written: read pointer below write pointer). Bank depth:
``min(max_rows_per_pe, ceil(max_features / N))`` entries of ``(local row, value)``: 8 + 8 bits
with the default configuration, one iCE40 EBR per bank (the local row ``(row - p) / N`` is
computed with a constant reciprocal multiply, the global row back as ``local * N + p``). With
N > 1 each bank has a 2-entry head queue so the merge can take from the same bank on consecutive
cycles; with N = 1 the bank's read port is the head (the next entry is read in the cycle the head
is broadcast), which also takes one cycle off the merge latency.

Without the skip table the N broadcast FIFOs always hold the same words, so they share one
ring of ``fifo_depth`` registers with one read pointer and level per PE (no block RAM).

Latency: an input value is at the PE FIFO outputs 1 cycle after its push (2 with the skip
table); the first merged word 4 cycles after the layer start (3 with N = 1; one more with the
skip table). Throughput: ``bcast_width`` broadcast words per cycle while the FIFOs they go to
have room (layer 0: a K-lane input word without non-zero inputs in one cycle, else one cycle
per ``bcast_width`` non-zero inputs); the collect phase never stalls a PE on a hidden layer
and follows ``o_logit.ready`` on the last layer.
"""
from amaranth import Module, Signal, Cat, Const, Mux, Array
from amaranth.lib import wiring, stream, data, fifo, memory
from amaranth.lib.wiring import In, Out

from .config import (broadcast_layout, pe_output_layout, layer_config_layout, input_layout,
                     logit_layout)

__all__ = ["CentralUnit", "central_error_layout"]


def _reciprocal(n, limit):
    """``(m, k)`` with ``(r * m) >> k == r // n`` for every ``0 <= r < limit`` (checked)."""
    for k in range(max(1, (limit - 1).bit_length()), 64):
        m = -(-(1 << k) // n)
        if all((r * m) >> k == r // n for r in range(limit)):
            return m, k
    raise ValueError(f"no reciprocal of {n} for rows below {limit}")


#: Sticky error flags of the central unit.
central_error_layout = data.StructLayout({
    "input": 1,     # ``last`` not on the word of input ``in_features - 1`` (ends at either)
    "overflow": 1,  # a hidden output row >= max_features (dropped)
    "logits": 1,    # the PEs' logit count differs from ``out_features``
})


class CentralUnit(wiring.Component):
    """Broadcast and merge unit between the input, the N PEs and the logit output.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig

    Attributes
    ----------
    i_input : In(stream.Signature(input_layout(config)))
        Dense input vector of layer 0 in words of ``K = input_lanes`` unsigned ``act_bits``
        values (word ``k`` lane ``j`` = input ``k*K + j``), ``last`` on the word holding input
        ``in_features - 1`` (its lanes past that input are ignored). Ready only during layer 0's
        broadcast phase, in the cycle the word's last non-zero input is pushed (at once for a
        word without one).
    i_layer : In(layer_config_layout(config))
        Current layer descriptor (``index``, ``in_features``, ``out_features``, ``last`` are
        used), stable from ``i_start`` to ``o_done``.
    i_start : In(1)
        One-cycle pulse while ``o_idle``: layer ``i_layer.index`` begins.
    o_act : Out(stream.Signature(broadcast_layout(config))).array(N)
        Per-PE FIFO outputs (depth ``fifo_depth``): ``(col, value)`` non-zero activations, then
        the ``end`` token. ``valid``/payload come from registers through the ring's read mux.
    i_out : In(stream.Signature(pe_output_layout(config))).array(N)
        Per-PE outputs (``(global row, value)`` then ``end``).
    o_logit : Out(stream.Signature(logit_layout(config)))
        Last layer: the logits (signed ``acc_bits``) in index order, ``last`` on the final one.
        Payload and valid come straight from the selected PE's registered output.
    o_argmax : Out(8)
        Index of the largest logit of the last completed inference (lowest index on ties);
        updated with the transfer of the final logit.
    o_in_take : Out(1)
        The unit consumes from the offered ``i_input`` word this cycle (pushes one of its lanes
        or accepts it); the first such cycle of an inference starts ``o_cycles``.
    o_done : Out(1)
        One-cycle pulse: all N PE ``end`` tokens of the *last* layer have been received (the
        inference is complete).
    o_bdone : Out(1)
        One-cycle pulse: the layer's broadcast is complete and every PE has taken its ``end``
        token (its column engine is idle): the next layer may start, while the PEs still
        requantize this one and their outputs are collected.
    o_bend : Out(1)
        Only with ``config.early``: one-cycle pulse, the layer's ``end`` token is in every PE
        FIFO (the broadcast side is idle: the next layer may start).
    o_bidle : Out(1)
        The broadcast side is idle (``i_start`` is acted on).
    o_idle : Out(1)
        Nothing in progress (broadcast and collect idle).
    o_error : Out(central_error_layout)
        Sticky error flags (see :data:`central_error_layout`).
    i_skip_we, i_skip_addr, i_skip_data : In(1), In(16), In(16)
        Only with ``config.skip_columns``: write ``i_skip_data`` (bit ``p`` set: PE ``p``'s
        column is empty) into entry ``i_skip_addr`` of the column skip table (entry = the
        layer's first entry + column; the layers' columns back to back, layer 0 first).
        Writes past ``colskip_depth`` are dropped. Only while ``o_idle``.
    """

    def __init__(self, config):
        self.cfg = config
        n = config.n_pes
        #: Entries of each PE's output bank: the most non-zero outputs one PE has in a layer.
        self.bank_depth = min(config.max_rows_per_pe, -(-config.max_features // n))
        skip_ports = {}
        if config.skip_columns:
            skip_ports = {"i_skip_we": In(1), "i_skip_addr": In(16), "i_skip_data": In(16)}
        if config.early:
            skip_ports["o_bend"] = Out(1)
        super().__init__({
            **skip_ports,
            "i_input": In(stream.Signature(input_layout(config))),
            "i_layer": In(layer_config_layout(config)),
            "i_start": In(1),
            "o_act": Out(stream.Signature(broadcast_layout(config))).array(n),
            "i_out": In(stream.Signature(pe_output_layout(config))).array(n),
            "o_logit": Out(stream.Signature(logit_layout(config))),
            "o_argmax": Out(8),
            "o_in_take": Out(1),
            "o_done": Out(1),
            "o_bdone": Out(1),
            "o_bidle": Out(1),
            "o_idle": Out(1),
            "o_error": Out(central_error_layout),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N = cfg.n_pes
        A = cfg.act_bits
        ACC = cfg.acc_bits
        FB = cfg.feature_bits
        layer = self.i_layer
        bl = broadcast_layout(cfg)

        # Broadcast side (``state``) and collect side (``collecting``) run concurrently: layer
        # L's outputs are collected while layer L + 1 is broadcast from the banks they fill.
        IDLE, BIN, BBUF, END, DRAIN = range(5)
        state = Signal(range(5))
        collecting = Signal()
        m.d.comb += [self.o_bidle.eq(state == IDLE),
                     self.o_idle.eq((state == IDLE) & ~collecting)]
        ended = Signal(N)               # PE p's end token of the collected layer was received

        # ---- broadcast FIFOs ----------------------------------------------------------------
        # Without the column skip table every word enters all N FIFOs at once, so they hold the
        # same words: one ring of ``fifo_depth`` registers, a write pointer and per PE a read
        # pointer and a level. The ring is written only when no PE's level is at the depth
        # (then no unread entry is overwritten). Registers, not block RAM: N copies of a small
        # FIFO would cost N EBRs. With the table a word enters only the FIFOs of the PEs with
        # work in its column: one ring per PE, up to W = ``bcast_width`` words per cycle.
        D = cfg.fifo_depth
        skip = cfg.skip_columns
        W = cfg.bcast_width
        slot = data.StructLayout({"col": FB, "value": A, "end": 1})
        n_rings = N if skip else 1
        rings = [Array(Signal(slot, name=f"ring{r}_{k}") for k in range(D))
                 for r in range(n_rings)]
        wptrs = [Signal(range(D), name=f"wptr{r}") for r in range(n_rings)]
        rptrs = [Signal(range(D), name=f"rptr{p}") for p in range(N)]
        levels = [Signal(range(D + 1), name=f"level{p}") for p in range(N)]

        def wrap_add(x, k):
            """``(x + k) mod D`` for ``0 <= x < D``, ``0 <= k <= W``."""
            t = x + k
            return Mux(t >= D, t - D, t)

        # ``takes[k]``: the broadcast source hands over word ``take_datas[k]`` (an input lane, a
        # bank head or the end token; ``takes[1]`` only with ``takes[0]``, never the end
        # token), allowed only while ``can_take``. ``push``: the words ``push_datas`` enter the
        # FIFOs of the PEs in ``push_to[k]``; only ever asserted when each of them has room.
        takes = [Signal(name=f"take{k}") for k in range(W)]
        take_datas = [Signal(bl, name=f"take_data{k}") for k in range(W)]
        take, take_data = takes[0], take_datas[0]
        can_take = Signal()
        push = Signal()
        push_datas = [Signal(bl, name=f"push_data{k}") for k in range(W)]
        push_to = [Signal(N, name=f"push_to{k}") for k in range(W)]
        for r in range(n_rings):
            ring, wptr = rings[r], wptrs[r]
            w = [push & (push_to[k][r] if skip else 1) for k in range(W)]
            pos = [wptr] + ([wrap_add(wptr, w[0])] if W == 2 else [])
            for k in range(W):
                with m.If(w[k]):
                    m.d.sync += [ring[pos[k]].col.eq(push_datas[k].col),
                                 ring[pos[k]].value.eq(push_datas[k].value),
                                 ring[pos[k]].end.eq(push_datas[k].end)]
            if W == 1:
                with m.If(w[0]):
                    m.d.sync += wptr.eq(Mux(wptr == D - 1, 0, wptr + 1))
            else:
                m.d.sync += wptr.eq(wrap_add(wptr, sum(w)))
        end_pops = []                   # per PE: it takes an end token this cycle
        for p in range(N):
            act = self.o_act[p]
            head = rings[p if skip else 0][rptrs[p]]
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
            m.d.sync += levels[p].eq(levels[p] + sum(push & push_to[k][p] for k in range(W))
                                     - pop)

        # ---- column skip stage -------------------------------------------------------------
        # Without the table a taken word is pushed into all FIFOs in the same cycle. With it,
        # the taken words wait one cycle in ``held`` while their skip bits are read (table
        # address: the layer's first entry + column), then enter the FIFOs of the PEs whose bit
        # is clear (the end token enters all), once each of those has room for its words.
        held_busy = Signal()            # nothing may follow the end token until it is pushed
        if skip:
            sk = memory.Memory(shape=N, depth=cfg.colskip_depth, init=[])
            m.submodules.colskip = sk
            sk_wr = sk.write_port()
            sk_rds = [sk.read_port() for _ in range(W)]
            SA = (cfg.colskip_depth - 1).bit_length()
            m.d.comb += [sk_wr.addr.eq(self.i_skip_addr), sk_wr.data.eq(self.i_skip_data[:N]),
                         sk_wr.en.eq(self.i_skip_we
                                     & (self.i_skip_addr < cfg.colskip_depth))]
            sk_base = Signal(SA)        # the current layer's first table entry
            sk_next = Signal(SA + 1)    # the next layer's (this layer's base + in_features)
            held = [Signal(bl, name=f"held{k}") for k in range(W)]
            held_valid = [Signal(name=f"held_valid{k}") for k in range(W)]
            fits = Signal(N)            # every PE has room for the held words it gets
            for k in range(W):
                m.d.comb += [
                    sk_rds[k].addr.eq(sk_base + take_datas[k].col[:SA]),
                    sk_rds[k].en.eq(take),
                    push_to[k].eq(Mux(held_valid[k],
                                      Mux(held[k].end, (1 << N) - 1, ~sk_rds[k].data), 0)),
                    push_datas[k].eq(held[k]),
                ]
            for p in range(N):
                n_words = sum(push_to[k][p] for k in range(W))
                m.d.comb += fits[p].eq(levels[p] + n_words <= D)
            m.d.comb += [
                push.eq(held_valid[0] & fits.all()),
                can_take.eq(~held_valid[0] | push),
                held_busy.eq(held_valid[0]),
            ]
            for k in range(W):
                with m.If(take):
                    m.d.sync += [held[k].eq(take_datas[k]), held_valid[k].eq(takes[k])]
                with m.Elif(push):
                    m.d.sync += held_valid[k].eq(0)
        else:
            m.d.comb += [
                can_take.eq(Cat(lv != D for lv in levels).all()),
                push.eq(take),
                push_datas[0].eq(take_data),
                push_to[0].eq((1 << N) - 1),
            ]

        # ---- per-PE output banks ----------------------------------------------------------
        # Bank p holds PE p's non-zero outputs of the last hidden layer in ascending row order
        # (each PE writes its own bank: no merge stall). The next layer's broadcast merges the
        # N sorted lists (smallest row first), so columns arrive in ascending order.
        bdepth = self.bank_depth
        entry = data.StructLayout({"row": max(1, (bdepth - 1).bit_length()), "value": A})
        banks = []
        for p in range(N):
            mem = memory.Memory(shape=entry, depth=bdepth, init=[])
            m.submodules[f"bank{p}"] = mem
            bank = dict(wr=mem.write_port(), rd=mem.read_port(),
                        wp=Signal(range(bdepth + 1), name=f"wp{p}"),
                        rp=Signal(range(bdepth + 1), name=f"rp{p}"),
                        inflight=Signal(name=f"inflight{p}"))
            if N > 1:
                bank["q"] = q = fifo.SyncFIFO(width=entry.size, depth=2)
                m.submodules[f"head{p}"] = q
            banks.append(bank)
        err_input = Signal()
        err_overflow = Signal()
        err_logits = Signal()
        m.d.comb += [self.o_error.input.eq(err_input), self.o_error.overflow.eq(err_overflow),
                     self.o_error.logits.eq(err_logits)]

        # ---- phase 1a: dense input, K lanes per word, zeros filtered ------------------------
        # ``pend`` has the lanes of the current word not yet pushed (all ones at a word start).
        # Per cycle the lowest lane still to push (a priority encoder over K lanes) is pushed;
        # the word is accepted in the cycle its last one is pushed, or at once when it has none.
        # ``at_end``: the word holds column in_features - 1; its lanes past it are ignored.
        K = cfg.input_lanes
        inp = self.i_input.payload
        IFW = len(layer.in_features)
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
            m.d.comb += [at_end.eq(wcol + 1 == layer.in_features), lane_ok.eq(1)]
            word_step = wcol.eq(wcol + 1)
            word_reset = wcol.eq(0)
        elif K & (K - 1) == 0:
            # word index ``wcol``: column = Cat(lane, wcol); the final word and its last lane
            # are the high and low bits of in_features - 1
            L = K.bit_length() - 1
            wcol = Signal(max(1, IFW - L))
            last_col = Signal(IFW)
            m.d.comb += [last_col.eq(layer.in_features - 1),
                         at_end_first.eq(last_col[L:] == 0),
                         at_end_next.eq(wcol + 1 == last_col[L:]),
                         lane_ok.eq(Mux(at_end, last_mask, (1 << K) - 1))]
            first_mask = Cat(last_col[:L] >= j for j in range(K))
            word_step = wcol.eq(wcol + 1)
            word_reset = wcol.eq(0)
        else:
            col = Signal(IFW + 1)                # column of lane 0 (a multiple of K)
            m.d.comb += [at_end_first.eq(K >= layer.in_features),
                         at_end_next.eq(col + 2 * K >= layer.in_features),
                         lane_ok.eq(Mux(at_end, last_mask, (1 << K) - 1))]
            first_mask = Cat((layer.in_features - 1) % K >= j for j in range(K))
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
        in_take = Signal()
        m.d.comb += self.o_in_take.eq(in_take)
        with m.If(state == BIN):
            m.d.comb += [
                self.i_input.ready.eq((rest == 0) & ((todo == 0) | can_take)),
                take.eq(self.i_input.valid & (todo != 0) & can_take),
                in_take.eq(self.i_input.valid & (self.i_input.ready | take)),
            ]
            for k, (one, lane_col, value) in enumerate(picks):
                m.d.comb += [take_datas[k].col.eq(lane_col), take_datas[k].value.eq(value)]
                if k:
                    m.d.comb += takes[k].eq(take & (one != 0))
            with m.If(self.i_input.valid & self.i_input.ready):
                m.d.sync += [word_step, pend.eq(pend.init)]
                if K > 1:
                    m.d.sync += at_end.eq(at_end_next)
                with m.If(inp.last | at_end):
                    m.d.sync += state.eq(END)
                    with m.If(inp.last != at_end):
                        m.d.sync += err_input.eq(1)
            with m.Elif(take):
                m.d.sync += pend.eq(rest)

        # ---- phase 1b: N-way merge of the banks --------------------------------------------
        bbuf = Signal()
        m.d.comb += bbuf.eq(state == BBUF)
        heads = []
        present = Signal(N)
        exhausted = Signal(N)
        pop = Signal(N)
        for p, b in enumerate(banks):
            rd = b["rd"]
            issue = Signal(name=f"issue{p}")
            if N == 1:
                # One bank: its read port's output register is the head. ``inflight`` means
                # rd.data holds an entry not yet broadcast; the next read is issued in the
                # cycle the head is taken (or while there is none), and rd.data holds otherwise.
                m.d.comb += [
                    issue.eq(bbuf & (b["rp"] < b["wp"]) & (~b["inflight"] | pop[p])),
                    present[p].eq(b["inflight"]),
                    exhausted[p].eq((b["rp"] == b["wp"]) & ~b["inflight"] & ended[p]),
                ]
                with m.If(issue):
                    m.d.sync += b["inflight"].eq(1)
                with m.Elif(pop[p]):
                    m.d.sync += b["inflight"].eq(0)
                head = data.View(entry, rd.data)
            else:
                q = b["q"]
                m.d.comb += [
                    # the read lands in q next cycle, after this cycle's pop: credit counts it
                    issue.eq(bbuf & (b["rp"] < b["wp"])
                             & (q.level + b["inflight"] - pop[p] < q.depth)),
                    q.w_en.eq(b["inflight"]), q.w_data.eq(rd.data),
                    q.r_en.eq(pop[p]),
                    present[p].eq(q.r_rdy),
                    exhausted[p].eq((b["rp"] == b["wp"]) & ~b["inflight"] & ~q.r_rdy
                                    & ended[p]),
                ]
                m.d.sync += b["inflight"].eq(issue)
                head = data.View(entry, q.r_data)
            m.d.comb += [rd.addr.eq(b["rp"]), rd.en.eq(issue)]
            with m.If(issue):
                m.d.sync += b["rp"].eq(b["rp"] + 1)
            grow = Signal(FB, name=f"grow{p}")          # global row = local * N + p
            m.d.comb += grow.eq(head.row * N + p)
            heads.append((grow, head.value))
        if W == 1:
            # smallest present head; bank 0 is taken as the candidate unconditionally (when it
            # is not present, ``found`` is 0 and the next present bank replaces it)
            found = present[0]
            best = Const(0, range(N))
            best_row, best_val = heads[0]
            for p in range(1, N):
                smaller = present[p] & (~found | (heads[p][0] < best_row))
                f_p, b_p = Signal(name=f"sf{p}"), Signal(range(N), name=f"sb{p}")
                r_p, v_p = Signal(FB, name=f"sr{p}"), Signal(A, name=f"sv{p}")
                m.d.comb += [f_p.eq(found | present[p]), b_p.eq(Mux(smaller, p, best)),
                             r_p.eq(Mux(smaller, heads[p][0], best_row)),
                             v_p.eq(Mux(smaller, heads[p][1], best_val))]
                found, best, best_row, best_val = f_p, b_p, r_p, v_p
            with m.If(bbuf):
                ok = (present | exhausted).all() & found & can_take
                m.d.comb += [
                    take.eq(ok),
                    take_data.col.eq(best_row),
                    take_data.value.eq(best_val),
                    pop.eq(Mux(ok, 1 << best, 0)),
                ]
        else:
            # two words per cycle: the heads of the two lowest-numbered present banks, as soon
            # as they are there (bank order, not column order)
            first = Signal(N)
            second = Signal(N)
            others = Signal(N)
            m.d.comb += [first.eq(present & -present), others.eq(present & ~first),
                         second.eq(others & -others)]
            for k, onehot in enumerate((first, second)):
                row = Signal(FB, name=f"bank_row{k}")
                val = Signal(A, name=f"bank_value{k}")
                m.d.comb += [row.eq(0), val.eq(0)]
                for p in range(N):
                    with m.If(onehot[p]):
                        m.d.comb += [row.eq(heads[p][0]), val.eq(heads[p][1])]
                with m.If(bbuf):
                    m.d.comb += [take_datas[k].col.eq(row), take_datas[k].value.eq(val)]
            with m.If(bbuf):
                ok = present.any() & can_take
                m.d.comb += [
                    take.eq(ok),
                    takes[1].eq(ok & (second != 0)),
                    pop.eq(Mux(ok, first | second, 0)),
                ]
        with m.If(bbuf & exhausted.all()):
            m.d.sync += state.eq(END)

        # ---- phase 2: end token; the collect of this layer starts ------------------------------
        # (the previous layer's collect is complete: the broadcast only ends once every bank is
        # exhausted, which needs every PE's end token of that layer)
        n_logit = Signal(9)
        sel = Signal(range(N))
        cl_last = Signal()
        cl_out = Signal(len(layer.out_features))
        with m.If(state == END):
            m.d.comb += [take.eq(can_take), take_data.end.eq(1)]
            with m.If(can_take):
                m.d.sync += [state.eq(DRAIN), collecting.eq(1), ended.eq(0), n_logit.eq(0),
                             sel.eq(0), cl_last.eq(layer.last), cl_out.eq(layer.out_features)]
                m.d.sync += [b["wp"].eq(0) for b in banks]
        # every PE took its end token (handed the layer to its requantization engine)
        m.d.sync += self.o_bdone.eq(0)
        if cfg.early:
            # The broadcast side is free once the end token is in every FIFO (``o_bend``): the
            # next layer's broadcast may follow it into the FIFOs. ``o_bdone`` still pulses
            # when every PE has popped the token (``etaken``).
            etaken = Signal(N)
            bd_wait = Signal()
            m.d.sync += self.o_bend.eq(0)
            with m.If((state == DRAIN) & ~held_busy):
                m.d.sync += [state.eq(IDLE), self.o_bend.eq(1)]
            with m.If((state == END) & can_take):
                m.d.sync += [etaken.eq(0), bd_wait.eq(1)]
            with m.Else():
                now = Signal(N)
                m.d.comb += now.eq(etaken | Cat(*end_pops))
                m.d.sync += etaken.eq(now)
                with m.If(bd_wait & now.all()):
                    m.d.sync += [bd_wait.eq(0), self.o_bdone.eq(1)]
        else:
            with m.If((state == DRAIN) & ~held_busy & Cat(lv == 0 for lv in levels).all()):
                m.d.sync += [state.eq(IDLE), self.o_bdone.eq(1)]

        # ---- phase 3: collect --------------------------------------------------------------
        outs = [self.i_out[p].payload for p in range(N)]
        is_end = Signal(N)
        cand = Signal(N)
        m.d.comb += [
            is_end.eq(Cat(self.i_out[p].valid & outs[p].end for p in range(N))),
            cand.eq(Cat(self.i_out[p].valid & ~outs[p].end for p in range(N))),
        ]
        grant = Signal(N)
        for p in range(N):
            m.d.comb += self.i_out[p].ready.eq(collecting & (is_end[p] | grant[p]))
        ended_now = Signal(N)
        m.d.comb += ended_now.eq(ended | Mux(collecting, is_end, 0))
        with m.If(collecting):
            m.d.sync += ended.eq(ended_now)

        # hidden layer: every PE writes its own bank, no stall
        div_m, div_k = _reciprocal(N, cfg.max_features)
        hidden = Signal()
        m.d.comb += hidden.eq(collecting & ~cl_last)
        for p, b in enumerate(banks):
            wr = b["wr"]
            local = Signal(FB, name=f"local{p}")        # (row - p) / N, row = local * N + p
            m.d.comb += [local.eq((outs[p].row[:FB] * div_m) >> div_k),
                         wr.addr.eq(b["wp"]), wr.data.row.eq(local),
                         wr.data.value.eq(outs[p].value[:A])]
            with m.If(hidden & cand[p]):
                m.d.comb += grant[p].eq(1)
                with m.If((outs[p].row < cfg.max_features) & (local < bdepth)
                          & (b["wp"] < bdepth)):
                    m.d.comb += wr.en.eq(1)
                    m.d.sync += b["wp"].eq(b["wp"] + 1)
                with m.Else():
                    m.d.sync += err_overflow.eq(1)

        # last layer: row r from PE r mod N, forwarded in order
        sel_valid = Signal()
        sel_value = Signal(ACC)
        m.d.comb += [sel_valid.eq(cand.bit_select(sel, 1)), sel_value.eq(outs[0].value)]
        for p in range(1, N):
            with m.If(sel == p):
                m.d.comb += sel_value.eq(outs[p].value)
        logit_out = Signal()
        m.d.comb += logit_out.eq(collecting & cl_last & (n_logit < cl_out))
        lo = self.o_logit.payload
        m.d.comb += [
            self.o_logit.valid.eq(logit_out & sel_valid),
            lo.index.eq(n_logit),
            lo.value.eq(sel_value),
            lo.last.eq(n_logit + 1 == cl_out),
        ]
        with m.If(logit_out):
            m.d.comb += grant.eq((self.o_logit.ready & sel_valid) << sel)
        max_val = Signal(ACC)
        best_idx = Signal(8)
        with m.If(self.o_logit.valid & self.o_logit.ready):
            m.d.sync += [n_logit.eq(n_logit + 1), sel.eq(Mux(sel == N - 1, 0, sel + 1))]
            better = (n_logit == 0) | (max_val.as_signed() < sel_value.as_signed())
            with m.If(better):
                m.d.sync += [max_val.eq(sel_value), best_idx.eq(n_logit)]
            with m.If(lo.last):
                m.d.sync += self.o_argmax.eq(Mux(better, n_logit, best_idx))

        # phase 4: barrier
        m.d.sync += self.o_done.eq(0)
        with m.If(collecting & ended_now.all()):
            m.d.sync += [collecting.eq(0), self.o_done.eq(cl_last)]
            with m.If(cl_last & (n_logit != cl_out)):
                m.d.sync += err_logits.eq(1)

        # ---- start -------------------------------------------------------------------------
        with m.If((state == IDLE) & self.i_start):
            if skip:
                # the layer's entries follow the previous layer's in the column skip table
                with m.If(layer.index == 0):
                    m.d.sync += [sk_base.eq(0), sk_next.eq(layer.in_features)]
                with m.Else():
                    m.d.sync += [sk_base.eq(sk_next), sk_next.eq(sk_next + layer.in_features)]
            with m.If(layer.index == 0):
                m.d.sync += [state.eq(BIN), word_reset, *at_end_regs]
            with m.Else():
                m.d.sync += state.eq(BBUF)
                m.d.sync += [b["rp"].eq(0) for b in banks]
        return m
