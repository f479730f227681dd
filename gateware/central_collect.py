"""The central unit's collector: the N PE output streams into the banks (hidden layers) or onto
the logit stream in index order (the last layer) (docs/ARCHITECTURE.md section 5; part of
:class:`gateware.central.CentralUnit`)."""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .central_merge import bank_entry_layout
from .config import pe_output_layout, logit_layout
from .conv_pool import PASS_QUEUE

__all__ = ["Collector"]


class Collector(wiring.Component):
    """Collect one layer's PE outputs until every PE's ``end`` token is in.

    Hidden layer: PE ``p``'s non-zero outputs ``(row, value)`` (``row`` is the PE's local row
    ``i``, global row ``p + N * i``) are appended to bank ``p`` as they are (one write port per
    bank, so the PEs never wait). Last layer: the logits
    are forwarded in index order, row ``r`` from PE ``r mod N``, with ``last`` on row
    ``out_features - 1``; ``o_argmax`` follows (lowest index wins ties).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``max_features``, ``feature_bits``, ``act_bits`` and ``acc_bits``.
    bank_depth : int
        Entries per bank.
    out_features_bits : int
        Width of ``i_out_features``.

    Attributes
    ----------
    i_out : In(stream.Signature(pe_output_layout(config))).array(N)
        Per-PE outputs (``(local row, value)`` then ``end``). ``end`` tokens are always taken
        while collecting; hidden-layer outputs at once; logits as ``o_logit`` takes them.
    o_logit : Out(stream.Signature(logit_layout(config)))
        Last layer: the logits (signed ``acc_bits``) in index order, ``last`` on the final one.
        Payload and valid come straight from the selected PE's output (no register).
    o_argmax : Out(8)
        Index of the largest logit of the last completed inference (lowest index on ties);
        updated with the transfer of the final logit (a cycle later with
        ``config.output_register``; either way at the latest in the cycle ``o_done`` is high).
    i_begin : In(1)
        The collect of a layer begins (``i_last``, ``i_out_features`` are sampled).
    i_last, i_out_features : In(1), In(out_features_bits)
        The layer is the last one; its output count.
    o_collecting : Out(1)
        A collect is in progress.
    o_ended : Out(N)
        Bit ``p``: PE ``p``'s ``end`` token of the collected layer was received (registers).
    o_bank_we : Out(N)
        Bit ``p``: append ``o_bank_wdata[p]`` to bank ``p`` this cycle.
    o_bank_wdata : Out(bank_entry_layout(config, bank_depth)).array(N)
        ``(local row, value)`` of PE ``p``'s offered output.
    i_bank_room : In(N)
        Bit ``p``: bank ``p`` has room (else the output is dropped and ``o_err_overflow``
        set).
    o_done : Out(1)
        One-cycle pulse, one cycle after the last ``end`` token of the *last* layer.
    o_err_overflow : Out(1)
        Sticky: a hidden output row >= max_features or past the bank (dropped).
    o_err_logits : Out(1)
        Sticky: the PEs' logit count differs from ``out_features``.
    i_conv : In(1)
        Only with ``config.conv``: the collected layer is a conv pass (sampled with
        ``i_begin``): every output goes to the pool writer (``o_pool_we``), none to the banks.
        A conv pass may begin while earlier passes of its layer are still collected (up to
        ``PASS_QUEUE`` per PE, see ``o_full``): each PE's outputs and end tokens belong to its
        oldest pass, and ``o_collecting`` stays high until every PE has ended every pass.
    o_pool_we : Out(N)
        Only with ``config.conv``: bit ``p``: PE ``p``'s output (value on
        ``o_bank_wdata[p].value``) is taken for the pool writer this cycle.
    o_pool_end : Out(N)
        Only with ``config.conv``: bit ``p``: PE ``p``'s end token of a conv pass is taken this
        cycle (its oldest pass is complete).
    o_full : Out(1)
        Only with ``config.conv``: some PE has ``PASS_QUEUE`` conv passes outstanding: no
        further pass may begin.
    """

    def __init__(self, config, bank_depth, out_features_bits):
        self.cfg = config
        self.bank_depth = bank_depth
        n = config.n_pes
        super().__init__({
            "i_out": In(stream.Signature(pe_output_layout(config))).array(n),
            "o_logit": Out(stream.Signature(logit_layout(config))),
            "o_argmax": Out(8),
            "i_begin": In(1),
            "i_last": In(1),
            "i_out_features": In(out_features_bits),
            "o_collecting": Out(1),
            "o_ended": Out(n),
            "o_bank_we": Out(n),
            "o_bank_wdata": Out(bank_entry_layout(config, bank_depth)).array(n),
            "i_bank_room": In(n),
            "o_done": Out(1),
            "o_err_overflow": Out(1),
            "o_err_logits": Out(1),
            **({"i_conv": In(1), "o_pool_we": Out(n), "o_pool_end": Out(n), "o_full": Out(1)}
               if config.conv else {}),
        })
        self.out_features_bits = out_features_bits

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, A, ACC = cfg.n_pes, cfg.act_bits, cfg.acc_bits
        bdepth = self.bank_depth
        collecting, ended = self.o_collecting, self.o_ended
        n_logit = Signal(9)
        sel = Signal(range(N))
        cl_last = Signal()
        cl_out = Signal(self.out_features_bits)
        cl_conv = Signal()              # a conv pass: the outputs go to the pool writer
        with m.If(self.i_begin):
            m.d.sync += [collecting.eq(1), ended.eq(0), n_logit.eq(0), sel.eq(0),
                         cl_last.eq(self.i_last), cl_out.eq(self.i_out_features)]
            if cfg.conv:
                m.d.sync += cl_conv.eq(self.i_conv)

        outs = [self.i_out[p].payload for p in range(N)]
        is_end = Signal(N)
        cand = Signal(N)
        m.d.comb += [
            is_end.eq(Cat(self.i_out[p].valid & outs[p].end for p in range(N))),
            cand.eq(Cat(self.i_out[p].valid & ~outs[p].end for p in range(N))),
        ]
        grant = Signal(N)
        owed = Signal(N)                # conv: bit p: PE p has a pass outstanding
        if cfg.conv:
            # conv passes: per PE the passes begun and not yet ended (the pass queue)
            Q = PASS_QUEUE
            owe = [Signal(range(Q + 1), name=f"owe{p}") for p in range(N)]
            m.d.comb += owed.eq(Cat(o != 0 for o in owe))
            take_end = Signal(N)
            m.d.comb += [take_end.eq(is_end & owed & Mux(cl_conv, (1 << N) - 1, 0)),
                         self.o_pool_end.eq(take_end),
                         self.o_full.eq(Cat(o == Q for o in owe).any())]
            conv_begin = self.i_begin & self.i_conv
            for p in range(N):
                m.d.sync += owe[p].eq(owe[p] + conv_begin - take_end[p])
        for p in range(N):
            end_ok = Mux(cl_conv, owed[p], 1) if cfg.conv else 1
            m.d.comb += self.i_out[p].ready.eq(collecting & ((is_end[p] & end_ok) | grant[p]))
        ended_now = Signal(N)
        m.d.comb += ended_now.eq(ended | Mux(collecting, is_end, 0))
        with m.If(collecting):
            m.d.sync += ended.eq(ended_now)

        # hidden layer: every PE writes its own bank, no stall
        hidden = Signal()
        m.d.comb += hidden.eq(collecting & ~cl_last)
        for p in range(N):
            m.d.comb += [self.o_bank_wdata[p].row.eq(outs[p].row),
                         self.o_bank_wdata[p].value.eq(outs[p].value[:A])]
            if cfg.conv:
                with m.If(hidden & cand[p] & cl_conv & owed[p]):
                    m.d.comb += [grant[p].eq(1), self.o_pool_we[p].eq(1)]
            with m.If(hidden & cand[p] & ~cl_conv):
                m.d.comb += grant[p].eq(1)
                with m.If((outs[p].row < bdepth) & self.i_bank_room[p]):
                    m.d.comb += self.o_bank_we[p].eq(1)
                with m.Else():
                    m.d.sync += self.o_err_overflow.eq(1)

        # last layer: row r from PE r mod N, forwarded in order
        sel_valid = Signal()
        sel_value = Signal(ACC)
        m.d.comb += [sel_valid.eq(cand.bit_select(sel, 1)), sel_value.eq(outs[0].value)]
        for p in range(1, N):
            with m.If(sel == p):
                m.d.comb += sel_value.eq(outs[p].value)
        logit_out = Signal()
        m.d.comb += logit_out.eq(collecting & cl_last & (n_logit < cl_out))
        lo = self.o_logit.payload
        m.d.comb += [
            self.o_logit.valid.eq(logit_out & sel_valid),
            lo.index.eq(n_logit),
            lo.value.eq(sel_value),
            lo.last.eq(n_logit + 1 == cl_out),
        ]
        with m.If(logit_out):
            m.d.comb += grant.eq((self.o_logit.ready & sel_valid) << sel)
        max_val = Signal(ACC)
        best_idx = Signal(8)
        handed = Signal()
        m.d.comb += handed.eq(self.o_logit.valid & self.o_logit.ready)
        with m.If(handed):
            m.d.sync += [n_logit.eq(n_logit + 1), sel.eq(Mux(sel == N - 1, 0, sel + 1))]
        # the running argmax: on the logit handed over this cycle, or (``output_register``) on a
        # registered copy of it a cycle later, so that the N-way logit select and the signed
        # compare are not one path (the 16-PE ULX3S build's critical path); ``o_argmax`` is
        # read only once the layer is done, and ``o_done`` comes at least two cycles after the
        # last logit's hand-over (its PE's end token is behind it in the output FIFO)
        if cfg.output_register:
            arg_go, arg_value = Signal(), Signal(ACC)
            arg_index, arg_last = Signal(8), Signal()
            m.d.sync += arg_go.eq(handed)
            with m.If(handed):
                m.d.sync += [arg_value.eq(sel_value), arg_index.eq(n_logit),
                             arg_last.eq(lo.last)]
        else:
            arg_go, arg_value, arg_index, arg_last = handed, sel_value, n_logit, lo.last
        with m.If(arg_go):
            better = (arg_index == 0) | (max_val.as_signed() < arg_value.as_signed())
            with m.If(better):
                m.d.sync += [max_val.eq(arg_value), best_idx.eq(arg_index)]
            with m.If(arg_last):
                m.d.sync += self.o_argmax.eq(Mux(better, arg_index, best_idx))

        # barrier (conv: every PE has ended every pass begun, none begins now)
        barrier = Signal()
        if cfg.conv:
            none_left = Cat((o == 0) | ((o == 1) & take_end[p]) for p, o in enumerate(owe))
            m.d.comb += barrier.eq(Mux(cl_conv, none_left.all() & ~self.i_begin,
                                       ended_now.all()))
        else:
            m.d.comb += barrier.eq(ended_now.all())
        m.d.sync += self.o_done.eq(0)
        with m.If(collecting & barrier):
            m.d.sync += [collecting.eq(0), self.o_done.eq(cl_last)]
            with m.If(cl_last & (n_logit != cl_out)):
                m.d.sync += self.o_err_logits.eq(1)
        return m
