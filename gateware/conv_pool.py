"""The pool writer of convolutional layers: the passes' outputs, 2 x 2 max-pooled, into the
feature-map buffer (docs/ARCHITECTURE.md sections 1 and 5; part of
:class:`gateware.central.CentralUnit` with ``config.conv``)."""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from contract.memmap import CONV_DIM_BITS

from .conv_fmap import fmap_addr_bits

__all__ = ["PoolWriter", "PASS_QUEUE"]

#: Conv passes whose outputs may be outstanding at once (the collector's pass queue): a PE
#: still sends pass k - 2 when pass k's end token goes out (the early start lets the sequencer
#: start pass k once every PE has taken pass k - 1's start, i.e. handed over pass k - 2).
PASS_QUEUE = 4


class PoolWriter(wiring.Component):
    """Read-modify-write max of conv passes' outputs into the output map.

    The pass of output position ``(oy, ox)`` of a layer with an ``H x W`` input map and a
    ``KH x KW`` kernel (output map ``OH x OW``, ``OH = H - KH + 1``, pooled ``PH x PW =
    OH // 2 x OW // 2``) sends, per PE ``p``, all its rows (output channels ``oc = p + N * i``,
    ``i = 0, 1, ...`` in order: conv passes are requantized densely, zeros included). Output
    ``(oc, oy, ox)`` belongs to pooled entry ``(oc, oy // 2, ox // 2)`` at ``i * PH * PW +
    (oy // 2) * PW + ox // 2`` of bank ``p`` (channel ``oc``'s bank); its first position in
    raster order (``oy``, ``ox`` even) writes it, the other three write the maximum of it and
    the stored value, so the buffer needs no clearing. Positions past ``2 * PH``, ``2 * PW``
    (odd output sizes) are dropped. Per PE one output per cycle, two stages: the entry is read
    in the output's cycle and written in the next (the read port is transparent for the write,
    so the same entry in consecutive cycles reads the new value).

    Up to :data:`PASS_QUEUE` passes may be outstanding: each ``i_begin`` queues the pass's
    position, and each PE works through the queue at its own pace (``i_end[p]``: PE ``p`` is
    done with its oldest pass), so a fast PE sends pass k + 1 while a slow one still sends pass
    k. A PE's passes reach its bank in order, so the window's first position still writes
    first. The caller keeps at most ``PASS_QUEUE`` passes outstanding per PE; the geometry of a
    layer's passes is the same (a layer's first pass begins with no pass outstanding).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``act_bits`` and ``fmap_depth``.

    Attributes
    ----------
    i_begin : In(1)
        A pass's collect begins: its geometry and position (the inputs below) are sampled and
        the pass is queued.
    i_height, i_width, i_kernel_h, i_kernel_w, i_pos_y, i_pos_x : In(CONV_DIM_BITS)
    i_valid : In(N)
        Bit ``p``: PE ``p``'s next output of its oldest pass is taken this cycle (value
        ``i_value[p]``).
    i_value : In(act_bits).array(N)
    i_end : In(N)
        Bit ``p``: PE ``p``'s oldest pass is complete (its end token; never with
        ``i_valid[p]``).
    o_rmw_re, o_rmw_addr : Out(N), Out(fmap_addr_bits).array(N)
        Per bank, the read of the entry (to :class:`gateware.conv_fmap.FeatureMapBuffer`,
        the half it writes).
    i_rmw_data : In(act_bits).array(N)
        The read data, one cycle later.
    o_we, o_waddr, o_wdata : Out(N), Out(fmap_addr_bits).array(N), Out(act_bits).array(N)
        Per bank, the write of the pooled value.
    """

    def __init__(self, config):
        self.cfg = config
        n, a, fa = config.n_pes, config.act_bits, fmap_addr_bits(config)
        G = CONV_DIM_BITS
        super().__init__({
            "i_begin": In(1),
            "i_height": In(G), "i_width": In(G), "i_kernel_h": In(G), "i_kernel_w": In(G),
            "i_pos_y": In(G), "i_pos_x": In(G),
            "i_valid": In(n),
            "i_value": In(a).array(n),
            "i_end": In(n),
            "o_rmw_re": Out(n),
            "o_rmw_addr": Out(fa).array(n),
            "i_rmw_data": In(a).array(n),
            "o_we": Out(n),
            "o_waddr": Out(fa).array(n),
            "o_wdata": Out(a).array(n),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, A = cfg.n_pes, cfg.act_bits
        FA = fmap_addr_bits(cfg)
        G = CONV_DIM_BITS
        Q = PASS_QUEUE
        ph, pw = Signal(G), Signal(G)
        m.d.comb += [ph.eq((self.i_height - self.i_kernel_h + 1) >> 1),
                     pw.eq((self.i_width - self.i_kernel_w + 1) >> 1)]
        plane = Signal(FA + 1)          # PH * PW: the entries of a pooled channel
        # the queued passes: the pooled position's entry in channel 0, the window's first
        # position (overwrite), the position is inside the pooled map
        q_base = [Signal(FA + 1, name=f"q_base{k}") for k in range(Q)]
        q_first = Signal(Q)
        q_keep = Signal(Q)
        wptr = Signal(range(Q))
        with m.If(self.i_begin):
            py, px = self.i_pos_y >> 1, self.i_pos_x >> 1
            m.d.sync += [plane.eq(ph * pw), wptr.eq(wptr + 1)]
            with m.Switch(wptr):
                for k in range(Q):
                    with m.Case(k):
                        m.d.sync += [q_base[k].eq(py * pw + px),
                                     q_first[k].eq(~self.i_pos_y[0] & ~self.i_pos_x[0]),
                                     q_keep[k].eq((py < ph) & (px < pw))]
        for p in range(N):
            rptr = Signal(range(Q), name=f"rptr{p}")    # PE p's oldest pass
            off = Signal(FA + 1, name=f"off{p}")        # its next output's channel offset
            base = Signal(FA + 1, name=f"base{p}")
            first, keep = Signal(name=f"first{p}"), Signal(name=f"keep{p}")
            m.d.comb += [first.eq(q_first.bit_select(rptr, 1)),
                         keep.eq(q_keep.bit_select(rptr, 1))]
            with m.Switch(rptr):
                for k in range(Q):
                    with m.Case(k):
                        m.d.comb += base.eq(q_base[k])
            with m.If(self.i_end[p]):
                m.d.sync += [rptr.eq(rptr + 1), off.eq(0)]
            with m.Elif(self.i_valid[p]):
                m.d.sync += off.eq(off + plane)
            v1 = Signal(name=f"v1_{p}")
            addr1 = Signal(FA, name=f"addr1_{p}")
            val1 = Signal(A, name=f"val1_{p}")
            go = Signal(name=f"go{p}")
            m.d.comb += [go.eq(self.i_valid[p] & keep),
                         self.o_rmw_re[p].eq(go), self.o_rmw_addr[p].eq(base + off)]
            first1 = Signal(name=f"first1_{p}")
            m.d.sync += [v1.eq(go), addr1.eq(self.o_rmw_addr[p]), val1.eq(self.i_value[p]),
                         first1.eq(first)]
            old = self.i_rmw_data[p]
            m.d.comb += [
                self.o_we[p].eq(v1), self.o_waddr[p].eq(addr1),
                self.o_wdata[p].eq(Mux(first1 | (val1 > old), val1, old)),
            ]
        return m
