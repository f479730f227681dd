"""cocotb tests of gateware.uart on the UARTHarness (dividers from env UART_DIVISORS)."""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, ReadOnly, Timer

from tb.bench import params

CLK_NS = 10
DIVISORS = params().get("divisors", [4])


def port(dut, d, name):
    return getattr(dut, f"d{d}_{name}")


_TASKS = []


async def setup(dut):
    while _TASKS:  # tasks of a previous (possibly failed) test must not drive the ports
        _TASKS.pop().cancel()
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    for d in DIVISORS:
        port(dut, d, "i_data__valid").value = 0
        port(dut, d, "o_data__ready").value = 1
        port(dut, d, "i_rx").value = 1
        port(dut, d, "i_ext").value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


class Collector:
    """Counts RX bytes, framing errors and overruns of divider ``d`` every clock."""

    def __init__(self, dut, d):
        self.dut, self.d = dut, d
        self.data, self.frame_errors, self.overruns = [], 0, 0
        self.ready_prob = 1.0
        self.task = cocotb.start_soon(self.run())
        _TASKS.append(self.task)

    async def run(self):
        dut, d = self.dut, self.d
        rng = random.Random(self.d)
        while True:
            ready = rng.random() < self.ready_prob
            port(dut, d, "o_data__ready").value = int(ready)
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(port(dut, d, "o_data__valid").value) and ready:
                self.data.append(int(port(dut, d, "o_data__payload").value))
            self.frame_errors += int(port(dut, d, "o_frame_error").value)
            self.overruns += int(port(dut, d, "o_overrun").value)
            await Timer(1, unit="ns")


async def send_stream(dut, d, data, rng):
    """Drive the TX stream with random idle gaps between bytes."""
    valid, payload, ready = (port(dut, d, n) for n in
                             ("i_data__valid", "i_data__payload", "i_data__ready"))
    for byte in data:
        gap = rng.choice([0, 0, 0, 1, 3, rng.randrange(0, 6 * d)])
        valid.value = 0
        if gap:
            await ClockCycles(dut.clk, gap)
        valid.value = 1
        payload.value = byte
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(ready.value):
                break
        await Timer(1, unit="ns")
    valid.value = 0


async def drive_line(dut, d, bits, bit_ps):
    line = port(dut, d, "i_rx")
    for b in bits:
        line.value = b
        await Timer(bit_ps, unit="ps")


def frame_bits(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


@cocotb.test()
async def loopback_random_gaps(dut):
    """TX -> RX at every divider, random bytes with random idle gaps, all dividers at once."""
    await setup(dut)
    rng = random.Random(1)
    jobs = []
    expected = {}
    collectors = {d: Collector(dut, d) for d in DIVISORS}
    for d in DIVISORS:
        data = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(60)]
        expected[d] = data
        jobs.append(cocotb.start_soon(send_stream(dut, d, data, random.Random(d))))
    for job in jobs:
        await job
    await ClockCycles(dut.clk, 12 * max(DIVISORS))
    for d in DIVISORS:
        c = collectors[d]
        assert c.data == expected[d], f"divisor {d}: received {c.data[:8]}... != sent"
        assert c.frame_errors == 0 and c.overruns == 0, f"divisor {d}: errors"


@cocotb.test()
async def receiver_tolerates_baud_error(dut):
    """An external transmitter off by +-2 % (the start-edge uncertainty at 4 clocks per bit is
    already a quarter bit), bytes back to back or with idle gaps of whole bit times."""
    await setup(dut)
    collectors = {d: Collector(dut, d) for d in DIVISORS}
    rng = random.Random(2)
    for d in DIVISORS:
        port(dut, d, "i_ext").value = 1
    for skew in (-0.02, 0.02):
        jobs, expected = [], {}
        for d in DIVISORS:
            collectors[d].data.clear()
            data = [rng.randrange(256) for _ in range(40)]
            expected[d] = data
            bit_ps = round(d * CLK_NS * 1000 * (1 + skew))
            bits = []
            for byte in data:
                bits += frame_bits(byte) + [1] * rng.choice([0, 0, 1, 2])
            jobs.append(cocotb.start_soon(drive_line(dut, d, bits, bit_ps)))
        for job in jobs:
            await job
        await ClockCycles(dut.clk, 12 * max(DIVISORS))
        for d in DIVISORS:
            assert collectors[d].data == expected[d], f"divisor {d} skew {skew}: mismatch"
            assert collectors[d].frame_errors == 0


@cocotb.test()
async def framing_error_and_glitch(dut):
    """A low stop bit raises o_frame_error and drops the byte; a short glitch is no start bit;
    the receiver then takes the next good byte."""
    await setup(dut)
    collectors = {d: Collector(dut, d) for d in DIVISORS}
    for d in DIVISORS:
        port(dut, d, "i_ext").value = 1
        bit_ps = d * CLK_NS * 1000
        await drive_line(dut, d, frame_bits(0x3C, stop=0) + [0, 0, 1, 1, 1], bit_ps)
        # Glitch: low for one clock only.
        await drive_line(dut, d, [0, 1], CLK_NS * 1000)
        await ClockCycles(dut.clk, 3 * d)
        await drive_line(dut, d, frame_bits(0xC3) + [1], bit_ps)
        await ClockCycles(dut.clk, 4 * d)
        c = collectors[d]
        assert c.frame_errors == 1, f"divisor {d}: {c.frame_errors} framing errors"
        assert c.data == [0xC3], f"divisor {d}: received {c.data}"


@cocotb.test()
async def overrun_flagged(dut):
    """If the consumer never takes bytes, the second byte is lost and o_overrun pulses."""
    await setup(dut)
    collectors = {d: Collector(dut, d) for d in DIVISORS}
    for d in DIVISORS:
        collectors[d].ready_prob = 0.0
        port(dut, d, "i_ext").value = 1
        bits = frame_bits(0x11) + frame_bits(0x22) + [1]
        await drive_line(dut, d, bits, d * CLK_NS * 1000)
        await ClockCycles(dut.clk, 2 * d)
        assert collectors[d].overruns == 1, f"divisor {d}: {collectors[d].overruns} overruns"
        assert int(port(dut, d, "o_data__payload").value) == 0x11
