"""The protocol engine's parts on their own (Amaranth simulator): watchdog, input buffer, result
buffer, response emitter and frame receiver."""
import random

from amaranth import Module, Signal, Elaboratable
from amaranth.sim import Simulator

from gateware.config import AcceleratorConfig
from gateware.crc import crc16_next
from gateware.frame_rx import A_CODED, A_DENSE, A_LOAD, A_PING, A_SPARSE, FrameReceiver
from gateware.input_buffer import InputBuffer
from contract.protocol import (PROTOCOL_VERSION, SOF, STATUS_FIELDS, Cmd, Err, Resp, crc16,
                               encode_frame)
from gateware.response import R_ACK, R_ERROR, R_RESULT, R_STATUS, ResponseEmitter, ResultBuffer
from sw import incode
from gateware.watchdog import Watchdog, watch_limit


def run(dut, bench, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if deadline:
        sim.run_until(deadline * 1e-6)
    else:
        sim.run()


def test_watchdog_expires_at_the_rounded_limit_and_restarts_on_progress():
    dut = Watchdog(100, 40)
    t_rx, t_accel = watch_limit(100), watch_limit(40)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.i_watch, 1)
        ctx.set(dut.i_wait_rx, 1)
        for clock in range(200):
            if ctx.get(dut.o_rx_expired):
                seen["rx"] = clock
                break
            await ctx.tick()
        # progress clears the count; a switch to the accelerator restarts it too
        ctx.set(dut.i_progress, 1)
        await ctx.tick()
        ctx.set(dut.i_progress, 0)
        ctx.set(dut.i_wait_rx, 0)
        for clock in range(200):
            assert not ctx.get(dut.o_rx_expired)
            if ctx.get(dut.o_accel_expired):
                seen["accel"] = clock
                break
            await ctx.tick()
        ctx.set(dut.i_watch, 0)
        for _ in range(300):
            await ctx.tick()
            assert not ctx.get(dut.o_rx_expired) and not ctx.get(dut.o_accel_expired)

    run(dut, bench)
    # the count starts one clock after watching starts (the switch detector) -> limit + 1
    assert seen == {"rx": t_rx + 1, "accel": t_accel + 1}, seen


def test_watchdog_matches_a_counter_cleared_at_once_on_every_clock():
    # The reference is the watchdog's definition: a counter cleared in the clock after progress,
    # no watching or a switch of the party waited for, expired while it has the rounded limit's
    # bits set. The gateware registers the clear condition; its outputs must not differ by a
    # clock, also when progress comes just before or at the expiry.
    for seed, (rx_timeout, accel_timeout) in enumerate(((16, 20), (40, 17), (33, 64))):
        dut = Watchdog(rx_timeout, accel_timeout)
        t_rx, t_accel = watch_limit(rx_timeout), watch_limit(accel_timeout)
        width = max(t_rx, t_accel).bit_length()
        rng = random.Random(seed)
        counts = {"rx": 0, "accel": 0}

        def reached(count, limit):
            return count & limit == limit

        async def bench(ctx):
            count, was_wait_rx = 0, 0
            watch = wait_rx = progress = 0
            for clock in range(6000):
                if rng.random() < 0.02:
                    watch = rng.random() < 0.8
                if rng.random() < 0.01:
                    wait_rx ^= 1
                progress = rng.random() < 0.04
                for name, value in (("i_watch", watch), ("i_wait_rx", wait_rx),
                                    ("i_progress", progress)):
                    ctx.set(getattr(dut, name), value)
                rx = watch and wait_rx and was_wait_rx and reached(count, t_rx)
                accel = watch and not wait_rx and not was_wait_rx and reached(count, t_accel)
                assert ctx.get(dut.o_rx_expired) == rx, (seed, clock)
                assert ctx.get(dut.o_accel_expired) == accel, (seed, clock)
                counts["rx"] += rx
                counts["accel"] += accel
                if progress or not watch or wait_rx != was_wait_rx:
                    count = 0
                else:
                    count = (count + 1) % (1 << width)
                was_wait_rx = wait_rx
                await ctx.tick()

        run(dut, bench)
        # both expiries were reached (the comparison above is not vacuous)
        assert counts["rx"] > 0 and counts["accel"] > 0, (seed, counts)


