"""The central unit's sub-components on Amaranth's simulator against reference functions, with
random back-pressure: the lane filter (gateware.central_lanes), the broadcast FIFOs and the
column skip stage (gateware.central_broadcast), the bank merge (gateware.central_merge) and the
collector (gateware.central_collect); each with a mutated expectation that must fail."""
import random

import pytest
from amaranth import Module
from amaranth.lib import fifo
from amaranth.sim import Simulator

from gateware.central_broadcast import BroadcastRing
from gateware.central_collect import Collector
from gateware.central_lanes import LaneFilter
from gateware.central_merge import BankMerge, HeadQueue, bank_depth
from gateware.config import AcceleratorConfig


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# ---- lane filter ---------------------------------------------------------------------------

def rtl_lanes(cfg, words, in_features, *, p_valid, p_take, seed):
    """Offer the K-lane ``words`` (the final one with ``last``) to a ``LaneFilter``; return
    the handed-over ``(col, value)`` words and the cycle count from the first offer to the
    final word's acceptance."""
    dut = LaneFilter(cfg, 16)
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        ctx.set(dut.i_in_features, in_features)
        ctx.set(dut.i_start, 1)
        await ctx.tick()
        ctx.set(dut.i_start, 0)
        ctx.set(dut.i_active, 1)
        k = 0
        for _ in range(50 * len(words) + 50):
            offer = rng.random() < p_valid
            ctx.set(dut.i_input.valid, offer)
            ctx.set(dut.i_input.payload, {"value": words[k], "last": k == len(words) - 1})
            ctx.set(dut.i_can_take, rng.random() < p_take)
            for w in range(cfg.bcast_width):
                if ctx.get(dut.o_take[w]):
                    d = ctx.get(dut.o_take_data[w])
                    got.append((d.col, d.value))
            accepted = offer and ctx.get(dut.i_input.ready)
            last = ctx.get(dut.o_last)
            await ctx.tick()
            if accepted:
                k += 1
                if last:
                    break
        assert k == len(words), "the final word was not accepted"
        assert not ctx.get(dut.o_error)

    _simulate(dut, bench)
    return got


def _lanes_case(K, in_features, seed):
    rng = random.Random(seed)
    n_words = -(-in_features // K)
    values = [0 if rng.random() < 0.6 else rng.randrange(1, 256) for _ in range(n_words * K)]
    words = [values[i * K:(i + 1) * K] for i in range(n_words)]
    expect = [(c, v) for c, v in enumerate(values) if v and c < in_features]
    return words, expect


@pytest.mark.parametrize("lanes, width, in_features",
                         [(1, 1, 37), (4, 2, 37), (4, 1, 40), (3, 2, 31), (16, 2, 100)])
def test_lane_filter(lanes, width, in_features):
    cfg = AcceleratorConfig(n_pes=2, input_lanes=lanes, broadcast_width=width)
    words, expect = _lanes_case(lanes, in_features, lanes + in_features)
    got = rtl_lanes(cfg, words, in_features, p_valid=0.7, p_take=0.6, seed=1)
    assert got == expect                        # two lanes a cycle: the lower one first


def test_lane_filter_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=2, input_lanes=4)
    words, expect = _lanes_case(4, 37, 5)
    expect[2] = (expect[2][0], expect[2][1] ^ 1)
    assert rtl_lanes(cfg, words, 37, p_valid=0.8, p_take=0.7, seed=2) != expect


# ---- broadcast FIFOs -------------------------------------------------------------------------

