"""cocotb tests of the UART protocol on SimTop with the mock accelerator (gateware/mock_accel.py).

Every byte goes through the simulated UART pins. Parameters (:func:`tb.bench.params`):
``clock_hz``, ``divisor``, ``timeout`` (frame idle timeout, clocks), ``n_pes``.
"""
import random
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ClockCycles, Timer

from contract.memmap import shared_mem
from contract.protocol import (PROTOCOL_VERSION, SOF, STATUS_FIELDS, STATUS_FLAGS, Cmd, Err, Resp,
                               encode_frame)
from sw import incode
from gateware.mock_accel import mock_logits
from sw.transport import SimTransport, TransportTimeout
from tb.bench import params
from tb.top.board import read_frame as read_board_frame

CLOCK_HZ = params().get("clock_hz", 12_000_000)
DIVISOR = params().get("divisor", 4)
TIMEOUT = params().get("timeout", 2000)
N_PES = params().get("n_pes", 4)
MEM_LAYERS = shared_mem(N_PES, "layers")
CLK_PS = 2 * round(0.5e12 / CLOCK_HZ)   # cocotb needs an even period
BYTE_S = 10 * DIVISOR / CLOCK_HZ
_TASKS = []


async def setup(dut, **kw):
    while _TASKS:
        _TASKS.pop().close()
    cocotb.start_soon(Clock(dut.clk, CLK_PS, unit="ps").start())
    dut.i_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    tr = SimTransport(dut, CLOCK_HZ, DIVISOR, **kw)
    _TASKS.append(tr)
    return tr


async def read_frame(tr, timeout=None):
    """Read one response: (code, payload). Garbage before SOF is an error here."""
    timeout = timeout or (200 * BYTE_S + 40 * TIMEOUT / CLOCK_HZ)
    return await read_board_frame(tr, timeout, skip_garbage=False)


async def exchange(tr, frame, timeout=None):
    await tr.awrite(frame)
    return await read_frame(tr, timeout)


async def expect_error(tr, frame, code, cmd=None):
    resp, body = await exchange(tr, frame)
    assert resp == Resp.ERROR, f"expected ERROR 0x{code:02x}, got response 0x{resp:02x} {body!r}"
    assert body[0] == code, f"expected error 0x{code:02x}, got 0x{body[0]:02x}"
    if cmd is not None:
        assert body[1] == cmd, f"error names command 0x{body[1]:02x}, expected 0x{cmd:02x}"
    return body


async def status(tr):
    resp, body = await exchange(tr, encode_frame(Cmd.PING))
    assert resp == Resp.STATUS, f"PING answered with 0x{resp:02x}"
    fmt = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in STATUS_FIELDS)
    return dict(zip((n for n, _ in STATUS_FIELDS), struct.unpack(fmt, body)))


def load_frame(mem, addr, words):
    return encode_frame(Cmd.LOAD, struct.pack("<BH", mem, addr)
                        + b"".join(struct.pack("<H", w & 0xFFFF) for w in words))


async def load(tr, mem, addr, words):
    resp, body = await exchange(tr, load_frame(mem, addr, words))
    assert resp == Resp.ACK and struct.unpack("<H", body)[0] == len(words), (resp, body)


def sparse_payload(x):
    return b"".join(struct.pack("<HB", i, v) for i, v in enumerate(x) if v)


def parse_result(body, seq=0x80):
    assert body[0] == seq, f"RESULT for sequence byte 0x{body[0]:02x}, expected 0x{seq:02x}"
    n = body[1]
    assert len(body) == 4 * n + 7
    logits = list(struct.unpack(f"<{n}i", body[2:2 + 4 * n]))
    pred, cycles = struct.unpack("<BI", body[2 + 4 * n:])
    return logits, pred, cycles


def coded_frame(x, seq=0x80):
    return encode_frame(Cmd.INFER_CODED, bytes([seq]) + incode.encode(x))


async def infer(tr, x, sparse, coded=False):
    if coded:
        frame = coded_frame(x)
    else:
        frame = encode_frame(Cmd.INFER_SPARSE, sparse_payload(x)) if sparse else \
            encode_frame(Cmd.INFER_DENSE, bytes(x))
    resp, body = await exchange(tr, frame)
    assert resp == Resp.RESULT, f"INFER answered with 0x{resp:02x} {body!r}"
    return parse_result(body)