def test_input_buffer_streams_what_was_written():
    for lanes in (1, 4):
        cfg = AcceleratorConfig(n_pes=2, input_lanes=lanes)
        dut = InputBuffer(cfg)
        rng = random.Random(lanes)
        for n in (1, 3, 4, 37):
            x = [rng.randrange(256) for _ in range(n)]
            got = []

            async def bench(ctx, x=x, n=n):
                ctx.set(dut.i_wen, 1)
                for i in rng.sample(range(n), n):           # any write order
                    ctx.set(dut.i_windex, i)
                    ctx.set(dut.i_wvalue, x[i])
                    await ctx.tick()
                ctx.set(dut.i_wen, 0)
                ctx.set(dut.i_length, n)
                ctx.set(dut.i_start, 1)
                await ctx.tick()
                ctx.set(dut.i_start, 0)
                assert ctx.get(dut.o_busy)
                for _ in range(10 * n + 20):
                    ready = rng.random() < 0.6
                    ctx.set(dut.o_input.ready, ready)
                    valid = ctx.get(dut.o_input.valid)
                    if valid and ready:
                        word = ctx.get(dut.o_input.payload.value.as_value())
                        last = ctx.get(dut.o_input.payload.last)
                        got.append(([word >> (8 * j) & 0xFF for j in range(lanes)], last))
                    await ctx.tick()
                    if valid and ready and last:
                        break
                assert not ctx.get(dut.o_busy)

            run(dut, bench)
            words = -(-n // lanes)
            assert [last for _, last in got] == [0] * (words - 1) + [1], (lanes, n)
            values = [v for w, _ in got for v in w][:n]
            assert values == x, (lanes, n)


def test_result_buffer_collects_and_flags_errors():
    cfg = AcceleratorConfig(n_pes=2)
    dut = ResultBuffer(cfg, max_logits=4)
    out = {}

    async def put(ctx, index, value, last):
        ctx.set(dut.i_logit.valid, 1)
        ctx.set(dut.i_logit.payload.index, index)
        ctx.set(dut.i_logit.payload.value, value)
        ctx.set(dut.i_logit.payload.last, last)
        await ctx.tick()
        ctx.set(dut.i_logit.valid, 0)

    async def bench(ctx):
        ctx.set(dut.i_collect, 1)
        for i, v in enumerate([5, -7, 1 << 30]):
            await put(ctx, i, v, i == 2)
        out["count"] = ctx.get(dut.o_count)
        out["error"] = ctx.get(dut.o_error)
        values = []
        for i in range(3):
            ctx.set(dut.i_raddr, i)
            await ctx.tick()
            values.append(ctx.get(dut.o_rdata))
        out["values"] = values
        ctx.set(dut.i_clear, 1)
        await ctx.tick()
        ctx.set(dut.i_clear, 0)
        await put(ctx, 1, 0, 0)                 # out of order
        out["order"] = ctx.get(dut.o_error)
        ctx.set(dut.i_clear, 1)
        await ctx.tick()
        ctx.set(dut.i_clear, 0)
        for i in range(5):                      # one too many
            await put(ctx, i, i, i == 4)
        out["overflow"] = (ctx.get(dut.o_error), ctx.get(dut.o_count))

    run(dut, bench)
    assert out["count"] == 3 and not out["error"]
    assert out["values"] == [5, (-7) & 0xFFFFFFFF, 1 << 30]
    assert out["order"] == 1 and out["overflow"] == (1, 4)


class _EmitterBench(Elaboratable):
    """The emitter with the CRC register the engine gives it."""

    def __init__(self):
        status = {name: i + 1 for i, (name, _) in enumerate(STATUS_FIELDS)}
        self.emit = ResponseEmitter(4, status)
        self.crc = Signal(16, init=0xFFFF)

    def elaborate(self, platform):
        m = Module()
        m.submodules.emit = emit = self.emit
        m.d.comb += emit.i_crc.eq(self.crc)
        with m.If(emit.i_start):
            m.d.sync += self.crc.eq(0xFFFF)
        with m.If(emit.o_crc_step):
            m.d.sync += self.crc.eq(crc16_next(self.crc, emit.o_crc_byte))
        return m


def test_response_emitter_frames():
    dut = _EmitterBench()
    emit = dut.emit
    frames = []
    logits = [3, -1, 0x12345678]

    async def bench(ctx):
        for kind, setup in [(R_ACK, [(emit.i_words, 0x1234)]),
                            (R_ERROR, [(emit.i_err_code, Err.BAD_CRC), (emit.i_cmd, 0x42),
                                       (emit.i_accel_error, 9)]),
                            (R_RESULT, [(emit.i_n_logits, 3), (emit.i_argmax, 2),
                                        (emit.i_cycles, 0xA1B2C3D4), (emit.i_seq, 0x85)]),
                            (R_RESULT, [(emit.i_n_logits, 0), (emit.i_seq, 0x07)]),
                            (R_STATUS, [(emit.i_in_features, 0x0310), (emit.i_flags, 0x21),
                                        (emit.i_accel_error, 3), (emit.i_flash, 2)])]:
            for sig, value in setup:
                ctx.set(sig, value)
            ctx.set(emit.i_kind, kind)
            ctx.set(emit.i_start, 1)
            await ctx.tick()
            ctx.set(emit.i_start, 0)
            frame = []
            for _ in range(2000):
                ctx.set(emit.o_tx.ready, random.random() < 0.5)
                addr = ctx.get(emit.o_logit_addr)
                if ctx.get(emit.o_tx.valid) and ctx.get(emit.o_tx.ready):
                    frame.append(ctx.get(emit.o_tx.payload))
                    if ctx.get(emit.o_done):
                        await ctx.tick()
                        break
                await ctx.tick()
                # the result buffer's synchronous read
                ctx.set(emit.i_logit_data, logits[addr] & 0xFFFFFFFF if addr < 3 else 0)
            frames.append(bytes(frame))

    run(dut, bench)
    assert frames[0] == encode_frame(Resp.ACK, b"\x34\x12")
    assert frames[1] == encode_frame(Resp.ERROR, bytes([Err.BAD_CRC, 0x42, 9]))
    import struct
    assert frames[2] == encode_frame(Resp.RESULT, struct.pack("<BB3iBI", 0x85, 3, *logits, 2,
                                                              0xA1B2C3D4))
    assert frames[3] == encode_frame(Resp.RESULT, struct.pack("<BBBI", 7, 0, 2, 0xA1B2C3D4))
    status = {name: i + 1 for i, (name, _) in enumerate(STATUS_FIELDS)}
    status.update(in_features=0x0310, flags=0x21, accel_error=3, flash=2)
    fmt = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)
    assert frames[4] == encode_frame(Resp.STATUS, struct.pack(
        fmt, *(status[name] for name, _ in STATUS_FIELDS)))


