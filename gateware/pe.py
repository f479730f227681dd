"""Processing element: Huffman-coded sparse columns -> multiply-accumulate -> requantize.

One PE owns the rows ``r`` with ``r mod N == index`` (docs/ARCHITECTURE.md sections 3, 4, 7).
It has two memories: the *data memory* (layer headers, Huffman streams, biases) and the
*pointer memory* (the column pointer tables, EIE's pointer SRAM), each with its own port (the
pointer memory with ``config.pointer_ports == 2``: two read ports), and two engines. The
*column engine*, all stages registered:

1. *Pointer fetch* (pointer memory): per non-zero activation ``(col, value)`` read ``ptr[col]``
   and ``ptr[col+1]`` (1 or 2 words each); ``ptr[col]`` is skipped when the previous column was
   ``col - 1`` (its end pointer is this column's start). One read port: one word per cycle, so
   a column takes 1-2 cycles (2-word pointers: 2-4). Two read ports (EIE's even/odd pointer
   banks in spirit, same memory image): 1-word pointers ``ptr[col]`` and ``ptr[col+1]`` in one
   cycle, one cycle per column; 2-word pointers the high and low word of one pointer per cycle
   (1-2 cycles). Empty columns and decreasing pointers (``o_error``) are dropped here.
2. *Word fetch* (data memory): the column's stream words in order, running ahead of the
   decoder (the segment's framing waits in a 2-entry queue, its words in the word FIFO); a word
   that was the last one read (the boundary word of adjacent columns) is reused without a read.
   With ``config.stream_words == 2`` a stream word is two memory words, ``a`` and ``a + 1``
   (the data memory's second read port), from the column's first word on: a column of one or
   two codes then fits one stream word instead of straddling two 16-bit words.
3. :class:`gateware.huffman.HuffmanDecoder`: one joint symbol per cycle, columns back to back
   (without Huffman coding, ``config.huffman`` off: :class:`gateware.fixed_decoder.
   FixedDecoder`, the same for fixed-width entries).
4. *Accumulate*: ``row = prev + gap + 1``; read ``acc[row]`` and ``codebook[idx]``, multiply
   ``value * weight`` (an SB_MAC16), add and write back. The accumulator is read one stage
   before the write-back through a port that is transparent for it, so the same row in
   consecutive columns (read and written in the same cycle) needs no forwarding registers.

On the ``end`` token, once stages 1-4 are empty and the *requantization engine* is free, the
layer is handed over and the column engine is idle again. The requantization engine, one row per
cycle: ``acc + (bias << bias_shift)`` (the bias scaled by a second SB_MAC16 and a byte shift),
round-shift-saturate (hidden, :func:`round_shift_saturate`) or raw (last layer), write 0 back,
emit the non-zero ones (all on the last layer) with their local row, then ``end``. With
``config.requant_overlap`` the accumulators are two banks (even and odd layers) and the
engine's layer parameters are latched at the hand-over, so layer L is requantized while the
column engine runs layer L + 1 (``o_col_idle``); its bias reads take the data-memory cycles
the header and word reads leave free. Without it, one bank, and the next layer waits for the
requantization (``o_col_idle == o_idle``). With the early start a conv layer's passes overlap in
stages 1-4 as well (``config.conv``): at pass k's end token, with pass k + 1's start waiting,
the column engine moves on without a drain, each activation tagged with its pass's accumulator
bank (:func:`gateware.pe_pointers.pe_tag_bits`), and pass k is requantized once none of its
symbols is left in the stages (docs/ARCHITECTURE.md section 5).

Throughput (no back-pressure): within a column one symbol per cycle, columns back to back
(table loading and pipeline fill aside); short columns cost their pointer reads (one port: 1-2
cycles per column; two ports: one, the fetch takes a column per cycle while the segment queue
has room) and stream words (one per cycle into the decoder: 16 or 32 bits), empty columns their
pointer reads. Requantization takes ``rows_local + 6`` cycles (a conv layer's passes one after
another with the early start: ``rows_local + 2`` each, the next pass taken behind the previous
one's last rows, :class:`gateware.pe_requant.Requantize`). Measured rates and the area of
each variant: docs/HARDWARE.md ("The processing element"; ``python -m hw.area --part pe``).

Components, composed here with the layer control (start, header reads, hand-over):
:class:`gateware.pe_pointers.PointerFetch` (stage 1, with the segment queue),
:class:`gateware.pe_words.WordFetch` (stage 2, with the word FIFO and the decoder's segment
queue), :class:`gateware.huffman.HuffmanDecoder` (stage 3),
:class:`gateware.pe_accumulate.Accumulate` (stage 4, with the codebook),
:class:`gateware.pe_requant.Requantize` (the requantization engine),
:class:`gateware.pe_accbanks.AccumulatorBanks` (the accumulators, shared by the two, and the
clearing sweep after reset) and :class:`gateware.pe_arbiter.DataPortArbiter` (the data memory's
port). Streams connect stages 1-4 (``wiring.connect``).
"""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .config import LoadWrite, broadcast_layout, pe_output_layout, layer_config_layout
from .fixed_decoder import column_decoder
from .memories import PEMemory
from .pe_accbanks import AccumulatorBanks
from .pe_accumulate import Accumulate
from .pe_arbiter import DataPortArbiter
from .pe_header import LayerHeader
from .pe_pointers import PointerFetch, pe_tag_bits
from .pe_requant import Requantize, round_shift_saturate
from .pe_words import WordFetch

