"""cocotb: protocol fuzz against the real accelerator (tb/top/fuzz.py makes and checks frames).

Two benches, chosen by ``level``:

- ``stream``: :class:`tb.top.stream_top.StreamTop`, bytes written straight into the receive FIFO
  and taken from a transmit FIFO (one byte per clock, no UART): fast enough for 10,000+ frames.
  Chunks may hold many frames back to back (floods, RESET/LOAD/INFER interleaved).
- ``uart``: ``gateware.top.SimTop``, every byte bit by bit on the UART pins (SimTransport); one
  frame per chunk of at most 32 bytes (the receive FIFO holds a chunk while the board answers),
  plus PING floods that overflow the receive FIFO (BUSY, then recovery).

Parameters (:func:`tb.bench.params`): ``level``, ``frames`` (frames to send), ``seed``,
``mutate`` (flip a bit of every expected logit; the run must then report violations),
``lenet`` (a model file run for a few MNIST images first), ``config`` (the AcceleratorConfig
fields), ``report`` (a file for the summary line), ``clock_hz``, ``divisor``, ``timeout``,
``accel_timeout`` (clocks).
"""
import random
import struct
from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, Timer
from cocotb.utils import get_sim_time

from gateware.protocol import SOF, Cmd, Err, Resp, encode_frame
from sw.golden import random_int_model
from sw.transport import SimTransport, TransportTimeout
from tb.bench import params
from tb.top.board import read_frame, status
from tb.top.fuzz import BoardModel, FrameGenerator, KnownModel, parse_chunk

LEVEL = params().get("level", "stream")
FRAMES = params().get("frames", 300)
SEED = params().get("seed", 1)
MUTATE = bool(params().get("mutate", False))
LENET = params().get("lenet", "")
CLOCK_HZ = params().get("clock_hz", 12_000_000)
DIVISOR = params().get("divisor", 4)
TIMEOUT = params().get("timeout", 2000)
ACCEL_TIMEOUT = params().get("accel_timeout", 20000)
CLK_PS = 2 * round(0.5e12 / CLOCK_HZ)


