"""cocotb: after any abort the very next inference is bit-exact (SimTop, real accelerator).

Each test uploads a small random model, checks one inference, aborts an inference in one way
and then checks that the first inference after the recovery matches sw.golden, with no
throw-away inference in between. The aborts: the accelerator watchdog (a partial re-upload
leaves the last layer's descriptor with 0 outputs, so the inference hangs; and a model too slow
for the watchdog), the RESET command after an accelerator error, and the reset pin in the middle
of an inference.

Parameters (:func:`tb.bench.params`): ``clock_hz``, ``divisor``, ``timeout`` (frame idle
timeout, clocks), ``accel_timeout`` (clocks).
"""
import struct

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles

from contract.memmap import DESC_WORD, DESC_WORDS, shared_mem
from gateware.protocol import Cmd, Err, Resp, encode_frame
from sw.golden import random_int_model
from tb.bench import params
from tb.top.board import (exchange, golden, infer_frame, pack, parse_result, start, status,
                          upload_frames)

CLOCK_HZ = params().get("clock_hz", 12_000_000)
DIVISOR = params().get("divisor", 4)
TIMEOUT = params().get("timeout", 4000)
ACCEL_TIMEOUT = params().get("accel_timeout", 20000)
BYTE_S = 10 * DIVISOR / CLOCK_HZ
# a response read: the longest frame plus the accelerator watchdog
WAIT_S = 600 * BYTE_S + 2 * (ACCEL_TIMEOUT + TIMEOUT) / CLOCK_HZ


async def upload(tr, packed):
    for frame in upload_frames(packed):
        code, body = await exchange(tr, frame, WAIT_S)
        assert code == Resp.ACK, f"LOAD answered 0x{code:02x} {body.hex()}"


async def expect_golden(tr, int_model, x, sparse=True, what=""):
    code, body = await exchange(tr, infer_frame(x, sparse), WAIT_S)
    assert code == Resp.RESULT, f"{what}: INFER answered 0x{code:02x} {body.hex()}"
    logits, pred, _ = parse_result(body)
    ref, ref_pred = golden(int_model, x)
    assert (logits, pred) == (ref, ref_pred), f"{what}: logits {logits} != golden {ref}"


def model_and_input(seed, sizes=(24, 16, 4)):
    int_model = random_int_model(list(sizes), density=0.5, seed=seed, n_indices=5)
    rng = np.random.default_rng(seed)
    x = (rng.integers(1, 256, size=sizes[0]) * (rng.random(sizes[0]) < 0.6)).astype(np.int64)
    x[0] = 200
    return int_model, x


async def prepare(dut, seed, sizes=(24, 16, 4)):
    tr = await start(dut, CLOCK_HZ, DIVISOR)
    st = await status(tr, WAIT_S)
    int_model, x = model_and_input(seed, sizes)
    packed = pack(st, int_model)
    await upload(tr, packed)
    await expect_golden(tr, int_model, x, what="before the abort")
    return tr, int_model, x, packed


def descriptor_word_frame(n_pes, layer, field, value):
    """A LOAD frame writing ``value`` into descriptor word ``field`` of ``layer``."""
    address = DESC_WORDS * layer + DESC_WORD[field]
    return encode_frame(Cmd.LOAD, struct.pack("<BHH", shared_mem(n_pes, "layers"), address, value))


@cocotb.test()
async def watchdog_then_reset(dut):
    """The issue's scenario: a partial re-upload leaves the last layer with 0 outputs, the
    inference hangs (ACCEL_TIMEOUT), the whole model is uploaded again, RESET, INFER."""
    tr, int_model, x, packed = await prepare(dut, seed=21)
    st = await status(tr, WAIT_S)
    last = len(int_model.layers) - 1
    code, _ = await exchange(
        tr, descriptor_word_frame(st["n_pes"], last, "out_features", 0), WAIT_S)
    assert code == Resp.ACK
    code, body = await exchange(tr, infer_frame(x, True), WAIT_S)
    assert code == Resp.ERROR and body[0] in (Err.ACCEL_TIMEOUT, Err.ACCEL_ERROR), body.hex()
    await upload(tr, packed)
    code, _ = await exchange(tr, encode_frame(Cmd.RESET), WAIT_S)
    assert code == Resp.ACK
    await expect_golden(tr, int_model, x, what="first inference after the recovery")
    await expect_golden(tr, int_model, x, sparse=False, what="second inference")


