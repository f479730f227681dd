"""Behavioural SPI NOR flash for cocotb benches: mode 0, READ (0x03, 24-bit address) and release
from deep power-down (0xAB); it starts powered down, as a flash can be after configuration."""
import cocotb
from cocotb.triggers import Edge, FallingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["SpiFlash"]


class SpiFlash:
    """A flash of ``size`` bytes (erased: 0xFF) holding ``contents`` at ``offset`` on the pins
    ``cs_n``, ``sclk``, ``copi`` (inputs of the flash) and ``cipo`` (driven).

    While powered down, or within ``t_res_ns`` of the release, the flash ignores READ (its data
    output stays high). ``reads`` counts the READ commands served.
    """

    def __init__(self, cs_n, sclk, copi, cipo, contents=b"", offset=0, size=1 << 24,
                 t_res_ns=3000):
        self.cs_n, self.sclk, self.copi, self.cipo = cs_n, sclk, copi, cipo
        self.memory = bytearray(b"\xff" * size)
        self.memory[offset:offset + len(contents)] = contents
        self.t_res_ns = t_res_ns
        self.awake_at = None            # sim time (ns) from which commands are served
        self.reads = 0
        self.ignored = 0
        cipo.value = 1
        self._task = cocotb.start_soon(self._run())

    def close(self):
        self._task.cancel()

    async def _transaction(self):
        """One chip-select period (cs_n is low)."""
        bits = 0
        n = 0
        addr = None
        serving = False
        byte = 0
        bit = 8
        while True:
            await Edge(self.sclk)
            if int(self.sclk.value):                     # rising: sample copi
                if not serving:
                    bits = bits << 1 | int(self.copi.value)
                    n += 1
                    if n == 8 and bits == 0xAB:
                        self.awake_at = get_sim_time("ns") + self.t_res_ns
                    if n == 32 and bits >> 24 == 0x03:
                        now = get_sim_time("ns")
                        if self.awake_at is None or now < self.awake_at:
                            self.ignored += 1
                        else:
                            addr = bits & 0xFFFFFF
                            serving = True
                            self.reads += 1
            elif serving:                                 # falling: shift the next bit out
                if bit == 8:
                    byte = self.memory[addr % len(self.memory)]
                    addr += 1
                    bit = 0
                self.cipo.value = byte >> (7 - bit) & 1
                bit += 1

    async def _run(self):
        while True:
            await FallingEdge(self.cs_n)
            task = cocotb.start_soon(self._transaction())
            await Edge(self.cs_n)
            task.cancel()
            self.cipo.value = 1
            await Timer(1, unit="ns")
