"""The PE's accumulator banks and their two clients (part of
:class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .memories import table_memory

__all__ = ["AccumulatorBanks"]


class AccumulatorBanks(wiring.Component):
    """One or two accumulator banks shared by the accumulate pipeline and the requantizer.

    With ``config.requant_overlap`` two banks: even layers in bank 0, odd layers in bank 1, so
    layer L's requantization (one bank) runs while layer L + 1 accumulates (the other bank); the
    requantization engine owns the bank of its layer, the accumulate pipeline the other one.
    Without it one bank, owned by whichever engine runs. Transparent read ports: a read in the
    cycle of a write to the same row returns the new sum, so the accumulate pipeline needs no
    forwarding registers (yosys adds the one bypass an iCE40 EBR needs; a read-first port would
    cost a delayed write on top of it).

    Clearing sweep: a reset (RESET command, accelerator watchdog, reset pin) can abort a layer
    whose partial sums are in the accumulators, and only the requantization zeroes a row. So
    after every reset every row of every bank is written 0, one row per cycle
    (``max_rows_per_pe`` cycles, ``o_clearing``); the next inference starts from clean
    accumulators without costing any cycles of its own.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``requant_overlap``, ``max_rows_per_pe`` and ``acc_bits``.

    Attributes
    ----------
    o_clearing : Out(1)
        The clearing sweep runs (from reset on, ``max_rows_per_pe`` cycles): neither client is
        served.
    i_col_bank : In(1)
        The accumulate pipeline's bank (ignored with one bank).
    i_col_addr : In(log2(max_rows_per_pe))
        Its read address (read every cycle; data on ``o_col_data`` one cycle later,
        transparent for its write).
    i_col_we, i_col_waddr, i_col_wdata : In(1), In(log2(max_rows_per_pe)), In(signed(acc_bits))
        Its write.
    o_col_data : Out(signed(acc_bits))
        Read data of its bank.
    i_rq_active, i_rq_bank : In(1), In(1)
        The requantization engine owns bank ``i_rq_bank`` (it takes precedence there).
    i_rq_raddr, i_rq_re : In(log2(max_rows_per_pe)), In(1)
        Its read (data on ``o_rq_data`` one cycle later; held otherwise).
    i_rq_waddr, i_rq_we : In(log2(max_rows_per_pe)), In(1)
        Its clearing write (data 0).
    o_rq_data : Out(signed(acc_bits))
        Read data of its bank.
    i_rq_busy, i_rq_rbank, i_rq_wbank : In(2), In(1), In(1)
        Only with overlapping conv passes (``config.conv`` and ``config.early``; instead of
        ``i_rq_active`` / ``i_rq_bank``): the requantization engine owns the banks whose bit
        is set (two passes' rows may be in its stages), reads bank ``i_rq_rbank`` and writes
        bank ``i_rq_wbank``, whose read data is ``o_rq_data``.
    """

    def __init__(self, config):
        self.cfg = config
        rb = max(1, (config.max_rows_per_pe - 1).bit_length())
        acc = signed(config.acc_bits)
        self.follow = config.conv and config.early
        follow_ports = ({"i_rq_busy": In(2), "i_rq_rbank": In(1), "i_rq_wbank": In(1)}
                        if self.follow else {})
        super().__init__({
            **follow_ports,
            "o_clearing": Out(1, init=1),
            "i_col_bank": In(1), "i_col_addr": In(rb),
            "i_col_we": In(1), "i_col_waddr": In(rb), "i_col_wdata": In(acc),
            "o_col_data": Out(acc),
            "i_rq_active": In(1), "i_rq_bank": In(1),
            "i_rq_raddr": In(rb), "i_rq_re": In(1), "i_rq_waddr": In(rb), "i_rq_we": In(1),
            "o_rq_data": Out(acc),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        RB = max(1, (cfg.max_rows_per_pe - 1).bit_length())
        n_banks = 2 if cfg.requant_overlap else 1
        acc_banks = []
        for k in range(n_banks):
            accm = table_memory(signed(cfg.acc_bits), cfg.max_rows_per_pe)
            m.submodules[f"accs{k}"] = accm
            wr = accm.write_port()
            acc_banks.append((accm.read_port(transparent_for=(wr,)), wr))

        def read_data(bank):
            """Read data of accumulator bank ``bank`` (a 1-bit value; ignored with one bank)."""
            if n_banks == 1:
                return acc_banks[0][0].data
            return Mux(bank, acc_banks[1][0].data, acc_banks[0][0].data)

        follow = self.follow
        m.d.comb += [self.o_col_data.eq(read_data(self.i_col_bank)),
                     self.o_rq_data.eq(read_data(self.i_rq_wbank if follow
                                                 else self.i_rq_bank))]
        clearing = self.o_clearing
        clear_row = Signal(RB)
        with m.If(clearing):
            m.d.sync += clear_row.eq(clear_row + 1)
            with m.If(clear_row == cfg.max_rows_per_pe - 1):
                m.d.sync += clearing.eq(0)
        # the read of row r1 and the clearing write of row r2 of the requantizer never meet
        for k, (rd, wr) in enumerate(acc_banks):
            with m.If(clearing):
                m.d.comb += [wr.en.eq(1), wr.addr.eq(clear_row), wr.data.eq(0)]
            if follow:
                with m.Elif(self.i_rq_busy[k]):
                    # (a bank the engine owns but does not read this cycle keeps its data)
                    m.d.comb += [
                        rd.addr.eq(self.i_rq_raddr),
                        rd.en.eq(self.i_rq_re & (self.i_rq_rbank == k)),
                        wr.en.eq(self.i_rq_we & (self.i_rq_wbank == k)),
                        wr.addr.eq(self.i_rq_waddr), wr.data.eq(0),
                    ]
            else:
                with m.Elif(self.i_rq_active & (self.i_rq_bank == k)):
                    m.d.comb += [
                        rd.addr.eq(self.i_rq_raddr), rd.en.eq(self.i_rq_re),
                        wr.en.eq(self.i_rq_we), wr.addr.eq(self.i_rq_waddr), wr.data.eq(0),
                    ]
            with m.Else():
                m.d.comb += [
                    rd.addr.eq(self.i_col_addr), rd.en.eq(1),
                    wr.en.eq(self.i_col_we & (self.i_col_bank == k)),
                    wr.addr.eq(self.i_col_waddr), wr.data.eq(self.i_col_wdata),
                ]
        return m
