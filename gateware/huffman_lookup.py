"""The Huffman decoder's lookup pipeline: a decoded ``(peek, length)`` to its joint symbol.

Part of :class:`gateware.huffman.HuffmanDecoder` (docs/ARCHITECTURE.md section 3). Canonical
Huffman: the symbol of a code of length ``len`` whose ``MAX`` bits (``peek``, the code in its top
``len`` bits) are given is ``symbols[sym_base + base[len] + (peek >> (MAX - len))]`` (mod 2^16).
Three register stages: S1 holds ``(peek, len)`` while ``base[len]`` is read, S2 the offset
``peek >> (MAX - len)`` while the symbol is read, S3 is the output register.
"""
from amaranth import Module, Signal
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .huffman_tables import TableReadSignature

__all__ = ["HuffmanLookup", "code_layout", "symbol_out_layout"]


def code_layout(max_len, tag_bits):
    """One decoded code: its ``MAX`` bits ``peek`` (the code at the top), its ``length``
    (1..MAX), the segment's ``tag`` and ``first`` (the segment's first code)."""
    return data.StructLayout({"peek": max_len, "length": 4, "tag": tag_bits, "first": 1})


def symbol_out_layout(cfg, tag_bits):
    """A decoded joint symbol with its segment's ``tag``; ``first`` marks a segment's first one."""
    return data.StructLayout({"symbol": cfg.idx_bits + cfg.gap_bits, "tag": tag_bits,
                              "first": 1})


class HuffmanLookup(wiring.Component):
    """Three-stage table lookup from decoded codes to symbols.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``huff_max_len``, ``symbol_depth``, ``idx_bits`` and ``gap_bits``.
    tag_bits : int
        Width of the per-segment tag passed through.

    Attributes
    ----------
    i_code : In(stream.Signature(code_layout(HUFF_MAX_LEN, tag_bits)))
        Decoded codes. ``ready`` is high while the pipeline advances (its output register is
        empty or is taken this cycle) and does not depend on ``valid``: the decode loop decodes
        only while it is high (its ``valid`` follows ``ready``, which keeps the handshake off
        the decode loop's critical path).
    o_sym : Out(stream.Signature(symbol_out_layout(config, tag_bits)))
        The codes' symbols with their ``tag`` and ``first``, in order, 3 cycles after the code
        was taken (more while ``ready`` is low: the whole pipeline holds). ``valid`` and the
        payload come from registers and the symbol table's read port.
    i_sym_base : In(16)
        Start of the layer's symbol table; stable while codes are in flight.
    o_base_rd : Out(TableReadSignature(4, 16))
        ``base[len]`` of the layer (read with S1's length).
    o_sym_rd : Out(TableReadSignature(log2(symbol_depth), idx_bits + gap_bits))
        The symbol table (read with S2's index).
    o_busy : Out(1)
        A code is in one of the stages.
    """

    def __init__(self, config, tag_bits):
        self.cfg = config
        self.max_len = config.huff_max_len
        self.sym_addr_bits = max(1, (config.symbol_depth - 1).bit_length())
        sym_bits = config.idx_bits + config.gap_bits
        super().__init__({
            "i_code": In(stream.Signature(code_layout(self.max_len, tag_bits))),
            "o_sym": Out(stream.Signature(symbol_out_layout(config, tag_bits))),
            "i_sym_base": In(16),
            "o_base_rd": Out(TableReadSignature(4, 16)),
            "o_sym_rd": Out(TableReadSignature(self.sym_addr_bits, sym_bits)),
            "o_busy": Out(1),
        })
        self.tag_bits = tag_bits

    def elaborate(self, platform):
        m = Module()
        MAX = self.max_len
        code = self.i_code.payload
        v1, v2, v3 = Signal(), Signal(), Signal()
        advance = Signal()
        m.d.comb += [advance.eq(~v3 | self.o_sym.ready), self.i_code.ready.eq(advance)]

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
                v1.eq(self.i_code.valid), peek1.eq(code.peek), len1.eq(code.length),
                tag1.eq(code.tag), first1.eq(code.first),
                v2.eq(v1), off2.eq(peek1 >> sh1), tag2.eq(tag1), first2.eq(first1),
                v3.eq(v2), tag3.eq(tag2), first3.eq(first2),
            ]
        m.d.comb += [self.o_base_rd.addr.eq(len1), self.o_base_rd.en.eq(advance)]

        sym_index = Signal(16)
        m.d.comb += [
            sym_index.eq(self.i_sym_base + self.o_base_rd.data + off2),
            self.o_sym_rd.addr.eq(sym_index[:self.sym_addr_bits]),
            self.o_sym_rd.en.eq(advance),
        ]

        out = self.o_sym.payload
        m.d.comb += [
            self.o_sym.valid.eq(v3),
            out.symbol.eq(self.o_sym_rd.data),
            out.tag.eq(tag3),
            out.first.eq(first3),
            self.o_busy.eq(v1 | v2 | v3),
        ]
        return m
