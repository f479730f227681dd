"""The PE's requantization engine: accumulators to output activations (docs/ARCHITECTURE.md
sections 1 and 7; part of :class:`gateware.pe.ProcessingElement`)."""
from amaranth import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .config import pe_output_layout

__all__ = ["Requantize", "round_shift_saturate"]


class Requantize(wiring.Component):
    """One row per cycle: ``acc + (bias << bias_shift)``, round-shift-saturate, write 0 back.

    Stages: r0 reads ``bias[row]`` (data memory, in a cycle ``i_mem_free`` allows); r1 computes
    ``rprod = bias * 2^(bias_shift mod 8)`` (an SB_MAC16) and reads ``acc[row]``; r2 adds
    ``rprod << 8 * (bias_shift // 8)`` to it (32 bits: the packer proves it fits) and writes 0
    back; r3 is the output register. Hidden layers keep the non-zero
    :func:`round_shift_saturate` results, the last layer every raw accumulator; then an ``end``
    token. With ``config.requant_overlap`` the layer parameters are latched at ``i_start``, so
    the column engine may move on to the next layer; without it they must stay stable until
    ``o_idle``.

    With overlapping conv passes (``config.conv`` and ``config.early``) the ``end`` token
    follows the last row through the stages as a marker, and the engine takes the next start
    (``o_ready``) as soon as the marker is issued: the next pass of the same conv layer, which
    differs only in its accumulator bank, is requantized while the previous pass's last rows
    and its ``end`` are still in stages r1-r3 (each row carries its bank through r1 and r2), so
    a pass costs ``rows + 2`` cycles instead of ``rows + 6``. A start of anything else (a new
    layer: other parameters) must wait for ``o_idle``.

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``requant_overlap``, ``pe_mem_depth``, ``max_rows_per_pe``, ``act_bits``,
        ``weight_bits``, ``acc_bits`` and ``n_pes``.
    index : int
        PE number ``p``: local row ``i`` is global row ``p + N * i``.
    shift_bits, bias_shift_bits : int
        Widths of ``i_shift`` and ``i_bias_shift``.

    Attributes
    ----------
    i_start : In(1)
        Pulse while ``o_idle``: requantize the layer described by the ``i_*`` parameters.
    i_rows, i_bias_base, i_acc_base, i_bank : In(...)
        Local row count, bias address (data memory), first accumulator row, accumulator bank.
    i_last, i_shift, i_bias_shift : In(1), In(shift_bits), In(bias_shift_bits)
        The last layer (raw outputs), the requantization shift, the bias shift.
    i_dense : In(1)
        Emit every requantized row, zeros included (a conv pass: the pool writer takes every
        output of a position); latched with the other parameters.
    i_mem_free : In(1)
        The data memory takes a bias read this cycle (no header or word read).
    o_bias_re, o_bias_addr : Out(1), Out(log2(pe_mem_depth))
        Bias read (the data on ``i_rdata`` one cycle later).
    i_rdata : In(16)
        The data memory's read data.
    o_acc_active : Out(1)
        The engine owns accumulator bank ``o_acc_bank`` (from ``i_start`` to ``o_idle``).
    o_acc_bank : Out(1)
        The bank of the layer requantized.
    o_acc_busy, o_acc_rbank, o_acc_wbank : Out(2), Out(1), Out(1)
        Only with overlapping conv passes (instead of ``o_acc_active`` / ``o_acc_bank``): bit
        ``b`` of ``o_acc_busy``: the engine owns bank ``b`` (a row of it is to be issued or in
        r1 or r2); the bank ``o_acc_raddr`` reads, the bank ``o_acc_waddr`` clears and
        ``i_acc_data`` comes from.
    o_acc_raddr, o_acc_re : Out(log2(max_rows_per_pe)), Out(1)
        Accumulator read (data on ``i_acc_data`` one cycle later).
    o_acc_waddr, o_acc_we : Out(log2(max_rows_per_pe)), Out(1)
        Accumulator clearing write (data 0).
    i_acc_data : In(signed(acc_bits))
        The accumulator read data.
    o_out : Out(stream.Signature(pe_output_layout(config)))
        ``(local row, value)`` outputs from registers, then the ``end`` token; the pipeline
        holds while ``ready`` is low.
    o_idle : Out(1)
        No layer is being requantized (with overlapping conv passes: nor any row or ``end`` in
        the stages).
    o_ready : Out(1)
        Only with overlapping conv passes: ``i_start`` is taken (all rows and the ``end`` of
        the pass requantized last are issued); a start while not ``o_idle`` must be the next
        pass of the same conv layer.
    """

    def __init__(self, config, index, shift_bits, bias_shift_bits):
        self.cfg = config
        self.index = index
        ma = (config.pe_mem_depth - 1).bit_length()
        rb = max(1, (config.max_rows_per_pe - 1).bit_length())
        rw = config.max_rows_per_pe.bit_length()
        # overlapping conv passes: the end token is a marker in the stages, the next pass of
        # the layer starts behind it
        self.follow = follow = config.conv and config.early
        follow_ports = {"o_acc_busy": Out(2), "o_acc_rbank": Out(1), "o_acc_wbank": Out(1),
                        "o_ready": Out(1)} if follow else {}
        super().__init__({
            **follow_ports,
            "i_start": In(1),
            "i_rows": In(rw),
            "i_bias_base": In(ma),
            "i_acc_base": In(rb),
            "i_bank": In(1),
            "i_last": In(1),
            "i_dense": In(1),
            "i_shift": In(shift_bits),
            "i_bias_shift": In(bias_shift_bits),
            "i_mem_free": In(1),
            "o_bias_re": Out(1),
            "o_bias_addr": Out(ma),
            "i_rdata": In(16),
            "o_acc_active": Out(1),
            "o_acc_bank": Out(1),
            "o_acc_raddr": Out(rb),
            "o_acc_re": Out(1),
            "o_acc_waddr": Out(rb),
            "o_acc_we": Out(1),
            "i_acc_data": In(signed(config.acc_bits)),
            "o_out": Out(stream.Signature(pe_output_layout(config))),
            "o_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        A = cfg.act_bits
        ACC = cfg.acc_bits
        MA = (cfg.pe_mem_depth - 1).bit_length()
        RB = max(1, (cfg.max_rows_per_pe - 1).bit_length())
        RW = cfg.max_rows_per_pe.bit_length()
        RIDLE, REQ, ENDT = range(3)
        rstate = Signal(range(3))
        overlap = cfg.requant_overlap
        if overlap:
            # latched at the hand-over: the column engine moves on to the next layer
            rq_rows = Signal(RW)
            rq_bias_base = Signal(MA)
            rq_acc_base = Signal(RB)
            rq_bank = Signal()
            rq_last = Signal()
            rq_dense = Signal()
            rq_shift = Signal(len(self.i_shift))
            rq_bias_shift = Signal(len(self.i_bias_shift))
        else:
            # the next layer waits for the requantization: the column engine's registers and
            # the descriptor hold still
            rq_rows, rq_bias_base, rq_acc_base = self.i_rows, self.i_bias_base, self.i_acc_base
            rq_bank, rq_last, rq_dense = Const(0, 1), self.i_last, self.i_dense
            rq_shift, rq_bias_shift = self.i_shift, self.i_bias_shift
        ri = Signal(RW + 1)             # next local row to read
        rv1 = Signal()
        raddr1 = Signal(RB)
        rv2 = Signal()
        raddr2 = Signal(RB)
        rv3 = Signal()
        # Rows leave stage 3 in issue order, so stage 3's local row is the count of rows that
        # left it before (a counter instead of a row number carried through the stages).
        rrow3 = Signal(RW)
        rt3 = Signal(signed(ACC))
        ov = Signal()
        orow = Signal(16)
        oval = Signal(ACC)
        r_adv = Signal()
        follow = self.follow
        if follow:
            e1, e2, e3, oe = Signal(), Signal(), Signal(), Signal()     # the end marker
            # (the end token in the output register waits for ready like a row)
            m.d.comb += r_adv.eq(~(ov | oe) | self.o_out.ready)
        else:
            m.d.comb += r_adv.eq(~ov | self.o_out.ready)
        r_issue = Signal()
        m.d.comb += r_issue.eq((rstate == REQ) & r_adv & (ri < rq_rows)
                               & (self.i_mem_free if overlap else 1))
        if follow:
            # the end marker enters r1 once every row is issued; r1 and r2 carry their row's
            # bank (the next pass, in the other bank, may follow right behind)
            e_issue = Signal()
            m.d.comb += e_issue.eq((rstate == REQ) & r_adv & (ri >= rq_rows))
            b1, b2 = Signal(), Signal()
        with m.If(r_issue):
            m.d.sync += ri.eq(ri + 1)
        m.d.comb += [self.o_bias_re.eq(r_issue), self.o_bias_addr.eq(rq_bias_base + ri)]
        bias_now = Signal(signed(cfg.weight_bits))
        if overlap:
            # the bias is on i_rdata only in the cycle after its read (other reads follow)
            r_issue_d = Signal()
            bias_hold = Signal(16)
            m.d.sync += r_issue_d.eq(r_issue)
            with m.If(r_issue_d):
                m.d.sync += bias_hold.eq(self.i_rdata)
            m.d.comb += bias_now.eq(Mux(r_issue_d, self.i_rdata, bias_hold))
        else:
            # no other read while requantizing: i_rdata holds the bias until the next issue,
            # which waits for the pipeline to advance
            m.d.comb += bias_now.eq(self.i_rdata)
        # no reset: the product register is the SB_MAC16's own output register (rv2 says when
        # it counts)
        rprod = Signal(signed(A + cfg.weight_bits + 1), reset_less=True)
        with m.If(r_adv):
            m.d.sync += rprod.eq(Cat(Const(1, A) << rq_bias_shift[:3], Const(0, 1)).as_signed()
                                 * bias_now)
        bias_sh = Signal(signed(ACC))
        with m.Switch(rq_bias_shift[3:5]):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += bias_sh.eq(rprod << (8 * k))
        rq_sum = Signal(signed(ACC))
        m.d.comb += rq_sum.eq(self.i_acc_data.as_signed() + bias_sh)

        # the accumulator bank of the layer: the read of row r1 and the clearing write of row
        # r2 never meet
        m.d.comb += [
            self.o_acc_active.eq(rstate != RIDLE), self.o_acc_bank.eq(rq_bank),
            self.o_acc_raddr.eq(raddr1), self.o_acc_re.eq(rv1 & r_adv),
            self.o_acc_we.eq(rv2 & r_adv), self.o_acc_waddr.eq(raddr2),
        ]
        if follow:
            # (two passes' rows may be in r1 and r2 at once, each in its own bank)
            m.d.comb += [
                self.o_acc_busy[b].eq(((rstate == REQ) & (rq_bank == b)) | (rv1 & (b1 == b))
                                      | (rv2 & (b2 == b))) for b in range(2)]
            m.d.comb += [self.o_acc_rbank.eq(b1), self.o_acc_wbank.eq(b2)]

        with m.If(r_adv):
            m.d.sync += [
                rv1.eq(r_issue), raddr1.eq(rq_acc_base + ri[:RB]),
                rv2.eq(rv1), raddr2.eq(raddr1),
                rv3.eq(rv2), rt3.eq(rq_sum),
            ]
            if follow:
                m.d.sync += [e1.eq(e_issue), b1.eq(rq_bank), e2.eq(e1), b2.eq(b1), e3.eq(e2),
                             oe.eq(e3)]
        hval = round_shift_saturate(m, rt3, rq_shift, A)
        with m.If(r_adv):
            m.d.sync += [
                ov.eq(rv3 & (rq_last | rq_dense | (hval != 0))),
                orow.eq(rrow3),
                oval[:A].eq(Mux(rq_last, rt3[:A], hval)),
            ]
            with m.If(rv3):
                m.d.sync += rrow3.eq(rrow3 + 1)
            if follow:
                # (the next pass's rows count from 0 again behind the marker)
                with m.If(e3):
                    m.d.sync += rrow3.eq(0)
        # the high bits are zero on hidden layers: written as a synchronous reset of their
        # flip-flops (SB_DFFESR) rather than a multiplexer
        with m.If(r_adv & ~rq_last):
            m.d.sync += oval[A:].eq(0)
        with m.Elif(r_adv):
            m.d.sync += oval[A:].eq(rt3[A:])
        out = self.o_out.payload
        if follow:
            end = oe
            idle = (rstate == RIDLE) & ~(rv1 | rv2 | rv3 | ov | e1 | e2 | e3 | oe)
            m.d.comb += self.o_ready.eq(rstate == RIDLE)
        else:
            end = rstate == ENDT
            idle = rstate == RIDLE
        m.d.comb += [
            self.o_out.valid.eq(ov | end),
            out.row.eq(orow),
            out.value.eq(oval),
            out.end.eq(end),
            self.o_idle.eq(idle),
        ]

        with m.Switch(rstate):
            with m.Case(RIDLE):
                with m.If(self.i_start):
                    m.d.sync += [rstate.eq(REQ), ri.eq(0)]
                    if not follow:
                        m.d.sync += rrow3.eq(0)
                    if overlap:
                        m.d.sync += [
                            rq_rows.eq(self.i_rows), rq_bias_base.eq(self.i_bias_base),
                            rq_acc_base.eq(self.i_acc_base), rq_bank.eq(self.i_bank),
                            rq_last.eq(self.i_last), rq_dense.eq(self.i_dense),
                            rq_shift.eq(self.i_shift),
                            rq_bias_shift.eq(self.i_bias_shift),
                        ]
            with m.Case(REQ):
                if follow:
                    with m.If(e_issue):
                        m.d.sync += rstate.eq(RIDLE)
                else:
                    with m.If((ri >= rq_rows) & ~rv1 & ~rv2 & ~rv3 & ~ov):
                        m.d.sync += rstate.eq(ENDT)
            with m.Case(ENDT):
                with m.If(self.o_out.ready):
                    m.d.sync += rstate.eq(RIDLE)
        self._rstate = rstate
        return m


def round_shift_saturate(m, t, shift, bits):
    """Hidden-layer requantization ``clamp((t + 2^(S-1)) >> S, 0, 2^bits - 1)`` (section 1).

    Adds the logic to ``m`` (combinational) and returns the ``bits``-wide result. ``t`` is a
    signed accumulator, ``shift`` the unsigned shift ``S`` (any width). Computed as
    ``v = (2t) >> S`` (``bits + 1`` bits), ``y = (v + 1) >> 1``, saturating to 0 when ``t < 0``
    and to ``2^bits - 1`` when ``v`` is all ones or some bit of ``t`` at or above ``S + bits``
    is set. The shifter is logarithmic and keeps at each stage only the window the remaining
    (smaller) shifts can still reach; the bits it drops above that window are ORed into the
    saturation flag, so neither a wide shifter nor a mask of the high bits is needed.
    """
    win = Cat(Const(0, 1), t)
    above = Const(0, 1)
    for k in reversed(range(len(shift))):
        step = 1 << k
        width = bits + step                     # (bits + 1) + (step - 1)
        padded = Cat(win, Const(0, step + width))
        if len(win) > width:
            above = above | (~shift[k] & win[width:].any())
        win = Mux(shift[k], padded[step:step + width], padded[:width])
    v = Signal(bits + 1)
    sat = Signal()
    y = Signal(bits)
    m.d.comb += [v.eq(win), sat.eq(above)]
    with m.If(t < 0):
        m.d.comb += y.eq(0)
    with m.Elif(sat | (v == (1 << (bits + 1)) - 1)):
        m.d.comb += y.eq((1 << bits) - 1)
    with m.Else():
        m.d.comb += y.eq((v + 1)[1:])
    return y
