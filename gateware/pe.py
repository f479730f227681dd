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
3. :class:`gateware.huffman.HuffmanDecoder`: one joint symbol per cycle, columns back to back.
4. *Accumulate*: ``row = prev + gap + 1``; read ``acc[row]`` and ``codebook[idx]``, multiply
   ``value * weight`` (an SB_MAC16), add and write back. The accumulator is read one stage
   before the write-back through a port that is transparent for it, so the same row in
   consecutive columns (read and written in the same cycle) needs no forwarding registers.

On the ``end`` token, once stages 1-4 are empty and the *requantization engine* is free, the
layer is handed over and the column engine is idle again. The requantization engine, one row per
cycle: ``acc + (bias << bias_shift)`` (the bias scaled by a second SB_MAC16 and a byte shift),
round-shift-saturate (hidden, :func:`round_shift_saturate`) or raw (last layer), write 0 back,
emit the non-zero ones (all on the last layer) with their global row, then ``end``. With
``config.requant_overlap`` the accumulators are two banks (even and odd layers) and the
engine's layer parameters are latched at the hand-over, so layer L is requantized while the
column engine runs layer L + 1 (``o_col_idle``); its bias reads take the data-memory cycles
the header and word reads leave free. Without it, one bank, and the next layer waits for the
requantization (``o_col_idle == o_idle``).

