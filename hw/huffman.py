"""Canonical Huffman decoder, one symbol per cycle (docs/ARCHITECTURE.md section 3).

The decoder works on *segments*: bit ranges of a word stream (one per Huffman-coded column). A
segment starts at bit ``offset`` (0..15, MSB first) of its first word and is ``nbits`` long; its
words (``ceil((offset + nbits) / 16)`` of them) follow on ``i_word`` in order. Segments are
decoded back to back without a bubble: the *aligner* strips the bits outside the segments and
appends the rest to a 40-bit bit buffer, so the decoder sees one continuous bit string and only
keeps a count of the bits left in the current segment.

Per cycle the decoder peeks at the top ``HUFF_MAX_LEN`` bits of the buffer, compares them with
``limit[l]`` for all ``l`` at once (the limits are monotone, so the comparisons form a
thermometer code whose edge is the length), consumes ``len`` bits and passes ``(peek, len)`` to a
three-stage lookup pipeline: ``base[len]`` (table memory), then the symbol table at
``sym_base + base[len] + (peek >> (MAX - len))`` (mod 2^16), then the output register.

Tables are written through ``i_load`` with the memory ids of section 4 (``huff_limit``,
``huff_base``, ``huff_symbols``), at the same addresses as in the packed images.
"""
from amaranth import Module, Signal, Cat, Const, Mux
from amaranth.lib import wiring, stream, data, fifo
from amaranth.lib.wiring import In, Out

from .config import LoadWrite
from .memories import table_memory

__all__ = ["HuffmanDecoder", "segment_layout", "symbol_out_layout"]

#: Width of the decoder's bit buffer.
BUF_BITS = 40


def segment_layout(tag_bits):
    """One segment to decode: bit ``offset`` in its first word, length ``nbits``, a ``tag``.

    The tag is passed through to every symbol of the segment (the PE uses the activation value).
    """
    return data.StructLayout({"offset": 4, "nbits": 16, "tag": tag_bits})


def symbol_out_layout(cfg, tag_bits):
    """A decoded joint symbol with its segment's ``tag``; ``first`` marks a segment's first one."""
    return data.StructLayout({"symbol": cfg.idx_bits + cfg.gap_bits, "tag": tag_bits,
                              "first": 1})


