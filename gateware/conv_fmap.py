"""The feature-map buffer of convolutional layers (docs/ARCHITECTURE.md sections 1 and 5; part
of :class:`gateware.central.CentralUnit` with ``config.conv``)."""
from amaranth import Module, Signal, Mux
from amaranth.lib import wiring, memory
from amaranth.lib.wiring import In, Out

__all__ = ["FeatureMapBuffer", "fmap_addr_bits"]


def fmap_addr_bits(config):
    """Address width of one feature-map bank (``fmap_depth`` entries)."""
    return max(1, (config.fmap_depth - 1).bit_length())


class FeatureMapBuffer(wiring.Component):
    """Two halves of N banks of ``fmap_depth`` unsigned ``act_bits`` entries.

    A layer with a feature-map input reads the half its descriptor names (``fmap_buf``; the
    patch reader, all N banks at once) and a conv layer writes its pooled outputs into the
    other half (the pool writer's read-modify-write); layer 0's input image is stored into
    the half layer 0 reads. Channel ``c`` of a map
    lives in bank ``c mod N`` (the PE that computes it: N writers, no conflicts), at
    ``(c // N) * H * W + y * W + x``; layer 0's image is replicated: every bank holds it whole
    at ``(c * H + y) * W + x`` (:class:`gateware.conv_patch.PatchGenerator` then reads N
    neighbours of a kernel row at once). Each bank of each half is one memory with one write
    port and one read port (one true-dual-port block RAM): the read port serves the patch
    reader in the cycles it reads (``i_rd_en``, half ``i_rd_half``) and the pool writer
    otherwise; the two never need the same half at once (the central unit starts a layer that
    reads a map only after the layer that wrote it is collected).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``fmap_depth`` and ``act_bits``.

    Attributes
    ----------
    i_rd_half : In(1)
        The half the patch reader reads.
    i_rd_en : In(1)
        Patch read: every bank of half ``i_rd_half`` reads ``i_rd_addr`` (data on ``o_rd_data``
        one cycle later, held while no read is enabled).
    i_rd_addr : In(fmap_addr_bits).array(N)
        The patch reader's entry in each bank.
    o_rd_data : Out(act_bits).array(N)
        Per bank, the entry read (of the half that was ``i_rd_half`` at the read).
    i_wr_half : In(1)
        The half the writes (``i_we``) and the pool writer's reads (``i_rmw_re``) go to.
    i_rmw_re : In(N)
        Bit ``p``: bank ``p`` reads ``i_rmw_addr[p]`` of half ``i_wr_half`` (the pool writer;
        data on ``o_rmw_data[p]`` one cycle later, transparent for a write in that cycle).
    i_rmw_addr : In(fmap_addr_bits).array(N)
    o_rmw_data : Out(act_bits).array(N)
    i_we : In(N)
        Bit ``p``: bank ``p`` of half ``i_wr_half`` writes ``i_wdata[p]`` at ``i_waddr[p]``.
    i_waddr : In(fmap_addr_bits).array(N)
    i_wdata : In(act_bits).array(N)
    i_st_half : In(1)
        The half the image store writes (layer 0's input half).
    i_st_we, i_st_addr, i_st_data : In(N), In(fmap_addr_bits), In(act_bits)
        The image store's write (bit ``p`` of ``i_st_we``: bank ``p``); it takes precedence
        over ``i_we`` (the two never meet: the image is stored during layer 0, which writes
        the other half).
    """

    def __init__(self, config):
        self.cfg = config
        n, a, fa = config.n_pes, config.act_bits, fmap_addr_bits(config)
        super().__init__({
            "i_rd_half": In(1),
            "i_rd_en": In(1),
            "i_rd_addr": In(fa).array(n),
            "o_rd_data": Out(a).array(n),
            "i_wr_half": In(1),
            "i_rmw_re": In(n),
            "i_rmw_addr": In(fa).array(n),
            "o_rmw_data": Out(a).array(n),
            "i_we": In(n),
            "i_waddr": In(fa).array(n),
            "i_wdata": In(a).array(n),
            "i_st_half": In(1),
            "i_st_we": In(n),
            "i_st_addr": In(fa),
            "i_st_data": In(a),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N = cfg.n_pes
        rd_half_d = Signal()            # the half of the patch read whose data is out
        wr_half_d = Signal()
        with m.If(self.i_rd_en):
            m.d.sync += rd_half_d.eq(self.i_rd_half)
        with m.If(self.i_rmw_re.any()):
            m.d.sync += wr_half_d.eq(self.i_wr_half)
        for p in range(N):
            datas = []
            for h in range(2):
                mem = memory.Memory(shape=cfg.act_bits, depth=cfg.fmap_depth, init=[])
                m.submodules[f"half{h}_bank{p}"] = mem
                wr = mem.write_port()
                rd = mem.read_port(transparent_for=(wr,))
                patch = self.i_rd_en & (self.i_rd_half == h)
                pool_we = self.i_we[p] & (self.i_wr_half == h)
                st = self.i_st_we[p] & (self.i_st_half == h)
                m.d.comb += [wr.en.eq(st | pool_we),
                             wr.addr.eq(Mux(st, self.i_st_addr, self.i_waddr[p])),
                             wr.data.eq(Mux(st, self.i_st_data, self.i_wdata[p]))]
                m.d.comb += [
                    rd.addr.eq(Mux(patch, self.i_rd_addr[p], self.i_rmw_addr[p])),
                    rd.en.eq(patch | (self.i_rmw_re[p] & (self.i_wr_half == h))),
                ]
                datas.append(rd.data)
            m.d.comb += [self.o_rd_data[p].eq(Mux(rd_half_d, datas[1], datas[0])),
                         self.o_rmw_data[p].eq(Mux(wr_half_d, datas[1], datas[0]))]
        return m
