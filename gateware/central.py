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
   cycle in a holding register while its entry is read (two with ``config.colskip_register``:
   the entry is held in flip-flops, so the block RAM's output does not reach the hand-shake),
   then enters only the FIFOs of the PEs whose bit is clear (each PE has its own ring), once
   those have room: a PE never spends a cycle on a column it has no weights in. With
   ``bcast_width == 2`` two words are taken per cycle (layer 0: the two lowest non-zero lanes;
   later layers: the heads of the two lowest-numbered banks that have one, as soon as they
   have it: bank order, no longer ascending) and a PE's ring takes both in one cycle.
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
with the default configuration, one iCE40 EBR per bank (the PEs report local rows; the merge
works out the global row ``local * N + p`` with shifts and adds, no multiplier). With
N > 2 each bank has a 2-entry head queue so the merge can take from the same bank on consecutive
cycles; with N <= 2 the bank's read port is the head (the next entry is read in the cycle the
head is broadcast), which also takes one cycle off the merge latency.

Without the skip table the N broadcast FIFOs always hold the same words, so they share one
ring of ``fifo_depth`` registers with one read pointer and level per PE (no block RAM).

Latency: an input value is at the PE FIFO outputs 1 cycle after its push (2 with the skip
table, 3 with its registered read); the first merged word 4 cycles after the layer start (3
with N <= 2; one more with the skip table, two with its registered read). Throughput:
``bcast_width`` broadcast words per cycle while the FIFOs they go to have room (layer 0: a
K-lane input word without non-zero inputs in one cycle, else one cycle per ``bcast_width``
non-zero inputs); the collect phase never stalls a PE on a hidden layer and follows
``o_logit.ready`` on the last layer.