Throughput (no back-pressure): within a column one symbol per cycle, columns back to back
(table loading and pipeline fill aside); short columns cost their pointer reads (one port: 1-2
cycles per column; two ports: one, the fetch takes a column per cycle while the segment queue
has room) and stream words (one per cycle into the decoder: 16 or 32 bits), empty columns their
pointer reads. Requantization takes ``rows_local + 6`` cycles. Measured rates and the area of
each variant: docs/HARDWARE.md ("The processing element"; ``python -m hw.area --part pe``).
"""
import functools
import operator

from amaranth import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import wiring, stream, data, fifo
from amaranth.lib.wiring import In, Out

from .config import (LoadWrite, broadcast_layout, pe_output_layout, layer_config_layout)
from .huffman import HuffmanDecoder, segment_layout
from .memories import PEMemory, table_memory

__all__ = ["ProcessingElement", "round_shift_saturate"]


class ProcessingElement(wiring.Component):
    """One EIE-style processing element (section 7 of docs/ARCHITECTURE.md).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
    index : int
        PE number ``p`` (0..N-1): its memory id and the global row of local row ``i`` is
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
        Pulse while ``o_col_idle``: begin layer ``i_layer.index`` (reads its header words).
        With the early start a start that comes while the column engine still works on the
        previous layer waits for its hand-over (one start may wait).
    i_act : In(stream.Signature(broadcast_layout(config)))
        Non-zero input activations ``(col, value)``, then one ``end`` token.
    o_out : Out(stream.Signature(pe_output_layout(config)))
        After ``end``: hidden layer: non-zero requantized outputs ``(global row, value)``; last
        layer: every accumulator in local row order; then one ``end`` token.
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
        A = cfg.act_bits
        ACC = cfg.acc_bits
        MA = (cfg.pe_mem_depth - 1).bit_length()      # word address bits
        BA = MA + 4                                    # bit address bits
        RB = max(1, (cfg.max_rows_per_pe - 1).bit_length())   # accumulator address bits
        RW = cfg.max_rows_per_pe.bit_length()                   # a local row count
        FB = max(1, cfg.max_features.bit_length())              # a column index + 1
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
        m.submodules.dec = dec = HuffmanDecoder(cfg, tag_bits=A)
        self._dec = dec         # the profiler (hw.profile) samples its _probe
        m.submodules.codebook = cbm = table_memory(signed(cfg.weight_bits),
                                                   cfg.max_layers << cfg.idx_bits)
        cb_rd = cbm.read_port()
        cb_wr = cbm.write_port()
        # Two accumulator banks: even layers in bank 0, odd layers in bank 1, so layer L's
        # requantization (one bank) runs while layer L + 1 accumulates (the other bank).
        # Transparent read ports: a read in the cycle of a write to the same row returns the new
        # sum, so the accumulate pipeline needs no forwarding registers (yosys adds the one
        # bypass an iCE40 EBR needs; a read-first port would cost a delayed write on top of it).
        n_banks = 2 if cfg.requant_overlap else 1
        acc_banks = []
        for k in range(n_banks):
            accm = table_memory(signed(ACC), cfg.max_rows_per_pe)
            m.submodules[f"accs{k}"] = accm
            wr = accm.write_port()
            acc_banks.append((accm.read_port(transparent_for=(wr,)), wr))

        def acc_read_data(bank):
            """Read data of accumulator bank ``bank`` (a 1-bit value; ignored with one bank)."""
            if n_banks == 1:
                return acc_banks[0][0].data
            return Mux(bank, acc_banks[1][0].data, acc_banks[0][0].data)

        error = Signal()
        m.d.comb += self.o_error.eq(error)
        with m.If(dec.o_error):
            m.d.sync += error.eq(1)

        # ---- control state ----------------------------------------------------------------
        # Column engine (header, pointers, words, decoder, accumulate) and requantization
        # engine: the column engine hands a finished layer over to the requantization engine
        # (with the end token) and can start the next layer while it runs.
        IDLE, HDR, RUN = range(3)
        state = Signal(range(3))
        RIDLE, REQ, ENDT = range(3)
        rstate = Signal(range(3))
        idle = Signal()
        col_idle = Signal()
        # After every reset the accumulators are cleared (``clearing``, below) before the
        # column engine counts as idle: no layer starts and no load is taken until then.
        clearing = Signal(init=1)
        m.d.comb += [col_idle.eq((state == IDLE) & ~clearing),
                     idle.eq(col_idle & (rstate == RIDLE)),
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
            cb_wr.addr.eq(ld.addr),
            cb_wr.data.eq(ld.data),
            cb_wr.en.eq(ld_fire & (ld.mem == cfg.mem_codebook)
                        & (ld.addr < (cfg.max_layers << cfg.idx_bits))),
        ]

        # memory port, driven by whichever client owns it this cycle
        m_addr = Signal(MA)
        m_re = Signal()
        m_we = Signal()
        m.d.comb += [mem.addr.eq(m_addr), mem.re.eq(m_re), mem.we.eq(m_we),
                     mem.wdata.eq(ld.data)]
        # The clients of the port are mutually exclusive (load: idle, header: HDR, words: RUN,
        # biases: REQ only in cycles without a header or word read), so the address is an OR
        # of gated client addresses.
        addr_terms = []             # (select, address)
        m.d.comb += m_we.eq(ld_fire & (ld.mem == self.index) & (ld.addr < cfg.pe_mem_depth))
        addr_terms.append((m_we, ld.addr))
        # the pointer memory: written by loads, read only by the pointer fetch
        p_we = Signal()
        m.d.comb += [p_we.eq(ld_fire & (ld.mem == cfg.mem_pointers + self.index)
                             & (ld.addr < cfg.pe_mem_depth)),
                     pmem.we.eq(p_we), pmem.wdata.eq(ld.data)]

        # ---- layer header ------------------------------------------------------------------
        ptr_base = Signal(MA)
        stream_base = Signal(MA)
        bias_base = Signal(MA)
        bias_base0 = Signal(MA)
        rows_local = Signal(RW)         # clamped to max_rows_per_pe (rows_big flags more)
        rows_big = Signal()
        acc_base = Signal(RB)
        hs = Signal(range(6))           # header read being issued
        hs_d = Signal(range(6))         # header read whose data is on mem.rdata (+1; 0 = none)

        if early:
            # a start is acted on in IDLE: the waiting one first, else one arriving now
            start_fire = Signal()
            start_desc = Signal(layer_config_layout(cfg))
            m.d.comb += [start_fire.eq(col_idle & (pending | self.i_start)),
                         start_desc.eq(Mux(pending, next_layer, self.i_layer))]
            m.d.comb += [
                dec.i_layer_index.eq(start_desc.index),
                dec.i_sym_base.eq(layer.sym_base),
                dec.i_start.eq(start_fire),
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
            m.d.comb += [
                dec.i_layer_index.eq(layer.index),
                dec.i_sym_base.eq(layer.sym_base),
                dec.i_start.eq(self.i_start & col_idle),
            ]
            with m.If(self.i_start & ~col_idle):
                m.d.sync += error.eq(1)

        with m.If(hs_d == 1):
            m.d.sync += ptr_base.eq(mem.rdata)
        with m.If(hs_d == 2):
            m.d.sync += stream_base.eq(mem.rdata)
        with m.If(hs_d == 3):
            m.d.sync += bias_base.eq(mem.rdata)
        with m.If(hs_d == 4):
            big = mem.rdata > cfg.max_rows_per_pe
            m.d.sync += [rows_local.eq(Mux(big, cfg.max_rows_per_pe, mem.rdata)),
                         rows_big.eq(big)]
        with m.If(hs_d == 5):
            m.d.sync += bias_base0.eq(mem.rdata)
        m.d.sync += hs_d.eq(0)

        # ---- pointer fetch: issue side -----------------------------------------------------
        pw2 = layer.ptr_words2
        pi_busy = Signal()
        pi_col = Signal(FB)
        pi_value = Signal(A)
        # 0: reading ptr[col], 1: reading ptr[col + 1]. Two ports, 1-word pointers: 0 reads
        # both (port 1: ptr[col], port 2: ptr[col + 1]), 1 only ptr[col + 1] (port 2).
        pi_phase = Signal()
        pi_w = Signal()                 # word of a 2-word pointer (0 = high; one port only)
        prev_col1 = Signal(FB)          # col + 1 of the last column issued
        prev_valid = Signal()

        # return side registers (the read issued last cycle)
        pr_valid = Signal()
        pr_phase = Signal()
        pr_hi = Signal()                # one port: the read is a high word
        if two:
            pr_start = Signal()         # port 1 read the column's start pointer
        pr_value = Signal(A)
        hi_word = Signal(16)
        last_end = Signal(BA)           # the last pointer read: a column's start, then its end

        seg_layout = data.StructLayout({"start": BA, "end": BA, "value": A})
        m.submodules.segq = segq = fifo.SyncFIFO(width=seg_layout.size, depth=self.seg_queue)
        sq_in = data.View(seg_layout, segq.w_data)
        sq_out = data.View(seg_layout, segq.r_data)

        pi_last = Signal()              # the read about to be issued is the column's last
        seg_credit = Signal()
        pi_req = Signal()
        pi_addr = Signal(MA)
        if two:
            # one read per pointer (both words of a 2-word one), so one per column (1-word)
            pi_addr2 = Signal(MA)
            m.d.comb += [
                pi_last.eq(pi_phase | ~pw2),
                seg_credit.eq(segq.level + (pr_valid & pr_phase) < self.seg_queue),
                pi_req.eq((state == RUN) & pi_busy & (~pi_last | seg_credit)),
                pi_addr.eq(ptr_base + ((pi_col + (pi_phase & pw2)) << pw2)),
                pi_addr2.eq(pi_addr + 1),
            ]
            m.d.sync += pr_valid.eq(0)
            with m.If(pi_req):      # the pointer ports serve only this fetch: always granted
                # pr_phase: the read returns a column's end pointer
                m.d.sync += [
                    pr_valid.eq(1), pr_phase.eq(pi_last), pr_start.eq(~pi_phase & ~pw2),
                    pr_value.eq(pi_value), pi_phase.eq(1),
                ]
        else:
            # (the order of these statements is that of the design before the second port:
            # the same Verilog, so the same netlist for the board)
            m.d.comb += pi_last.eq(pi_phase & (~pw2 | pi_w))
            m.d.comb += seg_credit.eq(segq.level + (pr_valid & pr_phase & ~pr_hi)
                                      < self.seg_queue)
            m.d.comb += pi_req.eq((state == RUN) & pi_busy & (~pi_last | seg_credit))
            m.d.comb += pi_addr.eq(ptr_base + ((pi_col + pi_phase) << pw2) + pi_w)

            m.d.sync += pr_valid.eq(0)
            with m.If(pi_req):      # the pointer port serves only this fetch: always granted
                m.d.sync += [
                    pr_valid.eq(1), pr_phase.eq(pi_phase), pr_hi.eq(pw2 & ~pi_w),
                    pr_value.eq(pi_value),
                ]
                with m.If(pw2 & ~pi_w):
                    m.d.sync += pi_w.eq(1)
                with m.Else():
                    m.d.sync += [pi_w.eq(0), pi_phase.eq(1)]

        act = self.i_act.payload
        drained = Signal()              # stages 1-4 are empty (set further down)
        # the end token: the finished layer goes to the requantization engine once it is free
        handover = Signal()
        m.d.comb += handover.eq((state == RUN) & self.i_act.valid & act.end & ~pi_busy & drained
                                & (rstate == RIDLE))
        act_take = Signal()
        pi_free = Signal()
        m.d.comb += [
            pi_free.eq(~pi_busy | (pi_req & pi_last)),
            act_take.eq(((state == RUN) | (state == HDR)) & self.i_act.valid & ~act.end
                        & pi_free),
            self.i_act.ready.eq(act_take | handover),
        ]
        with m.If(pi_req & pi_last):
            m.d.sync += pi_busy.eq(0)
        with m.If(act_take):
            with m.If((act.col >= layer.in_features) | (act.col >= cfg.max_features)):
                m.d.sync += error.eq(1)
            with m.Else():
                need = ~(prev_valid & (prev_col1 == act.col))
                m.d.sync += [
                    pi_busy.eq(1), pi_col.eq(act.col), pi_value.eq(act.value),
                    pi_phase.eq(~need), pi_w.eq(0),
                    prev_col1.eq(act.col + 1), prev_valid.eq(1),
                ]

        # pointer fetch: return side
        ptr_val = Signal(BA)            # the pointer read (a column's start or end)
        if two:
            # A column's start is ptr[col] on port 1 when it was read with its end (1-word
            # pointers), else the pointer read before its end (2-word pointers) or the previous
            # column's end: last_end.
            seg_start = Signal(BA)
            m.d.comb += [
                ptr_val.eq(Mux(pw2, Cat(pmem.rdata2, pmem.rdata), pmem.rdata2)),
                seg_start.eq(Mux(pr_start, pmem.rdata, last_end)),
            ]
            with m.If(pr_valid):
                m.d.sync += last_end.eq(ptr_val)
                with m.If(pr_phase):
                    with m.If(ptr_val < seg_start):
                        m.d.sync += error.eq(1)
                    with m.If(ptr_val > seg_start):
                        m.d.comb += segq.w_en.eq(1)
        else:
            # A column's start is the pointer read just before its end: ptr[col] when it was
            # read, else the previous column's end. Either way it is in last_end.
            seg_start = last_end
            m.d.comb += ptr_val.eq(Mux(pw2, Cat(pmem.rdata, hi_word), pmem.rdata))
            with m.If(pr_valid):
                with m.If(pr_hi):
                    m.d.sync += hi_word.eq(pmem.rdata)
                with m.Else():
                    m.d.sync += last_end.eq(ptr_val)
                with m.If(~pr_hi & pr_phase):
                    with m.If(ptr_val < last_end):
                        m.d.sync += error.eq(1)
                    with m.If(ptr_val > last_end):
                        m.d.comb += segq.w_en.eq(1)
        m.d.comb += [sq_in.start.eq(seg_start), sq_in.end.eq(ptr_val), sq_in.value.eq(pr_value)]

        # ---- word fetch --------------------------------------------------------------------
        # A stream word is SW memory words: address a on port 1 (high bits), a + 1 on port 2.
        m.submodules.wfifo = wfifo = fifo.SyncFIFO(width=16 * SW, depth=self.word_fifo)
        wf_active = Signal()
        wf_addr = Signal(MA)            # word address relative to stream_base
        wf_last = Signal(MA)
        lw_valid = Signal()
        lw_addr = Signal(MA)
        lw_data = Signal(16 * SW)

        def covers_last(a, last):
            """The stream word read at memory word ``a`` holds word ``last``."""
            return (a == last) if SW == 1 else ((a == last) | (a + 1 == last))
        push_pending = Signal()
        push_mem = Signal()

        wf_credit = Signal()
        reuse = Signal()
        m.d.comb += [
            wf_credit.eq(wfifo.level + push_pending < self.word_fifo),
            reuse.eq(lw_valid & (lw_addr == wf_addr)),
        ]
        wf_req = Signal()
        wf_act = Signal()
        m.d.comb += [
            wf_req.eq((state == RUN) & wf_active & wf_credit & ~reuse),
            wf_act.eq(wf_active & wf_credit & (reuse | wf_req)),   # wf_req always granted
        ]
        wf_fin = Signal()
        wf_at_last = Signal()           # the stream word at wf_addr holds wf_last (registered)
        m.d.comb += wf_fin.eq(wf_act & wf_at_last)
        m.d.sync += push_pending.eq(0)
        with m.If(wf_act):
            m.d.sync += [push_pending.eq(1), push_mem.eq(~reuse), wf_addr.eq(wf_addr + SW),
                         wf_at_last.eq(covers_last(wf_addr + SW, wf_last))]
            with m.If(~reuse):
                m.d.sync += [lw_valid.eq(1), lw_addr.eq(wf_addr)]
            with m.If(wf_fin):
                m.d.sync += wf_active.eq(0)
        mem_word = Cat(mem.rdata2, mem.rdata) if SW == 2 else mem.rdata
        m.d.comb += [
            wfifo.w_en.eq(push_pending),
            wfifo.w_data.eq(Mux(push_mem, mem_word, lw_data)),
        ]
        with m.If(push_pending & push_mem):
            m.d.sync += lw_data.eq(mem_word)

        # The word fetch runs ahead of the decoder: it takes a segment from the segment queue as
        # soon as the previous segment's words are requested and hands the segment's framing
        # to the decoder's queue, so a short column's words are already in the word FIFO when
        # the decoder reaches it (waiting for the decoder to accept the segment first exposed
        # the fetch latency once per column).
        seg_nbits = Signal(BA)
        m.d.comb += seg_nbits.eq(sq_out.end - sq_out.start)
        dseg = segment_layout(A)
        m.submodules.decq = decq = fifo.SyncFIFO(width=dseg.size, depth=self.dec_queue)
        dq_in = data.View(dseg, decq.w_data)
        wf_start = Signal()
        m.d.comb += [
            wf_start.eq(segq.r_rdy & (~wf_active | wf_fin) & decq.w_rdy),
            segq.r_en.eq(wf_start),
            decq.w_en.eq(wf_start),
            dq_in.offset.eq(sq_out.start[:4]),
            dq_in.nbits.eq(seg_nbits),
            dq_in.tag.eq(sq_out.value),
            dec.i_seg.valid.eq(decq.r_rdy),
            dec.i_seg.payload.eq(decq.r_data),
            decq.r_en.eq(dec.i_seg.ready),
        ]
        with m.If(wf_start):
            m.d.sync += [
                wf_active.eq(1),
                wf_addr.eq(sq_out.start[4:]),
                wf_last.eq((sq_out.end - 1)[4:]),
                wf_at_last.eq(covers_last(sq_out.start[4:], (sq_out.end - 1)[4:])),
            ]
            with m.If(seg_nbits[16:] != 0):
                m.d.sync += error.eq(1)
        m.d.comb += [
            dec.i_word.valid.eq(wfifo.r_rdy),
            dec.i_word.payload.eq(wfifo.r_data),
            wfifo.r_en.eq(dec.i_word.ready),
        ]

        # ---- memory port arbitration -------------------------------------------------------
        hdr_addr = Signal(MA)
        with m.Switch(hs):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += hdr_addr.eq((layer.index << 2) + k)
            with m.Default():
                m.d.comb += hdr_addr.eq(2)
        m.d.comb += [pmem.addr.eq(Mux(p_we, ld.addr, pi_addr)), pmem.re.eq(pi_req)]
        if two:
            # (ptr[col] on port 1 is read even when it is not needed: no gating logic)
            m.d.comb += [pmem.addr2.eq(pi_addr2), pmem.re2.eq(pi_req)]
        addr_terms += [(state == HDR, hdr_addr), (wf_req, stream_base + wf_addr)]
        if SW == 2:
            # the second word of a stream word: only the word fetch reads this port
            m.d.comb += [mem.addr2.eq(stream_base + wf_addr + 1), mem.re2.eq(wf_req)]

        # ---- accumulate pipeline -----------------------------------------------------------
        sym = dec.o_sym.payload
        m.d.comb += dec.o_sym.ready.eq(1)
        gap = Signal(cfg.gap_bits)
        idx = Signal(cfg.idx_bits)
        m.d.comb += Cat(idx, gap).eq(sym.symbol)
        prev_row = Signal(RW + 1)       # one more bit: prev + gap + 1 may pass rows_local
        row0 = Signal(RW + 1)
        m.d.comb += row0.eq(Mux(sym.first, gap, prev_row + gap + 1))

        v1 = Signal()
        row1 = Signal(RW + 1)
        idx1 = Signal(cfg.idx_bits)
        val1 = Signal(A)
        m.d.sync += v1.eq(dec.o_sym.valid)
        with m.If(dec.o_sym.valid):
            m.d.sync += [prev_row.eq(row0), row1.eq(row0), idx1.eq(idx), val1.eq(sym.tag)]

        ok1 = Signal()
        m.d.comb += ok1.eq(v1 & (row1 < rows_local))
        with m.If(v1 & ~ok1):
            m.d.sync += error.eq(1)
        v2 = Signal()
        addr2 = Signal(RB)
        val2 = Signal(A)
        m.d.sync += [v2.eq(ok1), addr2.eq(acc_base + row1[:RB]), val2.eq(val1)]
        m.d.comb += cb_rd.addr.eq(Cat(idx1, layer.index))

        v3 = Signal()
        addr3 = Signal(RB)
        prod3 = Signal(signed(A + cfg.weight_bits + 1))
        # value * weight (an SB_MAC16)
        m.d.sync += [v3.eq(v2), addr3.eq(addr2),
                     prod3.eq(Cat(val2, Const(0, 1)).as_signed() * cb_rd.data)]
        # acc[addr2] is read in stage 2 and arrives with prod3 in stage 3, where the sum is
        # written back. The read port is transparent, so a read of the row written in the same
        # cycle (the same row in consecutive columns) sees the new sum; a row written two or more
        # cycles earlier is already in the memory.
        col_bank = Signal()
        m.d.comb += col_bank.eq(layer.index[0] if n_banks == 2 else 0)
        acc_now = Signal(signed(ACC))
        acc_sum = Signal(signed(ACC))
        m.d.comb += [acc_now.eq(acc_read_data(col_bank)), acc_sum.eq(acc_now + prod3)]

        # ---- requantize pipeline (its own engine, parameters latched at the hand-over) ------
        # r0: bias[row] read (data memory, in a cycle without a header or word read); r1:
        # rprod = bias * 2^(bias_shift mod 8) (a second SB_MAC16), acc[row] read; r2: t = acc +
        # (rprod << 8 * (bias_shift // 8)) (32 bits: the packer proves it fits), acc[row] = 0;
        # r3: output register. Hidden layers:
        # y = clamp((t + 2^(S-1)) >> S, 0, 255) computed as v = (2t) >> S (9 bits),
        # y = (v + 1) >> 1, saturating when t < 0 (to 0) or when any bit of t at or above S + 8
        # is set or v == 511 (to 255); no wide shifter, no rounding add.
        overlap = cfg.requant_overlap
        if overlap:
            # latched at the hand-over: the column engine moves on to the next layer
            rq_rows = Signal(RW)
            rq_bias_base = Signal(MA)
            rq_acc_base = Signal(RB)
            rq_bank = Signal()
            rq_last = Signal()
            rq_shift = Signal(len(layer.shift))
            rq_bias_shift = Signal(len(layer.bias_shift))
        else:
            # the next layer waits for the requantization: the column engine's registers and
            # the descriptor hold still
            rq_rows, rq_bias_base, rq_acc_base = rows_local, bias_base, acc_base
            rq_bank, rq_last = Const(0, 1), layer.last
            rq_shift, rq_bias_shift = layer.shift, layer.bias_shift
        ri = Signal(RW + 1)             # next local row to read
        rv1 = Signal()
        rrow1 = Signal(RW)
        raddr1 = Signal(RB)
        rv2 = Signal()
        rrow2 = Signal(RW)
        raddr2 = Signal(RB)
        rv3 = Signal()
        rrow3 = Signal(RW)
        rt3 = Signal(signed(ACC))
        ov = Signal()
        orow = Signal(16)
        oval = Signal(ACC)
        r_adv = Signal()
        m.d.comb += r_adv.eq(~ov | self.o_out.ready)
        r_issue = Signal()
        m.d.comb += r_issue.eq((rstate == REQ) & r_adv & (ri < rq_rows)
                               & ((~wf_req & (state != HDR)) if overlap else 1))
        with m.If(r_issue):
            m.d.sync += ri.eq(ri + 1)
        addr_terms.append((r_issue, rq_bias_base + ri))
        gated = [Mux(sel, addr, 0) for sel, addr in addr_terms]
        m.d.comb += [m_re.eq(Cat(sel for sel, _ in addr_terms[1:]).any()),
                     m_addr.eq(functools.reduce(operator.or_, gated))]
        bias_now = Signal(signed(cfg.weight_bits))
        if overlap:
            # the bias is on mem.rdata only in the cycle after its read (other reads follow)
            r_issue_d = Signal()
            bias_hold = Signal(16)
            m.d.sync += r_issue_d.eq(r_issue)
            with m.If(r_issue_d):
                m.d.sync += bias_hold.eq(mem.rdata)
            m.d.comb += bias_now.eq(Mux(r_issue_d, mem.rdata, bias_hold))
        else:
            # no other read while requantizing: mem.rdata holds the bias until the next issue,
            # which waits for the pipeline to advance
            m.d.comb += bias_now.eq(mem.rdata)
        rprod = Signal(signed(A + cfg.weight_bits + 1))
        with m.If(r_adv):
            m.d.sync += rprod.eq(Cat(Const(1, A) << rq_bias_shift[:3], Const(0, 1)).as_signed()
                                 * bias_now)
        bias_sh = Signal(signed(ACC))
        with m.Switch(rq_bias_shift[3:5]):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += bias_sh.eq(rprod << (8 * k))
        rq_sum = Signal(signed(ACC))
        m.d.comb += rq_sum.eq(acc_read_data(rq_bank).as_signed() + bias_sh)

        # accumulator banks: the requantization engine owns the bank of its layer, the
        # accumulate pipeline the other one (layers L and L + 1 differ in parity); the read of
        # row r1 and the clearing write of row r2 never meet
        # Clearing sweep: a reset (RESET command, accelerator watchdog, reset pin) can abort a
        # layer whose partial sums are in the accumulators, and only the requantization zeroes
        # a row. So after every reset the PE writes 0 to every row of every bank, one row per
        # cycle (max_rows_per_pe cycles, during which the PE is not idle); the next inference
        # starts from clean accumulators without costing any cycles of its own.
        clear_row = Signal(RB)
        with m.If(clearing):
            m.d.sync += clear_row.eq(clear_row + 1)
            with m.If(clear_row == cfg.max_rows_per_pe - 1):
                m.d.sync += clearing.eq(0)
        for k, (rd, wr) in enumerate(acc_banks):
            with m.If(clearing):
                m.d.comb += [wr.en.eq(1), wr.addr.eq(clear_row), wr.data.eq(0)]
            with m.Elif((rstate != RIDLE) & (rq_bank == k)):
                m.d.comb += [
                    rd.addr.eq(raddr1), rd.en.eq(rv1 & r_adv),
                    wr.en.eq(rv2 & r_adv), wr.addr.eq(raddr2), wr.data.eq(0),
                ]
            with m.Else():
                m.d.comb += [
                    rd.addr.eq(addr2), rd.en.eq(1),
                    wr.en.eq(v3 & (col_bank == k)), wr.addr.eq(addr3), wr.data.eq(acc_sum),
                ]

        with m.If(r_adv):
            m.d.sync += [
                rv1.eq(r_issue), rrow1.eq(ri), raddr1.eq(rq_acc_base + ri[:RB]),
                rv2.eq(rv1), rrow2.eq(rrow1), raddr2.eq(raddr1),
                rv3.eq(rv2), rrow3.eq(rrow2), rt3.eq(rq_sum),
            ]
        hval = round_shift_saturate(m, rt3, rq_shift, A)
        with m.If(r_adv):
            m.d.sync += [
                ov.eq(rv3 & (rq_last | (hval != 0))),
                orow.eq(rrow3 * cfg.n_pes + self.index),
                oval[:A].eq(Mux(rq_last, rt3[:A], hval)),
            ]
        # the high bits are zero on hidden layers: written as a synchronous reset of their
        # flip-flops (SB_DFFESR) rather than a multiplexer
        with m.If(r_adv & ~rq_last):
            m.d.sync += oval[A:].eq(0)
        with m.Elif(r_adv):
            m.d.sync += oval[A:].eq(rt3[A:])
        out = self.o_out.payload
        m.d.comb += [
            self.o_out.valid.eq(ov | (rstate == ENDT)),
            out.row.eq(orow),
            out.value.eq(oval),
            out.end.eq(rstate == ENDT),
        ]

        # header sanity check, two cycles into RUN (bias_base0 is the last header word read)
        chk = Signal(2)
        with m.If(chk != 0):
            m.d.sync += chk.eq(chk - 1)
        with m.If(chk == 1):
            with m.If((bias_base < bias_base0)
                      | (bias_base - bias_base0 + rows_local > cfg.max_rows_per_pe) | rows_big):
                m.d.sync += error.eq(1)
        m.d.sync += acc_base.eq(bias_base - bias_base0)

        # ---- sequencing --------------------------------------------------------------------
        with m.Switch(state):
            with m.Case(IDLE):
                with m.If(start_fire if early else self.i_start & ~clearing):
                    m.d.sync += [state.eq(HDR), hs.eq(0), prev_valid.eq(0), lw_valid.eq(0)]
            with m.Case(HDR):
                m.d.sync += [hs.eq(hs + 1), hs_d.eq(hs + 1)]
                with m.If(hs == 4):
                    m.d.sync += [state.eq(RUN), chk.eq(2)]
            with m.Case(RUN):
                with m.If(handover):
                    m.d.sync += state.eq(IDLE)
        with m.Switch(rstate):
            with m.Case(RIDLE):
                with m.If(handover):
                    m.d.sync += [rstate.eq(REQ), ri.eq(0)]
                    if overlap:
                        m.d.sync += [
                            rq_rows.eq(rows_local), rq_bias_base.eq(bias_base),
                            rq_acc_base.eq(acc_base), rq_bank.eq(col_bank),
                            rq_last.eq(layer.last), rq_shift.eq(layer.shift),
                            rq_bias_shift.eq(layer.bias_shift),
                        ]
            with m.Case(REQ):
                with m.If((ri >= rq_rows) & ~rv1 & ~rv2 & ~rv3 & ~ov):
                    m.d.sync += rstate.eq(ENDT)
            with m.Case(ENDT):
                with m.If(self.o_out.ready):
                    m.d.sync += rstate.eq(RIDLE)
        # signals the profiler (hw.profile) samples every cycle
        self._probe = dict(start=start_fire if early else self.i_start & col_idle,
                           state=state, rstate=rstate, pi_busy=pi_busy, wf_active=wf_active,
                           seg_valid=dec.i_seg.valid, seg_ready=dec.i_seg.ready,
                           word_valid=dec.i_word.valid, word_ready=dec.i_word.ready,
                           sym=dec.o_sym.valid, segq_level=segq.level, pr_valid=pr_valid,
                           wf_req=wf_req)
        m.d.comb += drained.eq(~(pi_busy | pr_valid | segq.r_rdy | decq.r_rdy | wf_active
                                 | push_pending | wfifo.r_rdy | dec.o_busy | v1 | v2 | v3))
        return m


def round_shift_saturate(m, t, shift, bits):
    """Hidden-layer requantization ``clamp((t + 2^(S-1)) >> S, 0, 2^bits - 1)`` (section 1).

    Adds the logic to ``m`` (combinational) and returns the ``bits``-wide result. ``t`` is a
    signed accumulator, ``shift`` the unsigned shift ``S`` (any width). Computed as
    ``v = (2t) >> S`` (``bits + 1`` bits), ``y = (v + 1) >> 1``, saturating to 0 when ``t < 0``
    and to ``2^bits - 1`` when ``v`` is all ones or some bit of ``t`` at or above ``S + bits``
    is set. The shifter is logarithmic and keeps at each stage only the window the remaining
    (smaller) shifts can still reach; the bits it drops above that window are ORed into the
    saturation flag, so neither a wide shifter nor a mask of the high bits is needed.
    """
    win = Cat(Const(0, 1), t)
    above = Const(0, 1)
    for k in reversed(range(len(shift))):
        step = 1 << k
        width = bits + step                     # (bits + 1) + (step - 1)
        padded = Cat(win, Const(0, step + width))
        if len(win) > width:
            above = above | (~shift[k] & win[width:].any())
        win = Mux(shift[k], padded[step:step + width], padded[:width])
    v = Signal(bits + 1)
    sat = Signal()
    y = Signal(bits)
    m.d.comb += [v.eq(win), sat.eq(above)]
    with m.If(t < 0):
        m.d.comb += y.eq(0)
    with m.Elif(sat | (v == (1 << (bits + 1)) - 1)):
        m.d.comb += y.eq((1 << bits) - 1)
    with m.Else():
        m.d.comb += y.eq((v + 1)[1:])
    return y
