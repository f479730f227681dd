"""Family-wide facts the memory plan and the packer need (Amaranth-free).

The flow tools of each family (yosys and nextpnr commands, packer, report parsers) are in
``hw/families/``; the primitives (PLL, SPRAM) in ``gateware/pll.py`` and ``gateware/memories.py``.
"""
from dataclasses import dataclass

__all__ = ["FamilyFacts", "FAMILIES", "get_family_facts"]


@dataclass(frozen=True)
class FamilyFacts:
    """What a family offers the accelerator.

    Attributes
    ----------
    name : str
    memory_kind : str
        ``AcceleratorConfig.memory``: ``"ice40"`` (PE memories in SB_SPRAM256KA) or ``"lib"``
        (``amaranth.lib.memory``, inferred as block RAM).
    pe_memory : str
        Where a PE's data and pointer memories go: ``"large_ram"`` or ``"block_ram"``.
    max_pe_mem_words : int
        Largest PE memory (16-bit words) the build makes.
    min_brams_per_pe : int
        Fewest block RAMs one PE can use (data, pointers, symbol table, accumulators).
    bram_words16 : int
        16-bit words of one block RAM (the memory plan's unit).
    bram_true_dual_port : bool
        A block RAM has two read/write ports: a memory with one write and two read ports
        needs no duplicate.
    """
    name: str
    memory_kind: str
    pe_memory: str
    max_pe_mem_words: int
    min_brams_per_pe: int
    bram_words16: int
    bram_true_dual_port: bool


FAMILIES = {
    "ice40": FamilyFacts("ice40", memory_kind="ice40", pe_memory="large_ram",
                         max_pe_mem_words=16384, min_brams_per_pe=2, bram_words16=256,
                         bram_true_dual_port=False),
    "ecp5": FamilyFacts("ecp5", memory_kind="lib", pe_memory="block_ram",
                        max_pe_mem_words=16384, min_brams_per_pe=4, bram_words16=1024,
                        bram_true_dual_port=True),
    "gowin": FamilyFacts("gowin", memory_kind="lib", pe_memory="block_ram",
                         max_pe_mem_words=16384, min_brams_per_pe=4, bram_words16=1024,
                         bram_true_dual_port=True),
    "sim": FamilyFacts("sim", memory_kind="lib", pe_memory="large_ram",
                       max_pe_mem_words=65536, min_brams_per_pe=1, bram_words16=1 << 20,
                       bram_true_dual_port=True),
}


def get_family_facts(name):
    """The :class:`FamilyFacts` of family ``name`` (``ValueError`` listing the families)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown FPGA family {name!r}; known: {', '.join(sorted(FAMILIES))}") \
            from None