async def load_mock(tr, rng, n_in, weights=None):
    w = weights or [rng.randrange(-30000, 30000) for _ in range(15)] + [0]
    await load(tr, 0, 0, w)
    await load(tr, MEM_LAYERS, 0, [n_in, 10, 2, 0, 0, 0, 0, 0])
    return w


def check_result(w, x, result):
    logits, pred, cycles = result
    ref = mock_logits(w, x)
    assert logits == ref, f"logits {logits} != {ref}"
    assert pred == ref.index(max(ref)), f"argmax {pred}"
    assert cycles >= len(x), f"cycles {cycles}"


@cocotb.test()
async def ping_reports_parameters(dut):
    tr = await setup(dut)
    st = await status(tr)
    assert st["version"] == PROTOCOL_VERSION and st["n_pes"] == N_PES and st["divisor"] == DIVISOR
    assert st["clock_hz"] == CLOCK_HZ and st["act_bits"] == 8 and st["acc_bits"] == 32
    assert st["in_features"] == 0 and not st["flags"] >> STATUS_FLAGS["loaded"] & 1
    # Garbage before the SOF is skipped.
    await tr.awrite(bytes([0x00, 0x13, 0xFF]))
    assert (await status(tr))["version"] == PROTOCOL_VERSION


@cocotb.test()
async def load_and_infer_dense_and_sparse(dut):
    tr = await setup(dut)
    rng = random.Random(5)
    await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(10)), Err.NOT_LOADED,
                       Cmd.INFER_DENSE)
    # in_features above 255 (two status bytes) and above max_features (not loaded).
    await load(tr, MEM_LAYERS, 0, [784])
    st = await status(tr)
    assert st["in_features"] == 784 and st["flags"] >> STATUS_FLAGS["loaded"] & 1, st
    await load(tr, MEM_LAYERS, 0, [5000])
    assert not (await status(tr))["flags"] >> STATUS_FLAGS["loaded"] & 1
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, b""), Err.NOT_LOADED)
    n_in = 37
    w = await load_mock(tr, rng, n_in)
    st = await status(tr)
    assert st["in_features"] == n_in and st["flags"] >> STATUS_FLAGS["loaded"] & 1
    for trial in range(4):
        x = [rng.randrange(256) if rng.random() < 0.4 else 0 for _ in range(n_in)]
        if trial == 1:
            x = [0] * n_in
        if trial == 2:
            x[0], x[-1] = 7, 9
        dense = await infer(tr, x, sparse=False)
        check_result(w, x, dense)
        sparse = await infer(tr, x, sparse=True)
        check_result(w, x, sparse)
        check_result(w, x, await infer(tr, x, sparse=False, coded=True))
    assert (await status(tr))["accel_error"] == 0