@cocotb.test()
async def watchdog_without_reset(dut):
    """The watchdog resets the accelerator itself: after the intact descriptor is written back,
    the next INFER (no RESET command) is bit-exact."""
    tr, int_model, x, packed = await prepare(dut, seed=22)
    st = await status(tr, WAIT_S)
    last = len(int_model.layers) - 1
    out = int_model.layers[last].out_features
    code, _ = await exchange(
        tr, descriptor_word_frame(st["n_pes"], last, "out_features", 0), WAIT_S)
    assert code == Resp.ACK
    code, body = await exchange(tr, infer_frame(x, False), WAIT_S)
    assert code == Resp.ERROR and body[0] == Err.ACCEL_TIMEOUT, body.hex()
    code, _ = await exchange(
        tr, descriptor_word_frame(st["n_pes"], last, "out_features", out), WAIT_S)
    assert code == Resp.ACK
    await expect_golden(tr, int_model, x, what="first inference after the watchdog")


@cocotb.test()
async def slow_model_watchdog(dut):
    """A model too slow for the watchdog (one long layer) is reset mid-layer; a small model
    uploaded after it is bit-exact at once."""
    tr = await start(dut, CLOCK_HZ, DIVISOR)
    st = await status(tr, WAIT_S)
    # (the input is taken at the pace of layer 0, which feeds the watchdog: the long layer is
    # the second one)
    big = random_int_model([32, 160, 64, 8], density=0.9, seed=23, n_indices=5)
    await upload(tr, pack(st, big))
    code, body = await exchange(tr, infer_frame(np.full(32, 255), False), WAIT_S)
    assert code == Resp.ERROR and body[0] == Err.ACCEL_TIMEOUT, \
        f"the slow model finished ({code:02x} {body.hex()}): make it slower"
    int_model, x = model_and_input(24, (24, 16, 8))
    await upload(tr, pack(st, int_model))
    await expect_golden(tr, int_model, x, what="first inference after the watchdog")


@cocotb.test()
async def accelerator_error_then_reset(dut):
    """A corrupted data memory (garbage Huffman streams) makes the accelerator fail; after the
    intact model is uploaded again and RESET, the first INFER is bit-exact."""
    import struct
    tr, int_model, x, packed = await prepare(dut, seed=25)
    rng = np.random.default_rng(25)
    image = packed.images[0]
    garbage = rng.integers(0, 1 << 16, size=len(image) - 8)
    frame = encode_frame(Cmd.LOAD, struct.pack("<BH", 0, 8)
                         + garbage.astype("<u2").tobytes()[:2 * 120])
    code, _ = await exchange(tr, frame, WAIT_S)
    assert code == Resp.ACK
    code, body = await exchange(tr, infer_frame(x, True), WAIT_S)
    assert code in (Resp.ERROR, Resp.RESULT), code
    await upload(tr, packed)
    code, _ = await exchange(tr, encode_frame(Cmd.RESET), WAIT_S)
    assert code == Resp.ACK
    await expect_golden(tr, int_model, x, what="first inference after RESET")


@cocotb.test()
async def reset_pin_mid_inference(dut):
    """The reset pin in the middle of an inference (all of the design resets, the memories keep
    their contents); after the re-upload (the protocol forgot the model) the first INFER is
    bit-exact."""
    tr, int_model, x, packed = await prepare(dut, seed=26, sizes=(64, 48, 8))
    for delay in (30, 120, 400):
        await tr.awrite(infer_frame(x, False))
        await tr.await_idle()
        await ClockCycles(dut.clk, delay)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 40 * DIVISOR)
        tr.flush_input()
        await upload(tr, packed)
        await expect_golden(tr, int_model, x, what=f"after the reset pin at +{delay} clocks")
