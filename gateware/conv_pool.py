"""The pool writer of convolutional layers: a pass's outputs, 2 x 2 max-pooled, into the
feature-map buffer (docs/ARCHITECTURE.md sections 1 and 5; part of
:class:`gateware.central_collect.Collector` with ``config.conv``)."""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from contract.memmap import CONV_DIM_BITS

from .conv_fmap import fmap_addr_bits

__all__ = ["PoolWriter"]


class PoolWriter(wiring.Component):
    """Read-modify-write max of one conv pass's outputs into the output map.

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

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``act_bits`` and ``fmap_depth``.

    Attributes
    ----------
    i_begin : In(1)
        A pass's collect begins: its geometry and position (the inputs below) are sampled.
    i_height, i_width, i_kernel_h, i_kernel_w, i_pos_y, i_pos_x : In(CONV_DIM_BITS)
    i_valid : In(N)
        Bit ``p``: PE ``p``'s next output is taken this cycle (value ``i_value[p]``).
    i_value : In(act_bits).array(N)
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
        ph, pw = Signal(G), Signal(G)
        m.d.comb += [ph.eq((self.i_height - self.i_kernel_h + 1) >> 1),
                     pw.eq((self.i_width - self.i_kernel_w + 1) >> 1)]
        plane = Signal(FA + 1)          # PH * PW: the entries of a pooled channel
        first = Signal()                # the window's first position: overwrite
        keep = Signal()                 # the position is inside the pooled map
        addrs = [Signal(FA + 1, name=f"addr{p}") for p in range(N)]   # next output's entry
        with m.If(self.i_begin):
            py, px = self.i_pos_y >> 1, self.i_pos_x >> 1
            m.d.sync += [
                plane.eq(ph * pw),
                first.eq(~self.i_pos_y[0] & ~self.i_pos_x[0]),
                keep.eq((py < ph) & (px < pw)),
                *(a.eq(py * pw + px) for a in addrs),
            ]
        for p in range(N):
            v1 = Signal(name=f"v1_{p}")
            addr1 = Signal(FA, name=f"addr1_{p}")
            val1 = Signal(A, name=f"val1_{p}")
            go = Signal(name=f"go{p}")
            m.d.comb += [go.eq(self.i_valid[p] & keep),
                         self.o_rmw_re[p].eq(go), self.o_rmw_addr[p].eq(addrs[p])]
            with m.If(self.i_valid[p] & ~self.i_begin):
                m.d.sync += addrs[p].eq(addrs[p] + plane)
            first1 = Signal(name=f"first1_{p}")
            m.d.sync += [v1.eq(go), addr1.eq(addrs[p]), val1.eq(self.i_value[p]),
                         first1.eq(first)]
            old = self.i_rmw_data[p]
            m.d.comb += [
                self.o_we[p].eq(v1), self.o_waddr[p].eq(addr1),
                self.o_wdata[p].eq(Mux(first1 | (val1 > old), val1, old)),
            ]
        return m
