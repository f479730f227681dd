"""Memory building blocks of the processing element.

:class:`PEMemory` is the PE's private single-port 16-bit memory (header, pointers, Huffman
streams, biases; docs/ARCHITECTURE.md section 4). With ``config.memory == "lib"`` it is an
``amaranth.lib.memory.Memory`` (simulation, any FPGA); with ``"ice40"`` it is built from
``SB_SPRAM256KA`` instances, one per 16384 words. Both behave the same at the ports: a read
issued with ``re`` delivers ``rdata`` in the next cycle and ``rdata`` then holds its value until
the next read (the SPRAM's ``DATAOUT`` does the same while it is not selected for reading).

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
    """Single-port 16-bit memory with one-cycle read latency.

    Parameters
    ----------
    depth : int
        Number of 16-bit words (a power of two; ``"ice40"`` needs a multiple of 16384 or less
        than 16384, in which case one SPRAM is used).
    kind : str
        ``"lib"`` or ``"ice40"`` (see the module docstring).

    Attributes
    ----------
    addr : In(log2(depth))
        Word address of a read or write.
    re : In(1)
        Read strobe: ``rdata`` shows ``mem[addr]`` from the next cycle on.
    we : In(1)
        Write strobe: ``mem[addr] = wdata`` at the clock edge. ``re`` and ``we`` must not be
        asserted together (the write wins and ``rdata`` holds).
    wdata : In(16)
        Data to write.
    rdata : Out(16)
        Data of the last read, held until the next read.
    """

    def __init__(self, depth, kind="lib"):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"PE memory depth must be a power of two >= 2, not {depth}")
        if kind not in ("lib", "ice40"):
            raise ValueError(f"memory kind must be 'lib' or 'ice40', not {kind!r}")
        self.depth = depth
        self.kind = kind
        self.addr_bits = (depth - 1).bit_length()
        super().__init__({
            "addr": In(self.addr_bits),
            "re": In(1),
            "we": In(1),
            "wdata": In(16),
            "rdata": Out(16),
        })

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
            return m

        banks = max(1, self.depth // SPRAM_WORDS)
        outs = []
        for b in range(banks):
            sel = Signal(name=f"sel{b}")
            if banks == 1:
                m.d.comb += sel.eq(1)
            else:
                m.d.comb += sel.eq(self.addr[14:] == b)
            dout = Signal(16, name=f"dout{b}")
            addr = Signal(14, name=f"addr{b}")
            m.d.comb += addr.eq(self.addr[:min(14, self.addr_bits)])
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr,
                i_DATAIN=self.wdata,
                i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.we,
                i_CHIPSELECT=sel & (self.re | self.we),
                i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0, 1),
                i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1),   # active low: 1 keeps the bank powered
                o_DATAOUT=dout,
            )
            outs.append(dout)
        if banks == 1:
            m.d.comb += self.rdata.eq(outs[0])
        else:
            last_bank = Signal(range(banks))
            with m.If(self.re & ~self.we):
                m.d.sync += last_bank.eq(self.addr[14:])
            out = outs[0]
            for b in range(1, banks):
                out = Mux(last_bank == b, outs[b], out)
            m.d.comb += self.rdata.eq(out)
        return m
