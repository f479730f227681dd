"""gateware.memories.PEMemory: one or two read ports ("lib" in Amaranth's simulator, "ice40" SPRAMs)."""
import gc
import random
import warnings

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from gateware.memories import PEMemory


def test_two_read_ports_lib():
    """Both ports read any word in the cycle after ``re``/``re2`` (also the same word, and
    both in the same cycle), hold it until their next read, and a write wins over a read on
    either port (the port's data holds)."""
    dut = PEMemory(64, "lib", read_ports=2)
    rng = random.Random(3)
    words = [rng.randrange(1 << 16) for _ in range(64)]
    bad = []

    async def bench(ctx):
        for a, w in enumerate(words):
            ctx.set(dut.addr, a)
            ctx.set(dut.wdata, w)
            ctx.set(dut.we, 1)
            await ctx.tick()
        ctx.set(dut.we, 0)
        for _ in range(100):
            a1, a2 = rng.randrange(64), rng.randrange(64)
            if rng.random() < 0.2:
                a2 = a1
            r1, r2 = rng.random() < 0.7, rng.random() < 0.7
            before = (ctx.get(dut.rdata), ctx.get(dut.rdata2))
            ctx.set(dut.addr, a1)
            ctx.set(dut.addr2, a2)
            ctx.set(dut.re, r1)
            ctx.set(dut.re2, r2)
            await ctx.tick()
            ctx.set(dut.re, 0)
            ctx.set(dut.re2, 0)
            got = (ctx.get(dut.rdata), ctx.get(dut.rdata2))
            want = (words[a1] if r1 else before[0], words[a2] if r2 else before[1])
            if got != want:
                bad.append((a1, a2, r1, r2, got, want))
        # a write with both read strobes up: the write wins, both outputs hold
        before = (ctx.get(dut.rdata), ctx.get(dut.rdata2))
        ctx.set(dut.addr, 5)
        ctx.set(dut.addr2, 6)
        ctx.set(dut.wdata, words[5] ^ 0xFFFF)
        ctx.set(dut.we, 1)
        ctx.set(dut.re, 1)
        ctx.set(dut.re2, 1)
        await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.re, 0)
        ctx.set(dut.re2, 0)
        if (ctx.get(dut.rdata), ctx.get(dut.rdata2)) != before:
            bad.append("write did not win")
        ctx.set(dut.addr2, 5)
        ctx.set(dut.re2, 1)
        await ctx.tick()
        if ctx.get(dut.rdata2) != words[5] ^ 0xFFFF:
            bad.append("second port does not see the write")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]


@pytest.mark.parametrize("depth, ports, sprams", [(16384, 1, 1), (16384, 2, 2), (4096, 2, 2),
                                                  (32768, 1, 2), (32768, 2, 4)])
def test_ice40_second_port_duplicates_the_sprams(depth, ports, sprams):
    text = rtlil.convert(PEMemory(depth, "ice40", read_ports=ports))
    assert text.count("cell \\SB_SPRAM256KA ") == sprams
    assert ("rdata2" in text) == (ports == 2)


@pytest.mark.parametrize("ports", [0, 3, True])
def test_read_ports_validated(ports):
    with warnings.catch_warnings():
        # the half-constructed component is never elaborated (UnusedElaboratable when freed)
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="read_ports") as info:
            PEMemory(64, "lib", read_ports=ports)
        del info
        gc.collect()