def rtl_ring(cfg, n_words, *, p_push, p_pop, seed):
    """Push ``n_words`` random words into a ``BroadcastRing`` (random PE masks with the skip
    table, all PEs without; only when the FIFOs they go to have room) and pop at random;
    return ``(pushed, popped)``, per PE the words in push and in pop order."""
    dut = BroadcastRing(cfg)
    rng = random.Random(seed)
    N, W, D = cfg.n_pes, cfg.bcast_width, cfg.fifo_depth
    pushed = [[] for _ in range(N)]
    popped = [[] for _ in range(N)]

    async def bench(ctx):
        sent = 0
        for _ in range(40 * n_words):
            if sent >= n_words and all(ctx.get(dut.o_level[p]) == 0 for p in range(N)):
                break
            words = [(rng.randrange(1 << cfg.feature_bits), rng.randrange(256),
                      int(rng.random() < 0.1)) for _ in range(W)]
            n = rng.choice([1, W])
            masks = [rng.randrange(1 << N) if cfg.skip_columns else (1 << N) - 1
                     for _ in range(n)]
            room = all(ctx.get(dut.o_level[p]) + sum(mk >> p & 1 for mk in masks) <= D
                       for p in range(N))
            for p in range(N):          # o_room (registers) agrees with the level
                level = ctx.get(dut.o_level[p])
                assert ctx.get(dut.o_room[p]) == sum((level + j + 1 <= D) << j for j in range(W))
            push = sent < n_words and room and rng.random() < p_push
            ctx.set(dut.i_push, push)
            for k in range(W):
                col, value, end = words[k]
                ctx.set(dut.i_push_data[k], {"col": col, "value": value, "end": end})
                ctx.set(dut.i_push_to[k], masks[k] if k < n else 0)
            if push:
                sent += 1
                for k in range(n):
                    for p in range(N):
                        if masks[k] >> p & 1:
                            pushed[p].append(words[k])
            end_pops = 0
            for p in range(N):
                ready = rng.random() < p_pop
                ctx.set(dut.o_act[p].ready, ready)
                if ready and ctx.get(dut.o_act[p].valid):
                    a = ctx.get(dut.o_act[p].payload)
                    popped[p].append((a.col, a.value, a.end))
                    end_pops |= a.end << p
            assert ctx.get(dut.o_end_pop) == end_pops
            await ctx.tick()

    _simulate(dut, bench)
    return pushed, popped


@pytest.mark.parametrize("kw", [dict(n_pes=3), dict(n_pes=4, broadcast_width=1),
                                dict(n_pes=2, fifo_depth=5),
                                dict(n_pes=2, column_skip=False, fifo_depth=4),
                                dict(n_pes=1, column_skip=False, fifo_depth=2)])
def test_broadcast_ring(kw):
    pushed, popped = rtl_ring(AcceleratorConfig(**kw), 200, p_push=0.8, p_pop=0.6, seed=3)
    assert all(pushed)
    assert popped == pushed


def test_broadcast_ring_wrong_expectation_fails():
    pushed, popped = rtl_ring(AcceleratorConfig(n_pes=2), 50, p_push=0.8, p_pop=0.6, seed=4)
    pushed[1][7] = (pushed[1][7][0] ^ 1,) + pushed[1][7][1:]
    assert popped != pushed


# ---- bank merge ----------------------------------------------------------------------------

def rtl_merge(cfg, banks, *, p_take, seed):
    """Append ``banks[p]`` (local rows ascending, values) to a ``BankMerge`` and merge them;
    return the handed-over ``(global row, value)`` words in order."""
    depth = bank_depth(cfg)
    dut = BankMerge(cfg, depth)
    rng = random.Random(seed)
    N = cfg.n_pes
    got = []

    async def bench(ctx):
        for i in range(max(len(b) for b in banks)):
            we = 0
            for p, b in enumerate(banks):
                if i < len(b):
                    assert ctx.get(dut.o_room) >> p & 1
                    ctx.set(dut.i_wdata[p], {"row": b[i][0], "value": b[i][1]})
                    we |= 1 << p
            ctx.set(dut.i_we, we)
            await ctx.tick()
        ctx.set(dut.i_we, 0)
        ctx.set(dut.i_ended, (1 << N) - 1)
        ctx.set(dut.i_start, 1)
        await ctx.tick()
        ctx.set(dut.i_start, 0)
        ctx.set(dut.i_active, 1)
        for _ in range(20 * sum(map(len, banks)) + 20):
            if ctx.get(dut.o_exhausted):
                break
            ctx.set(dut.i_can_take, rng.random() < p_take)
            for k in range(cfg.bcast_width):
                if ctx.get(dut.o_take[k]):
                    d = ctx.get(dut.o_take_data[k])
                    got.append((d.col, d.value))
            await ctx.tick()
        assert ctx.get(dut.o_exhausted)

    _simulate(dut, bench)
    return got


