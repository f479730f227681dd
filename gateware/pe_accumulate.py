"""The PE's accumulate pipeline: decoded symbols to accumulator updates (docs/ARCHITECTURE.md
section 7, stage 4; part of :class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .huffman import symbol_out_layout
from .memories import table_memory
from .pe_pointers import pe_tag_bits

__all__ = ["Accumulate"]


class Accumulate(wiring.Component):
    """``acc[row] += value * codebook[layer][idx]`` for each decoded ``(idx, gap)`` symbol.

    ``row = prev + gap + 1`` (``gap`` on a column's first symbol). Three stages: S1 holds the
    row and index (row range check), S2 reads ``acc[row]`` and ``codebook[idx]``, S3 multiplies
    ``value * weight`` (an SB_MAC16) and writes ``acc[row] + product`` back. The accumulator is
    read one stage before the write-back through a port that is transparent for it, so the same
    row in consecutive columns (read and written in the same cycle) needs no forwarding
    registers.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``act_bits``, ``weight_bits``, ``acc_bits``, ``idx_bits``, ``gap_bits``,
        ``max_layers`` and ``max_rows_per_pe``.

    Attributes
    ----------
    i_sym : In(stream.Signature(symbol_out_layout(config, pe_tag_bits(config))))
        Decoded joint symbols, ``tag`` = the column's activation value (with overlapping conv
        passes the pass's accumulator bank above it), ``first`` on a column's first symbol.
        Always ready, except for a symbol of the bank ``i_hold`` names.
    i_rows_local : In(log2(max_rows_per_pe) + 1)
        The layer's local row count: a row at or past it is dropped with ``o_error``.
    i_acc_base : In(log2(max_rows_per_pe))
        The layer's first accumulator row.
    i_layer_index : In(log2(max_layers))
        Selects the layer's codebook. Stable while symbols are in flight.
    i_cb_we, i_cb_addr, i_cb_data : In(1), In(16), In(16)
        Codebook write (entry ``layer << idx_bits | idx``); addresses past the table are
        dropped.
    o_acc_addr : Out(log2(max_rows_per_pe))
        Accumulator read address (read every cycle; the data on ``i_acc_data`` one cycle
        later, transparent for ``o_acc_we``).
    i_acc_data : In(signed(acc_bits))
        The accumulator read data.
    o_acc_we, o_acc_waddr, o_acc_wdata : Out(1), Out(log2(max_rows_per_pe)), Out(signed)
        Accumulator write-back, three cycles after the symbol.
    o_busy : Out(1)
        A symbol is in one of the stages.
    o_bank : Out(1)
        Only with overlapping conv passes (``pe_tag_bits(config) > act_bits``): the accumulator
        bank of the symbol in stage 3 (its tag's top bit), whose read data ``i_acc_data``
        carries and which ``o_acc_we`` writes; successive passes' symbols follow each other
        through the stages, each into its own pass's bank.
    o_bank_busy : Out(2)
        Only with overlapping conv passes: bit ``b``: a symbol of bank ``b`` is in a stage.
    i_hold, i_hold_bank : In(1), In(1)
        Only with overlapping conv passes: bank ``i_hold_bank`` is being requantized, a symbol
        of that bank (the pass after next) waits at the input.
    o_error : Out(1)
        Pulse: a row at or past ``i_rows_local``.
    """

    def __init__(self, config):
        self.cfg = config
        rb = max(1, (config.max_rows_per_pe - 1).bit_length())
        rw = config.max_rows_per_pe.bit_length()
        super().__init__({
            "i_sym": In(stream.Signature(symbol_out_layout(config, pe_tag_bits(config)))),
            "i_rows_local": In(rw),
            "i_acc_base": In(rb),
            "i_layer_index": In(max(1, (config.max_layers - 1).bit_length())),
            "i_cb_we": In(1),
            "i_cb_addr": In(16),
            "i_cb_data": In(16),
            "o_acc_addr": Out(rb),
            "i_acc_data": In(signed(config.acc_bits)),
            "o_acc_we": Out(1),
            "o_acc_waddr": Out(rb),
            "o_acc_wdata": Out(signed(config.acc_bits)),
            "o_busy": Out(1),
            "o_error": Out(1),
            **({"o_bank": Out(1), "o_bank_busy": Out(2), "i_hold": In(1), "i_hold_bank": In(1)}
               if pe_tag_bits(config) > config.act_bits else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        A = cfg.act_bits
        ACC = cfg.acc_bits
        RB = max(1, (cfg.max_rows_per_pe - 1).bit_length())
        RW = cfg.max_rows_per_pe.bit_length()
        m.submodules.codebook = cbm = table_memory(signed(cfg.weight_bits),
                                                   cfg.max_layers << cfg.idx_bits)
        cb_rd = cbm.read_port()
        cb_wr = cbm.write_port()
        m.d.comb += [
            cb_wr.addr.eq(self.i_cb_addr),
            cb_wr.data.eq(self.i_cb_data),
            cb_wr.en.eq(self.i_cb_we & (self.i_cb_addr < (cfg.max_layers << cfg.idx_bits))),
        ]

        sym = self.i_sym.payload
        tagged = pe_tag_bits(cfg) > A
        if tagged:
            m.d.comb += self.i_sym.ready.eq(~(self.i_hold & (sym.tag[A] == self.i_hold_bank)))
        else:
            m.d.comb += self.i_sym.ready.eq(1)
        take = Signal()
        m.d.comb += take.eq(self.i_sym.valid & self.i_sym.ready)
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
        m.d.sync += v1.eq(take)
        with m.If(take):
            m.d.sync += [prev_row.eq(row0), row1.eq(row0), idx1.eq(idx), val1.eq(sym.tag[:A])]

        ok1 = Signal()
        m.d.comb += ok1.eq(v1 & (row1 < self.i_rows_local))
        m.d.comb += self.o_error.eq(v1 & ~ok1)
        v2 = Signal()
        addr2 = Signal(RB)
        # (the multiplier's operand and product registers have no reset, so yosys can put them
        # into the SB_MAC16's own input and output registers: v2 / v3 say when they count)
        val2 = Signal(A, reset_less=True)
        m.d.sync += [v2.eq(ok1), addr2.eq(self.i_acc_base + row1[:RB]), val2.eq(val1)]
        m.d.comb += cb_rd.addr.eq(Cat(idx1, self.i_layer_index))

        v3 = Signal()
        addr3 = Signal(RB)
        prod3 = Signal(signed(A + cfg.weight_bits + 1), reset_less=True)
        # value * weight (an SB_MAC16)
        m.d.sync += [v3.eq(v2), addr3.eq(addr2),
                     prod3.eq(Cat(val2, Const(0, 1)).as_signed() * cb_rd.data)]
        if tagged:
            # the symbol's pass bank travels with it: a pass's first symbols may follow the
            # previous pass's last ones through the stages
            bank1, bank2 = Signal(), Signal()
            with m.If(take):
                m.d.sync += bank1.eq(sym.tag[A])
            m.d.sync += [bank2.eq(bank1), self.o_bank.eq(bank2)]
            m.d.comb += [self.o_bank_busy[b].eq((v1 & (bank1 == b)) | (v2 & (bank2 == b))
                                                | (v3 & (self.o_bank == b))) for b in range(2)]
        # acc[addr2] is read in stage 2 and arrives with prod3 in stage 3, where the sum is
        # written back. The read port is transparent, so a read of the row written in the same
        # cycle (the same row in consecutive columns) sees the new sum; a row written two or more
        # cycles earlier is already in the memory.
        acc_sum = Signal(signed(ACC))
        m.d.comb += [
            acc_sum.eq(self.i_acc_data + prod3),
            self.o_acc_addr.eq(addr2),
            self.o_acc_we.eq(v3),
            self.o_acc_waddr.eq(addr3),
            self.o_acc_wdata.eq(acc_sum),
            self.o_busy.eq(v1 | v2 | v3),
        ]
        return m
