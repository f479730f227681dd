"""The Huffman decoder's decode loop: segments and their words in, one code per cycle out.

Part of :class:`gateware.huffman.HuffmanDecoder` (docs/ARCHITECTURE.md section 3; the module
docstring of ``gateware.huffman`` describes the loop and its timing). This is the design's
timing-critical loop (``peek`` -> comparators -> one-hot length -> next ``peek``, it sets the
iCE40 clock), so it stays one component: its bookkeeping registers take their next values from
the one-hot length, and splitting them apart would put ports (and no logic) between signals that
yosys flattens back together anyway. ``elaborate`` is about 260 lines for that reason.
"""
from amaranth import Module, Signal, Cat, Const, Mux
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .huffman_lookup import code_layout
from .huffman_tables import limit_layout

__all__ = ["HuffmanDecodeLoop", "segment_layout"]


def segment_layout(tag_bits):
    """One segment to decode: bit ``offset`` in its first word, length ``nbits``, a ``tag``.

    The tag is passed through to every symbol of the segment (the PE uses the activation value).
    """
    return data.StructLayout({"offset": 4, "nbits": 16, "tag": tag_bits})


class HuffmanDecodeLoop(wiring.Component):
    """Segment framing, word windows and the code length decision, one code per cycle.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``huff_max_len`` and ``stream_words``.
    tag_bits : int
        Width of the per-segment tag.

    Attributes
    ----------
    i_limit : In(limit_layout(HUFF_MAX_LEN))
        The layer's comparator limits (monotone); stable while ``i_loading`` is low.
    i_loading : In(1)
        The limits are being loaded: no code is decoded (segments and words are still taken).
    i_start : In(1)
        Layer start pulse: clears ``o_error``.
    i_seg : In(stream.Signature(segment_layout(tag_bits)))
        Segments to decode, in stream order. ``nbits == 0`` segments are dropped (no words).
        One segment waits in a pending slot behind the current one (``ready`` while the slot is
        free or its segment moves in this cycle).
    i_word : In(stream.Signature(W))
        The segments' ``W``-bit words (``W = 16 * config.stream_words``), MSB first,
        ``ceil((offset + nbits) / W)`` per segment. ``ready`` while the current segment's
        window (3 words) or the pending one's (2 words) has room for its next word.
    o_code : Out(stream.Signature(code_layout(HUFF_MAX_LEN, tag_bits)))
        Decoded codes: the ``MAX`` bits at the code's position, its length, the segment's tag
        and ``first``. One per cycle at most; ``valid`` is raised only while ``ready`` is high
        (the loop decodes only then, so ``ready`` must not depend on ``valid``).
    o_error : Out(1)
        Sticky (cleared by ``i_start``): a code was not in the table or ran past the end of its
        segment. The rest of that segment is skipped.
    o_busy : Out(1)
        A segment is current or pending, or an invalid code is being flushed.
    """

    def __init__(self, config, tag_bits):
        self.cfg = config
        self.tag_bits = tag_bits
        self.max_len = config.huff_max_len
        self.word_bits = 16 * config.stream_words
        super().__init__({
            "i_limit": In(limit_layout(self.max_len)),
            "i_loading": In(1),
            "i_start": In(1),
            "i_seg": In(stream.Signature(segment_layout(tag_bits))),
            "i_word": In(stream.Signature(self.word_bits)),
            "o_code": Out(stream.Signature(code_layout(self.max_len, tag_bits))),
            "o_error": Out(1),
            "o_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        MAX = self.max_len
        W = self.word_bits               # bits of one stream word
        PB = (W - 1).bit_length()        # bits of a position inside it
        limit = [self.i_limit[f"l{l + 1}"] for l in range(MAX)]
        loading = self.i_loading
        error = Signal()
        m.d.comb += self.o_error.eq(error)

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

        advance = Signal()              # the lookup pipeline takes a code this cycle
        m.d.comb += advance.eq(self.o_code.ready)

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
        # Both segments' peeks are compared (two comparator sets, from registers) and the
        # results selected by `from_pend`: the carry chains run in parallel with that select's
        # fan-out instead of after it (the loop's critical path started with it).
        lt = Signal(MAX)
        lt_cur = Signal(MAX)
        lt_pend = Signal(MAX)
        for l in range(MAX):
            m.d.comb += [lt_cur[l].eq(peek[MAX - l - 1:] < limit[l]),
                         lt_pend[l].eq(pp[MAX - l - 1:] < limit[l])]
        m.d.comb += lt.eq(Mux(from_pend, lt_pend, lt_cur))
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
        # The code's length against the bits the segment has left (rem): lt is a thermometer
        # code (the limits are monotone, huffman_tables), so len <= rem iff lt[rem - 1] and
        # len == rem iff also ~lt[rem - 2]. Two selections of lt by a one-hot rem from
        # registers take fewer levels and LUTs after the comparators than matching the one-hot
        # length against per-length flags (the loop's paths into `from_pend` and `bad`).
        rem_small = Signal()
        m.d.comb += rem_small.eq(s_rem[4:] == 0)
        rem_sel = Signal(MAX + 1)       # one-hot rem (0 .. MAX); all 0 when rem > MAX
        for r in range(MAX + 1):
            m.d.comb += rem_sel[r].eq(rem_small & (s_rem[:4] == r))
        fits_rem = Signal()             # lt[rem - 1]: the code is not longer than the rest
        lt_before = Signal()            # lt[rem - 2]: it is shorter
        m.d.comb += [fits_rem.eq((lt & rem_sel[1:]).any()),
                     lt_before.eq((lt[:MAX - 1] & rem_sel[2:]).any())]
        code_ok = Signal()
        m.d.comb += [
            # a code at all, and (rem 1..MAX) not longer than the rest; rem 0 has no code
            code_ok.eq(lt[MAX - 1] & (fits_rem | ~(rem_small & (s_rem[:4] <= MAX)))),
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
        # `i_start` clears the sticky flag; a bad code in the same cycle wins (statement order)
        with m.If(self.i_start):
            m.d.sync += error.eq(0)
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
        fits_edge = Signal(MAX + 1)     # one-hot: the longest consumed length that fits
        m.d.comb += fits_edge.eq(fits & ~(fits >> 1))
        peek_next = Signal(MAX)
        peek_ok_next = Signal()
        m.d.comb += [
            peek_next.eq(Mux(fire, peek_fired, ahead[MAX:])),
            # fits[len], selected by the thermometer lt at the edge of fits (a thermometer too)
            peek_ok_next.eq(Mux(fire, (lt & fits_edge[1:]).any(), fits[0])),
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
        # code): its length is the rest (rem 1..MAX).
        last_hit = Signal()
        m.d.comb += last_hit.eq(fits_rem & ~lt_before)
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
        # (rz_n needs no `~(fire & ~code_ok)`: a code that fires with last_hit is valid - its
        # length is the bits left, and the comparisons form a thermometer code whenever a code
        # fires - and a firing invalid code has no last_hit. Keeping code_ok out takes a
        # level off the decode loop's critical path, which ends here.)
        m.d.sync += from_pend.eq(pv_n & (~cv_n | (rz_n & ~fl_n))
                                 & Mux(seg_accept, pp_ok_new, pp_ok_next))
        with m.If(seg_accept):
            m.d.sync += [pend_valid.eq(1), pend_off.eq(seg.offset), pend_rem.eq(seg.nbits),
                         pend_tag.eq(seg.tag), pend_left.eq(seg_words[:WB] - take_new),
                         pend_lz.eq(seg_words[:WB] == take_new), n_nw.eq(take_new),
                         nw[0].eq(word),
                         pp.eq((Cat(Const(0, W), word) << seg.offset)[2 * W - MAX:2 * W]),
                         pp_ok.eq(pp_ok_new)]

        code = self.o_code.payload
        m.d.comb += [
            self.o_code.valid.eq(emit),
            code.peek.eq(s_peek), code.length.eq(length), code.tag.eq(s_tag),
            code.first.eq(s_first),
            self.o_busy.eq(cur_valid | pend_valid | bad),
        ]
        # signals the profiler (hw.profile) samples every cycle
        self._probe = dict(fire=fire, from_pend=from_pend, cur_valid=cur_valid,
                           pend_valid=pend_valid, have_bits=have_bits, s_ok=s_ok,
                           loading=loading, rem_zero=rem_zero, flush=flush)
        return m
