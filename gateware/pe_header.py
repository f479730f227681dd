"""The PE's layer header reads (docs/ARCHITECTURE.md section 4, the PE data memory's header;
part of :class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LayerHeader"]


class LayerHeader(wiring.Component):
    """Reads a layer's header words from the data memory and checks them.

    Five reads, one per cycle: words 0-3 of layer ``L``'s header (``4 L + k``: pointer table,
    stream and bias addresses, local row count) and word 2 of layer 0 (the first layer's bias
    address: a layer's accumulators start at ``bias_base - bias_base0``). Three cycles after the
    last read the header check is reported (``o_error``): a bias address below layer 0's, or rows
    past ``max_rows_per_pe``.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``pe_mem_depth``, ``max_rows_per_pe`` and ``max_layers``.

    Attributes
    ----------
    i_start : In(1)
        A layer starts: its header is read from the next ``i_active`` cycle on.
    i_active : In(1)
        The header phase: one read per cycle, ``o_re``/``o_addr``.
    i_layer_index : In(log2(max_layers))
        The layer; stable during the header phase.
    o_re, o_addr : Out(1), Out(log2(pe_mem_depth))
        The data memory read (always granted); data on ``i_rdata`` one cycle later.
    i_rdata : In(16)
        The data memory's read data.
    o_last : Out(1)
        The last header read is issued this cycle (the header phase ends).
    o_ptr_base, o_stream_base, o_bias_base : Out(log2(pe_mem_depth))
        The layer's pointer table, Huffman stream and bias addresses (registers, valid from
        the cycle after the header phase on, the bias address one cycle later).
    o_rows_local : Out(log2(max_rows_per_pe) + 1)
        The layer's local row count, clamped to ``max_rows_per_pe``.
    o_acc_base : Out(log2(max_rows_per_pe))
        The layer's first accumulator row (valid two cycles after the header phase).
    o_error : Out(1)
        Pulse: the header check failed.
    """

    def __init__(self, config):
        self.cfg = config
        ma = (config.pe_mem_depth - 1).bit_length()
        super().__init__({
            "i_start": In(1),
            "i_active": In(1),
            "i_layer_index": In(max(1, (config.max_layers - 1).bit_length())),
            "o_re": Out(1),
            "o_addr": Out(ma),
            "i_rdata": In(16),
            "o_last": Out(1),
            "o_ptr_base": Out(ma),
            "o_stream_base": Out(ma),
            "o_bias_base": Out(ma),
            "o_rows_local": Out(config.max_rows_per_pe.bit_length()),
            "o_acc_base": Out(max(1, (config.max_rows_per_pe - 1).bit_length())),
            "o_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        MA = (cfg.pe_mem_depth - 1).bit_length()
        rdata = self.i_rdata
        bias_base, bias_base0 = self.o_bias_base, Signal(MA)
        rows_local = self.o_rows_local  # clamped to max_rows_per_pe (rows_big flags more)
        rows_big = Signal()
        hs = Signal(range(6))           # header read being issued
        hs_d = Signal(range(6))         # header read whose data is on i_rdata (+1; 0 = none)
        with m.If(hs_d == 1):
            m.d.sync += self.o_ptr_base.eq(rdata)
        with m.If(hs_d == 2):
            m.d.sync += self.o_stream_base.eq(rdata)
        with m.If(hs_d == 3):
            m.d.sync += bias_base.eq(rdata)
        with m.If(hs_d == 4):
            big = rdata > cfg.max_rows_per_pe
            m.d.sync += [rows_local.eq(Mux(big, cfg.max_rows_per_pe, rdata)),
                         rows_big.eq(big)]
        with m.If(hs_d == 5):
            m.d.sync += bias_base0.eq(rdata)
        m.d.sync += hs_d.eq(0)
        with m.Switch(hs):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += self.o_addr.eq((self.i_layer_index << 2) + k)
            with m.Default():
                m.d.comb += self.o_addr.eq(2)
        m.d.comb += [self.o_re.eq(self.i_active), self.o_last.eq(self.i_active & (hs == 4))]

        # header sanity check, two cycles after the header phase (bias_base0 is the last
        # header word read); its result is registered and reported a cycle later (the
        # subtract-add-compare chain into the PE's error flag was the iCEBreaker build's
        # critical path)
        chk = Signal(2)
        bad = Signal()
        with m.If(chk != 0):
            m.d.sync += chk.eq(chk - 1)
        m.d.sync += bad.eq((bias_base < bias_base0)
                           | (bias_base - bias_base0 + rows_local > cfg.max_rows_per_pe)
                           | rows_big)
        with m.If(chk == 1):
            m.d.comb += self.o_error.eq(bad)
        m.d.sync += self.o_acc_base.eq(bias_base - bias_base0)

        with m.If(self.i_start):
            m.d.sync += hs.eq(0)
        with m.If(self.i_active):
            m.d.sync += [hs.eq(hs + 1), hs_d.eq(hs + 1)]
            with m.If(hs == 4):
                m.d.sync += chk.eq(3)
        return m
