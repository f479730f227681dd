"""Memory building blocks of the processing element.

:class:`PEMemory` is a PE's private 16-bit memory (the data memory: header, Huffman streams,
biases; the pointer memory: column pointers; docs/ARCHITECTURE.md section 4) with one read port, or
two (the pointer memory with ``config.pointer_ports == 2``, the data memory with
``config.stream_words == 2``). With ``config.memory == "lib"`` it is an
``amaranth.lib.memory.Memory`` (simulation, any FPGA); with ``"ice40"`` it is built from
``SB_SPRAM256KA`` instances, one per 16384 words (a second read port is a duplicate set of them,
written in parallel). Both behave the same at the ports: a read issued with ``re`` delivers
``rdata`` in the next cycle and ``rdata`` then holds its value until the next read (the SPRAM's
``DATAOUT`` does the same while it is not selected for reading).

:func:`table_memory` makes the small tables (codebook, Huffman tables, accumulators), which yosys
maps to iCE40 EBR.
"""
from amaranth import Module, Signal, Instance, ClockSignal, Const, Mux
from amaranth.lib import wiring, memory
from amaranth.lib.wiring import In, Out

__all__ = ["PEMemory", "table_memory", "SPRAM_WORDS"]

#: Words of one SB_SPRAM256KA (16 bit wide).
SPRAM_WORDS = 16384


def table_memory(shape, depth, init=None):
    """A ``lib.memory.Memory`` for a small table (inferred as EBR by yosys on iCE40).

    Parameters
    ----------
    shape : ShapeLike
        Shape of one entry.
    depth : int
        Number of entries (rounded up to at least 2).
    init : iterable of int, optional
        Initial contents (zero otherwise; iCE40 EBR is initialised by the bitstream).
    """
    return memory.Memory(shape=shape, depth=max(2, depth), init=list(init or []))


class PEMemory(wiring.Component):
    """16-bit memory with one write port and one or two read ports, one-cycle read latency.

    Parameters
    ----------
    depth : int
        Number of 16-bit words (a power of two; ``"ice40"`` needs a multiple of 16384 or less
        than 16384, in which case one SPRAM is used).
    kind : str
        ``"lib"`` or ``"ice40"`` (see the module docstring).
    read_ports : int
        1 or 2. The second read port (``addr2``/``re2``/``rdata2``) has the timing of the
        first. ``"lib"``: a second ``read_port()`` of the same ``Memory``. ``"ice40"``: a
        duplicate SPRAM set that every write also goes to (the SPRAM has a single port), so it
        costs ``max(1, depth // 16384)`` more SB_SPRAM256KA.

    Attributes
    ----------
    addr : In(log2(depth))
        Word address of a read or write.
    re : In(1)
        Read strobe: ``rdata`` shows ``mem[addr]`` from the next cycle on.
    we : In(1)
        Write strobe: ``mem[addr] = wdata`` at the clock edge. ``re`` and ``we`` must not be
        asserted together (the write wins and ``rdata`` holds); the same holds for ``re2``.
    wdata : In(16)
        Data to write.
    rdata : Out(16)
        Data of the last read, held until the next read.
    addr2 : In(log2(depth))
        (``read_ports == 2`` only) word address of a read on the second port.
    re2 : In(1)
        (``read_ports == 2`` only) read strobe of the second port: ``rdata2`` shows
        ``mem[addr2]`` from the next cycle on.
    rdata2 : Out(16)
        (``read_ports == 2`` only) data of the second port's last read, held until its next
        read.
    """

    def __init__(self, depth, kind="lib", read_ports=1):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"PE memory depth must be a power of two >= 2, not {depth}")
        if kind not in ("lib", "ice40"):
            raise ValueError(f"memory kind must be 'lib' or 'ice40', not {kind!r}")
        if isinstance(read_ports, bool) or read_ports not in (1, 2):
            raise ValueError(f"read_ports must be 1 or 2, not {read_ports!r}")
        self.depth = depth
        self.kind = kind
        self.read_ports = read_ports
        self.addr_bits = (depth - 1).bit_length()
        ports = {
            "addr": In(self.addr_bits),
            "re": In(1),
            "we": In(1),
            "wdata": In(16),
            "rdata": Out(16),
        }
        if read_ports == 2:
            ports.update({"addr2": In(self.addr_bits), "re2": In(1), "rdata2": Out(16)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        if self.kind == "lib":
            m.submodules.mem = mem = memory.Memory(shape=16, depth=self.depth, init=[])
            rd = mem.read_port()
            wr = mem.write_port()
            m.d.comb += [
                rd.addr.eq(self.addr),
                rd.en.eq(self.re & ~self.we),
                wr.addr.eq(self.addr),
                wr.data.eq(self.wdata),
                wr.en.eq(self.we),
                self.rdata.eq(rd.data),
            ]
            if self.read_ports == 2:
                # Transparent for the write: the write and the first read share one port of a
                # true-dual-port block RAM and the second read takes the other. A second read
                # port that must return the *old* word when a write hits its address (Amaranth's
                # default) cannot share a block RAM with that write, so yosys gave it a
                # duplicate (4 DP16KD instead of 2 for a 2048-word memory on the ECP5). Reads
                # and writes never coincide here (``re2`` is gated by ``we``), so the read data
                # is the same either way.
                rd2 = mem.read_port(transparent_for=(wr,))
                m.d.comb += [
                    rd2.addr.eq(self.addr2),
                    rd2.en.eq(self.re2 & ~self.we),
                    self.rdata2.eq(rd2.data),
                ]
            return m

        m.d.comb += self.rdata.eq(self._spram_set(m, "", self.addr, self.re))
        if self.read_ports == 2:
            # the duplicate: written with the first set, read at addr2 otherwise
            addr2 = Signal(self.addr_bits, name="dup_addr")
            m.d.comb += addr2.eq(Mux(self.we, self.addr, self.addr2))
            m.d.comb += self.rdata2.eq(self._spram_set(m, "dup_", addr2, self.re2))
        return m

    def _spram_set(self, m, prefix, address, re):
        """SB_SPRAM256KA banks holding the whole memory, addressed by ``address``, written
        with ``we``/``wdata``, read with ``re``; returns their read data (a value)."""
        banks = max(1, self.depth // SPRAM_WORDS)
        outs = []
        for b in range(banks):
            sel = Signal(name=f"{prefix}sel{b}")
            if banks == 1:
                m.d.comb += sel.eq(1)
            else:
                m.d.comb += sel.eq(address[14:] == b)
            dout = Signal(16, name=f"{prefix}dout{b}")
            addr = Signal(14, name=f"{prefix}addr{b}")
            m.d.comb += addr.eq(address[:min(14, self.addr_bits)])
            m.submodules[f"{prefix}spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr,
                i_DATAIN=self.wdata,
                i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.we,
                i_CHIPSELECT=sel & (re | self.we),
                i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0, 1),
                i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1),   # active low: 1 keeps the bank powered
                o_DATAOUT=dout,
            )
            outs.append(dout)
        if banks == 1:
            return outs[0]
        last_bank = Signal(range(banks), name=f"{prefix}last_bank")
        with m.If(re & ~self.we):
            m.d.sync += last_bank.eq(address[14:])
        out = outs[0]
        for b in range(1, banks):
            out = Mux(last_bank == b, outs[b], out)
        return out
