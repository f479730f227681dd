"""Flow tools per FPGA family: synthesis and place-and-route commands, bitstream packer, report
parsers (utilisation in family-neutral terms, fmax) and the programmer's command line.

Each family module defines one :class:`Family` instance ``FAMILY``; :func:`get_family` finds it.
The family-neutral resource keys are ``logic`` (LUT4s; iCE40: logic cells), ``ff``, ``bram``,
``large_ram``, ``dsp``, ``pll`` and ``io``.
"""
import importlib
import os
import re
import shutil
from dataclasses import dataclass, field

from sw.cli import ToolError
from sw.loader import LoaderError, bitstream_command

__all__ = ["Family", "FlowToolError", "get_family", "FAMILY_NAMES", "parse_nextpnr_log",
           "parse_yosys_log", "stat_cell", "NEUTRAL_KEYS"]

#: Family modules of this package.
FAMILY_NAMES = ("ice40", "ecp5", "gowin")
#: Family-neutral resource keys, in report order.
NEUTRAL_KEYS = ("logic", "ff", "bram", "large_ram", "dsp", "pll", "io")


class FlowToolError(ToolError):
    """A tool of the flow is missing (message says how to install it)."""


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)
_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz\s+\((PASS|FAIL)")
_CELL_RE = re.compile(r"^\s+(\d+)\s+([A-Z$][\w$]*)\s*$|^\s+([A-Z$][\w$]*)\s+(\d+)\s*$")
#: Entries of a yosys ``stat`` table that are no hardware: ``flatten`` leaves one ``$scopeinfo``
#: record per former module instance.
_NOT_CELLS = frozenset({"$scopeinfo"})


def stat_cell(line):
    """``(cell type, count)`` of one line of a yosys ``stat`` table (the old ``SB_LUT4   123``
    or the new ``123   SB_LUT4`` layout); ``None`` for any other line and for records that are
    no hardware (``$scopeinfo``)."""
    m = _CELL_RE.match(line)
    if not m:
        return None
    count, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
    return None if name in _NOT_CELLS else (name, int(count))


def parse_nextpnr_log(text):
    """Utilisation ``{cell: (used, available)}`` and ``{clock: fmax MHz}`` from a nextpnr log
    (any family).

    The last report in the log wins (nextpnr prints utilisation once, fmax after placement and
    after routing).
    """
    util = {}
    for cell, used, avail, _ in _UTIL_RE.findall(text):
        util[cell] = (int(used), int(avail))
    fmax = {}
    for clock, mhz, _ in _FMAX_RE.findall(text):
        fmax[clock] = float(mhz)
    return util, fmax


def parse_yosys_log(text):
    """Cell counts ``{cell type: count}`` of the last ``stat`` report in a yosys log (any
    family: cell types start with a capital letter or ``$``).

    Understands both the old (``SB_LUT4   123``) and the new (``123   SB_LUT4``) layouts; only
    the top module's table is kept.
    """
    start = text.rfind("Printing statistics")
    if start < 0:
        return {}
    block = text[start:]
    end = block.find("=== design hierarchy ===")
    if end > 0:
        block = block[:end]
    cells = {}
    for line in block.splitlines():
        cell = stat_cell(line)
        if cell:
            cells[cell[0]] = cells.get(cell[0], 0) + cell[1]
    return cells


@dataclass(frozen=True)
class Family:
    """The flow of one FPGA family.

    Attributes
    ----------
    name : str
    tools : tuple
        ``(ENV_VAR, system tool, YoWASP / pip tool, pip package)`` per tool the build runs; the
        environment variable is the one Amaranth's build script reads.
    synth_command : str
        yosys synthesis command (``hw.area`` and the family's synthesis check).
    synth_opts, nextpnr_opts : str
        Options of the bitstream build's ``synth_*`` and nextpnr runs.
    bitstream : str
        Suffix of the bitstream file.
    nextpnr_cells : dict
        nextpnr utilisation cell -> family-neutral key (``"+key"``: counts as used ``key``
        without adding capacity).
    logic_label : str
        What ``logic`` counts on this family (report text).
    yosys_cells : dict
        Family-neutral key -> ``(cell name prefixes, weight)`` pairs for yosys statistics (a
        carry cell that spans two LUTs weighs 2).
    core_args : dict
        Options of the UART core (``gateware.top.UARTCore``) on this family.
    """
    name: str
    tools: tuple
    synth_command: str
    synth_opts: str
    nextpnr_opts: str
    bitstream: str
    nextpnr_cells: dict
    logic_label: str
    yosys_cells: dict = field(default_factory=dict)
    core_args: dict = field(default_factory=dict)

    # -- Amaranth platform (overridden per family) ---------------------------------------------
    def platform_base(self):
        """The Amaranth vendor platform class the board platform derives from."""
        raise NotImplementedError

    def platform_fields(self, board):
        """Class attributes of the board platform (device, package, ...)."""
        raise NotImplementedError

    def platform_overrides(self, board):
        """Extra class attributes (e.g. command templates) of the board platform."""
        return {}

    def build_options(self, board, clock_hz):
        """Keyword arguments of ``platform.build`` (synthesis and nextpnr options)."""
        return {"synth_opts": self.synth_opts, "nextpnr_opts": self.nextpnr_opts}

    # -- tools ---------------------------------------------------------------------------------
    def select_tools(self, env=None):
        """Point the Amaranth build at usable tools; returns ``{ENV_VAR: tool}``.

        A tool named by its environment variable is kept; otherwise the system tool if it is on
        ``PATH``, else the pip (YoWASP) one.

        Raises
        ------
        FlowToolError
            if a tool is available neither way.
        """
        env = os.environ if env is None else env
        chosen = {}
        for var, system, wasm, package in self.tools:
            tool = env.get(var)
            if tool:
                if not shutil.which(tool):
                    raise FlowToolError(f"{var}={tool!r} is not an executable on PATH")
            elif shutil.which(system):
                tool = system
            elif shutil.which(wasm):
                tool = wasm
            else:
                raise FlowToolError(f"neither {system} nor {wasm} found: install the {self.name} "
                                f"tool chain (pip install {package})")
            env[var] = tool
            chosen[var] = tool
        return chosen

    # -- reports -------------------------------------------------------------------------------
    def neutral_utilisation(self, util):
        """``{neutral key: (used, available)}`` from nextpnr's ``{cell: (used, available)}``."""
        out = {}
        for cell, (used, avail) in util.items():
            key = self.nextpnr_cells.get(cell)
            if key:
                # "+key": the cell takes a place of ``key`` whose capacity another cell counts
                # (a Gowin ALU sits in a LUT4's place)
                extra = key.startswith("+")
                key = key.lstrip("+")
                u, a = out.get(key, (0, 0))
                out[key] = (u + used, a + (0 if extra else avail))
        return {k: out[k] for k in NEUTRAL_KEYS if k in out}

    def neutral_cells(self, cells):
        """``{neutral key: count}`` from yosys cell counts (``logic`` = LUT4 equivalents)."""
        out = {}
        for key, rules in self.yosys_cells.items():
            total = 0
            for prefixes, weight in rules:
                total += weight * sum(n for c, n in cells.items() if c.startswith(prefixes))
            out[key] = total
        return out

    # -- programming ---------------------------------------------------------------------------
    def program_command(self, board, bitstream):
        """openFPGALoader's command line loading ``bitstream`` onto ``board``
        (:func:`sw.loader.bitstream_command`)."""
        try:
            return bitstream_command(board, bitstream)
        except LoaderError as exc:
            raise FlowToolError(str(exc)) from None


def get_family(name):
    """The :class:`Family` of ``name`` (``ValueError`` listing the families)."""
    if name not in FAMILY_NAMES:
        raise ValueError(f"no bitstream flow for FPGA family {name!r}; families: "
                         f"{', '.join(FAMILY_NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").FAMILY
