"""Fixed-width column entries to joint symbols, one per cycle: the PE's decoder without Huffman
coding (``config.huffman`` off; EIE's own format, docs/ARCHITECTURE.md section 3).

Each stored entry is ``S = config.fixed_entry_bits`` bits (8 or 16, ``contract.memmap.
fixed_entry_bits``) holding the joint symbol ``gap << idx_bits | idx`` right-aligned, MSB first
in the stream like the Huffman codes, so an entry never straddles a memory word and a ``W``-bit
stream word holds ``E = W / S`` of them (1, 2 or 4). The column pointers stay bit offsets, so
the PE's pointer and word fetch (segments and their words) are the same as with the Huffman
decoder; this component replaces :class:`gateware.huffman.HuffmanDecoder` behind the same ports.

It works on the heads of its two input streams (the word fetch's segment queue and word FIFO,
both registered queue outputs): a segment's entry number ``k`` sits in slot
``(offset / S + k) mod E`` of the head word. A word is taken after its last slot or the
segment's last entry. A segment is taken with its first entry, its tag and progress kept in
registers from then on, so the word fetch can start on the next column while this one is
decoded (with a one-entry segment queue, taking it with its last entry cost the LeNet-300-100
iCEBreaker build 2 cycles a column). Columns follow each other without an idle cycle, and no
window or pending-segment registers are needed (the Huffman decoder's loop needs them because
a code may start anywhere in a word). The symbol leaves through an output register. About 80
LUT4 on the iCE40 where the Huffman decoder has 1,276 (``python -m hw.area --part pe``).
"""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring

from .huffman import HuffmanDecoder, decoder_ports

__all__ = ["FixedDecoder", "column_decoder"]



