"""Board capacities the packer and the build check a model against.

A board entry says how many PEs it gets and what memory it has; ``boards/<name>.py`` holds the
Amaranth platform (pins) for boards we can build a bitstream for.
"""
from dataclasses import dataclass

__all__ = ["BoardSpec", "BOARDS", "get_board"]


@dataclass(frozen=True)
class BoardSpec:
    """Resources of one FPGA board.

    Attributes
    ----------
    name : str
        Name used on command lines (``--board``).
    device : str
        FPGA part.
    default_pes : int
        PE count used when none is given.
    pe_mem_words : int
        16-bit words of each of a PE's two private memories (data and pointers; one
        SB_SPRAM256KA = 16384 each).
    max_pes : int
        PEs the memory allows (each needs two single-port banks: data and pointers).
    ebr_bits : int
        Total block RAM bits (iCE40 EBR: 4096 bits each).
    ebr_blocks : int
    luts : int
    dsps : int
    clock_hz : int
        Board oscillator frequency.
    design_clock_hz : int
        Clock the bitstream runs at by default (from the PLL when it differs from
        ``clock_hz``; 0 = the oscillator).
    """
    name: str
    device: str
    default_pes: int
    pe_mem_words: int
    max_pes: int
    ebr_bits: int
    ebr_blocks: int
    luts: int
    dsps: int
    clock_hz: int
    design_clock_hz: int = 0


BOARDS = {
    "icebreaker": BoardSpec(
        # One PE is what fits the UP5K's 5280 logic cells (see docs/HARDWARE.md); a PE uses
        # two of the 4 SPRAM banks (data memory, pointer memory), so 2 PEs at most.
        name="icebreaker", device="iCE40UP5K-SG48", default_pes=1, pe_mem_words=16384,
        max_pes=2, ebr_bits=30 * 4096, ebr_blocks=30, luts=5280, dsps=8, clock_hz=12_000_000,
        # 24 MHz from the PLL: the project's timing target (nextpnr closes it with fmax about
        # 25-26 MHz), and 3 Mbaud divides it exactly (8 clocks per bit).
        design_clock_hz=24_000_000),
    # Simulation-only "board": no resource limits beyond the gateware parameters.
    "sim": BoardSpec(
        name="sim", device="verilator", default_pes=4, pe_mem_words=65536, max_pes=64,
        ebr_bits=1 << 30, ebr_blocks=1 << 20, luts=1 << 30, dsps=1 << 20, clock_hz=12_000_000),
}


def get_board(name):
    """Return the :class:`BoardSpec` called ``name`` or raise ``ValueError`` listing the choices."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(sorted(BOARDS))}") \
            from None
