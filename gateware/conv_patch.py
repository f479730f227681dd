"""The patch address generator of convolutional layers (docs/ARCHITECTURE.md sections 1 and 5;
part of :class:`gateware.central.CentralUnit` with ``config.conv``)."""
from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from contract.memmap import CONV_DIM_BITS

from .config import broadcast_layout
from .conv_fmap import fmap_addr_bits

__all__ = ["PatchGenerator"]


class PatchGenerator(wiring.Component):
    """One output position's patch, read from the feature-map buffer, as non-zero broadcast
    words.

    The patch of position ``(oy, ox)`` of a layer whose input is a ``C x H x W`` map and whose
    kernel is ``KH x KW`` has the entries ``j = (c * KH + ky) * KW + kx`` (the columns of the
    layer's weight matrix) with value ``x[c, oy + ky, ox + kx]``. Per step the generator reads
    one entry in each of the N banks of the buffer (:class:`gateware.conv_fmap.
    FeatureMapBuffer`), in one of two layouts:

    - *channels* (a conv's output map): channel ``c`` is in bank ``c mod N``, so a step reads a
      group of N channels at ``g * H * W + (oy + ky) * W + ox + kx`` (group ``g``: channels
      ``g * N .. g * N + N - 1``, lanes past channel ``C - 1`` ignored), steps in ``(g, ky,
      kx)`` order: ``ceil(C / N) * KH * KW`` steps;
    - *replicated* (``i_replicated``: layer 0's image, which every bank holds whole at its
      channel-major index ``(c * H + y) * W + x``): a step reads N neighbours of a kernel row,
      lane ``b`` (bank ``b``) ``kx = kx0 + b`` (lanes past ``KW - 1`` ignored), steps in ``(c,
      ky, kx0)`` order: ``C * KH * ceil(KW / N)`` steps (LeNet-5's conv1 on 8 PEs: 5 instead
      of 25).

    Each step's N values then pass a zero filter like the dense input's
    (:class:`gateware.central_lanes.LaneFilter`): per cycle the lowest non-zero lane still to
    push is handed over (with ``bcast_width == 2`` the next one too), a step without one takes
    one cycle. So a patch costs its steps at least and one cycle per ``bcast_width`` non-zero
    entries. An fc layer after a conv is a patch with ``KH = H``, ``KW = W`` at position
    ``(0, 0)``: the pooled map in flattening order.

    Layer 0's image is read while it is stored (:class:`gateware.conv_store.ImageStore`): a
    step waits until its entries are stored (``i_stored``: the count of stored entries, in
    index order).

    Scanning ahead: once the last step of a pass is read, the generator goes on with the next
    position in raster order (``(oy, ox + 1)``, or ``(oy + 1, 0)`` after ``ox = W - KW``; none
    after the last position ``(H - KH, W - KW)``) while the pass's last words are handed over
    and while the broadcast side hands its end token over and the next pass starts
    (``i_next`` instead of ``i_start``): steps without a non-zero entry are dropped at once,
    the first one with a non-zero entry waits for ``i_next`` and ``i_active``. It scans at most
    one pass ahead, so an all-zero patch costs its steps and no more (the start round trip of
    the broadcast side overlaps the scan).

    Parameters
    ----------
    config : gateware.config.AcceleratorConfig
        Uses ``n_pes``, ``fmap_depth``, ``bcast_width``, ``act_bits`` and ``max_features``.

    Attributes
    ----------
    i_start : In(1)
        A layer's first pass begins: position ``(i_pos_y, i_pos_x)`` of the layer whose
        geometry is on the ``i_channels .. i_kernel_w`` inputs (all stable until the layer's
        last pass ends; a pass still scanned ahead is dropped).
    i_next : In(1)
        The next pass of the layer begins (the position after the previous pass's, in raster
        order; the previous pass is complete: ``o_last`` came).
    i_channels, i_height, i_width, i_kernel_h, i_kernel_w : In(...)
        C (``max_features`` bits), H, W, KH, KW (``CONV_DIM_BITS`` each) of the input map.
    i_pos_y, i_pos_x : In(CONV_DIM_BITS)
        The output position.
    i_active : In(1)
        The broadcast is in this pass's patch phase (nothing is read or handed over
        otherwise).
    i_can_take : In(1)
        The broadcast side takes words this cycle.
    i_stored, i_stored_all : In(16), In(1)
        Layer 0: entries of the (replicated) image stored so far, the image is complete;
        later layers: ``i_stored_all`` high.
    i_replicated : In(1)
        The map is replicated in every bank (layer 0's image), sampled with ``i_start``.
    o_rd_en, o_rd_addr : Out(1), Out(fmap_addr_bits).array(N)
        Read of the step's entries, one per bank (data on ``i_rd_data`` one cycle later, held
        while no read is enabled).
    i_rd_data : In(act_bits).array(N)
        The banks' read data.
    o_take : Out(1).array(bcast_width)
        Word ``k`` (``o_take_data[k]``) is handed over this cycle (word 1 only with word 0);
        only with ``i_can_take``.
    o_take_data : Out(broadcast_layout(config)).array(bcast_width)
        ``(column j, value)`` of the handed-over entries; zero while not ``i_active``.
    o_last : Out(1)
        While ``i_active``: the patch is complete (its last non-zero entry is handed over this
        cycle, or there is none left); ``i_active`` must fall after it until the next pass.
    """

    def __init__(self, config):
        self.cfg = config
        n, w, a = config.n_pes, config.bcast_width, config.act_bits
        G = CONV_DIM_BITS
        super().__init__({
            "i_start": In(1),
            "i_next": In(1),
            "i_channels": In(config.max_features.bit_length()),
            "i_height": In(G), "i_width": In(G), "i_kernel_h": In(G), "i_kernel_w": In(G),
            "i_pos_y": In(G), "i_pos_x": In(G),
            "i_active": In(1),
            "i_can_take": In(1),
            "i_stored": In(16),
            "i_stored_all": In(1),
            "i_replicated": In(1),
            "o_rd_en": Out(1),
            "o_rd_addr": Out(fmap_addr_bits(config)).array(n),
            "i_rd_data": In(a).array(n),
            "o_take": Out(1).array(w),
            "o_take_data": Out(broadcast_layout(config)).array(w),
            "o_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        N, W, A = cfg.n_pes, cfg.bcast_width, cfg.act_bits
        FA = fmap_addr_bits(cfg)
        CB = cfg.max_features.bit_length()
        JB = 16                                     # column width (broadcast ``col``)
        G = CONV_DIM_BITS

        # ---- per-pass constants, registered at the start ---------------------------------
        khkw_now = Signal(2 * G)
        m.d.comb += khkw_now.eq(self.i_kernel_h * self.i_kernel_w)
        plane = Signal(2 * G)                       # H * W: entries of a channel
        khkw = Signal(2 * G)                        # KH * KW: columns of a channel
        rep = Signal()                              # replicated map: lanes over kx
        lane_off = [Signal(JB, name=f"lane_off{b}") for b in range(N)]  # column of lane b
        with m.If(self.i_start):
            m.d.sync += [
                plane.eq(self.i_height * self.i_width), khkw.eq(khkw_now),
                rep.eq(self.i_replicated),
                *(lane_off[b].eq(Mux(self.i_replicated, b, b * khkw_now)) for b in range(N)),
            ]
        # ---- step counters (the next step to read) -----------------------------------------
        more = Signal()                             # steps of the scanned pass remain
        kx0 = Signal(G)                             # kx of lane 0
        ky = Signal(G)
        rrow = Signal(FA + 1)                       # ky * W
        trow = Signal(2 * G)                        # ky * KW
        pos_base = Signal(FA + 1)                   # oy * W + ox
        gaddr = Signal(FA + 1)                      # the channel (group)'s first entry
        jg = Signal(JB)                             # the channel (group)'s first column
        crem = Signal(CB)                           # channels left (this one included)
        addr = Signal(FA + 1)
        m.d.comb += addr.eq(gaddr + pos_base + rrow + kx0)
        # the scanned pass's position and the layer's last one (scanning ahead)
        pos_x, pos_y = Signal(G), Signal(G)
        last_x, last_y = Signal(G), Signal(G)       # W - KW, H - KH
        ahead = Signal()                            # the scanned pass follows the broadcast one
        go = Signal()                               # the layer's map may be read (it was active)

        # ---- lane stage: the step read last, its lanes still to push ----------------------
        full = Signal()
        s_next = Signal()                           # the held step is of the pass scanned ahead
        s_j0 = Signal(JB)                           # column of lane 0 of the held step
        s_mask = Signal(N)                          # lanes that are channels (< C)
        pend = Signal(N)
        data = self.i_rd_data
        todo = Signal(N)
        m.d.comb += todo.eq(Cat((data[b] != 0) & s_mask[b] & pend[b] for b in range(N)))
        two = W == 2 and N > 1
        picks = []
        left = todo
        for k in range(2 if two else 1):
            one = Signal(N, name=f"lane_onehot{k}")
            nxt = Signal(N, name=f"lanes_left{k}")
            m.d.comb += [one.eq(left & -left), nxt.eq(left & ~one)]
            off = Signal(JB, name=f"pick_off{k}")
            val = Signal(A, name=f"pick_value{k}")
            m.d.comb += [off.eq(0), val.eq(0)]
            for b in range(N):
                with m.If(one[b]):
                    m.d.comb += [off.eq(lane_off[b]), val.eq(data[b])]
            picks.append((one, off, val))
            left = nxt
        rest = left
        active, can_take = self.i_active, self.i_can_take
        take = Signal()
        word_done = Signal()                        # the held step is finished this cycle
        # (a step without a non-zero entry is dropped at once, also one scanned ahead; the
        # broadcast pass's words go out while active)
        m.d.comb += [
            take.eq(active & full & ~s_next & (todo != 0) & can_take),
            word_done.eq(full & ((todo == 0) | (take & (rest == 0)))),
        ]
        with m.If(active):
            for k, (one, off, val) in enumerate(picks):
                m.d.comb += [self.o_take_data[k].col.eq(s_j0 + off),
                             self.o_take_data[k].value.eq(val)]
                m.d.comb += self.o_take[k].eq(take & (one != 0) if k else take)

        # ---- issue: the next step is read when the held one is finished -------------------
        advance = Signal()
        issue = Signal()
        ready_in = Signal()                         # the step's entries are stored
        m.d.comb += [
            ready_in.eq(self.i_stored_all | (addr + N <= self.i_stored)),
            advance.eq(~full | word_done),
            # (the first pass of a layer reads once active: its map is complete then)
            issue.eq(advance & more & ready_in & (active | go)),
            self.o_rd_en.eq(issue),
            *(self.o_rd_addr[b].eq(addr + Mux(rep, b, 0)) for b in range(N)),
            # the broadcast pass is complete: its steps are all read (the scan is ahead or
            # done) and none of them is held
            self.o_last.eq(active & (ahead | ~more) & (~full | s_next | word_done)),
        ]
        with m.If(active):
            m.d.sync += go.eq(1)
        ahead_now = Signal()                        # (with ``i_next`` the broadcast pass)
        m.d.comb += ahead_now.eq(ahead & ~self.i_next)
        kw = self.i_kernel_w
        with m.If(advance):
            m.d.sync += [full.eq(issue), s_j0.eq(jg + trow + kx0), pend.eq((1 << N) - 1),
                         s_next.eq(ahead_now),
                         s_mask.eq(Mux(rep, Cat(kx0 + b < kw for b in range(N)),
                                       Cat(crem > b for b in range(N))))]
        with m.Elif(take):
            m.d.sync += pend.eq(rest)
        with m.If(self.i_next & ~advance):
            m.d.sync += s_next.eq(0)
        kx_step = Mux(rep, N, 1)                    # kx per step
        ch_step = Mux(rep, 1, N)                    # channels per group
        last_step = Signal()                        # the step to read is the pass's last
        m.d.comb += last_step.eq(~(kx0 + kx_step < kw) & ~(ky + 1 < self.i_kernel_h)
                                 & (crem <= ch_step))
        with m.If(issue):
            with m.If(kx0 + kx_step < kw):
                m.d.sync += kx0.eq(kx0 + kx_step)
            with m.Elif(ky + 1 < self.i_kernel_h):
                m.d.sync += [kx0.eq(0), ky.eq(ky + 1), rrow.eq(rrow + self.i_width),
                             trow.eq(trow + kw)]
            with m.Else():
                m.d.sync += [kx0.eq(0), ky.eq(0), rrow.eq(0), trow.eq(0),
                             gaddr.eq(gaddr + plane), jg.eq(jg + ch_step * khkw),
                             crem.eq(crem - ch_step)]
                with m.If(last_step):
                    m.d.sync += more.eq(0)
        # Scanning ahead: when the scanned pass has no step left and is the broadcast pass,
        # the scan moves on to the next position (none after the layer's last).
        last_pos = Signal()
        reload = Signal()
        m.d.comb += [
            last_pos.eq((pos_x == last_x) & (pos_y == last_y)),
            reload.eq(((issue & last_step) | ~more) & ~ahead_now & ~last_pos),
        ]
        with m.If(reload):
            m.d.sync += [more.eq(1), ahead.eq(1), kx0.eq(0), ky.eq(0), rrow.eq(0), trow.eq(0),
                         gaddr.eq(0), jg.eq(0), crem.eq(self.i_channels)]
            with m.If(pos_x == last_x):
                # (oy + 1) * W = oy * W + (W - KW) + KW
                m.d.sync += [pos_x.eq(0), pos_y.eq(pos_y + 1), pos_base.eq(pos_base + kw)]
            with m.Else():
                m.d.sync += [pos_x.eq(pos_x + 1), pos_base.eq(pos_base + 1)]
        with m.Elif(self.i_next):
            m.d.sync += ahead.eq(0)
        with m.If(self.i_start):
            # (a new layer: nothing scanned ahead is kept)
            m.d.sync += [
                more.eq(1), kx0.eq(0), ky.eq(0), rrow.eq(0), trow.eq(0),
                pos_base.eq(self.i_pos_y * self.i_width + self.i_pos_x),
                gaddr.eq(0), jg.eq(0), crem.eq(self.i_channels),
                pos_x.eq(self.i_pos_x), pos_y.eq(self.i_pos_y),
                last_x.eq(self.i_width - self.i_kernel_w),
                last_y.eq(self.i_height - self.i_kernel_h),
                ahead.eq(0), full.eq(0), go.eq(0),
            ]
        return m
