"""The conv blocks of the central unit on Amaranth's simulator against reference functions, with
random stalls: the image store (gateware.conv_store) and the patch address generator
(gateware.conv_patch) on the feature-map buffer (gateware.conv_fmap), and the pool writer
(gateware.conv_pool); each with a mutated expectation that must fail."""
import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from gateware.config import AcceleratorConfig
from gateware.conv_fmap import FeatureMapBuffer
from gateware.conv_patch import PatchGenerator
from gateware.conv_pool import PASS_QUEUE, PoolWriter
from gateware.conv_store import ImageStore


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _bank_layout(fmap, n_pes):
    """Per bank, the entries of a ``C x H x W`` map: channel c in bank c mod N at
    ``(c // N) * H * W + y * W + x``."""
    C, H, W = fmap.shape
    banks = [dict() for _ in range(n_pes)]
    for c in range(C):
        for i, v in enumerate(fmap[c].reshape(-1)):
            banks[c % n_pes][(c // n_pes) * H * W + i] = int(v)
    return banks


def reference_patch(fmap, kh, kw, oy, ox):
    """Non-zero ``(column, value)`` of the patch at ``(oy, ox)``, column ``(c*KH + ky)*KW + kx``."""
    C = fmap.shape[0]
    out = []
    for c in range(C):
        for ky in range(kh):
            for kx in range(kw):
                v = int(fmap[c, oy + ky, ox + kx])
                if v:
                    out.append(((c * kh + ky) * kw + kx, v))
    return out


class _PatchHarness:
    """A feature-map buffer with an image store and a patch generator; the bench may also
    write the buffer directly (``buf.i_we...``, half 0)."""

    def __init__(self, cfg):
        self.m = m = Module()
        m.submodules.buf = self.buf = FeatureMapBuffer(cfg)
        m.submodules.store = self.store = ImageStore(cfg)
        m.submodules.gen = self.gen = PatchGenerator(cfg)
        buf, st, gen = self.buf, self.store, self.gen
        m.d.comb += [
            buf.i_st_half.eq(0), buf.i_st_we.eq(st.o_we), buf.i_st_addr.eq(st.o_waddr),
            buf.i_st_data.eq(st.o_wdata),
            buf.i_rd_en.eq(gen.o_rd_en),
            gen.i_stored.eq(st.o_stored), gen.i_stored_all.eq(st.o_done),
            *(buf.i_rd_addr[p].eq(gen.o_rd_addr[p]) for p in range(cfg.n_pes)),
            *(gen.i_rd_data[p].eq(buf.o_rd_data[p]) for p in range(cfg.n_pes)),
        ]


def rtl_patches(cfg, fmap, kh, kw, positions, *, p_valid, p_take, seed, mode, raster=False):
    """Put the ``C x H x W`` map ``fmap`` into the buffer and generate the patches of
    ``positions``; return the handed-over ``(column, value)`` words per position. ``mode``:
    ``"image"`` (through the image store, replicated, the patches read while it is stored),
    ``"preload"`` (the same, stored before the first patch), ``"channels"`` (written into the
    banks channel by channel, as a conv layer's pool writer leaves a map). ``raster``: the
    positions are consecutive in raster order and every pass after the first begins with
    ``i_next`` (the generator scanned it ahead) after 0-3 idle cycles, as in the central unit;
    otherwise every pass begins with ``i_start``."""
    h = _PatchHarness(cfg)
    rng = random.Random(seed)
    C, H, W = fmap.shape
    K = cfg.input_lanes
    flat = [int(v) for v in fmap.reshape(-1)]
    words = [flat[i:i + K] + [0] * (K - len(flat[i:i + K])) for i in range(0, len(flat), K)]
    got = []

    async def bench(ctx):
        st, gen, buf = h.store, h.gen, h.buf
        for name, v in dict(i_channels=C, i_height=H, i_width=W, i_kernel_h=kh,
                            i_kernel_w=kw).items():
            ctx.set(getattr(gen, name), v)
        ctx.set(gen.i_replicated, mode != "channels")
        k = len(words)
        if mode == "channels":
            banks = _bank_layout(fmap, cfg.n_pes)
            for i in range(max(len(b) for b in banks)):
                we = 0
                for p, b in enumerate(banks):
                    if i in b:
                        ctx.set(buf.i_waddr[p], i)
                        ctx.set(buf.i_wdata[p], b[i])
                        we |= 1 << p
                ctx.set(buf.i_we, we)
                await ctx.tick()
            ctx.set(buf.i_we, 0)
        else:
            ctx.set(st.i_channels, C)
            ctx.set(st.i_height, H)
            ctx.set(st.i_width, W)
            ctx.set(st.i_start, 1)
            await ctx.tick()
            ctx.set(st.i_start, 0)
            k = 0

        def step_store():
            nonlocal k
            if k >= len(words):
                ctx.set(st.i_input.valid, 0)
                return
            offer = rng.random() < p_valid
            ctx.set(st.i_input.valid, offer)
            ctx.set(st.i_input.payload, {"value": words[k], "last": k == len(words) - 1})
            if offer and ctx.get(st.i_input.ready):
                k += 1

        if mode == "preload":
            for _ in range(10 * len(flat)):
                if ctx.get(st.o_done):
                    break
                step_store()
                await ctx.tick()
            ctx.set(st.i_input.valid, 0)
            assert ctx.get(st.o_done) and k == len(words)
        for n, (oy, ox) in enumerate(positions):
            if raster and n:
                for _ in range(rng.randrange(4)):       # the broadcast side's round trip
                    step_store()
                    await ctx.tick()
            begin = gen.i_next if raster and n else gen.i_start
            ctx.set(gen.i_pos_y, oy)
            ctx.set(gen.i_pos_x, ox)
            ctx.set(begin, 1)
            step_store()
            await ctx.tick()
            ctx.set(begin, 0)
            ctx.set(gen.i_active, 1)
            words_out = []
            for _ in range(50 * C * kh * kw + 10 * len(flat) + 50):
                step_store()
                ctx.set(gen.i_can_take, rng.random() < p_take)
                for w in range(cfg.bcast_width):
                    if ctx.get(gen.o_take[w]):
                        d = ctx.get(gen.o_take_data[w])
                        words_out.append((d.col, d.value))
                last = ctx.get(gen.o_last)
                await ctx.tick()
                if last:
                    break
            else:
                raise AssertionError(f"patch ({oy}, {ox}) did not end")
            ctx.set(gen.i_active, 0)
            got.append(words_out)
        assert not ctx.get(st.o_error)

    _simulate(h.m, bench)
    return got


def _map(C, H, W, seed, density=0.5):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(C, H, W)) * (rng.random((C, H, W)) < density)


@pytest.mark.parametrize("n_pes, width, lanes, C, H, W, kh, kw, mode", [
    (1, 1, 16, 1, 8, 9, 3, 3, "image"),     # conv1-like: one channel, read while stored
    (4, 2, 16, 1, 9, 9, 5, 5, "image"),     # two steps per kernel row
    (8, 2, 3, 2, 7, 8, 3, 3, "image"),      # lanes past the kernel row, two channels
    (3, 1, 4, 2, 6, 7, 2, 3, "preload"),
    (2, 2, 4, 3, 6, 7, 2, 3, "channels"),   # channels over the banks, last group partial
    (4, 2, 16, 5, 4, 4, 4, 4, "channels"),  # the fc after a conv: KH = H, KW = W
    (3, 1, 3, 4, 5, 5, 3, 2, "channels"),
])
def test_patch_generator(n_pes, width, lanes, C, H, W, kh, kw, mode):
    cfg = AcceleratorConfig(n_pes=n_pes, broadcast_width=width, input_lanes=lanes,
                            fmap_depth=256)
    fmap = _map(C, H, W, n_pes * 7 + C)
    positions = [(y, x) for y in range(H - kh + 1) for x in range(W - kw + 1)]
    if len(positions) > 8:
        positions = positions[:4] + positions[-4:]
    got = rtl_patches(cfg, fmap, kh, kw, positions, p_valid=0.7, p_take=0.6, seed=1,
                      mode=mode)
    for (oy, ox), words in zip(positions, got):
        # channel groups come out in (group, ky, kx, lane) order, not column order
        assert sorted(words) == reference_patch(fmap, kh, kw, oy, ox)
        if n_pes == 1 or mode != "channels":
            assert words == reference_patch(fmap, kh, kw, oy, ox)


@pytest.mark.parametrize("n_pes, width, C, H, W, kh, kw, mode", [
    (8, 2, 1, 10, 11, 5, 5, "image"),       # conv1-like on 8 PEs, read while stored
    (4, 2, 1, 9, 9, 3, 3, "preload"),
    (2, 2, 3, 6, 7, 2, 3, "channels"),
    (3, 1, 4, 5, 5, 3, 2, "channels"),
])
def test_patch_generator_scans_ahead(n_pes, width, C, H, W, kh, kw, mode):
    """A layer's passes in raster order, every pass after the first begun with ``i_next``
    (scanned ahead while the previous one ends), on a map with all-zero regions (all-zero
    patches, runs of them, and patches whose only non-zero entry is in their last step)."""
    cfg = AcceleratorConfig(n_pes=n_pes, broadcast_width=width, input_lanes=4,
                            fmap_depth=256)
    fmap = _map(C, H, W, n_pes * 5 + C, density=0.4)
    fmap[:, :, :W // 2] = 0
    fmap[:, H // 2:, :] = 0
    fmap[C - 1, H - 1, W - 1] = 9
    positions = [(y, x) for y in range(H - kh + 1) for x in range(W - kw + 1)]
    got = rtl_patches(cfg, fmap, kh, kw, positions, p_valid=0.7, p_take=0.6, seed=4,
                      mode=mode, raster=True)
    want = [reference_patch(fmap, kh, kw, oy, ox) for oy, ox in positions]
    assert sum(not w for w in want) >= 3 and sum(bool(w) for w in want) >= 3
    assert [sorted(g) for g in got] == want
    want[-1], want[-2] = want[-2], want[-1]            # a pass's words in the wrong pass
    assert [sorted(g) for g in got] != want


def test_patch_generator_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=2, fmap_depth=256)
    fmap = _map(2, 5, 5, 3, density=0.9)
    got = rtl_patches(cfg, fmap, 3, 3, [(1, 1)], p_valid=0.8, p_take=0.7, seed=2,
                      mode="image")
    expect = reference_patch(fmap, 3, 3, 1, 1)
    expect[2] = (expect[2][0], expect[2][1] ^ 1)
    assert sorted(got[0]) != expect


# ---- pool writer -----------------------------------------------------------------------------

def rtl_pool(cfg, outputs, H, W, kh, kw, *, p_out, seed):
    """Send every position's outputs ``outputs[oy, ox]`` (``OC`` values, raster order of the
    positions) through a ``PoolWriter`` into half 1 of a ``FeatureMapBuffer`` after a first
    layer of random outputs (the buffer is not cleared in between); return the buffer's banks
    afterwards. Passes overlap as in the accelerator: a pass begins while up to
    ``PASS_QUEUE - 1`` earlier ones are outstanding at some PE, and each PE sends its outputs
    of a pass, then its end pulse, at random times and at its own pace."""
    m = Module()
    m.submodules.buf = buf = FeatureMapBuffer(cfg)
    m.submodules.pool = pool = PoolWriter(cfg)
    N = cfg.n_pes
    m.d.comb += [
        buf.i_wr_half.eq(1), buf.i_rmw_re.eq(pool.o_rmw_re), buf.i_we.eq(pool.o_we),
        *(buf.i_rmw_addr[p].eq(pool.o_rmw_addr[p]) for p in range(N)),
        *(pool.i_rmw_data[p].eq(buf.o_rmw_data[p]) for p in range(N)),
        *(buf.i_waddr[p].eq(pool.o_waddr[p]) for p in range(N)),
        *(buf.i_wdata[p].eq(pool.o_wdata[p]) for p in range(N)),
    ]
    rng = random.Random(seed)
    OH, OW, OC = outputs.shape
    result = [dict() for _ in range(N)]

    async def bench(ctx):
        for name, v in dict(i_height=H, i_width=W, i_kernel_h=kh, i_kernel_w=kw).items():
            ctx.set(getattr(pool, name), v)
        garbage = np.random.default_rng(seed).integers(0, 256, size=outputs.shape)
        for layer in (garbage, outputs):
            passes = [(y, x) for y in range(OH) for x in range(OW)]
            # per PE: the items still to send of the passes begun (values, then None = end)
            queues = [[] for _ in range(N)]
            owed = [0] * N
            nxt = 0
            while nxt < len(passes) or any(queues):
                begin = (nxt < len(passes) and max(owed) < PASS_QUEUE
                         and rng.random() < 0.5)
                if begin:
                    oy, ox = passes[nxt]
                    nxt += 1
                    ctx.set(pool.i_pos_y, oy)
                    ctx.set(pool.i_pos_x, ox)
                # every PE sends its channels p, p + N, ... in order, then its end pulse
                valid = end = 0
                for p in range(N):
                    if queues[p] and rng.random() < p_out:
                        item = queues[p].pop(0)
                        if item is None:
                            end |= 1 << p
                            owed[p] -= 1
                        else:
                            ctx.set(pool.i_value[p], item)
                            valid |= 1 << p
                ctx.set(pool.i_begin, int(begin))
                ctx.set(pool.i_valid, valid)
                ctx.set(pool.i_end, end)
                await ctx.tick()
                if begin:
                    for p in range(N):
                        queues[p] += [int(layer[oy, ox, oc]) for oc in range(p, OC, N)]
                        queues[p].append(None)
                        owed[p] += 1
            ctx.set(pool.i_begin, 0)
            ctx.set(pool.i_valid, 0)
            ctx.set(pool.i_end, 0)
            await ctx.tick()
        await ctx.tick()
        # read the banks back through the patch reader's port
        PH, PW = OH // 2, OW // 2
        ctx.set(buf.i_rd_half, 1)
        for i in range(-(-OC // N) * PH * PW):
            ctx.set(buf.i_rd_en, 1)
            for p in range(N):
                ctx.set(buf.i_rd_addr[p], i)
            await ctx.tick()
            ctx.set(buf.i_rd_en, 0)
            await ctx.tick()
            for p in range(N):
                if i < len(range(p, OC, N)) * PH * PW:
                    result[p][i] = ctx.get(buf.o_rd_data[p])

    _simulate(m, bench)
    return result


def reference_pool(outputs, n_pes):
    """The ``OC x OH/2 x OW/2`` max-pooled map of ``outputs[oy, ox, oc]`` in bank layout."""
    OH, OW, OC = outputs.shape
    PH, PW = OH // 2, OW // 2
    pooled = outputs[:2 * PH, :2 * PW].reshape(PH, 2, PW, 2, OC).max(axis=(1, 3))
    return _bank_layout(pooled.transpose(2, 0, 1), n_pes)


@pytest.mark.parametrize("n_pes, OC, H, W, kh, kw, p_out", [
    (1, 3, 6, 7, 3, 2, 1.0),        # one PE: every output back to back
    (2, 5, 7, 6, 2, 3, 0.7),        # odd output size: the last row is dropped
    (4, 6, 5, 5, 2, 2, 0.5),
])
def test_pool_writer(n_pes, OC, H, W, kh, kw, p_out):
    cfg = AcceleratorConfig(n_pes=n_pes, fmap_depth=64)
    rng = np.random.default_rng(n_pes)
    OH, OW = H - kh + 1, W - kw + 1
    outputs = rng.integers(0, 256, size=(OH, OW, OC)) * (rng.random((OH, OW, OC)) < 0.6)
    got = rtl_pool(cfg, outputs, H, W, kh, kw, p_out=p_out, seed=3)
    assert got == reference_pool(outputs, n_pes)


def test_pool_writer_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=2, fmap_depth=64)
    rng = np.random.default_rng(9)
    outputs = rng.integers(1, 256, size=(4, 4, 3))
    got = rtl_pool(cfg, outputs, 6, 6, 3, 3, p_out=0.8, seed=4)
    expect = reference_pool(outputs, 2)
    expect[1][0] ^= 1
    assert got != expect
