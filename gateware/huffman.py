"""Canonical Huffman decoder, one symbol per cycle (docs/ARCHITECTURE.md section 3).

The decoder works on *segments*: bit ranges of a word stream (one per Huffman-coded column). A
segment starts at bit ``offset`` (0..15, MSB first) of its first word and is ``nbits`` long; its
words (``ceil((offset + nbits) / W)`` of them) follow on ``i_word`` in order. A word is ``W = 16 *
config.stream_words`` bits: 16, or 32 when the PE fetches two memory words per cycle (a segment of
up to 17 bits then always fits one word, so a column of one or two codes rarely needs a second
cycle of word intake). The current segment's words sit in a 3-word window (a bit position ``pos``
inside the first word; a word leaves when a code crosses into the next one); the next segment is
held pending with its first words already in a second window and its first ``HUFF_MAX_LEN`` bits
(``pp``) prepared. In the cycle after a segment's last code the pending one moves in *and* its
first code is decoded: the decode datapath then reads the pending registers instead of the current
ones (``from_pend``, a register), so segments follow each other without an idle cycle. Bits of a
word outside the segment are never decoded: the decoder counts the bits left in the segment.

Per cycle the decoder compares the ``HUFF_MAX_LEN`` bits at ``pos`` (``peek``, a register) with
``limit[l]`` for all ``l`` at once (the limits are monotone, so the comparisons form a
thermometer code whose edge is the length), consumes ``len`` bits and passes ``(peek, len)`` to a
three-stage lookup pipeline: ``base[len]`` (table memory), then the symbol table at
``sym_base + base[len] + (peek >> (MAX - len))`` (mod 2^16), then the output register.

Timing (the decode loop sets the iCE40 clock): the loop is ``peek`` -> comparators -> one-hot
length -> next ``peek``. The next peek is selected by the one-hot length from ``2 * MAX`` bits
read at ``pos`` out of the window registers (a shifter fed by registers only, working in parallel
with the comparators). The peek is *stale* when the bits it needs had not reached the window
registers (a word arriving in the same cycle); the decoder then re-reads it in the next cycle
instead of decoding (rare: with three words in the window it cannot happen). Bookkeeping
compares (bits left == 0, words left == 0, the segment hand-over) are registered flags whose
next values come from the one-hot length. Without the peek register the shifter sat in front of
the comparators; moving the pending segment in during the last code's own cycle instead puts
the late length decision in front of every hand-over register (both cost fmax: the figures are
in docs/HARDWARE.md, "The iCEBreaker build").

Tables are written through ``i_load`` with the memory ids of section 4 (``huff_limit``,
``huff_base``, ``huff_symbols``), at the same addresses as in the packed images.
"""
from amaranth import Module, Signal, Cat, Const, Mux
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .config import LoadWrite
from .memories import table_memory