class _ReceiverBench(Elaboratable):
    """The receiver with the engine's CRC register; the load port is always ready."""

    def __init__(self, cfg):
        self.rcv = FrameReceiver(cfg)
        self.crc = Signal(16, init=0xFFFF)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rcv = rcv = self.rcv
        with m.If(rcv.o_sof):
            m.d.sync += self.crc.eq(0xFFFF)
        with m.If(rcv.o_crc_step):
            m.d.sync += self.crc.eq(crc16_next(self.crc, rcv.i_rx.payload))
        m.d.comb += rcv.o_load.ready.eq(1)
        return m


def receive(cfg, frames, gaps=0.3, seed=1):
    """Feed ``frames`` to a receiver; per frame: (action, hdr_err, bad_len, bad_input, crc ok,
    buffer contents for in_features, loads)."""
    dut = _ReceiverBench(cfg)
    rcv = dut.rcv
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for frame in frames:
            buffer = {}
            loads = []
            i = 0
            for _ in range(100 * len(frame) + 5000):
                if i < len(frame) and rng.random() > gaps:
                    ctx.set(rcv.i_rx.valid, 1)
                    ctx.set(rcv.i_rx.payload, frame[i])
                else:
                    ctx.set(rcv.i_rx.valid, 0)
                if ctx.get(rcv.o_wen):
                    assert ctx.get(rcv.o_windex) < ctx.get(rcv.o_in_features), "write past end"
                    buffer[ctx.get(rcv.o_windex)] = ctx.get(rcv.o_wvalue)
                if ctx.get(rcv.o_load.valid):
                    p = rcv.o_load.payload
                    loads.append((ctx.get(p.mem), ctx.get(p.addr), ctx.get(p.data)))
                taken = ctx.get(rcv.i_rx.valid) and ctx.get(rcv.i_rx.ready)
                done = ctx.get(rcv.o_done)
                await ctx.tick()
                if taken:
                    i += 1
                if done:
                    break
            ctx.set(rcv.i_rx.valid, 0)
            n = ctx.get(rcv.o_in_features)
            results.append(dict(
                action=ctx.get(rcv.o_action), hdr_err=ctx.get(rcv.o_hdr_err),
                bad_len=ctx.get(rcv.o_bad_len), bad_input=ctx.get(rcv.o_bad_input),
                crc_ok=ctx.get(dut.crc) == 0, x=[buffer.get(j) for j in range(n)],
                seq=ctx.get(rcv.o_seq), writes=len(buffer),
                loads=loads, words=ctx.get(rcv.o_words)))
            ctx.set(rcv.i_resume, 1)
            await ctx.tick()
            ctx.set(rcv.i_resume, 0)

    run(dut, bench)
    return results


