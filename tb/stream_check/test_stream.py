"""cocotb checks of :mod:`tb.stream` on :class:`tb.stream_check.harness.StreamHarness`.

Parameters (:func:`tb.bench.params`): ``words`` (sent through the FIFO), ``expect`` (what the
sink must receive, in order), ``p_valid`` / ``p_ready`` / ``seed`` (stalls). The bench result
is the word count and the cycles taken.
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from tb.bench import check_sequence, params, save_result
from tb.stream import StreamError, StreamSink, StreamSource, random_pauses


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name in ("i_fifo", "i_wire"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    for name in ("o_fifo", "o_wire"):
        getattr(dut, f"{name}__ready").value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def fifo_words_in_order(dut):
    """Source and sink under random stalls: the sink gets ``expect`` exactly."""
    p = params()
    rng = random.Random(p["seed"])
    src = StreamSource(dut, "i_fifo", pause=random_pauses(p["p_valid"], rng))
    sink = StreamSink(dut, "o_fifo", pause=random_pauses(p["p_ready"], rng))
    await _reset(dut)
    src.send(p["words"])
    got = []
    for cycle in range(10 * len(p["words"]) + 100):
        src.drive()
        sink.drive()
        await ReadOnly()
        src.sample()
        word = sink.sample()
        if word is not None:
            got.append(word)
        await FallingEdge(dut.clk)
        if len(got) == len(p["expect"]) and src.idle:
            break
    check_sequence(got, p["expect"], "received words")
    save_result({"words": len(got), "cycles": cycle + 1})


async def _faulty(dut, script):
    """Play ``script`` (per cycle: ``(valid, payload)``) on ``o_wire`` with ``ready`` low; the
    :class:`StreamError` the sink raises, or ``None``."""
    sink = StreamSink(dut, "o_wire", pause=iter(lambda: True, None))
    for valid, payload in script:
        dut.i_wire__valid.value = valid
        dut.i_wire__payload.value = payload
        sink.drive()
        await ReadOnly()
        try:
            sink.sample()
        except StreamError as error:
            await FallingEdge(dut.clk)
            return error
        await FallingEdge(dut.clk)
    return None


@cocotb.test()
async def sink_checks_stream_rules(dut):
    """The sink accepts a word held until taken and flags a dropped ``valid`` and a payload
    changed before the transfer."""
    await _reset(dut)
    assert await _faulty(dut, [(1, 5), (1, 5), (1, 5)]) is None, "a held word was flagged"
    error = await _faulty(dut, [(0, 0), (1, 7), (0, 7)])
    assert error is not None and "valid dropped" in str(error), f"dropped valid: {error}"
    error = await _faulty(dut, [(0, 0), (1, 7), (1, 8)])
    assert error is not None and "payload changed" in str(error), f"changed payload: {error}"
    # a source keeps an offered word on the port until it transfers, whatever its pauses say
    src = StreamSource(dut, "i_wire", pause=iter([False, True, True, True]))
    src.send([0x1234])
    seen = []
    for _ in range(3):
        src.drive()
        await ReadOnly()
        seen.append((int(dut.o_wire__valid.value), int(dut.o_wire__payload.value)))
        src.sample()                        # o_wire.ready is low: no transfer
        await FallingEdge(dut.clk)
    assert seen == [(1, 0x1234)] * 3, f"source dropped its word: {seen}"