@cocotb.test()
async def malformed_frames_get_errors(dut):
    tr = await setup(dut)
    rng = random.Random(6)
    n_in = 12
    w = await load_mock(tr, rng, n_in)
    good = encode_frame(Cmd.PING)
    bad_crc = good[:-1] + bytes([good[-1] ^ 0x01])
    await expect_error(tr, bad_crc, Err.BAD_CRC, Cmd.PING)
    await expect_error(tr, encode_frame(0x42, b"abc"), Err.UNKNOWN_CMD, 0x42)
    await expect_error(tr, encode_frame(Cmd.PING, b"xy"), Err.BAD_LENGTH, Cmd.PING)
    # A PING may carry the host's protocol version: another one is refused.
    await expect_error(tr, encode_frame(Cmd.PING, bytes([PROTOCOL_VERSION - 1])), Err.VERSION,
                       Cmd.PING)
    resp, _ = await exchange(tr, encode_frame(Cmd.PING, bytes([PROTOCOL_VERSION])))
    assert resp == Resp.STATUS
    await expect_error(tr, encode_frame(Cmd.RESET, b"xy"), Err.BAD_LENGTH, Cmd.RESET)
    await expect_error(tr, encode_frame(Cmd.LOAD, bytes(6)), Err.BAD_LENGTH, Cmd.LOAD)
    await expect_error(tr, encode_frame(Cmd.LOAD, bytes(3)), Err.BAD_LENGTH, Cmd.LOAD)
    await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(n_in + 1)), Err.BAD_LENGTH)
    await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(n_in - 1)), Err.BAD_LENGTH)
    # Sparse: partial pair, index out of range, not ascending.
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, b"\x01\x00\x05\x02"), Err.BAD_LENGTH)
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, struct.pack("<HB", n_in, 1)),
                       Err.BAD_INPUT, Cmd.INFER_SPARSE)
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, struct.pack("<HBHB", 5, 1, 3, 2)),
                       Err.BAD_INPUT)
    # A repeated index, an index with high bits set (its low bits in range), a bad pair
    # followed by good ones.
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, struct.pack("<HBHB", 4, 1, 4, 2)),
                       Err.BAD_INPUT)
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE, struct.pack("<HB", 0x8001, 1)),
                       Err.BAD_INPUT)
    await expect_error(tr, encode_frame(Cmd.INFER_SPARSE,
                                        struct.pack("<HBHBHB", n_in + 3, 1, 0, 2, 1, 3)),
                       Err.BAD_INPUT)
    # A bad checksum on an inference: the result is withheld.
    frame = encode_frame(Cmd.INFER_DENSE, bytes(range(n_in)))
    await expect_error(tr, frame[:-2] + bytes([frame[-2] ^ 0x80, frame[-1]]), Err.BAD_CRC)
    # After all that the accelerator saw only complete vectors and still works.
    st = await status(tr)
    assert st["accel_error"] == 0, f"mock accelerator flags {st['accel_error']}"
    x = [rng.randrange(256) for _ in range(n_in)]
    check_result(w, x, await infer(tr, x, sparse=False))
    check_result(w, x, await infer(tr, x, sparse=True))


@cocotb.test()
async def truncated_frames_time_out_and_resync(dut):
    tr = await setup(dut)
    rng = random.Random(7)
    n_in = 20
    w = await load_mock(tr, rng, n_in)
    limit = 4 * TIMEOUT / CLOCK_HZ + 100 * BYTE_S
    for cut in (1, 2, 3, 4, 9, 15):
        frame = encode_frame(Cmd.INFER_DENSE, bytes(rng.randrange(256) for _ in range(n_in)))
        resp, body = await exchange(tr, frame[:cut], limit)
        assert resp == Resp.ERROR and body[0] == Err.TIMEOUT, (cut, resp, body)
    for payload in (sparse_payload([0, 3, 0, 4] * 5)[:7], bytes(5)):
        cmd = Cmd.INFER_SPARSE if len(payload) == 7 else Cmd.LOAD
        resp, body = await exchange(tr, encode_frame(cmd, payload)[:4 + len(payload) - 1], limit)
        assert resp == Resp.ERROR and body[0] == Err.TIMEOUT, (resp, body)
    # Truncated inside the CRC.
    resp, body = await exchange(tr, encode_frame(Cmd.PING)[:-1], limit)
    assert resp == Resp.ERROR and body[0] == Err.TIMEOUT
    st = await status(tr)
    assert st["accel_error"] == 0, f"padding broke the input vector: flags {st['accel_error']}"
    x = [rng.randrange(256) for _ in range(n_in)]
    check_result(w, x, await infer(tr, x, sparse=True))


@cocotb.test()
async def framing_error_inside_frame(dut):
    tr = await setup(dut)
    frame = encode_frame(Cmd.PING)
    await tr.awrite(frame[:2])
    await tr.await_idle()
    bit_ps = DIVISOR * CLK_PS
    for bit in [0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1]:     # stop bit low
        dut.i_rx.value = bit
        await Timer(bit_ps, unit="ps")
    await tr.awrite(frame[2:])   # the framing error byte counted as one length byte
    resp, body = await read_frame(tr, 4 * TIMEOUT / CLOCK_HZ + 100 * BYTE_S)
    assert resp == Resp.ERROR and body[0] in (Err.FRAMING, Err.TIMEOUT), (resp, body)
    st = await status(tr)
    assert st["flags"] >> STATUS_FLAGS["framing_error"] & 1
    assert not (await status(tr))["flags"] >> STATUS_FLAGS["framing_error"] & 1, "not cleared"