Components, composed here with the broadcast state machine: the words to broadcast come from
:class:`gateware.central_lanes.LaneFilter` (layer 0), :class:`gateware.central_merge.BankMerge`
(later layers) or the end token; they pass :class:`gateware.central_broadcast.ColumnSkip` (with
the skip table) into :class:`gateware.central_broadcast.BroadcastRing` (the PE FIFOs);
:class:`gateware.central_collect.Collector` takes the PE outputs into the banks or onto
``o_logit``.
"""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .central_broadcast import BroadcastRing, ColumnSkip
from .central_collect import Collector
from .central_lanes import LaneFilter
from .central_merge import BankMerge, bank_depth
from .conv_fmap import FeatureMapBuffer
from .conv_patch import PatchGenerator
from .conv_pool import PoolWriter
from .conv_store import ImageStore
from .config import (broadcast_layout, pe_output_layout, layer_config_layout, input_layout,
                     logit_layout)

__all__ = ["CentralUnit", "central_error_layout"]


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
        Per-PE outputs (``(local row, value)`` then ``end``).
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
        self.bank_depth = bank_depth(config)
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
        N, W, D = cfg.n_pes, cfg.bcast_width, cfg.fifo_depth
        skip = cfg.skip_columns
        layer = self.i_layer
        IFW, OFW = len(layer.in_features), len(layer.out_features)
        m.submodules.ring = ring = BroadcastRing(cfg)
        m.submodules.lanes = lanes = LaneFilter(cfg, IFW)
        m.submodules.merge = merge = BankMerge(cfg, self.bank_depth)
        m.submodules.collect = collect = Collector(cfg, self.bank_depth, OFW)
        for p in range(N):
            wiring.connect(m, ring.o_act[p], wiring.flipped(self.o_act[p]))
            wiring.connect(m, wiring.flipped(self.i_out[p]), collect.i_out[p])
        if not cfg.conv:
            wiring.connect(m, wiring.flipped(self.i_input), lanes.i_input)
        wiring.connect(m, collect.o_logit, wiring.flipped(self.o_logit))

        # Broadcast side (``state``) and collect side (the collector) run concurrently: layer
        # L's outputs are collected while layer L + 1 is broadcast from the banks they fill.
        # (conv: BPATCH is a pass's patch broadcast, WAITF waits for the map it reads)
        IDLE, BIN, BBUF, END, DRAIN, BPATCH, WAITF = range(7)
        state = Signal(range(7))
        m.d.comb += [self.o_bidle.eq(state == IDLE),
                     self.o_idle.eq((state == IDLE) & ~collect.o_collecting)]
        start = Signal()                # a layer starts (acted on only while idle)
        m.d.comb += start.eq((state == IDLE) & self.i_start)

        # ``takes[k]``: the broadcast source hands over word ``take_datas[k]`` (an input lane, a
        # bank head or the end token; ``takes[1]`` only with ``takes[0]``, never the end
        # token), allowed only while ``can_take``. The sources drive zeros while inactive.
        can_take = Signal()
        end_take = Signal()             # the end token is handed over
        fmap_layer = Signal()           # the layer reads its input from the feature-map buffer
        if cfg.conv:
            m.d.comb += fmap_layer.eq(layer.fmap_in)
        # (a layer that reads the feature-map buffer collects one layer at a time; a conv pass's
        # end token only waits while the collector's pass queue is full)
        collect_busy = Signal()
        if cfg.conv:
            m.d.comb += collect_busy.eq(Mux(layer.conv, collect.o_full, collect.o_collecting))
        # (conv, early start: the end token goes out in the cycle the patch ends if that cycle
        # hands over no patch word; ``end_now``)
        end_now = Signal()
        m.d.comb += end_take.eq(((state == END) | end_now) & can_take
                                & ~(fmap_layer & collect_busy))
        takes = [Signal(name=f"take{k}") for k in range(W)]
        take_datas = [Signal(broadcast_layout(cfg), name=f"take_data{k}") for k in range(W)]
        conv = cfg.conv
        if conv:
            m.submodules.fmap = fmap = FeatureMapBuffer(cfg)
            m.submodules.store = store = ImageStore(cfg)
            m.submodules.patch = patch = PatchGenerator(cfg)
            m.submodules.pool = pool = PoolWriter(cfg)
        for k in range(W):
            patch_take = patch.o_take[k] if conv else 0
            patch_data = patch.o_take_data[k].as_value() if conv else 0
            m.d.comb += [
                takes[k].eq(lanes.o_take[k] | merge.o_take[k] | patch_take
                            | (end_take if k == 0 else 0)),
                take_datas[k].eq(lanes.o_take_data[k].as_value()
                                 | merge.o_take_data[k].as_value() | patch_data),
            ]
        m.d.comb += take_datas[0].end.eq((state == END) | end_now)

        # the taken words wait for their skip bits (with the table) or enter all FIFOs at once
        held_busy = Signal()            # nothing may follow the end token until it is pushed
        if skip:
            m.submodules.skip = sk = ColumnSkip(cfg, len(layer.index), IFW)
            m.d.comb += [
                sk.i_skip_we.eq(self.i_skip_we), sk.i_skip_addr.eq(self.i_skip_addr),
                sk.i_skip_data.eq(self.i_skip_data),
                # (a conv layer's passes after its first use the same entries)
                sk.i_start.eq(start & ~(layer.repeat if conv else 0)),
                sk.i_layer_index.eq(layer.index),
                sk.i_in_features.eq(layer.in_features),
                *(sk.i_take[k].eq(takes[k]) for k in range(W)),
                *(sk.i_take_data[k].eq(take_datas[k]) for k in range(W)),
                *(sk.i_room[p].eq(ring.o_room[p]) for p in range(N)),
                can_take.eq(sk.o_can_take), held_busy.eq(sk.o_busy),
                ring.i_push.eq(sk.o_push),
                *(ring.i_push_data[k].eq(sk.o_push_data[k]) for k in range(W)),
                *(ring.i_push_to[k].eq(sk.o_push_to[k]) for k in range(W)),
            ]
        else:
            m.d.comb += [
                can_take.eq(Cat(lv != D for lv in ring.o_level).all()),
                ring.i_push.eq(takes[0]),
                ring.i_push_data[0].eq(take_datas[0]),
                ring.i_push_to[0].eq((1 << N) - 1),
            ]

        # phase 1a (layer 0): the dense input, zeros filtered
        m.d.comb += [
            lanes.i_in_features.eq(layer.in_features),
            lanes.i_start.eq(start & (layer.index == 0) & ~fmap_layer),
            lanes.i_active.eq(state == BIN),
            lanes.i_can_take.eq(can_take),
        ]
        if conv:
            # the input image goes into the feature-map buffer (half 0) instead; the patches
            # of layer 0 follow the store
            inp = self.i_input
            m.d.comb += [
                lanes.i_input.valid.eq(inp.valid), lanes.i_input.payload.eq(inp.payload),
                store.i_input.valid.eq(inp.valid), store.i_input.payload.eq(inp.payload),
                inp.ready.eq(lanes.i_input.ready | store.i_input.ready),
                self.o_in_take.eq(lanes.o_in_take | store.o_in_take),
                store.i_start.eq(start & (layer.index == 0) & fmap_layer & ~layer.repeat),
                store.i_channels.eq(layer.in_channels), store.i_height.eq(layer.in_height),
                store.i_width.eq(layer.in_width), fmap.i_st_half.eq(layer.fmap_buf),
                fmap.i_st_we.eq(store.o_we), fmap.i_st_addr.eq(store.o_waddr),
                fmap.i_st_data.eq(store.o_wdata),
                # patches: a pass reads half L mod 2; a conv layer's later passes were scanned
                # ahead by the generator (the next position in raster order, as the sequencer's)
                patch.i_start.eq(start & fmap_layer & ~(layer.conv & layer.repeat)),
                patch.i_next.eq(start & fmap_layer & layer.conv & layer.repeat),
                # (the fc layer after a conv: the whole map is its one patch)
                patch.i_channels.eq(layer.in_channels), patch.i_height.eq(layer.in_height),
                patch.i_width.eq(layer.in_width),
                patch.i_kernel_h.eq(Mux(layer.conv, layer.kernel_h, layer.in_height)),
                patch.i_kernel_w.eq(Mux(layer.conv, layer.kernel_w, layer.in_width)),
                patch.i_pos_y.eq(layer.pos_y), patch.i_pos_x.eq(layer.pos_x),
                patch.i_active.eq(state == BPATCH), patch.i_can_take.eq(can_take),
                patch.i_stored.eq(store.o_stored), patch.i_stored_all.eq(store.o_done),
                fmap.i_rd_half.eq(layer.fmap_buf),
                patch.i_replicated.eq(layer.index == 0),
                fmap.i_rd_en.eq(patch.o_rd_en),
                *(fmap.i_rd_addr[p].eq(patch.o_rd_addr[p]) for p in range(N)),
                *(patch.i_rd_data[p].eq(fmap.o_rd_data[p]) for p in range(N)),
                # a conv pass's outputs, pooled, into the other half
                pool.i_begin.eq(end_take & layer.conv),
                pool.i_height.eq(layer.in_height), pool.i_width.eq(layer.in_width),
                pool.i_kernel_h.eq(layer.kernel_h), pool.i_kernel_w.eq(layer.kernel_w),
                pool.i_pos_y.eq(layer.pos_y), pool.i_pos_x.eq(layer.pos_x),
                pool.i_valid.eq(collect.o_pool_we), pool.i_end.eq(collect.o_pool_end),
                *(pool.i_value[p].eq(collect.o_bank_wdata[p].value) for p in range(N)),
                fmap.i_rmw_re.eq(pool.o_rmw_re), fmap.i_we.eq(pool.o_we),
                *(fmap.i_rmw_addr[p].eq(pool.o_rmw_addr[p]) for p in range(N)),
                *(pool.i_rmw_data[p].eq(fmap.o_rmw_data[p]) for p in range(N)),
                *(fmap.i_waddr[p].eq(pool.o_waddr[p]) for p in range(N)),
                *(fmap.i_wdata[p].eq(pool.o_wdata[p]) for p in range(N)),
                collect.i_conv.eq(layer.conv),
            ]
            out_half = Signal()         # the half the collected conv layer writes
            m.d.comb += fmap.i_wr_half.eq(out_half)
            with m.If(end_take):
                m.d.sync += out_half.eq(~layer.fmap_buf)
            with m.If(patch.o_last):
                m.d.sync += state.eq(END)
            if cfg.early:
                m.d.comb += end_now.eq(patch.o_last & ~patch.o_take[0] & layer.conv)
            with m.If((state == WAITF) & ~collect.o_collecting):
                m.d.sync += state.eq(BPATCH)
        else:
            m.d.comb += self.o_in_take.eq(lanes.o_in_take)
        with m.If(lanes.o_last):
            m.d.sync += state.eq(END)

        # phase 1b (later layers): N-way merge of the banks
        m.d.comb += [
            merge.i_start.eq(start & (layer.index != 0) & ~fmap_layer),
            merge.i_active.eq(state == BBUF),
            merge.i_ended.eq(collect.o_ended),
            merge.i_can_take.eq(can_take),
            merge.i_clear.eq(end_take),
            merge.i_we.eq(collect.o_bank_we),
            *(merge.i_wdata[p].eq(collect.o_bank_wdata[p]) for p in range(N)),
            collect.i_bank_room.eq(merge.o_room),
        ]
        with m.If((state == BBUF) & merge.o_exhausted):
            m.d.sync += state.eq(END)

        # ---- phase 2: end token; the collect of this layer starts ------------------------------
        # (the previous layer's collect is complete: the broadcast only ends once every bank is
        # exhausted, which needs every PE's end token of that layer)
        m.d.comb += [collect.i_begin.eq(end_take), collect.i_last.eq(layer.last),
                     collect.i_out_features.eq(layer.out_features)]
        with m.If(end_take):
            m.d.sync += state.eq(DRAIN)
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
            if conv:
                # A conv pass's end token needs no drain: the next pass's words follow it
                # through the skip stage in order (a repeated pass keeps the table's base; a
                # new layer's start only moves the base for later reads, and the layer after
                # a conv waits for its collect anyway), so the next pass may start at once.
                with m.If(end_take & layer.conv):
                    m.d.sync += [state.eq(IDLE), self.o_bend.eq(1)]
            with m.If(end_take):
                m.d.sync += [etaken.eq(0), bd_wait.eq(1)]
            with m.Else():
                now = Signal(N)
                m.d.comb += now.eq(etaken | ring.o_end_pop)
                m.d.sync += etaken.eq(now)
                with m.If(bd_wait & now.all()):
                    m.d.sync += [bd_wait.eq(0), self.o_bdone.eq(1)]
        else:
            with m.If((state == DRAIN) & ~held_busy
                      & Cat(lv == 0 for lv in ring.o_level).all()):
                m.d.sync += [state.eq(IDLE), self.o_bdone.eq(1)]

        # ---- phase 3 and 4: collect, barrier -------------------------------------------------
        m.d.comb += [
            self.o_argmax.eq(collect.o_argmax),
            self.o_done.eq(collect.o_done),
            self.o_error.input.eq(lanes.o_error | (store.o_error if conv else 0)),
            self.o_error.overflow.eq(collect.o_err_overflow),
            self.o_error.logits.eq(collect.o_err_logits),
        ]

        # ---- start -------------------------------------------------------------------------
        with m.If(start):
            with m.If(fmap_layer):
                # a layer's first pass waits until the map it reads is written (the previous
                # layer's last pass collected); layer 0's image is stored while it is read
                m.d.sync += state.eq(Mux((layer.index == 0) | (layer.repeat if conv else 0),
                                         BPATCH, WAITF))
            with m.Elif(layer.index == 0):
                m.d.sync += state.eq(BIN)
            with m.Else():
                m.d.sync += state.eq(BBUF)
        return m