class HuffmanDecoder(wiring.Component):
    """Table-driven canonical Huffman decoder with segment framing.

    Parameters
    ----------
    config : hw.config.AcceleratorConfig
        Uses ``huff_max_len``, ``max_layers``, ``symbol_depth``, ``idx_bits``, ``gap_bits`` and the
        memory ids of the Huffman tables.
    tag_bits : int
        Width of the per-segment tag.
    seg_queue : int
        Segments whose bits may be in the bit buffer ahead of the one being decoded (>= 1).
    seg_in : int
        Segments accepted on ``i_seg`` ahead of the one whose words are being taken (>= 1).

    Attributes
    ----------
    i_load : In(stream.Signature(LoadWrite))
        Table writes (``mem`` = huff_limit / huff_base / huff_symbols id, ``addr``, ``data``);
        others are ignored. Always ready. Write only while ``o_busy`` is low.
    i_layer_index : In(log2(max_layers))
        Layer whose tables are used; sampled by ``i_start``.
    i_sym_base : In(16)
        Start of the layer's symbol table (descriptor word 5); must be stable while decoding.
    i_start : In(1)
        Pulse while ``o_busy`` is low: load the layer's ``limit`` table into the comparator
        registers (``HUFF_MAX_LEN + 2`` cycles; segments may be queued meanwhile).
    i_seg : In(stream.Signature(segment_layout(tag_bits)))
        Segments to decode, in stream order. ``nbits == 0`` segments are dropped (no words).
    i_word : In(stream.Signature(16))
        The segments' 16-bit words, MSB first, ``ceil((offset + nbits) / 16)`` per segment.
    o_sym : Out(stream.Signature(symbol_out_layout(config, tag_bits)))
        Decoded symbols; one per cycle while ``ready`` is held high.
    o_busy : Out(1)
        A table load, segment, word or symbol is in flight.
    o_error : Out(1)
        Sticky (cleared by ``i_start``): a code was not in the table or ran past the end of its
        segment. The rest of that segment is skipped.
    """

    def __init__(self, config, tag_bits=8, seg_queue=3, seg_in=2):
        if seg_queue < 1 or seg_in < 1:
            raise ValueError("seg_queue and seg_in must be >= 1")
        self.seg_in = seg_in
        self.cfg = config
        self.tag_bits = tag_bits
        self.seg_queue = seg_queue
        self.max_len = config.huff_max_len
        self.layer_bits = max(1, (config.max_layers - 1).bit_length())
        super().__init__({
            "i_load": In(stream.Signature(LoadWrite)),
            "i_layer_index": In(self.layer_bits),
            "i_sym_base": In(16),
            "i_start": In(1),
            "i_seg": In(stream.Signature(segment_layout(tag_bits))),
            "i_word": In(stream.Signature(16)),
            "o_sym": Out(stream.Signature(symbol_out_layout(config, tag_bits))),
            "o_busy": Out(1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MAX = self.max_len
        W = BUF_BITS
        sym_bits = cfg.idx_bits + cfg.gap_bits
        tbl_words = cfg.max_layers * MAX          # limit at [0, tbl_words), base after it
        sym_depth = cfg.symbol_depth
        sym_addr_bits = max(1, (sym_depth - 1).bit_length())

        # ---- table memories and their load port ------------------------------------------
        m.submodules.tables = tables = table_memory(16, 2 * tbl_words)
        m.submodules.symtab = symtab = table_memory(sym_bits, sym_depth)
        tbl_rd = tables.read_port()
        tbl_wr = tables.write_port()
        sym_rd = symtab.read_port()
        sym_wr = symtab.write_port()

        ld = self.i_load.payload
        m.d.comb += self.i_load.ready.eq(1)
        with m.If(self.i_load.valid):
            with m.If((ld.mem == cfg.mem_huff_limit) & (ld.addr < tbl_words)):
                m.d.comb += [tbl_wr.en.eq(1), tbl_wr.addr.eq(ld.addr)]
            with m.If((ld.mem == cfg.mem_huff_base) & (ld.addr < tbl_words)):
                m.d.comb += [tbl_wr.en.eq(1), tbl_wr.addr.eq(ld.addr + tbl_words)]
            with m.If((ld.mem == cfg.mem_huff_symbols) & (ld.addr < sym_depth)):
                m.d.comb += [sym_wr.en.eq(1), sym_wr.addr.eq(ld.addr)]
        m.d.comb += [tbl_wr.data.eq(ld.data), sym_wr.data.eq(ld.data[:sym_bits])]

        # ---- limit loader ------------------------------------------------------------------
        # limit[l] = X << (MAX - l): only its top l + 1 bits are kept and compared with the top
        # l bits of the peek (peek < X << k  <=>  peek >> k < X)
        limit = [Signal(l + 2, name=f"limit{l + 1}") for l in range(MAX)]
        loading = Signal()
        lcnt = Signal(range(MAX + 1))            # next table entry to read
        lrd_valid = Signal()                     # tbl_rd.data holds entry lrd_idx
        lrd_idx = Signal(range(MAX))
        lbase = Signal(range(tbl_words + 1))     # L * MAX
        bbase = Signal(range(2 * tbl_words + 1))  # tbl_words + L * MAX - 1 (base[len] at +len)
        prev_limit = Signal(MAX + 1)
        error = Signal()
        m.d.comb += self.o_error.eq(error)

        with m.If(self.i_start):
            m.d.sync += [
                loading.eq(1), lcnt.eq(0), lrd_valid.eq(0), prev_limit.eq(0), error.eq(0),
                lbase.eq(self.i_layer_index * MAX),
                bbase.eq(self.i_layer_index * MAX + tbl_words - 1),
            ]
        with m.Elif(loading):
            m.d.sync += lrd_valid.eq(lcnt < MAX)
            m.d.sync += lrd_idx.eq(lcnt)
            with m.If(lcnt < MAX):
                m.d.sync += lcnt.eq(lcnt + 1)
            with m.If(lrd_valid):
                # Saturate to 2^MAX and force the table monotone, so that the comparator outputs
                # always form a thermometer code (a corrupt table cannot derail the buffer).
                raw = tbl_rd.data
                sat = Signal(MAX + 1)
                low = Signal(MAX + 1)      # bits below the kept slice of entry lrd_idx
                m.d.comb += [
                    sat.eq(Mux(raw > (1 << MAX), 1 << MAX, raw)),
                    low.eq(Const((1 << MAX) - 1, MAX + 1) >> (lrd_idx + 1)),
                ]
                rounded = sat & ~low
                val = Mux(rounded < prev_limit, prev_limit, rounded)
                m.d.sync += prev_limit.eq(val)
                for l in range(MAX):
                    with m.If(lrd_idx == l):
                        m.d.sync += limit[l].eq(val[MAX - l - 1:])
                with m.If(lrd_idx == MAX - 1):
                    m.d.sync += loading.eq(0)

        # ---- segment queue (nbits, tag) feeding the decoder's segment tracker --------------
        qlayout = data.StructLayout({"nbits": 16, "tag": self.tag_bits})
        m.submodules.segq = segq = fifo.SyncFIFO(width=qlayout.size, depth=self.seg_queue)
        q_in = data.View(qlayout, segq.w_data)
        q_out = data.View(qlayout, segq.r_data)

        # ---- aligner: words -> chunks of segment bits (MSB aligned, zero below) -------------
        al_valid = Signal()
        al_off = Signal(4)
        al_rem = Signal(16)
        ch_valid = Signal()
        ch_bits = Signal(16)
        ch_n = Signal(range(17))
        ch_take = Signal()

        al_last = Signal()              # the current word is the segment's last (registered)
        avail = Signal(range(17))
        take_n = Signal(range(17))
        m.d.comb += [
            avail.eq(16 - al_off),
            take_n.eq(Mux(al_last, al_rem[:5], avail)),
        ]
        take_word = Signal()
        m.d.comb += [
            take_word.eq(al_valid & self.i_word.valid & (~ch_valid | ch_take)),
            self.i_word.ready.eq(al_valid & (~ch_valid | ch_take)),
        ]
        shifted = Signal(16)
        mask = Signal(16)
        m.d.comb += [
            shifted.eq(self.i_word.payload << al_off),
            mask.eq(~(Const(0xFFFF, 16) >> take_n)),
        ]
        al_done = Signal()
        rem_next = Signal(16)
        m.d.comb += [
            al_done.eq(take_word & al_last),
            rem_next.eq(al_rem - avail),
        ]
        with m.If(take_word):
            m.d.sync += [ch_valid.eq(1), ch_bits.eq(shifted & mask), ch_n.eq(take_n)]
            with m.If(al_last):
                m.d.sync += al_valid.eq(0)
            with m.Else():
                m.d.sync += [al_rem.eq(rem_next), al_off.eq(0), al_last.eq(rem_next <= 16)]
        with m.Elif(ch_take):
            m.d.sync += ch_valid.eq(0)

        # input segment queue: lets the word source run ahead of the aligner (a segment's words
        # can follow right behind the previous segment's words)
        sl = segment_layout(self.tag_bits)
        m.submodules.segin = segin = fifo.SyncFIFO(width=sl.size, depth=self.seg_in)
        m.d.comb += [
            segin.w_data.eq(self.i_seg.payload),
            segin.w_en.eq(self.i_seg.valid),
            self.i_seg.ready.eq(segin.w_rdy),
        ]
        seg = data.View(sl, segin.r_data)
        seg_take = Signal()
        m.d.comb += [
            segin.r_en.eq((~al_valid | al_done) & segq.w_rdy),
            seg_take.eq(segin.r_rdy & segin.r_en),
            q_in.nbits.eq(seg.nbits),
            q_in.tag.eq(seg.tag),
            segq.w_en.eq(seg_take & (seg.nbits != 0)),
        ]
        with m.If(seg_take & (seg.nbits != 0)):
            m.d.sync += [al_valid.eq(1), al_off.eq(seg.offset), al_rem.eq(seg.nbits),
                         al_last.eq(seg.offset + seg.nbits <= 16)]

        # ---- bit buffer and length decision ------------------------------------------------
        buf = Signal(W)
        count = Signal(range(W + 1))
        cur_valid = Signal()
        cur_rem = Signal(16)
        cur_tag = Signal(self.tag_bits)
        cur_first = Signal()
        flush = Signal()

        v1 = Signal()
        v2 = Signal()
        v3 = Signal()
        advance = Signal()
        m.d.comb += advance.eq(~v3 | self.o_sym.ready)

        fill = Signal()
        m.d.comb += [
            fill.eq(ch_valid & (count + ch_n <= W)),
            ch_take.eq(fill),
        ]
        buf_f = Signal(W)
        count_f = Signal(range(W + 17))
        m.d.comb += [
            buf_f.eq(buf | Mux(fill, (Cat(Const(0, W - 16), ch_bits) >> count), 0)),
            count_f.eq(count + Mux(fill, ch_n, 0)),
        ]

        peek = Signal(MAX)
        m.d.comb += peek.eq(buf[W - MAX:])
        lt = Signal(MAX)
        for l in range(MAX):
            m.d.comb += lt[l].eq(peek[MAX - l - 1:] < limit[l])
        onehot = Signal(MAX)
        m.d.comb += onehot.eq(lt & ~(lt << 1))
        length = Signal(4)
        for b in range(4):
            m.d.comb += length[b].eq(Cat(*[onehot[l - 1] for l in range(1, MAX + 1)
                                           if l >> b & 1]).any())
        # Per length l, from registers only: the segment has fewer than / exactly l bits left.
        # ANDed with the one-hot length this avoids a compare after the length encoder.
        rem_small = Signal()
        rem_lt = Signal(MAX)
        rem_eq = Signal(MAX)
        m.d.comb += rem_small.eq(cur_rem[4:] == 0)
        for l in range(MAX):
            m.d.comb += [
                rem_lt[l].eq(rem_small & (cur_rem[:4] < l + 1)),
                rem_eq[l].eq(rem_small & (cur_rem[:4] == l + 1)),
            ]
        code_ok = Signal()
        code_ends_seg = Signal()
        m.d.comb += [
            code_ok.eq(lt[MAX - 1] & ~(onehot & rem_lt).any()),
            code_ends_seg.eq((onehot & rem_eq).any()),
        ]

        have_bits = Signal()
        m.d.comb += have_bits.eq((count >= MAX) | ((cur_rem[6:] == 0) & (count >= cur_rem[:6])))
        fire = Signal()
        m.d.comb += fire.eq(cur_valid & ~flush & ~loading & advance & have_bits)

        cnt_cap = Signal(range(MAX + 1))
        flush_n = Signal(range(MAX + 1))
        m.d.comb += [
            cnt_cap.eq(Mux(count < MAX, count, MAX)),
            flush_n.eq(Mux(rem_small & (cur_rem[:4] < cnt_cap), cur_rem[:4], cnt_cap)),
        ]

        consume = Signal(range(MAX + 1))
        emit = Signal()
        with m.If(fire):
            with m.If(code_ok):
                m.d.comb += [consume.eq(length), emit.eq(1)]
            with m.Else():
                m.d.sync += [error.eq(1), flush.eq(1)]
        with m.Elif(flush & cur_valid):
            m.d.comb += consume.eq(flush_n)

        m.d.sync += [
            buf.eq(buf_f << consume),
            count.eq(count_f - consume),
        ]

        seg_done = Signal()
        # code_ends_seg implies a valid code that does not cross the segment end, so code_ok is
        # not needed here (keeps the segment bookkeeping off the longest path)
        m.d.comb += seg_done.eq((fire & code_ends_seg)
                                | (flush & cur_valid & rem_small & (cur_rem[:4] == flush_n)))
        with m.If(seg_done):
            m.d.sync += flush.eq(0)
        with m.If(~cur_valid | seg_done):
            m.d.comb += segq.r_en.eq(1)
            m.d.sync += [
                cur_valid.eq(segq.r_rdy),
                cur_rem.eq(q_out.nbits),
                cur_tag.eq(q_out.tag),
                cur_first.eq(1),
            ]
        with m.Else():
            m.d.sync += cur_rem.eq(cur_rem - consume)
            with m.If(fire):   # after an invalid code the segment is flushed without output
                m.d.sync += cur_first.eq(0)

        # ---- lookup pipeline: S1 (peek, len) -> S2 (base) -> S3 (symbol) --------------------
        peek1 = Signal(MAX)
        len1 = Signal(4)
        tag1 = Signal(self.tag_bits)
        first1 = Signal()
        off2 = Signal(MAX)
        tag2 = Signal(self.tag_bits)
        first2 = Signal()
        tag3 = Signal(self.tag_bits)
        first3 = Signal()

        sh1 = Signal(4)
        m.d.comb += sh1.eq(MAX - len1)
        with m.If(advance):
            m.d.sync += [
                v1.eq(emit), peek1.eq(peek), len1.eq(length), tag1.eq(cur_tag),
                first1.eq(cur_first),
                v2.eq(v1), off2.eq(peek1 >> sh1), tag2.eq(tag1), first2.eq(first1),
                v3.eq(v2), tag3.eq(tag2), first3.eq(first2),
            ]

        with m.If(loading):
            m.d.comb += [tbl_rd.addr.eq(lbase + lcnt), tbl_rd.en.eq(1)]
        with m.Else():
            m.d.comb += [tbl_rd.addr.eq(bbase + len1), tbl_rd.en.eq(advance)]

        sym_index = Signal(16)
        m.d.comb += [
            sym_index.eq(self.i_sym_base + tbl_rd.data + off2),
            sym_rd.addr.eq(sym_index[:sym_addr_bits]),
            sym_rd.en.eq(advance),
        ]

        self._segq, self._al_valid, self._ch_valid, self._ch_n = segq, al_valid, ch_valid, ch_n
        self._count, self._cur_rem, self._cur_valid, self._fire = count, cur_rem, cur_valid, fire
        out = self.o_sym.payload
        m.d.comb += [
            self.o_sym.valid.eq(v3),
            out.symbol.eq(sym_rd.data),
            out.tag.eq(tag3),
            out.first.eq(first3),
            self.o_busy.eq(loading | cur_valid | segq.r_rdy | segin.r_rdy | al_valid | ch_valid
                           | v1 | v2 | v3),
        ]
        return m
