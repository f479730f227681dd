"""The data a board file holds (Amaranth-free: ``sw`` reads it for capacity checks).

A board file ``boards/<name>.py`` defines one ``BOARD = Board(...)``; nothing else. Family-wide
facts (where the PE memories go, block RAM geometry) are in :mod:`boards.families`; the flow
tools of a family (synthesis, place and route, packer, report parsers) in ``hw/families/``.
"""
from dataclasses import asdict, dataclass, field

from boards.families import get_family_facts
from contract.config import AcceleratorConfig
from contract.protocol import FLASH_OFFSET

__all__ = ["Profile", "Clock", "UART", "Led", "SPIFlash", "Memory", "Programmer", "Board"]

#: The gateware's defaults (``contract.config``): a profile that sets nothing builds these.
_DEFAULT = AcceleratorConfig()


@dataclass(frozen=True)
class Profile:
    """The accelerator features a board builds with (``contract.config.AcceleratorConfig``
    fields of the same names and defaults; docs/ARCHITECTURE.md says what each costs and buys).

    Attributes
    ----------
    fifo_depth : int
        Broadcast FIFO depth per PE.
    input_lanes : int
        Input values per dense input word (1..16).
    requant_overlap : bool
        Requantize layer L while layer L + 1 accumulates (two accumulator banks).
    column_skip : bool
        The central unit's column skip table (used with up to 64 PEs).
    colskip_register : bool
        The skip table's read data is registered (+1 cycle a layer, for fmax).
    output_register : bool
        A two-entry FIFO behind each PE's output (+1 cycle a layer, for fmax).
    pointer_ports : int
        Read ports of each PE's pointer memory (1 or 2).
    huffman : bool
        The PEs decode Huffman-coded columns; ``False``: fixed-width entries (EIE's format,
        far smaller PEs, more memory).
    stream_words : int
        16-bit memory words the PE's decoder takes per cycle (1 or 2).
    segment_queue_depth : int
        Entries of each PE's column-segment queues (0: automatic).
    block_ram_banks : int
        Output banks of the central unit held in block RAM (the rest go to the tool: small
        ones to distributed RAM).
    """
    fifo_depth: int = _DEFAULT.fifo_depth
    input_lanes: int = _DEFAULT.input_lanes
    requant_overlap: bool = _DEFAULT.requant_overlap
    column_skip: bool = _DEFAULT.column_skip
    colskip_register: bool = _DEFAULT.colskip_register
    output_register: bool = _DEFAULT.output_register
    pointer_ports: int = _DEFAULT.pointer_ports
    huffman: bool = _DEFAULT.huffman
    stream_words: int = _DEFAULT.stream_words
    segment_queue_depth: int = _DEFAULT.segment_queue_depth
    block_ram_banks: int = _DEFAULT.block_ram_banks

    def config_fields(self):
        """``{AcceleratorConfig field: value}``."""
        return asdict(self)


@dataclass(frozen=True)
class Clock:
    """The board oscillator and the design clock.

    Attributes
    ----------
    pin : str
        Package pin of the oscillator.
    osc_hz : int
        Oscillator frequency.
    design_hz : int
        Clock the design runs at by default; a value other than ``osc_hz`` comes from the
        family's PLL (``gateware.pll``).
    attrs : dict
        I/O attributes of the pin (family-specific names, e.g. ``IO_STANDARD``, ``IO_TYPE``).
    resource : str
        Resource name of the clock (as amaranth-boards names it, e.g. ``clk12``).
    """
    pin: str
    osc_hz: int
    design_hz: int
    attrs: dict = field(default_factory=dict)
    resource: str = "clk"

    @property
    def pll(self):
        """The design clock comes from a PLL."""
        return self.design_hz != self.osc_hz


@dataclass(frozen=True)
class UART:
    """The host link: pins (FPGA side: ``rx`` is the FPGA's input) and bit rate (8N1)."""
    rx: str
    tx: str
    baud: int
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Led:
    """A status LED: ``role`` is ``"led_g"`` (model loaded) or ``"led_r"`` (last response was
    an error); ``invert`` for active-low LEDs."""
    role: str
    pin: str
    invert: bool = False
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SPIFlash:
    """The configuration flash on user pins (active-low pins named ``_n``).

    Attributes
    ----------
    cs_n, clk, copi, cipo, wp_n, hold_n : str
        Package pins; ``clk`` ``None``: the flash clock is the configuration clock pin, driven
        through the family's primitive for it (ECP5 ``USRMCLK``).
    load_model : bool
        ``hw.build`` includes the flash loader (``gateware.flash_loader``): at power-up the
        board loads the model image stored at ``model_offset`` itself.
    model_offset : int
        Byte address of the model image (``sw.flashimage``), above the bitstream: where
        ``hw.build --program`` and ``sw.host --program-flash`` write it.
    """
    cs_n: str
    clk: str
    copi: str
    cipo: str
    wp_n: str = None
    hold_n: str = None
    attrs: dict = field(default_factory=dict)
    load_model: bool = False
    model_offset: int = FLASH_OFFSET