__all__ = ["HuffmanDecoder", "segment_layout", "symbol_out_layout"]



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
    config : gateware.config.AcceleratorConfig
        Uses ``huff_max_len``, ``max_layers``, ``symbol_depth``, ``idx_bits``, ``gap_bits`` and the
        memory ids of the Huffman tables.
    tag_bits : int
        Width of the per-segment tag.

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
        registers (``HUFF_MAX_LEN + 3`` cycles; segments may be queued meanwhile).
    i_seg : In(stream.Signature(segment_layout(tag_bits)))
        Segments to decode, in stream order. ``nbits == 0`` segments are dropped (no words).
    i_word : In(stream.Signature(W))
        The segments' ``W``-bit words (``W = 16 * config.stream_words``), MSB first,
        ``ceil((offset + nbits) / W)`` per segment.
    o_sym : Out(stream.Signature(symbol_out_layout(config, tag_bits)))
        Decoded symbols; one per cycle while ``ready`` is held high.
    o_busy : Out(1)
        A table load, segment, word or symbol is in flight.
    o_error : Out(1)
        Sticky (cleared by ``i_start``): a code was not in the table or ran past the end of its
        segment. The rest of that segment is skipped.
    """

    def __init__(self, config, tag_bits=8):
        self.cfg = config
        self.tag_bits = tag_bits
        self.max_len = config.huff_max_len
        self.layer_bits = max(1, (config.max_layers - 1).bit_length())
        self.word_bits = 16 * config.stream_words
        super().__init__({
            "i_load": In(stream.Signature(LoadWrite)),
            "i_layer_index": In(self.layer_bits),
            "i_sym_base": In(16),
            "i_start": In(1),
            "i_seg": In(stream.Signature(segment_layout(tag_bits))),
            "i_word": In(stream.Signature(self.word_bits)),
            "o_sym": Out(stream.Signature(symbol_out_layout(config, tag_bits))),
            "o_busy": Out(1),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MAX = self.max_len
        W = self.word_bits               # bits of one stream word
        PB = (W - 1).bit_length()        # bits of a position inside it
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

        # Two stages per entry (timing): the table word is saturated and rounded into a
        # register, then forced monotone against the previous limit. `i_start` (a late signal
        # from the sequencer) only overrides the loader's control registers.
        rnd = Signal(MAX + 1)                    # rounded entry rnd_idx
        rnd_valid = Signal()
        rnd_idx = Signal(range(MAX))
        with m.If(loading):
            m.d.sync += lrd_valid.eq(lcnt < MAX)
            m.d.sync += lrd_idx.eq(lcnt)
            with m.If(lcnt < MAX):
                m.d.sync += lcnt.eq(lcnt + 1)
            # Saturate to 2^MAX and force the table monotone, so that the comparator outputs
            # always form a thermometer code (a corrupt table cannot derail the buffer).
            raw = tbl_rd.data
            sat = Signal(MAX + 1)
            low = Signal(MAX + 1)      # bits below the kept slice of entry lrd_idx
            m.d.comb += [
                sat.eq(Mux(raw > (1 << MAX), 1 << MAX, raw)),
                low.eq(Const((1 << MAX) - 1, MAX + 1) >> (lrd_idx + 1)),
            ]
            m.d.sync += [rnd.eq(sat & ~low), rnd_valid.eq(lrd_valid), rnd_idx.eq(lrd_idx)]
            with m.If(rnd_valid):
                val = Mux(rnd < prev_limit, prev_limit, rnd)
                m.d.sync += prev_limit.eq(val)
                for l in range(MAX):
                    with m.If(rnd_idx == l):
                        m.d.sync += limit[l].eq(val[MAX - l - 1:])
                with m.If(rnd_idx == MAX - 1):
                    m.d.sync += loading.eq(0)
        with m.If(self.i_start):
            m.d.sync += [
                loading.eq(1), lcnt.eq(0), lrd_valid.eq(0), rnd_valid.eq(0), prev_limit.eq(0),
                error.eq(0),
                lbase.eq(self.i_layer_index * MAX),
                bbase.eq(self.i_layer_index * MAX + tbl_words - 1),
            ]

        # ---- segments: one pending behind the current one --------------------------------
        # A segment's words: ceil((offset + nbits) / W) (nbits <= 65535: at most 4097 words).
        WB = 13
        seg = self.i_seg.payload
        pend_valid = Signal()
        pend_off = Signal(4)
        pend_rem = Signal(16)
        pend_tag = Signal(self.tag_bits)
        pend_left = Signal(WB)          # words of the pending segment not yet taken
        pend_lz = Signal()              # pend_left == 0 (registered copy)
        seg_words = Signal(17)
        m.d.comb += seg_words.eq((seg.offset + seg.nbits + W - 1) >> PB)

        cur_valid = Signal()
        cur_rem = Signal(16)            # segment bits not yet decoded
        cur_tag = Signal(self.tag_bits)
        cur_first = Signal()
        cur_left = Signal(WB)           # words of the current segment not yet taken
        left_zero = Signal(init=1)      # cur_left == 0 (registered copy, keeps compares off paths)
        rem_zero = Signal(init=1)       # cur_rem == 0 (registered copy)
        pos = Signal(PB)                # next bit inside w[0] (0 = its MSB)
        flush = Signal()                # invalid code: drop the rest of the segment
        bad = Signal()                  # last cycle's code was invalid (flush starts now)

        # ---- word windows: 3 words of the current segment, 2 of the pending one ------------
        w = [Signal(W, name=f"w{k}") for k in range(3)]
        n_w = Signal(range(4))
        nw = [Signal(W, name=f"nw{k}") for k in range(3)]
        n_nw = Signal(range(4))
        word = self.i_word.payload
        route_cur = Signal()
        route_next = Signal()
        # A segment accepted into the pending slot takes its first word in the same cycle when
        # every earlier word has been taken: its first code is then ready in the next cycle, so
        # a one-symbol segment in front of it costs no bubble.
        route_new = Signal()
        seg_accept = Signal()
        m.d.comb += [
            route_cur.eq(cur_valid & ~left_zero & ((n_w < 3) | flush)),
            route_next.eq(pend_valid & ~pend_lz & (n_nw < 3)
                          & ~(cur_valid & ~left_zero)),
            route_new.eq(seg_accept & (seg_words != 0) & (~pend_valid | pend_lz)
                         & ~(cur_valid & ~left_zero)),
            self.i_word.ready.eq(route_cur | route_next | route_new),
        ]
        take_cur = Signal()
        take_next = Signal()
        take_new = Signal()
        m.d.comb += [take_cur.eq(self.i_word.valid & route_cur),
                     take_next.eq(self.i_word.valid & route_next),
                     take_new.eq(self.i_word.valid & route_new)]

        v1 = Signal()
        v2 = Signal()
        v3 = Signal()
        advance = Signal()
        m.d.comb += advance.eq(~v3 | self.o_sym.ready)

        # ---- the segment decoded this cycle ----------------------------------------------------
        # Normally the current one. In the cycle after a segment's last code (or when idle), the
        # pending segment moves in *and* is decoded in the same cycle: every input of the decode
        # datapath is read from the pending registers instead (`from_pend`, itself a register
        # function, so the selection is one early multiplexer level).
        peek = Signal(MAX)              # current segment: the MAX bits at pos (a register)
        peek_ok = Signal()              # peek holds the bits at pos (else re-read, no decode)
        pp = Signal(MAX)                # pending segment: the MAX bits at pend_off of its window
        pp_ok = Signal()
        # from_pend == pend_valid & pp_ok & (~cur_valid | (rem_zero & ~flush & ~bad)), kept as a
        # register (its next value is worked out below) so that it costs one level in the decode
        # loop.
        from_pend = Signal()
        # the pending slot takes the next segment while its segment moves in
        m.d.comb += self.i_seg.ready.eq(~pend_valid | from_pend)
        s_peek = Signal(MAX)
        s_ok = Signal()
        s_rem = Signal(16)
        s_pos = Signal(PB)
        s_n = Signal(range(4))
        s_lz = Signal()
        s_tag = Signal(self.tag_bits)
        s_first = Signal()
        s_w = [Signal(W, name=f"s_w{k}") for k in range(3)]
        m.d.comb += [
            s_peek.eq(Mux(from_pend, pp, peek)), s_ok.eq(Mux(from_pend, pp_ok, peek_ok)),
            s_rem.eq(Mux(from_pend, pend_rem, cur_rem)), s_pos.eq(Mux(from_pend, pend_off, pos)),
            s_n.eq(Mux(from_pend, n_nw, n_w)), s_lz.eq(Mux(from_pend, pend_lz, left_zero)),
            s_tag.eq(Mux(from_pend, pend_tag, cur_tag)), s_first.eq(from_pend | cur_first),
            *(s_w[k].eq(Mux(from_pend, nw[k], w[k])) for k in range(3)),
        ]

        # ---- length decision on the 12 bits at pos -------------------------------------------
        # The peek is computed a cycle ahead (a register), so no shifter sits between the length
        # decision and the next one.
        lt = Signal(MAX)
        for l in range(MAX):
            m.d.comb += lt[l].eq(s_peek[MAX - l - 1:] < limit[l])
        onehot = Signal(MAX)
        m.d.comb += onehot.eq(lt & ~(lt << 1))
        # len - 1 straight from the thermometer code (len - 1 >= j  <=>  ~lt[j - 1]): one LUT
        # level less than encoding the one-hot edge; it is on the decode loop.
        len_m1 = Signal(4)
        for b in range(4):
            terms = []
            for a in range(1 << b, MAX, 1 << (b + 1)):       # ranges [a, a + 2^b) with bit b
                hi = a + (1 << b) - 1
                terms.append(~lt[a - 1] & lt[hi] if hi < MAX else ~lt[a - 1])
            m.d.comb += len_m1[b].eq(Cat(*terms).any() if terms else 0)
        length = Signal(4)
        m.d.comb += length.eq(len_m1 + 1)
        # Per length l, from registers only: the segment has fewer than l bits left.
        rem_small = Signal()
        rem_lt = Signal(MAX)
        m.d.comb += rem_small.eq(s_rem[4:] == 0)
        for l in range(MAX):
            m.d.comb += [
                rem_lt[l].eq(rem_small & (s_rem[:4] < l + 1)),
            ]
        code_ok = Signal()
        m.d.comb += [
            code_ok.eq(lt[MAX - 1] & ~(onehot & rem_lt).any()),
        ]
        # Enough bits: two words, or one word holding all of the segment's rest or 12 bits.
        have_bits = Signal()
        m.d.comb += have_bits.eq((s_n >= 2) | ((s_n == 1) & ((s_pos <= W - MAX) | s_lz)))
        fire = Signal()
        m.d.comb += fire.eq((from_pend | (cur_valid & ~rem_zero & ~flush & ~bad))
                            & ~loading & advance & have_bits & s_ok)
        emit = Signal()
        m.d.comb += emit.eq(fire & code_ok)
        m.d.sync += bad.eq(fire & ~code_ok)
        with m.If(bad):
            m.d.sync += [error.eq(1), flush.eq(1)]

        pos_sum = Signal(PB + 1)
        m.d.comb += pos_sum.eq(s_pos + len_m1 + 1)
        pos_next = Signal(PB)
        m.d.comb += pos_next.eq(pos_sum[:PB])
        cur_rem_m1 = Signal(16)
        m.d.comb += cur_rem_m1.eq(s_rem - 1)
        shift = Signal()
        m.d.comb += shift.eq(fire & pos_sum[PB])
        seg_done = Signal()
        m.d.comb += seg_done.eq(cur_valid
                                & ((rem_zero & ~flush & ~bad) | (flush & left_zero)))
        # next peek, read from the window registers at `pos` (this cycle's incoming word is left
        # out, so the word routing stays off the path): `ahead` = the 2 * MAX bits at pos; the
        # consumed length (0 when no code fires) selects the slice. When the slice would reach
        # past the window while the segment has words still to come, the peek is stale and is
        # re-read next cycle (no decode then); with 3 words in the window that never happens.
        take_w = Signal()
        m.d.comb += take_w.eq(take_cur & ~flush)
        keep = [Mux(take_w & (n_w == k), word, w[k]) for k in range(3)]
        ahead = Signal(2 * MAX)
        m.d.comb += ahead.eq((Cat(s_w[2], s_w[1], s_w[0]) << s_pos)[3 * W - 2 * MAX:3 * W])
        # (`fire` picks between the consumed and the unmoved slice last: it is the later signal)
        peek_fired = Signal(MAX)
        for b in range(MAX):
            m.d.comb += peek_fired[b].eq(
                (onehot & Cat(*[ahead[MAX - c + b] for c in range(1, MAX + 1)])).any())
        fits = Signal(MAX + 1)          # per consumed length c: the next peek is in the window
        for c in range(MAX + 1):
            m.d.comb += fits[c].eq((s_pos + (c + MAX) <= (s_n << PB)) | s_lz)
        peek_next = Signal(MAX)
        peek_ok_next = Signal()
        m.d.comb += [
            peek_next.eq(Mux(fire, peek_fired, ahead[MAX:])),
            peek_ok_next.eq(Mux(fire, (onehot & fits[1:]).any(), fits[0])),
        ]

        # next window after this cycle's intake
        nw_next = [Signal(W, name=f"nw{k}_next") for k in range(3)]
        n_nw_next = Signal(range(4))
        m.d.comb += [nw_next[k].eq(nw[k]) for k in range(3)]
        m.d.comb += n_nw_next.eq(n_nw + take_next)
        with m.If(take_next):
            for k in range(3):
                with m.If(n_nw == k):
                    m.d.comb += nw_next[k].eq(word)

        # The pending window's peek, a cycle ahead (with this cycle's word); stale while the
        # bits it needs have not arrived.
        pend_lz_next = Signal()
        m.d.comb += pend_lz_next.eq(pend_left == take_next)
        pp_ok_next = Signal()           # next pp_ok (of the segment pending next cycle)
        m.d.comb += pp_ok_next.eq((n_nw_next >= 2) | ((n_nw_next == 1) & ((pend_off <= W - MAX)
                                                                          | pend_lz_next)))
        m.d.sync += [
            pp.eq((Cat(nw_next[1], nw_next[0]) << pend_off)[2 * W - MAX:2 * W]),
            pp_ok.eq(pp_ok_next),
        ]

        # Window after this cycle: the source window (the pending one when it moves in) with
        # this cycle's word, w[0] dropped when the code crossed into w[1] (the late `shift`
        # picks between two prepared candidates).
        drop = [Mux(take_w & (n_w == k + 1), word, w[k + 1] if k < 2 else w[2]) for k in range(3)]
        keep_s = [Mux(from_pend, nw_next[k], keep[k]) for k in range(3)]
        drop_s = [Mux(from_pend, nw_next[min(k + 1, 2)], drop[k]) for k in range(3)]
        m.d.sync += [w[k].eq(Mux(shift, drop_s[k], keep_s[k])) for k in range(3)]
        new_rem = Signal(16)
        m.d.comb += new_rem.eq(cur_rem_m1 - len_m1)
        # last_hit: the code that fires is the segment's last one (== new_rem == 0 for a valid
        # code), from the one-hot length and per-length flags of registers.
        last_vec = Signal(MAX)
        for l in range(MAX):
            m.d.comb += last_vec[l].eq(rem_small & (s_rem[:4] == l + 1))
        last_hit = Signal()
        m.d.comb += last_hit.eq((onehot & last_vec).any())
        with m.If(fire):
            m.d.sync += [pos.eq(pos_next), cur_rem.eq(new_rem), rem_zero.eq(last_hit),
                         cur_first.eq(0)]

        with m.If(from_pend):
            # the pending segment moves in (and its first code was decoded if `fire`)
            m.d.sync += [
                cur_valid.eq(1), cur_tag.eq(pend_tag), flush.eq(0), pend_valid.eq(0),
                n_nw.eq(0), cur_left.eq(pend_left - take_next), left_zero.eq(pend_lz_next),
                n_w.eq(n_nw_next - shift), peek.eq(peek_next), peek_ok.eq(peek_ok_next),
            ]
            with m.If(~fire):
                m.d.sync += [pos.eq(pend_off), cur_rem.eq(pend_rem),
                             rem_zero.eq(pend_rem == 0), cur_first.eq(1)]
        with m.Else():
            with m.If(seg_done):
                m.d.sync += [cur_valid.eq(0), flush.eq(0), n_w.eq(0)]
            with m.Else():
                m.d.sync += [peek.eq(peek_next), peek_ok.eq(peek_ok_next)]
                m.d.sync += n_w.eq(Mux(shift, n_w - 1, n_w) + take_w)
                with m.If(take_cur):
                    m.d.sync += [cur_left.eq(cur_left - 1), left_zero.eq(cur_left == 1)]
            m.d.sync += [*(nw[k].eq(nw_next[k]) for k in range(3)), n_nw.eq(n_nw_next)]
            with m.If(take_next):
                m.d.sync += [pend_left.eq(pend_left - 1), pend_lz.eq(pend_left == 1)]

        # next from_pend: the same function of the next register values
        m.d.comb += seg_accept.eq(self.i_seg.valid & self.i_seg.ready & (seg.nbits != 0))
        pv_n = Signal()
        cv_n = Signal()
        rz_n = Signal()
        fl_n = Signal()
        m.d.comb += [
            pv_n.eq(seg_accept | (pend_valid & ~from_pend)),
            cv_n.eq(from_pend | (cur_valid & ~seg_done)),
            rz_n.eq(Mux(fire, last_hit, Mux(from_pend, pend_rem == 0, rem_zero))),
            fl_n.eq(bad | (flush & ~from_pend & ~seg_done)),
        ]
        # The pending segment moves in only once its first code can be decoded (pp_ok): moving
        # in earlier would leave it stale for a cycle and block the word of the one after it.
        pp_ok_new = Signal()
        m.d.comb += pp_ok_new.eq(take_new & ((seg.offset <= W - MAX) | (seg_words == 1)))
        m.d.sync += from_pend.eq(pv_n & (~cv_n | (rz_n & ~fl_n & ~(fire & ~code_ok)))
                                 & Mux(seg_accept, pp_ok_new, pp_ok_next))
        with m.If(seg_accept):
            m.d.sync += [pend_valid.eq(1), pend_off.eq(seg.offset), pend_rem.eq(seg.nbits),
                         pend_tag.eq(seg.tag), pend_left.eq(seg_words[:WB] - take_new),
                         pend_lz.eq(seg_words[:WB] == take_new), n_nw.eq(take_new),
                         nw[0].eq(word),
                         pp.eq((Cat(Const(0, W), word) << seg.offset)[2 * W - MAX:2 * W]),
                         pp_ok.eq(pp_ok_new)]

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
                v1.eq(emit), peek1.eq(s_peek), len1.eq(length), tag1.eq(s_tag),
                first1.eq(s_first),
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

        # signals the profiler (hw.profile) samples every cycle
        self._probe = dict(fire=fire, from_pend=from_pend, cur_valid=cur_valid,
                           pend_valid=pend_valid, have_bits=have_bits, s_ok=s_ok,
                           loading=loading, rem_zero=rem_zero, flush=flush)
        out = self.o_sym.payload
        m.d.comb += [
            self.o_sym.valid.eq(v3),
            out.symbol.eq(sym_rd.data),
            out.tag.eq(tag3),
            out.first.eq(first3),
            self.o_busy.eq(loading | cur_valid | pend_valid | bad | v1 | v2 | v3),
        ]
        return m
