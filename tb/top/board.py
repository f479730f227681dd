"""Async helpers for cocotb tests that talk to SimTop with the real accelerator frame by frame.

Unlike ``sw.host.Board`` (blocking, in a bridge thread, with retries) these send exactly the
frames a test asks for and return exactly what the board answered, so recovery and fuzz tests
see every response.
"""
import struct

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from gateware.protocol import SOF, STATUS_FIELDS, Cmd, Resp, crc16, encode_frame
from sw.transport import SimTransport, TransportTimeout

__all__ = ["start", "read_frame", "exchange", "status", "pack", "upload_frames", "infer_frame",
           "parse_result", "golden", "TransportTimeout"]

_STATUS_STRUCT = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)


async def start(dut, clock_hz, divisor):
    """Start the clock, pulse reset and return a :class:`SimTransport` on the pins."""
    period = 2 * round(0.5e12 / clock_hz)
    Clock(dut.clk, period, unit="ps").start()
    dut.i_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    return SimTransport(dut, clock_hz, divisor)


async def read_frame(tr, timeout, *, skip_garbage=True):
    """One response ``(code, payload)``; bytes before a SOF are skipped (``skip_garbage``) or
    an error (``skip_garbage=False``: the board must answer with nothing before the frame).

    Raises
    ------
    TransportTimeout
        if no complete frame arrives within ``timeout`` simulated seconds per read.
    AssertionError
        on a response CRC mismatch, or a byte before SOF with ``skip_garbage=False``.
    """
    while (first := (await tr.aread(1, timeout))[0]) != SOF:
        assert skip_garbage, f"response starts with 0x{first:02x}, not SOF"
    head = await tr.aread(3, timeout)
    n = head[1] | head[2] << 8
    rest = await tr.aread(n + 2, timeout)
    body = head + rest[:n]
    assert crc16(body) == rest[n] << 8 | rest[n + 1], "response CRC mismatch"
    return head[0], bytes(rest[:n])


async def exchange(tr, frame, timeout):
    await tr.awrite(frame)
    return await read_frame(tr, timeout)


async def status(tr, timeout):
    code, body = await exchange(tr, encode_frame(Cmd.PING), timeout)
    assert code == Resp.STATUS, (code, body)
    return dict(zip((n for n, _ in STATUS_FIELDS), struct.unpack(_STATUS_STRUCT, body)))


def pack(st, int_model):
    """``sw.host.pack_for_board`` for the board described by the STATUS dict ``st``."""
    from sw.host import BoardStatus, pack_for_board
    return pack_for_board(BoardStatus(st), int_model, "sim")


def upload_frames(packed, block_words=128):
    """LOAD frames writing every word of ``packed`` (consecutive runs, ``block_words`` each)."""
    from sw.host import _runs
    frames = []
    for mem, addr, words in _runs(packed.load_words()):
        for s in range(0, len(words), block_words):
            chunk = np.asarray(words[s:s + block_words], dtype=np.int64) & 0xFFFF
            frames.append(encode_frame(Cmd.LOAD, struct.pack("<BH", mem, addr + s)
                                       + chunk.astype("<u2").tobytes()))
    return frames


def infer_frame(x, sparse):
    x = [int(v) for v in x]
    if sparse:
        return encode_frame(Cmd.INFER_SPARSE, b"".join(struct.pack("<HB", i, v)
                                                       for i, v in enumerate(x) if v))
    return encode_frame(Cmd.INFER_DENSE, bytes(x))


def parse_result(body):
    """``(logits, prediction, cycles)`` of a RESULT payload (None if inconsistent)."""
    if len(body) < 7 or len(body) != 4 * body[1] + 7:   # seq, n, logits, tail
        return None
    n = body[1]
    logits = list(struct.unpack(f"<{n}i", body[2:2 + 4 * n]))
    pred, cycles = struct.unpack("<BI", body[2 + 4 * n:])
    return logits, pred, cycles


def golden(int_model, x):
    """``(logits, prediction)`` of sw.golden for one input vector."""
    from sw.golden import infer
    r = infer(int_model, np.asarray([x], dtype=np.int64))
    return [int(v) for v in r.logits[0]], int(r.prediction[0])
