"""The PE's word fetch: column segments to the decoder's segment and word streams
(docs/ARCHITECTURE.md section 7, stage 2; part of :class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream, data, fifo
from amaranth.lib.wiring import In, Out

from .huffman import segment_layout
from .pe_pointers import column_segment_layout, pe_tag_bits

__all__ = ["WordFetch"]


class WordFetch(wiring.Component):
    """Stream word reads for the column segments, running ahead of the decoder.

    The fetch takes a segment as soon as the previous segment's words are requested and hands
    its framing (bit offset in its first word, bit count, tag) to a queue in front of the
    decoder, so a short column's words are already in the word FIFO when the decoder reaches it.
    The column's words are read in order; a word that was the last one read (the boundary word
    of adjacent columns) is reused without a read. With ``config.stream_words == 2`` a stream
    word is two memory words, ``a`` and ``a + 1`` (the data memory's second read port), from the
    column's first word on.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``pe_mem_depth``, ``stream_words``, ``act_bits``, ``conv`` and ``early``.
    word_fifo, dec_queue : int
        Depths of the word FIFO and of the decoder's segment queue.

    Attributes
    ----------
    i_seg : In(stream.Signature(column_segment_layout(config)))
        Column segments (bit addresses relative to the stream base). ``ready`` (independent of
        ``valid``) while no segment's words are being requested, or its last word is requested
        this cycle, and the decoder's queue has room.
    o_dseg : Out(stream.Signature(segment_layout(pe_tag_bits(config))))
        The segments' framing for the decoder, from a ``SyncFIFO`` (``dec_queue`` entries).
    o_word : Out(stream.Signature(16 * stream_words))
        The segments' stream words, from a ``SyncFIFO`` (``word_fifo`` entries), two cycles
        after the read.
    i_run : In(1)
        The layer header is read: memory reads may be requested.
    i_restart : In(1)
        A layer starts: no word is reused from the previous layer.
    i_stream_base : In(log2(pe_mem_depth))
        The layer's Huffman stream address; stable while segments are fetched.
    o_req, o_addr, o_addr2 : Out(1), Out(log2(pe_mem_depth)), Out(log2(pe_mem_depth))
        Data memory read of the stream word at ``o_addr`` (``o_addr2 = o_addr + 1``: the
        second port, ``stream_words == 2``). Must be granted in the cycle requested.
    i_rdata : In(16 * stream_words)
        The data memory's read data (port 1 in the high bits), one cycle after ``o_req``.
    o_busy : Out(1)
        A segment's words are being requested or a word or segment is queued.
    o_error : Out(1)
        Pulse: a segment of 2^16 bits or more (its bit count is truncated).
    """

    def __init__(self, config, word_fifo, dec_queue):
        self.cfg = config
        self.word_fifo = word_fifo
        self.dec_queue = dec_queue
        ma = (config.pe_mem_depth - 1).bit_length()
        super().__init__({
            "i_seg": In(stream.Signature(column_segment_layout(config))),
            "o_dseg": Out(stream.Signature(segment_layout(pe_tag_bits(config)))),
            "o_word": Out(stream.Signature(16 * config.stream_words)),
            "i_run": In(1),
            "i_restart": In(1),
            "i_stream_base": In(ma),
            "o_req": Out(1),
            "o_addr": Out(ma),
            "o_addr2": Out(ma),
            "i_rdata": In(16 * config.stream_words),
            "o_busy": Out(1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MA = (cfg.pe_mem_depth - 1).bit_length()
        BA = MA + 4
        SW = cfg.stream_words
        m.submodules.wfifo = wfifo = fifo.SyncFIFO(width=16 * SW, depth=self.word_fifo)
        self._wfifo = wfifo
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
        if cfg.huffman:
            m.d.comb += wf_credit.eq(wfifo.level + push_pending < self.word_fifo)
        else:
            # Fixed-width entries: a 16-bit entry takes a whole word, so the decoder may take a
            # word every cycle; the FIFO's room then counts this cycle's pop too (with 2 entries
            # the plain count allows a word every other cycle). The Huffman decoder takes words
            # more slowly and its ready comes late, so there the count stays registered.
            pop = Signal()
            m.d.comb += [pop.eq(wfifo.r_rdy & self.o_word.ready),
                         wf_credit.eq(wfifo.level + push_pending < self.word_fifo + pop)]
        # Adjacent columns share their boundary word, read once, unless every entry fills a
        # whole memory word (16-bit fixed-width entries): then a column never ends inside a
        # word, and the last word's registers (about 50 iCE40 logic cells) are left out.
        share = cfg.huffman or cfg.fixed_entry_bits < 16
        m.d.comb += reuse.eq(lw_valid & (lw_addr == wf_addr) if share else 0)
        wf_req = self.o_req
        wf_act = Signal()
        m.d.comb += [
            wf_req.eq(self.i_run & wf_active & wf_credit & ~reuse),
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
        mem_word = self.i_rdata
        m.d.comb += [
            wfifo.w_en.eq(push_pending),
            wfifo.w_data.eq(Mux(push_mem, mem_word, lw_data) if share else mem_word),
        ]
        if share:
            with m.If(push_pending & push_mem):
                m.d.sync += lw_data.eq(mem_word)

        sq_out = self.i_seg.payload
        seg_nbits = Signal(BA)
        m.d.comb += seg_nbits.eq(sq_out.end - sq_out.start)
        dseg = segment_layout(pe_tag_bits(cfg))
        m.submodules.decq = decq = fifo.SyncFIFO(width=dseg.size, depth=self.dec_queue)
        dq_in = data.View(dseg, decq.w_data)
        wf_start = Signal()
        m.d.comb += [
            self.i_seg.ready.eq((~wf_active | wf_fin) & decq.w_rdy),
            wf_start.eq(self.i_seg.valid & self.i_seg.ready),
            decq.w_en.eq(wf_start),
            dq_in.offset.eq(sq_out.start[:4]),
            dq_in.nbits.eq(seg_nbits),
            dq_in.tag.eq(sq_out.value),
            self.o_dseg.valid.eq(decq.r_rdy),
            self.o_dseg.payload.eq(decq.r_data),
            decq.r_en.eq(self.o_dseg.ready),
        ]
        with m.If(wf_start):
            m.d.sync += [
                wf_active.eq(1),
                wf_addr.eq(sq_out.start[4:]),
                wf_last.eq((sq_out.end - 1)[4:]),
                wf_at_last.eq(covers_last(sq_out.start[4:], (sq_out.end - 1)[4:])),
            ]
            with m.If(seg_nbits[16:] != 0):
                m.d.comb += self.o_error.eq(1)
        m.d.comb += [
            self.o_word.valid.eq(wfifo.r_rdy),
            self.o_word.payload.eq(wfifo.r_data),
            wfifo.r_en.eq(self.o_word.ready),
            self.o_addr.eq(self.i_stream_base + wf_addr),
            self.o_addr2.eq(self.i_stream_base + wf_addr + 1),
            self.o_busy.eq(wf_active | push_pending | wfifo.r_rdy | decq.r_rdy),
        ]
        with m.If(self.i_restart):
            m.d.sync += lw_valid.eq(0)
        # signals the profiler (hw.profile) samples every cycle
        self._probe = dict(wf_active=wf_active, wf_req=wf_req)
        return m