class FixedDecoder(wiring.Component):
    """Slot selector for fixed-width column entries (the ports of
    :class:`gateware.huffman.HuffmanDecoder`).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``fixed_entry_bits``, ``stream_words``, ``idx_bits``, ``gap_bits`` and
        ``max_layers``.
    tag_bits : int
        Width of the per-segment tag.

    Attributes
    ----------
    i_load : In(stream.Signature(LoadWrite))
        Ignored (there are no tables); always ready.
    i_layer_index : In(log2(max_layers))
        Unused (the entries need no per-layer table).
    i_sym_base : In(16)
        Unused.
    i_start : In(1)
        Layer start pulse: clears ``o_error``.
    i_seg : In(stream.Signature(segment_layout(tag_bits)))
        Segments in stream order: ``offset`` (bit of the first 16-bit word, a multiple of
        ``S``), ``nbits`` (a multiple of ``S``; 0: dropped, no words) and the ``tag``. Taken
        with the segment's first entry.
    i_word : In(stream.Signature(W))
        The segments' ``W``-bit words (``W = 16 * config.stream_words``), MSB first,
        ``ceil((offset + nbits) / W)`` per segment. Taken with their last entry.
    o_sym : Out(stream.Signature(symbol_out_layout(config, tag_bits)))
        Joint symbols (the low ``idx_bits + gap_bits`` bits of each entry) with their segment's
        tag, ``first`` on a segment's first; one per cycle while ``ready`` is high. From
        registers.
    o_busy : Out(1)
        A segment is waiting or being decoded, or a symbol is in the output register.
    o_error : Out(1)
        Sticky (cleared by ``i_start``): a segment's offset or length is not a whole number of
        entries, or an entry has bits set above the joint symbol. The entries are still
        passed on (the words stay in step with the segments when the length is the fault).
    """

    def __init__(self, config, tag_bits=8):
        self.cfg = config
        self.tag_bits = tag_bits
        self.entry_bits = config.fixed_entry_bits
        self.word_bits = 16 * config.stream_words
        super().__init__(decoder_ports(config, tag_bits))

    def elaborate(self, platform):
        m = Module()
        S, W = self.entry_bits, self.word_bits
        E = W // S                                  # entries per stream word
        SH = S.bit_length() - 1                     # log2(S)
        SYM = self.cfg.idx_bits + self.cfg.gap_bits
        seg, word, out = self.i_seg.payload, self.i_word.payload, self.o_sym

        # A segment is taken off its queue with its first entry (so the word fetch can move on
        # to the next column while this one is decoded); its tag, the slot of the next entry
        # and whether that is the segment's last then come from registers (``first`` low).
        # ``last`` drives the word FIFO's pop, which the word fetch's request sees in the same
        # cycle: from a register, or for a first entry from a compare without an adder.
        first = Signal(init=1)
        left_reg = Signal(16 - SH + 1)          # entries after the next one
        last_reg = Signal()
        slot_reg = Signal(range(E))
        tag_reg = Signal(self.tag_bits)
        nbits = seg.nbits
        # the segment holds one entry: ceil(nbits / S) == 1, i.e. 0 < nbits <= S
        first_is_last = (nbits[SH + 1:] == 0) & Mux(nbits[SH], nbits[:SH] == 0,
                                                     nbits[:SH] != 0)
        slot = Signal.like(slot_reg)
        last = Signal()
        m.d.comb += [slot.eq(Mux(first, (seg.offset >> SH) % E, slot_reg) if E > 1 else 0),
                     last.eq(Mux(first, first_is_last, last_reg))]

        can_emit = Signal()
        fire = Signal()
        drop = Signal()                             # an empty segment: no words, no symbol
        empty = nbits == 0
        m.d.comb += [
            can_emit.eq(~out.valid | out.ready),
            fire.eq(Mux(first, self.i_seg.valid & ~empty, 1) & self.i_word.valid & can_emit),
            drop.eq(first & self.i_seg.valid & empty),
            self.i_seg.ready.eq((fire & first) | drop),
            self.i_word.ready.eq(fire & (last | (slot == E - 1))),
            self.i_load.ready.eq(1),
            self.o_busy.eq(self.i_seg.valid | out.valid | ~first),
        ]

        # the entry in slot ``slot`` of the head word (slot 0 = the most significant bits)
        entries = [word[W - S * (k + 1):W - S * k] for k in range(E)]
        entry = Signal(S)
        with m.Switch(slot):
            for k in range(E):
                with m.Case(k):
                    m.d.comb += entry.eq(entries[k])

        with m.If(fire):
            m.d.sync += [
                out.valid.eq(1),
                out.payload.symbol.eq(entry[:SYM]),
                out.payload.tag.eq(Mux(first, seg.tag, tag_reg)),
                out.payload.first.eq(first),
                first.eq(last),
                slot_reg.eq(slot + 1 if E > 1 else 0),
            ]
            with m.If(first):
                m.d.sync += tag_reg.eq(seg.tag)
            # the entries after this one's successor, and whether that successor is the last
            after = Mux(first, ((nbits + (S - 1)) >> SH) - 1, left_reg)
            m.d.sync += [left_reg.eq(after - 1), last_reg.eq(after == 1)]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        error = Signal()
        m.d.comb += self.o_error.eq(error)
        bad_frame = (seg.offset[:SH] != 0) | (seg.nbits[:SH] != 0)
        bad_entry = entry[SYM:].any() if SYM < S else 0
        with m.If(self.i_start):
            m.d.sync += error.eq(0)
        with m.Elif((fire & ((first & bad_frame) | bad_entry)) | (drop & bad_frame)):
            m.d.sync += error.eq(1)

        # signals the profiler (hw.profile) samples every cycle: the Huffman loop's names, the
        # ones that have no counterpart here held at their idle values
        probe = {name: Signal(name=f"probe_{name}") for name in
                 ("fire", "from_pend", "cur_valid", "pend_valid", "have_bits", "s_ok",
                  "loading", "rem_zero", "flush")}
        m.d.comb += [probe["fire"].eq(fire), probe["cur_valid"].eq(self.i_seg.valid),
                     probe["have_bits"].eq(self.i_word.valid), probe["s_ok"].eq(1)]
        self._probe = probe
        return m


def column_decoder(config, tag_bits):
    """The PE's column decoder for ``config``: :class:`gateware.huffman.HuffmanDecoder`, or
    without Huffman coding (``config.huffman`` off) a :class:`FixedDecoder`."""
    return (HuffmanDecoder if config.huffman else FixedDecoder)(config, tag_bits=tag_bits)
