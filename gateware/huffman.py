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

Three components, composed here: :class:`gateware.huffman_tables.HuffmanTables` (the table
memories, their load port and the ``limit`` loader), :class:`gateware.huffman_loop.
HuffmanDecodeLoop` (segments, word windows and the length decision: the timing-critical loop)
and :class:`gateware.huffman_lookup.HuffmanLookup` (the three-stage lookup pipeline). The loop
hands ``(peek, len)`` codes to the pipeline over a stream; the pipeline and the loader read the
tables through :class:`gateware.huffman_tables.TableReadSignature` ports.
"""
from amaranth import Module
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .config import LoadWrite
from .huffman_lookup import HuffmanLookup, symbol_out_layout
from .huffman_loop import HuffmanDecodeLoop, segment_layout
from .huffman_tables import HuffmanTables

__all__ = ["HuffmanDecoder", "decoder_ports", "segment_layout", "symbol_out_layout"]


def decoder_ports(config, tag_bits):
    """Signature members of a PE's column decoder: this one and
    :class:`gateware.fixed_decoder.FixedDecoder` take them from here, so the PE can hold
    either (``config.huffman``) and the two interfaces cannot drift."""
    layer_bits = max(1, (config.max_layers - 1).bit_length())
    return {
        "i_load": In(stream.Signature(LoadWrite)),
        "i_layer_index": In(layer_bits),
        "i_sym_base": In(16),
        "i_start": In(1),
        "i_seg": In(stream.Signature(segment_layout(tag_bits))),
        "i_word": In(stream.Signature(16 * config.stream_words)),
        "o_sym": Out(stream.Signature(symbol_out_layout(config, tag_bits))),
        "o_busy": Out(1),
        "o_error": Out(1),
    }


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
        super().__init__(decoder_ports(config, tag_bits))

    def elaborate(self, platform):
        m = Module()
        m.submodules.tables = tables = HuffmanTables(self.cfg)
        m.submodules.loop = loop = HuffmanDecodeLoop(self.cfg, self.tag_bits)
        m.submodules.lookup = lookup = HuffmanLookup(self.cfg, self.tag_bits)
        self._loop = loop

        wiring.connect(m, wiring.flipped(self.i_load), tables.i_load)
        wiring.connect(m, wiring.flipped(self.i_seg), loop.i_seg)
        wiring.connect(m, wiring.flipped(self.i_word), loop.i_word)
        wiring.connect(m, loop.o_code, lookup.i_code)
        wiring.connect(m, lookup.o_sym, wiring.flipped(self.o_sym))
        wiring.connect(m, lookup.o_base_rd, tables.i_base_rd)
        wiring.connect(m, lookup.o_sym_rd, tables.i_sym_rd)
        m.d.comb += [
            tables.i_layer_index.eq(self.i_layer_index),
            tables.i_start.eq(self.i_start),
            loop.i_start.eq(self.i_start),
            loop.i_limit.eq(tables.o_limit),
            loop.i_loading.eq(tables.o_loading),
            lookup.i_sym_base.eq(self.i_sym_base),
            self.o_error.eq(loop.o_error),
            self.o_busy.eq(tables.o_loading | loop.o_busy | lookup.o_busy),
        ]
        return m

    @property
    def _probe(self):
        """Signals the profiler (hw.profile) samples every cycle (after elaboration)."""
        return self._loop._probe