def test_frame_receiver_load_dense_sparse():
    import struct
    cfg = AcceleratorConfig(n_pes=2)
    n = 9
    x = [0, 5, 0, 0, 7, 1, 0, 0, 3]
    frames = [
        b"\x00\x13" + encode_frame(Cmd.INFER_DENSE, bytes(n)),      # garbage first; not loaded
        encode_frame(Cmd.LOAD, struct.pack("<BHHH", cfg.mem_layers, 0, n, 77)),
        encode_frame(Cmd.INFER_DENSE, bytes(x)),
        encode_frame(Cmd.INFER_SPARSE, b"".join(struct.pack("<HB", i, v)
                                                for i, v in enumerate(x) if v)),
        encode_frame(Cmd.INFER_SPARSE, struct.pack("<HBHB", 3, 1, 2, 1)),
        encode_frame(Cmd.INFER_SPARSE, struct.pack("<HB", 1, 1) + b"\x00"),
        encode_frame(Cmd.PING)[:-1] + b"\x00",
        encode_frame(0x77, b"abc"),
    ]
    r = receive(cfg, frames)
    assert r[0]["hdr_err"] == Err.NOT_LOADED and r[0]["crc_ok"]
    assert r[1]["action"] == A_LOAD and r[1]["words"] == 2 and r[1]["crc_ok"]
    assert r[1]["loads"] == [(cfg.mem_layers, 0, n), (cfg.mem_layers, 1, 77)]
    assert r[2]["action"] == A_DENSE and r[2]["x"] == x and r[2]["crc_ok"]
    assert r[3]["action"] == A_SPARSE and r[3]["x"] == x and not r[3]["bad_input"]
    assert r[4]["bad_input"] and r[5]["bad_len"]
    assert r[6]["action"] == A_PING and not r[6]["crc_ok"]
    assert r[7]["hdr_err"] == Err.UNKNOWN_CMD
    assert SOF == 0xA5 and crc16(b"123456789") == 0x29B1