__all__ = ["ProcessingElement", "round_shift_saturate"]


class ProcessingElement(wiring.Component):
    """One EIE-style processing element (section 7 of docs/ARCHITECTURE.md).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
    index : int
        PE number ``p`` (0..N-1): its memory id; its local row ``i`` is global row
        ``p + N * i``.

    Attributes
    ----------
    i_load : In(stream.Signature(LoadWrite))
        Every load write; kept: ``mem == index`` (data memory), ``mem == N + 5 + index``
        (pointer memory) and the codebook / Huffman table ids (own replicas). Ready while
        ``o_idle``.
    i_layer : In(layer_config_layout(config))
        Current layer descriptor, stable from ``i_start`` to the next ``i_start`` (the
        requantization engine latches what it needs at the hand-over). With the early start
        (``config.early``) it is sampled with ``i_start`` (the column engine keeps a copy).
    i_start : In(1)
        Pulse while ``o_col_idle``: begin layer ``i_layer.index`` (reads its header words and
        loads its Huffman limits; a conv layer's later passes, ``i_layer.repeat``, keep them
        and start at once). With the early start a start that comes while the column engine still works on the
        previous layer waits for its hand-over (one start may wait).
    i_act : In(stream.Signature(broadcast_layout(config)))
        Non-zero input activations ``(col, value)``, then one ``end`` token.
    o_out : Out(stream.Signature(pe_output_layout(config)))
        After ``end``: hidden layer: non-zero requantized outputs ``(local row, value)`` (a
        conv layer's pass: every row, zeros included, for the pool writer); last layer: every
        accumulator in local row order; then one ``end`` token.
    o_idle : Out(1)
        No layer in progress (neither engine busy; loads are accepted). Low for the first
        ``max_rows_per_pe`` cycles after a reset, while every accumulator row is cleared.
    o_col_idle : Out(1)
        The column engine is idle: the next layer may start (``i_start``) while the
        requantization engine still works on the previous one. With the early start: no start
        is waiting (a start is accepted even while the column engine is busy; one that comes
        during the clearing after a reset waits for its end).
    o_error : Out(1)
        Sticky until reset: invalid Huffman code, a row at or past ``rows_local``, a column at or
        past ``in_features``, an accumulator range past ``max_rows_per_pe``, decreasing pointers
        or ``i_start`` while busy (early start: while a start is already waiting).
    """

    # Queue depths: fetched column segments waiting for the word fetcher, and fetched words.
    # With several PEs the columns are short and deeper queues keep the decoder fed (LeNet-300-100,
    # 2 -> 4 entries: N=2 1.347 -> 1.324, N=4 1.687 -> 1.624 of the ideal bound); one PE gains
    # 0.8 % for 260 more logic cells, which the iCEBreaker build cannot spare.
    # The decoder's queue holds segments whose words are being fetched: a segment waits there
    # about three cycles (word read, word FIFO), so with one-code columns 2 entries let the
    # fetch run only two columns ahead and the decoder waited for words (N = 8, MNIST image 0,
    # 2 -> 4 entries: layer 1 180 -> 157 cycles).
    # ``config.segment_queue_depth`` overrides both segment queues (the iCEBreaker: 1 entry,
    # 188 logic cells less, 1.3 % more cycles with one PE; docs/HARDWARE.md).
    SEG_QUEUE, WORD_FIFO, DEC_QUEUE = 2, 2, 2                  # N = 1
    SEG_QUEUE_MANY, WORD_FIFO_MANY, DEC_QUEUE_MANY = 4, 4, 4   # N > 1

    def __init__(self, config, index):
        if not 0 <= index < config.n_pes:
            raise ValueError(f"PE index {index} outside 0..{config.n_pes - 1}")
        self.cfg = config
        self.index = index
        many = config.n_pes > 1
        self.seg_queue = self.SEG_QUEUE_MANY if many else self.SEG_QUEUE
        self.word_fifo = self.WORD_FIFO_MANY if many else self.WORD_FIFO
        self.dec_queue = self.DEC_QUEUE_MANY if many else self.DEC_QUEUE
        if config.segment_queue_depth:      # the board's choice (area) over the automatic one
            self.seg_queue = self.dec_queue = config.segment_queue_depth
            # (and the word FIFO of one PE: a board that trades cycles for area does so with
            # every PE count; 2 words, one in the decoder and one behind it)
            self.word_fifo = self.WORD_FIFO
        super().__init__({
            "i_load": In(stream.Signature(LoadWrite)),
            "i_layer": In(layer_config_layout(config)),
            "i_start": In(1),
            "i_act": In(stream.Signature(broadcast_layout(config))),
            "o_out": Out(stream.Signature(pe_output_layout(config))),
            "o_idle": Out(1),
            "o_col_idle": Out(1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MA = (cfg.pe_mem_depth - 1).bit_length()      # word address bits
        # With the early start (``cfg.early``) a start may come while the column engine
        # still works on the previous layer: it waits in ``pending`` (its descriptor in
        # ``next_layer``) until the hand-over, and the column engine works from its own copy of
        # the descriptor (``cur_layer``), latched when the start is acted on.
        early = cfg.early
        if early:
            cur_layer = Signal(layer_config_layout(cfg))
            next_layer = Signal(layer_config_layout(cfg))
            pending = Signal()
            layer = cur_layer
        else:
            layer = self.i_layer

        SW = cfg.stream_words               # memory words per stream word (1 or 2)
        m.submodules.mem = mem = PEMemory(cfg.pe_mem_depth, cfg.memory, read_ports=SW)
        two = cfg.pointer_ports == 2        # the pointer memory's second read port
        m.submodules.ptrmem = pmem = PEMemory(cfg.pe_mem_depth, cfg.memory,
                                              read_ports=cfg.pointer_ports)
        m.submodules.ptrs = ptrs = PointerFetch(cfg, self.seg_queue, len(layer.in_features))
        m.submodules.words = words = WordFetch(cfg, self.word_fifo, self.dec_queue)
        # (without Huffman coding the columns are fixed-width entries: a slot selector)
        m.submodules.dec = dec = column_decoder(cfg, pe_tag_bits(cfg))
        # Overlapping conv passes: the column engine takes a repeated pass's activations
        # right behind the previous pass's (each tagged with its pass's accumulator bank)
        # instead of draining stages 1-4 first (about 12 cycles a pass).
        overlap_passes = pe_tag_bits(cfg) > cfg.act_bits
        m.submodules.accum = accum = Accumulate(cfg)
        m.submodules.requant = rq = Requantize(cfg, self.index, len(layer.shift),
                                               len(layer.bias_shift))
        m.submodules.port = port = DataPortArbiter(MA)
        m.submodules.header = hdr = LayerHeader(cfg)
        self._ptrs, self._words, self._dec, self._rq = ptrs, words, dec, rq   # for probes
        # stages 1-4: pointer fetch -> word fetch -> decoder -> accumulate
        wiring.connect(m, ptrs.o_seg, words.i_seg)
        wiring.connect(m, words.o_dseg, dec.i_seg)
        wiring.connect(m, words.o_word, dec.i_word)
        wiring.connect(m, dec.o_sym, accum.i_sym)
        wiring.connect(m, rq.o_out, wiring.flipped(self.o_out))

        m.submodules.accs = accs = AccumulatorBanks(cfg)
        error = Signal()
        m.d.comb += self.o_error.eq(error)
        with m.If(dec.o_error | ptrs.o_error | words.o_error | accum.o_error | hdr.o_error):
            m.d.sync += error.eq(1)

        # ---- control state ----------------------------------------------------------------
        # Column engine (header, pointers, words, decoder, accumulate) and requantization
        # engine: the column engine hands a finished layer over to the requantization engine
        # (with the end token) and can start the next layer while it runs.
        IDLE, HDR, RUN = range(3)
        state = Signal(range(3))
        idle = Signal()
        col_idle = Signal()
        # After every reset the accumulators are cleared (``accs.o_clearing``) before the
        # column engine counts as idle: no layer starts and no load is taken until then.
        m.d.comb += [col_idle.eq((state == IDLE) & ~accs.o_clearing),
                     idle.eq(col_idle & rq.o_idle),
                     self.o_idle.eq(idle)]
        # without the overlap the next layer waits for the requantization too; with the early
        # start a start is accepted unless one is already waiting
        if early:
            m.d.comb += self.o_col_idle.eq(~pending)
        else:
            m.d.comb += self.o_col_idle.eq(col_idle if cfg.requant_overlap else idle)

        # ---- load port ---------------------------------------------------------------------
        ld = self.i_load.payload
        ld_fire = Signal()
        m.d.comb += [
            self.i_load.ready.eq(idle),
            ld_fire.eq(self.i_load.valid & idle),
            dec.i_load.valid.eq(ld_fire),
            dec.i_load.payload.eq(ld),
            accum.i_cb_we.eq(ld_fire & (ld.mem == cfg.mem_codebook)),
            accum.i_cb_addr.eq(ld.addr),
            accum.i_cb_data.eq(ld.data),
        ]
        # Load words for the data and pointer memories are written one cycle after they are
        # taken, from registers: the accelerator's idle -> load hand-shake -> address
        # multiplexer path was the iCEBreaker build's critical path. (No read meets that write:
        # loads are taken only while the PE is idle, the accelerator starts no layer in a cycle
        # that offers a load, and a start's first header read comes a cycle after it.)
        m_we, p_we = Signal(), Signal()
        ld_addr = Signal(MA)
        ld_data = Signal(16)
        m.d.sync += [
            m_we.eq(ld_fire & (ld.mem == self.index) & (ld.addr < cfg.pe_mem_depth)),
            p_we.eq(ld_fire & (ld.mem == cfg.mem_pointers + self.index)
                    & (ld.addr < cfg.pe_mem_depth)),
        ]
        with m.If(ld_fire):
            m.d.sync += [ld_addr.eq(ld.addr), ld_data.eq(ld.data)]
        m.d.comb += [
            mem.addr.eq(port.o_addr), mem.re.eq(port.o_re), mem.we.eq(m_we),
            mem.wdata.eq(ld_data),
            port.i_load_we.eq(m_we), port.i_load_addr.eq(ld_addr),
        ]
        # the pointer memory: written by loads, read only by the pointer fetch
        m.d.comb += [pmem.we.eq(p_we), pmem.wdata.eq(ld_data),
                     pmem.addr.eq(Mux(p_we, ld_addr, ptrs.o_addr)), pmem.re.eq(ptrs.o_re),
                     ptrs.i_rdata.eq(pmem.rdata)]
        if two:
            # (ptr[col] on port 1 is read even when it is not needed: no gating logic)
            m.d.comb += [pmem.addr2.eq(ptrs.o_addr2), pmem.re2.eq(ptrs.o_re),
                         ptrs.i_rdata2.eq(pmem.rdata2)]

        # ---- layer start and header --------------------------------------------------------

        if early:
            # a start is acted on in IDLE: the waiting one first, else one arriving now
            start_fire = Signal()
            start_desc = Signal(layer_config_layout(cfg))
            m.d.comb += [start_fire.eq(col_idle & (pending | self.i_start)),
                         start_desc.eq(Mux(pending, next_layer, self.i_layer))]
            # (a conv layer's later passes keep the header and the Huffman limits: same layer)
            repeat = start_desc.repeat if cfg.conv else 0
            m.d.comb += [
                dec.i_layer_index.eq(start_desc.index),
                dec.i_sym_base.eq(layer.sym_base),
                dec.i_start.eq(start_fire & ~repeat),
            ]
            with m.If(start_fire):
                m.d.sync += [cur_layer.eq(start_desc), pending.eq(0)]
            with m.If(self.i_start & ~col_idle):
                # the column engine is busy: the start waits for the hand-over (one may wait)
                m.d.sync += [pending.eq(1), next_layer.eq(self.i_layer)]
                with m.If(pending):
                    m.d.sync += error.eq(1)
            with m.If(self.i_start & col_idle & pending):
                m.d.sync += error.eq(1)
        else:
            repeat = self.i_layer.repeat if cfg.conv else 0
            m.d.comb += [
                dec.i_layer_index.eq(layer.index),
                dec.i_sym_base.eq(layer.sym_base),
                dec.i_start.eq(self.i_start & col_idle & ~repeat),
            ]
            with m.If(self.i_start & ~col_idle):
                m.d.sync += error.eq(1)
        start = start_fire if early else self.i_start & ~accs.o_clearing

        m.d.comb += [
            hdr.i_start.eq((state == IDLE) & start & ~repeat), hdr.i_active.eq(state == HDR),
            hdr.i_layer_index.eq(layer.index), hdr.i_rdata.eq(mem.rdata),
            port.i_header_re.eq(hdr.o_re), port.i_header_addr.eq(hdr.o_addr),
        ]
        ptr_base, stream_base, bias_base = hdr.o_ptr_base, hdr.o_stream_base, hdr.o_bias_base
        rows_local, acc_base = hdr.o_rows_local, hdr.o_acc_base

        # ---- stages 1 and 2: pointer and word fetch ----------------------------------------
        act = self.i_act.payload
        drained = Signal()              # stages 1-4 are empty
        # the end token: the finished layer goes to the requantization engine once it is free
        handover = Signal()
        col_bank = Signal()             # the accumulator bank of the column engine's layer
        pass_on = Signal()              # overlapping conv passes: moves on to the next pass
        rq_wait = Signal()              # a pass handed over on the fly waits for its symbols
        # The requantization engine takes the layer: when idle, or (overlapping passes) a
        # repeated pass of a conv layer as soon as the previous pass's rows are all issued
        # (that pass is of the same layer: same parameters bar the bank).
        if overlap_passes:
            rq_takes = Signal()
            m.d.comb += rq_takes.eq(rq.o_idle | (rq.o_ready & layer.repeat))
        else:
            rq_takes = rq.o_idle
        m.d.comb += handover.eq((state == RUN) & self.i_act.valid & act.end & ~ptrs.o_issuing
                                & drained & rq_takes & ~rq_wait & ~pass_on)
        m.d.comb += [
            ptrs.i_act.valid.eq(((state == RUN) | (state == HDR)) & self.i_act.valid
                                & ~act.end),
            ptrs.i_act.payload.col.eq(act.col),
            ptrs.i_act.payload.value.eq(Cat(act.value, col_bank) if overlap_passes
                                        else act.value),
            self.i_act.ready.eq((ptrs.i_act.valid & ptrs.i_act.ready) | handover | pass_on),
            ptrs.i_run.eq(state == RUN),
            ptrs.i_restart.eq((state == IDLE) & start),
            ptrs.i_ptr_base.eq(ptr_base),
            ptrs.i_ptr_words2.eq(layer.ptr_words2),
            ptrs.i_in_features.eq(layer.in_features),
            words.i_run.eq(state == RUN),
            words.i_restart.eq((state == IDLE) & start),
            words.i_stream_base.eq(stream_base),
            words.i_rdata.eq(Cat(mem.rdata2, mem.rdata) if SW == 2 else mem.rdata),
            port.i_word_re.eq(words.o_req),
            port.i_word_addr.eq(words.o_addr),
        ]
        if SW == 2:
            # the second word of a stream word: only the word fetch reads this port
            m.d.comb += [mem.addr2.eq(words.o_addr2), mem.re2.eq(words.o_req)]

        # ---- stage 4: accumulate -----------------------------------------------------------
        m.d.comb += [
            # (conv: the sequencer alternates the bank with every pass and layer)
            col_bank.eq((layer.bank if cfg.conv else layer.index[0])
                        if cfg.requant_overlap else 0),
            accum.i_rows_local.eq(rows_local),
            accum.i_acc_base.eq(acc_base),
            accum.i_layer_index.eq(layer.index),
            # (overlapping passes: the bank of the symbol being accumulated, its tag's)
            accs.i_col_bank.eq(accum.o_bank if overlap_passes else col_bank),
            accs.i_col_addr.eq(accum.o_acc_addr),
            accs.i_col_we.eq(accum.o_acc_we), accs.i_col_waddr.eq(accum.o_acc_waddr),
            accs.i_col_wdata.eq(accum.o_acc_wdata),
            accum.i_acc_data.eq(accs.o_col_data),
        ]

        # ---- requantization engine ---------------------------------------------------------
        rq_go = Signal()                # the waiting pass's requantization starts
        wait_bank = Signal()            # the waiting pass's bank
        m.d.comb += [
            rq.i_start.eq(handover | rq_go),
            # (a waiting pass has the same parameters as the column engine's, bar the bank)
            rq.i_rows.eq(rows_local), rq.i_bias_base.eq(bias_base), rq.i_acc_base.eq(acc_base),
            rq.i_bank.eq(Mux(rq_wait, wait_bank, col_bank)), rq.i_last.eq(layer.last),
            rq.i_shift.eq(layer.shift),
            rq.i_dense.eq(layer.conv if cfg.conv else 0),
            rq.i_bias_shift.eq(layer.bias_shift),
            # its bias reads take the cycles without a header or word read
            rq.i_mem_free.eq(~words.o_req & (state != HDR)),
            rq.i_rdata.eq(mem.rdata),
            *([] if overlap_passes else [accs.i_rq_active.eq(rq.o_acc_active),
                                         accs.i_rq_bank.eq(rq.o_acc_bank)]),
            accs.i_rq_raddr.eq(rq.o_acc_raddr), accs.i_rq_re.eq(rq.o_acc_re),
            accs.i_rq_waddr.eq(rq.o_acc_waddr), accs.i_rq_we.eq(rq.o_acc_we),
            rq.i_acc_data.eq(accs.o_rq_data),
            port.i_bias_re.eq(rq.o_bias_re),
            port.i_bias_addr.eq(rq.o_bias_addr),
        ]

        if overlap_passes:
            # (the engine may own both banks: a pass's first rows behind the previous pass's
            # last ones)
            m.d.comb += [accs.i_rq_busy.eq(rq.o_acc_busy), accs.i_rq_rbank.eq(rq.o_acc_rbank),
                         accs.i_rq_wbank.eq(rq.o_acc_wbank)]

        # ---- overlapping conv passes -------------------------------------------------------
        if overlap_passes:
            # At pass k's end token, with the start of pass k + 1 of the same layer waiting,
            # the column engine moves on at once if pass k - 1's requantization has started
            # (one pass waits at most); stages 1-4 keep pass k's last columns, each symbol
            # tagged with its bank. Pass k's requantization starts when the engine is free
            # (pass k - 1 done) and none of pass k's symbols is left: the stages are empty, or
            # a symbol of pass k + 1 reached the accumulate stage (symbols stay in order) and
            # none of pass k's is in it. Pass k + 2 shares pass k's bank: its symbols wait at
            # the accumulate stage's input while that bank is requantized.
            seen_next = Signal()        # a symbol of the next pass reached the accumulate stage
            wait_repeat = Signal()      # the waiting pass is a repeated one (it may follow)
            sym_bank = dec.o_sym.payload.tag[cfg.act_bits]
            m.d.comb += [
                pass_on.eq((state == RUN) & self.i_act.valid & act.end & pending
                           & next_layer.repeat & ~rq_wait),
                rq_go.eq(rq_wait & (rq.o_idle | (rq.o_ready & wait_repeat))
                         & (drained | seen_next)
                         & ~accum.o_bank_busy.bit_select(wait_bank, 1)),
                # a symbol waits while its bank is the requantization engine's
                accum.i_hold.eq(rq.o_acc_busy.bit_select(sym_bank, 1)),
                accum.i_hold_bank.eq(sym_bank),
            ]
            with m.If((dec.o_sym.valid & (sym_bank != wait_bank))
                      | accum.o_bank_busy.bit_select(~wait_bank, 1)):
                m.d.sync += seen_next.eq(1)
            with m.If(pass_on):         # (after the line above: a new wait starts unseen)
                m.d.sync += [cur_layer.eq(next_layer), pending.eq(0), rq_wait.eq(1),
                             wait_bank.eq(col_bank), seen_next.eq(0),
                             wait_repeat.eq(cur_layer.repeat)]
            with m.If(rq_go):
                m.d.sync += rq_wait.eq(0)

        # ---- sequencing --------------------------------------------------------------------
        with m.Switch(state):
            with m.Case(IDLE):
                with m.If(start):
                    m.d.sync += state.eq(Mux(repeat, RUN, HDR))
            with m.Case(HDR):
                with m.If(hdr.o_last):
                    m.d.sync += state.eq(RUN)
            with m.Case(RUN):
                with m.If(handover):
                    m.d.sync += state.eq(IDLE)
        # signals the profiler (hw.profile) samples every cycle
        self._top_probe = dict(start=(start_fire | pass_on) if early
                               else self.i_start & col_idle,
                               state=state, seg_valid=dec.i_seg.valid,
                               seg_ready=dec.i_seg.ready, word_valid=dec.i_word.valid,
                               word_ready=dec.i_word.ready, sym=dec.o_sym.valid,
                               pass_on=pass_on, rq_wait=rq_wait)
        m.d.comb += drained.eq(~(ptrs.o_issuing | ptrs.o_returning | ptrs.o_seg.valid
                                 | words.o_busy | dec.o_busy | accum.o_busy))
        return m

    @property
    def _probe(self):
        """Signals the profiler (hw.profile) samples every cycle (after elaboration)."""
        return {**self._top_probe, **self._ptrs._probe, **self._words._probe,
                "rstate": self._rq._rstate}