class StreamLink(SimTransport):
    """:class:`SimTransport`'s interface on StreamTop's byte FIFOs (one byte per clock)."""

    def __init__(self, dut):
        self.dut = dut
        self.baud = CLOCK_HZ
        self._out = deque()
        self._in = bytearray()
        self._out_event = Event()
        self._in_event = Event()
        self._idle_event = Event()
        self._idle_event.set()
        dut.i_rx_we.value = 0
        dut.i_tx_re.value = 0
        self._tasks = [cocotb.start_soon(self._drive()), cocotb.start_soon(self._monitor())]

    # Both tasks read and write at falling edges: the values read have settled after the
    # rising edge, and what is written is sampled at the next rising edge.
    async def _drive(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if self._out and int(dut.o_rx_ready.value):
                dut.i_rx_data.value = self._out.popleft()
                dut.i_rx_we.value = 1
                continue
            dut.i_rx_we.value = 0
            if not self._out:
                self._idle_event.set()
                self._out_event.clear()
                await self._out_event.wait()

    async def _monitor(self):
        dut = self.dut
        while True:
            await ClockCycles(dut.clk, 16)
            await FallingEdge(dut.clk)
            if not int(dut.o_tx_valid.value):
                continue
            while int(dut.o_tx_valid.value):
                self._in.append(int(dut.o_tx_data.value))
                dut.i_tx_re.value = 1
                await FallingEdge(dut.clk)
            dut.i_tx_re.value = 0
            self._in_event.set()


async def start(dut):
    Clock(dut.clk, CLK_PS, unit="ps").start()
    dut.rst.value = 1
    if LEVEL == "uart":
        dut.i_rx.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    return StreamLink(dut) if LEVEL == "stream" else SimTransport(dut, CLOCK_HZ, DIVISOR)


def byte_s():
    return (1 if LEVEL == "stream" else 10 * DIVISOR) / CLOCK_HZ


async def run_chunk(tr, model, chunk, log):
    """Send ``chunk``, read one response per frame start it holds, check each."""
    frames = parse_chunk(chunk)
    await tr.awrite(chunk)
    # every wait is bounded: the chunk's bytes, the frame timeout, the accelerator watchdog
    # (twice: a frame can wait for both) and the longest response
    wait = (len(chunk) + 1200) * byte_s() + 3 * (TIMEOUT + ACCEL_TIMEOUT) / CLOCK_HZ
    for f in frames:
        try:
            resp = await read_frame(tr, wait)
        except TransportTimeout as exc:
            model.frames += 1
            model.violations.append(f"frame {model.frames}: no response (hang): {exc}; "
                                    f"chunk {chunk[:64].hex()} ({len(chunk)} bytes, "
                                    f"{len(frames)} frames); received {exc.received[:48].hex()}")
            log(model.violations[-1])
            await recover(tr)
            return
        except AssertionError as exc:
            model.frames += 1
            model.violations.append(f"frame {model.frames}: {exc}")
            log(model.violations[-1])
            await recover(tr)
            return
        for err in model.check(f, resp):
            log(err)


async def recover(tr):
    await Timer(3 * (TIMEOUT + ACCEL_TIMEOUT) * CLK_PS, unit="ps")
    tr.flush_input()


async def uart_flood(tr, model, rng, log):
    """PINGs back to back overflow the receive FIFO (512 bytes: a PING is 6 bytes in and a
    39-byte STATUS out, so 120+ PINGs pile up more than that) while the board answers: answers
    are STATUS or ERROR BUSY / TIMEOUT / BAD_CRC (lost bytes), never more than the PINGs; after a
    pause the board answers a PING with STATUS (at most one BUSY first)."""
    k = rng.randint(120, 150)
    await tr.awrite(encode_frame(Cmd.PING) * k)
    answers = []
    while True:
        try:
            answers.append(await read_frame(tr, (60 * 10 * DIVISOR + 2 * TIMEOUT) / CLOCK_HZ))
        except TransportTimeout:
            break
    bad = [a for a in answers if not (a[0] == Resp.STATUS or a[0] == Resp.ERROR and a[1][0] in (
        Err.BUSY, Err.TIMEOUT, Err.BAD_CRC, Err.BAD_LENGTH, Err.UNKNOWN_CMD))]
    model.frames += k
    for code, body in answers:
        key = (Resp.ERROR, body[0]) if code == Resp.ERROR and body else code
        model.responses[key] = model.responses.get(key, 0) + 1
    if len(answers) > k or not answers or bad:
        model.violations.append(f"flood of {k} PINGs answered {answers[:4]}... ({len(answers)})")
        log(model.violations[-1])
    tr.flush_input()
    for attempt in range(2):
        resp = await read_frame_after(tr, encode_frame(Cmd.PING))
        model.frames += 1
        if resp and resp[0] == Resp.STATUS:
            return
        if attempt or not resp or resp[0] != Resp.ERROR or resp[1][0] != Err.BUSY:
            model.violations.append(f"after a flood, PING answered {resp}")
            log(model.violations[-1])
            return


async def read_frame_after(tr, frame):
    await tr.awrite(frame)
    try:
        return await read_frame(tr, (100 * 10 * DIVISOR + 2 * TIMEOUT) / CLOCK_HZ)
    except TransportTimeout:
        return None


def small_model(st, seed):
    from tb.top.board import pack
    # the gateware's widths (a gateware sized for LeNet-300-100 has 5-bit gaps)
    im = random_int_model([16, 12, 6], density=0.4, seed=seed, n_indices=5,
                          **{k: st[k] for k in ("act_bits", "weight_bits", "acc_bits", "idx_bits",
                                                "gap_bits", "huff_max_len")})
    return KnownModel("random", im, pack(st, im))


async def lenet_phase(tr, model, gen, st, log):
    """Upload LeNet-300-100, check a few MNIST test images, then go back to the small model."""
    from sw.golden import IntModel, images_to_uint8, load_mnist
    from sw.modelfile import load_model
    from tb.top.board import pack
    im = IntModel.from_model(load_model(LENET))
    km = KnownModel("lenet300", im, pack(st, im))
    model.models.append(km)
    model.wrong.append(set(km.image))
    model.results_checked[km.name] = 0
    small = gen.km
    gen.set_model(km)
    for frame in km.load_frames(256):
        await run_chunk(tr, model, frame, log)
    test_x, _ = load_mnist()["test"]
    for x in images_to_uint8(test_x[:3]):
        nz = [(i, int(v)) for i, v in enumerate(x) if v]
        await run_chunk(tr, model, encode_frame(Cmd.INFER_SPARSE, b"".join(
            struct.pack("<HB", i, v) for i, v in nz)), log)
    await run_chunk(tr, model, encode_frame(Cmd.INFER_DENSE, bytes(x)), log)
    gen.set_model(small)


@cocotb.test()
async def protocol_fuzz(dut):
    tr = await start(dut)
    rng = random.Random(SEED)
    from gateware.config import AcceleratorConfig
    st = await status(tr, 1e-3 + 200 * byte_s())
    cfg = AcceleratorConfig(**params()["config"])
    lines = []

    def log(text):
        if len(lines) < 30:
            cocotb.log.error(text)
        lines.append(text)

    km = small_model(st, SEED)
    model = BoardModel(cfg, [km], mutate_expectation=MUTATE)
    gen = FrameGenerator(rng, model, km, uart=LEVEL == "uart",
                         block_words=8 if LEVEL == "uart" else 32)
    if LENET:
        await lenet_phase(tr, model, gen, st, log)
    t0 = get_sim_time("ns")
    flooded = False
    while model.frames < FRAMES:
        if LEVEL == "uart" and (not flooded and model.frames > 40 or rng.random() < 0.01):
            flooded = True
            await uart_flood(tr, model, rng, log)
            continue
        for chunk in gen.chunks():
            await run_chunk(tr, model, chunk, log)
    # nothing more may arrive: one response per frame start
    await Timer(3 * (TIMEOUT + ACCEL_TIMEOUT) * CLK_PS, unit="ps")
    extra = len(tr._in)
    if extra:
        model.violations.append(f"{extra} bytes arrived after the last expected response")
    summary = (f"protocol fuzz ({LEVEL}, seed {SEED}): {model.frames} frames, "
               f"{len(model.violations)} invariant violations; bit-exact RESULTs checked: "
               f"{model.results_checked}; responses: "
               + ", ".join(f"{_name(k)} {v}" for k, v in sorted(model.responses.items(),
                                                                 key=lambda kv: -kv[1]))
               + f"; {(get_sim_time('ns') - t0) / 1e6:.1f} ms simulated")
    cocotb.log.info(summary)
    out = params().get("report")
    if out:
        with open(out, "w") as fh:
            fh.write(summary + "\n" + "\n".join(lines[:50]) + "\n")
    assert not model.violations, f"{len(model.violations)} invariant violations, first: " \
        + model.violations[0]
    assert sum(model.results_checked.values()) > 0, "no RESULT was checked against sw.golden"


def _name(key):
    names = {Resp.STATUS: "STATUS", Resp.ACK: "ACK", Resp.RESULT: "RESULT"}
    if isinstance(key, tuple):
        return f"ERROR {key[1]:#04x}"
    return names.get(key, f"{key:#04x}")