def test_frame_receiver_learns_in_values():
    """A conv layer 0 takes ``in_values`` (descriptor word 8, after ``in_features``) input
    values: a LOAD of it sets the input count, one of 0 (an fc model's) does not, one of word
    0 (``in_features``) does."""
    import struct
    from contract.memmap import DESC_WORD
    cfg = AcceleratorConfig(n_pes=2)
    w = DESC_WORD["in_values"]
    x = [0, 5, 0, 0, 7, 1, 0, 0, 3, 0, 0, 9]
    frames = [
        encode_frame(Cmd.LOAD, struct.pack("<BHHH", cfg.mem_layers, 0, 4, 3)),
        encode_frame(Cmd.LOAD, struct.pack("<BHH", cfg.mem_layers, w, len(x))),
        encode_frame(Cmd.INFER_DENSE, bytes(x)),
        encode_frame(Cmd.LOAD, struct.pack("<BHH", cfg.mem_layers, w, 0)),
        encode_frame(Cmd.INFER_DENSE, bytes(x)),
        encode_frame(Cmd.LOAD, struct.pack("<BHH", cfg.mem_layers, 0, 4)),
        encode_frame(Cmd.INFER_DENSE, bytes(x)),
        encode_frame(Cmd.INFER_DENSE, bytes(x[:4])),
    ]
    r = receive(cfg, frames)
    for k in (2, 4):
        assert r[k]["action"] == A_DENSE and r[k]["x"] == x and r[k]["crc_ok"], k
    assert r[6]["hdr_err"] == Err.BAD_LENGTH
    assert r[7]["action"] == A_DENSE and r[7]["x"] == x[:4]


def test_frame_receiver_coded_input():
    import struct
    cfg = AcceleratorConfig(n_pes=2)
    n = 80
    rng = random.Random(4)
    xs = [[0] * n, [7] * n, [0] * (n - 1) + [1], [3] + [0] * (n - 1)]
    xs += [[rng.randrange(1, 256) if rng.random() < d else 0 for _ in range(n)]
           for d in (0.05, 0.2, 0.5, 0.9)]
    good = [encode_frame(Cmd.INFER_CODED, bytes([0x80 | i]) + incode.encode(x))
            for i, x in enumerate(xs)]
    tokens = incode.encode([1] * 10)
    bad = [
        encode_frame(Cmd.INFER_CODED, b"\x01" + bytes([31 << 3]) * 3),          # zeros past n
        encode_frame(Cmd.INFER_CODED, b"\x01" + bytes([31 << 3]) * 2 + bytes([18 << 3 | 2])
                     + b"\x05\x06"),                                            # literal past n
        encode_frame(Cmd.INFER_CODED, b"\x01" + tokens[:-1]),                   # cut literal run
        encode_frame(Cmd.INFER_CODED, b"\x01" + bytes([3 << 3 | 1])),           # ditto, after zeros
        encode_frame(Cmd.INFER_CODED, b""),
        encode_frame(Cmd.PING, bytes([PROTOCOL_VERSION + 1])),
        encode_frame(Cmd.PING, bytes([PROTOCOL_VERSION])),
    ]
    frames = [encode_frame(Cmd.LOAD, struct.pack("<BHH", cfg.mem_layers, 0, n))] + good + bad
    r = receive(cfg, frames, seed=2)[1:]
    for i, x in enumerate(xs):
        assert r[i]["action"] == A_CODED and r[i]["crc_ok"] and r[i]["seq"] == 0x80 | i
        assert not r[i]["bad_input"] and not r[i]["bad_len"], i
        assert r[i]["x"] == x, i
    r = r[len(xs):]
    assert r[0]["bad_input"] and r[1]["bad_input"] and not r[0]["bad_len"]
    assert r[2]["bad_len"] and r[3]["bad_len"] and not r[2]["bad_input"]
    assert r[4]["hdr_err"] == Err.BAD_LENGTH
    assert r[5]["hdr_err"] == Err.VERSION and r[5]["crc_ok"]
    assert r[6]["hdr_err"] == 0 and r[6]["action"] == A_PING