@cocotb.test()
async def accelerator_errors(dut):
    tr = await setup(dut)
    rng = random.Random(8)
    n_in = 8
    x = list(range(1, n_in + 1))
    # Error flag of the accelerator.
    w = await load_mock(tr, rng, n_in, [0x7FFF] + [1] * 15)
    body = await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(x)), Err.ACCEL_ERROR)
    assert body[2] & 1
    # More logits than the result buffer.
    w = await load_mock(tr, rng, n_in, [1] * 15 + [20])
    await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(x)), Err.OUTPUT)
    # A hung accelerator is reset after the accelerator timeout; RESET then works too.
    w = await load_mock(tr, rng, n_in, [3, 0x7FFF] + [2] * 14)
    await expect_error(tr, encode_frame(Cmd.INFER_DENSE, bytes(x)), Err.ACCEL_TIMEOUT)
    st = await status(tr)
    assert st["flags"] >> STATUS_FLAGS["accel_timeout"] & 1
    resp, body = await exchange(tr, encode_frame(Cmd.RESET))
    assert resp == Resp.ACK
    w = await load_mock(tr, rng, n_in)
    check_result(w, x, await infer(tr, x, sparse=False))


@cocotb.test()
async def host_flooding_gets_busy(dut):
    """Frames sent without waiting for the answers overflow the receive FIFO: BUSY, then the
    board recovers."""
    tr = await setup(dut)
    rng = random.Random(9)
    n_in = 30
    w = await load_mock(tr, rng, n_in)
    x = [rng.randrange(256) for _ in range(n_in)]
    st = await status(tr)
    # 7-byte PINGs answered by 42-byte STATUS frames: the receive FIFO (rx_buffer bytes)
    # fills faster than the responses drain it.
    flood = encode_frame(Cmd.INFER_DENSE, bytes(x)) + \
        encode_frame(Cmd.PING) * (st["rx_buffer"] // 5 + 12)
    await tr.awrite(flood)
    codes = []
    while True:
        try:
            resp, body = await read_frame(tr, 20 * TIMEOUT / CLOCK_HZ + 200 * BYTE_S)
        except TransportTimeout:
            break
        codes.append((resp, body[0] if resp == Resp.ERROR else None))
    assert codes[0][0] == Resp.RESULT, codes
    assert (Resp.ERROR, Err.BUSY) in codes, codes
    assert all(c[0] in (Resp.STATUS, Resp.ERROR) for c in codes[1:]), codes
    await Timer(4 * TIMEOUT * CLK_PS, unit="ps")
    tr.flush_input()
    await status(tr)
    check_result(w, x, await infer(tr, x, sparse=True))


@cocotb.test()
async def random_byte_gaps(dut):
    """Idle gaps between bytes shorter than the timeout do not disturb the parser."""
    rng = random.Random(10)
    gap_max = max(1, (TIMEOUT // (DIVISOR * 10)) // 2)
    tr = await setup(dut, gap_bits=lambda i: rng.choice([0, 0, 1, 5, gap_max]))
    n_in = 16
    w = await load_mock(tr, rng, n_in)
    for _ in range(3):
        x = [rng.randrange(256) if rng.random() < 0.5 else 0 for _ in range(n_in)]
        check_result(w, x, await infer(tr, x, sparse=rng.random() < 0.5))


@cocotb.test()
async def host_runtime_in_bridge_thread(dut):
    """sw.host.Board (blocking code) drives the simulated board through cocotb.bridge."""
    from sw.host import Board, BoardError, InputLengthError
    tr = await setup(dut)
    rng = random.Random(11)
    n_in = 25
    w = [rng.randrange(-1000, 1000) for _ in range(15)] + [0]
    xs = [[rng.randrange(256) if rng.random() < 0.3 else 0 for _ in range(n_in)]
          for _ in range(3)]

    @bridge
    def host():
        board = Board(tr, board_timeout=4 * TIMEOUT / CLOCK_HZ)
        board.load(0, 0, w)
        board.load(MEM_LAYERS, 0, [n_in, 10, 2, 0, 0, 0, 0, 0])
        st = board.status()
        assert st.in_features == n_in and st.flag("loaded")
        out = [board.infer(x) for x in xs] + [board.infer(xs[0], sparse=False)]
        try:
            board.infer([1] * (n_in + 1))
        except InputLengthError:
            pass
        else:
            raise AssertionError("wrong input length accepted")
        try:
            board.exchange(0x55)
        except BoardError as exc:
            assert exc.code == Err.UNKNOWN_CMD
        else:
            raise AssertionError("unknown command accepted")
        return out

    results = await host()
    for x, r in zip(xs + [xs[0]], results):
        check_result(w, x, (list(r.logits), r.prediction, r.cycles))


@cocotb.test()
async def coded_input(dut):
    """INFER_CODED: zero runs and literals (long runs, runs at both ends, every literal count),
    the compact result, and malformed token streams."""
    tr = await setup(dut)
    rng = random.Random(12)
    n_in = 70
    w = await load_mock(tr, rng, n_in)
    vectors = [[0] * n_in, [255] * n_in, [0] * (n_in - 1) + [9], [4] + [0] * (n_in - 1)]
    for density in (0.05, 0.3, 0.7):
        vectors.append([rng.randrange(1, 256) if rng.random() < density else 0
                        for _ in range(n_in)])
    for i, x in enumerate(vectors):
        resp, body = await exchange(tr, coded_frame(x, seq=0x80 | i))
        assert resp == Resp.RESULT, (resp, body)
        check_result(w, x, parse_result(body, 0x80 | i))
        # compact: no logits, the same argmax and cycles
        resp, body = await exchange(tr, coded_frame(x, seq=i))
        ref = mock_logits(w, x)
        logits, pred, cycles = parse_result(body, i)
        assert logits == [] and pred == ref.index(max(ref)) and cycles >= n_in
    ok = incode.encode([1] * 10)
    # values past in_features: a zero run, a literal run
    await expect_error(tr, encode_frame(Cmd.INFER_CODED, b"\x80" + bytes([31 << 3]) * 3),
                       Err.BAD_INPUT, Cmd.INFER_CODED)
    await expect_error(tr, encode_frame(Cmd.INFER_CODED,
                                        b"\x80" + bytes([31 << 3]) * 2 + bytes([7]) + bytes(range(1, 8))
                                        + bytes([2]) + b"\x05\x06"),
                       Err.BAD_INPUT)
    # the payload ends inside a literal run; no sequence byte; a bad checksum
    await expect_error(tr, encode_frame(Cmd.INFER_CODED, b"\x80" + ok[:-1]), Err.BAD_LENGTH)
    await expect_error(tr, encode_frame(Cmd.INFER_CODED, b"\x80" + bytes([2 << 3 | 1])),
                       Err.BAD_LENGTH)
    await expect_error(tr, encode_frame(Cmd.INFER_CODED, b""), Err.BAD_LENGTH)
    frame = coded_frame(vectors[5])
    await expect_error(tr, frame[:-1] + bytes([frame[-1] ^ 4]), Err.BAD_CRC)
    # the accelerator saw only complete vectors
    assert (await status(tr))["accel_error"] == 0
    check_result(w, vectors[5], await infer(tr, vectors[5], False, coded=True))


@cocotb.test()
async def pipelined_requests(dut):
    """Requests sent back to back within the receive buffer are all answered, in order."""
    tr = await setup(dut)
    rng = random.Random(13)
    n_in = 50
    w = await load_mock(tr, rng, n_in)
    st = await status(tr)
    xs = [[rng.randrange(256) if rng.random() < 0.3 else 0 for _ in range(n_in)]
          for _ in range(40)]
    frames = [coded_frame(x, seq=(0x80 if i % 3 else 0) | i) for i, x in enumerate(xs)]
    sent = answered = 0
    in_flight = []
    while answered < len(frames):
        while sent < len(frames) and sum(map(len, in_flight)) + len(frames[sent]) \
                <= st["rx_buffer"]:
            await tr.awrite(frames[sent])
            in_flight.append(frames[sent])
            sent += 1
        resp, body = await read_frame(tr)
        in_flight.pop(0)
        seq = (0x80 if answered % 3 else 0) | answered
        logits, pred, cycles = parse_result(body, seq)
        ref = mock_logits(w, xs[answered])
        assert pred == ref.index(max(ref))
        if seq & 0x80:
            assert logits == ref
        answered += 1
    assert not (await status(tr))["flags"] >> STATUS_FLAGS["overrun"] & 1