def _merge_case(N, seed, rows=40):
    rng = random.Random(seed)
    banks = [[(r, rng.randrange(1, 256)) for r in sorted(rng.sample(range(rows), rng.randrange(
        0, rows // 2)))] for _ in range(N)]
    merged = sorted((r * N + p, v) for p, b in enumerate(banks) for r, v in b)
    return banks, merged


@pytest.mark.parametrize("n_pes, width", [(1, 1), (3, 1), (4, 1), (10, 1), (4, 2), (2, 2),
                                          (3, 2), (5, 2)])
def test_bank_merge(n_pes, width):
    cfg = AcceleratorConfig(n_pes=n_pes, broadcast_width=width)
    banks, merged = _merge_case(n_pes, n_pes * 10 + width)
    got = rtl_merge(cfg, banks, p_take=0.7, seed=5)
    if cfg.bcast_width == 1:
        assert got == merged                    # smallest row first
    else:                                       # bank order: each bank's rows ascending
        assert sorted(got) == merged
        for p in range(n_pes):
            mine = [r for r, _ in got if r % n_pes == p]
            assert mine == sorted(mine)


def test_bank_merge_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=3, broadcast_width=1)
    banks, merged = _merge_case(3, 7)
    merged[4] = (merged[4][0] + 1, merged[4][1])
    assert rtl_merge(cfg, banks, p_take=0.7, seed=6) != merged


async def _queue_cycle(ctx, dut, push, pop, data):
    """Drive one cycle's push (``data``) and pop into a queue with the ``SyncFIFO`` ports;
    return what it shows before the clock edge: ``(r_rdy, head or None, level)``."""
    ctx.set(dut.r_en, pop)
    ctx.set(dut.w_en, push)
    ctx.set(dut.w_data, data)
    rdy = ctx.get(dut.r_rdy)
    return rdy, ctx.get(dut.r_data) if rdy else None, ctx.get(dut.level)


def rtl_head_queue(n_cycles, *, p_push, p_pop, seed):
    """Random pushes (while the queue holds fewer than two, as the merge's read credit keeps
    it) and pops on a ``HeadQueue`` and, side by side, a ``lib.fifo.SyncFIFO(depth=2)`` given
    the same; return per cycle ``(r_rdy, head or None, level)`` of each."""
    queue, ref = HeadQueue(8), fifo.SyncFIFO(width=8, depth=2)
    top = Module()
    top.submodules.queue, top.submodules.ref = queue, ref
    rng = random.Random(seed)
    trace, ref_trace = [], []

    async def bench(ctx):
        for i in range(n_cycles):
            level = ctx.get(queue.level)
            pop = level != 0 and rng.random() < p_pop
            push = level < 2 and rng.random() < p_push
            for dut, out in ((queue, trace), (ref, ref_trace)):
                out.append(await _queue_cycle(ctx, dut, push, pop, i & 0xFF))
            await ctx.tick()

    _simulate(top, bench)
    return trace, ref_trace


def _head_queue_model(pushes_pops):
    """Reference: per cycle ``(r_rdy, head or None, level)`` for ``(push data or None, pop)``
    per cycle (a push is the head from the next cycle on)."""
    held, out = [], []
    for data, pop in pushes_pops:
        out.append((int(bool(held)), held[0] if held else None, len(held)))
        if pop:
            held.pop(0)
        if data is not None:
            held.append(data)
    return out


@pytest.mark.parametrize("p_push, p_pop", [(0.9, 0.5), (0.5, 0.9), (0.7, 0.7)])
def test_head_queue_times_as_sync_fifo(p_push, p_pop):
    trace, ref_trace = rtl_head_queue(400, p_push=p_push, p_pop=p_pop, seed=11)
    assert {lv for _, _, lv in trace} == {0, 1, 2}
    assert trace == ref_trace


def test_head_queue_against_model():
    """Full-queue push-and-pop cycles included (the SyncFIFO does not take those)."""
    queue = HeadQueue(8)
    rng = random.Random(12)
    plan, got = [], []

    async def bench(ctx):
        level = 0
        for i in range(500):
            pop = level != 0 and rng.random() < 0.6
            push = (level < 2 or pop) and rng.random() < 0.8
            plan.append((i & 0xFF if push else None, pop))
            got.append(await _queue_cycle(ctx, queue, push, pop, i & 0xFF))
            await ctx.tick()
            level = ctx.get(queue.level)

    _simulate(queue, bench)
    want = _head_queue_model(plan)
    assert any(lv == 2 and p and d is not None for (d, p), (_, _, lv) in zip(plan, want))
    assert got == want
    wrong = list(want)
    k = next(i for i, w in enumerate(want) if w[1] is not None)
    wrong[k] = (wrong[k][0], wrong[k][1] ^ 1, wrong[k][2])
    assert got != wrong


# ---- collector -----------------------------------------------------------------------------

def rtl_collect(cfg, outputs, last, out_features, *, p_valid, p_ready, seed):
    """Offer PE ``p``'s ``outputs[p]`` (``(global row, value)``, then ``end``) to a
    ``Collector`` (as the PE reports them: the local row ``row // N``); return the bank writes per PE, the logits in order, ``o_argmax`` and
    whether ``o_done`` pulsed."""
    depth = bank_depth(cfg)
    dut = Collector(cfg, depth, 16)
    rng = random.Random(seed)
    N = cfg.n_pes
    writes = [[] for _ in range(N)]
    logits = []
    result = {}

    async def bench(ctx):
        ctx.set(dut.i_bank_room, (1 << N) - 1)
        ctx.set(dut.i_last, last)
        ctx.set(dut.i_out_features, out_features)
        ctx.set(dut.i_begin, 1)
        await ctx.tick()
        ctx.set(dut.i_begin, 0)
        queues = [list(o) + ["end"] for o in outputs]
        done = False
        for _ in range(30 * sum(map(len, queues)) + 30):
            for p in range(N):
                offer = bool(queues[p]) and rng.random() < p_valid
                ctx.set(dut.i_out[p].valid, offer)
                if offer:
                    head = queues[p][0]
                    ctx.set(dut.i_out[p].payload, {"row": 0, "value": 0, "end": 1}
                            if head == "end" else {"row": head[0] // N, "value": head[1], "end": 0})
            ctx.set(dut.o_logit.ready, rng.random() < p_ready)
            we = ctx.get(dut.o_bank_we)
            for p in range(N):
                if we >> p & 1:
                    d = ctx.get(dut.o_bank_wdata[p])
                    writes[p].append((d.row, d.value))
            if ctx.get(dut.o_logit.valid) and ctx.get(dut.o_logit.ready):
                lo = ctx.get(dut.o_logit.payload)
                logits.append((lo.index, lo.value, lo.last))
            taken = [p for p in range(N) if ctx.get(dut.i_out[p].valid)
                     and ctx.get(dut.i_out[p].ready)]
            done |= bool(ctx.get(dut.o_done))
            await ctx.tick()
            for p in taken:
                queues[p].pop(0)
            if not ctx.get(dut.o_collecting):
                break
        done |= bool(ctx.get(dut.o_done))
        assert not any(queues)
        assert not ctx.get(dut.o_err_overflow) and not ctx.get(dut.o_err_logits)
        result.update(writes=writes, logits=logits, argmax=ctx.get(dut.o_argmax), done=done)

    _simulate(dut, bench)
    return result


@pytest.mark.parametrize("n_pes", [1, 3, 4])
def test_collector_hidden(n_pes):
    cfg = AcceleratorConfig(n_pes=n_pes)
    rng = random.Random(n_pes)
    outputs = [[(r, rng.randrange(1, 256)) for r in range(p, 90, n_pes) if rng.random() < 0.5]
               for p in range(n_pes)]
    got = rtl_collect(cfg, outputs, False, 90, p_valid=0.6, p_ready=1.0, seed=7)
    assert got["writes"] == [[(r // n_pes, v) for r, v in o] for o in outputs]
    assert not got["done"] and got["logits"] == []


@pytest.mark.parametrize("n_pes", [1, 2, 4])
def test_collector_logits(n_pes):
    cfg = AcceleratorConfig(n_pes=n_pes)
    rng = random.Random(20 + n_pes)
    values = [rng.randrange(-500, 500) for _ in range(10)]
    values[7] = values[3] = max(values) + 1             # a tie: the lower index wins
    mask = (1 << cfg.acc_bits) - 1
    outputs = [[(r, values[r] & mask) for r in range(p, 10, n_pes)] for p in range(n_pes)]
    got = rtl_collect(cfg, outputs, True, 10, p_valid=0.6, p_ready=0.5, seed=8)
    assert got["logits"] == [(i, v & mask, int(i == 9)) for i, v in enumerate(values)]
    assert got["argmax"] == 3 and got["done"]


def test_collector_wrong_expectation_fails():
    cfg = AcceleratorConfig(n_pes=2)
    outputs = [[(r, r + 1) for r in range(p, 8, 2)] for p in range(2)]
    got = rtl_collect(cfg, outputs, True, 8, p_valid=0.7, p_ready=0.7, seed=9)
    want = [(i, i + 1, int(i == 7)) for i in range(8)]
    assert got["logits"] == want and got["argmax"] == 7
    want[5] = (5, 7, 0)
    assert got["logits"] != want


def test_fifo_depth_holds_a_cycles_words():
    """A broadcast FIFO shallower than the words broadcast per cycle could never take a full
    cycle's words (the ring's room bits start at all ones): such a configuration is refused."""
    with pytest.raises(ValueError, match="fifo_depth must be 2..255"):
        AcceleratorConfig(n_pes=2, fifo_depth=1)
    with pytest.raises(ValueError, match="fifo_depth must be 1..255"):
        AcceleratorConfig(n_pes=2, fifo_depth=0, column_skip=False)
    assert AcceleratorConfig(n_pes=2, fifo_depth=1, column_skip=False).bcast_width == 1
    assert AcceleratorConfig(n_pes=2, fifo_depth=1, broadcast_width=1).fifo_depth == 1