@dataclass(frozen=True)
class Memory:
    """Memory and arithmetic resources in family-neutral units.

    Attributes
    ----------
    bram_blocks : int
        Block RAMs (iCE40 EBR, ECP5 DP16KD, Gowin BSRAM).
    bram_bits : int
        Bits of one block RAM (parity bits included: 4096, 18432, 18432).
    large_ram_blocks : int
        Large single-port RAMs (iCE40UP SPRAM), 0 if none.
    large_ram_words : int
        16-bit words of one large RAM.
    luts : int
        LUT4s (the logic the design may use).
    dsps : int
        Multipliers (SB_MAC16, MULT18X18D, MULT18).
    """
    bram_blocks: int
    bram_bits: int
    luts: int
    dsps: int
    large_ram_blocks: int = 0
    large_ram_words: int = 0


@dataclass(frozen=True)
class Programmer:
    """How ``--program`` loads a bitstream (``sw.loader``): openFPGALoader's board name
    (``-b``), whether it writes the configuration flash (``-f``) rather than the FPGA's SRAM,
    and whether it can write the model image into the SPI flash at an offset
    (``model_flash``; not through the OrangeCrab's DFU bootloader)."""
    board: str
    flash: bool = False
    model_flash: bool = True


@dataclass(frozen=True)
class Board:
    """One FPGA board.

    Attributes
    ----------
    name : str
        Name on command lines (``--board``).
    family : str
        ``"ice40"``, ``"ecp5"``, ``"gowin"`` (:mod:`boards.families`) or ``"sim"``.
    device : str
        FPGA part as the family's tools name it (``iCE40UP5K``, ``LFE5U-85F``,
        ``GW2A-LV18PG256C8/I7``).
    package : str
        Package (``SG48``, ``BG381``; Gowin parts carry it in ``device``).
    speed : str
        Speed grade (ECP5; empty otherwise).
    chip : str
        Gowin device family (``GW2A-18C``) as nextpnr's ``family`` option and ``gowin_pack -d``
        name it; empty otherwise.
    clock, uart, leds, flash, memory, profile, programmer :
        See :class:`Clock`, :class:`UART`, :class:`Led`, :class:`SPIFlash` (``None``: the
        model is not loaded from flash; the ECP5 boards' flash clock needs the USRMCLK
        primitive), :class:`Memory`, :class:`Profile`, :class:`Programmer`.
    default_pes : int
        PE count when neither ``--pes`` nor the build's sizing chooses one.
    id : int
        Board id reported in STATUS (docs/PROTOCOL.md), unique per board file.
    pnr_seed : int or None
        nextpnr's placement seed for this board's builds (``hw.build --seed`` overrides it);
        ``None``: nextpnr's default. fmax moves by a few per cent with the placement alone, so
        a board whose design clock sits near its fmax names the seed its documented build used.
    """
    name: str
    family: str
    device: str
    clock: Clock
    uart: UART
    memory: Memory
    default_pes: int
    id: int
    package: str = ""
    speed: str = ""
    chip: str = ""
    leds: tuple = ()
    flash: SPIFlash = None
    profile: Profile = Profile()
    programmer: Programmer = None
    description: str = ""
    pnr_seed: int = None

    @property
    def facts(self):
        """The family's :class:`boards.families.FamilyFacts`."""
        return get_family_facts(self.family)

    # The capacities the packer checks a model against (sw.pack).
    @property
    def pe_mem_words(self):
        """16-bit words one PE memory (data or pointers) may have."""
        if self.facts.pe_memory == "large_ram":
            return self.memory.large_ram_words
        return self.facts.max_pe_mem_words

    @property
    def max_pes(self):
        """PEs the board's memory allows at all: two large RAMs each (iCE40UP), or at least
        the family's minimum block RAMs each."""
        if self.facts.pe_memory == "large_ram":
            return self.memory.large_ram_blocks // 2
        return min(64, self.memory.bram_blocks // self.facts.min_brams_per_pe)

    @property
    def ebr_blocks(self):
        return self.memory.bram_blocks

    @property
    def ebr_bits(self):
        return self.memory.bram_blocks * self.memory.bram_bits

    @property
    def luts(self):
        return self.memory.luts

    @property
    def dsps(self):
        return self.memory.dsps

    @property
    def clock_hz(self):
        return self.clock.osc_hz

    @property
    def design_clock_hz(self):
        return self.clock.design_hz
