"""Per-module area of the gateware on a board's FPGA family (yosys ``synth_ice40 -dsp``,
``synth_ecp5``, ``synth_gowin``; hierarchy kept).

Command line::

    python -m hw.area [--board NAME] [--pes N] [--part accelerator|pe|decoder|central|core]
                      [--flat] [--model FILE] [--lanes K] [--pointer-ports P] [--stream-words S]

Prints, for every module instance of the chosen part, its LUT4 (iCE40: ``SB_LUT4``; ECP5: LUT4
with two per carry cell), flip-flop, carry, block RAM and DSP counts, so area work can see where
the cells go without a full place and route (``python -m hw.build`` gives the placed numbers
and fmax). Without ``--board`` the family is iCE40 and the configuration the
``AcceleratorConfig`` default; with it, the board's family and feature profile. ``--flat`` runs
the same flattened synthesis as the bitstream build (cross-module optimisation included) and
prints only the total. ``core`` is the UART + protocol path with the test stand-in accelerator.
``--model`` sizes the configuration for a model file as ``hw.build`` does (its widths, e.g.
5-bit gaps, and tables grown to fit); without it the default ``AcceleratorConfig`` is used.
``--lanes``, ``--pointer-ports`` and ``--stream-words`` override its ``input_lanes``,
``pointer_ports`` and ``stream_words`` (the iCEBreaker build uses ``--lanes 1 --pointer-ports 1
--stream-words 1``, its ``boards/icebreaker.py`` profile).
"""
import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil

from boards import get_board
from contract.config import AcceleratorConfig
from gateware.accelerator import Accelerator
from gateware.central import CentralUnit
from gateware.fixed_decoder import column_decoder
from gateware.mock_accel import MockAccelerator
from gateware.pe import ProcessingElement
from gateware.top import UARTCore
from hw.build import BuildError, board_config, memory_depth_for, select_tools, size_config
from hw.families import get_family, stat_cell
from sw.cli import ToolError, add_column_code, command, huffman_of

__all__ = ["AreaError", "part_config", "synthesise", "module_table", "build_parser", "main"]

ROOT = Path(__file__).resolve().parent.parent


class AreaError(ToolError):
    """Synthesis failed or printed no statistics."""


def part_config(n_pes, model=None, input_lanes=None, pointer_ports=None, stream_words=None,
                board=None, huffman=None):
    """``AcceleratorConfig`` synthesised: the default for ``n_pes`` PEs (with iCE40 SPRAM) or
    the ``board``'s (its profile and memory kind), sized for the ``model`` file as ``hw.build``
    does (its widths, tables grown to fit, block-RAM PE memories cut to the model); and
    ``input_lanes``, ``pointer_ports``, ``stream_words`` and ``huffman`` override the
    defaults."""
    if board is None:
        cfg = AcceleratorConfig(n_pes=n_pes, memory="ice40")
    else:
        try:
            cfg = board_config(board, n_pes)
        except (BuildError, ValueError) as exc:
            raise AreaError(str(exc)) from None
    overrides = {k: v for k, v in dict(input_lanes=input_lanes, pointer_ports=pointer_ports,
                                       stream_words=stream_words, huffman=huffman).items()
                 if v is not None}
    try:
        cfg = dataclasses.replace(cfg, **overrides)
    except ValueError as exc:
        raise AreaError(str(exc)) from None
    if model is not None:
        try:
            cfg = size_config(model, cfg)
            if board is not None:
                cfg = memory_depth_for(model, cfg, board)
        except BuildError as exc:
            raise AreaError(str(exc)) from None
    return cfg


def _component(part, n_pes, model=None, input_lanes=None, pointer_ports=None,
               stream_words=None, board=None, huffman=None):
    if part not in PARTS:
        raise AreaError(f"unknown part {part!r}")
    cfg = part_config(n_pes, model, input_lanes, pointer_ports, stream_words, board, huffman)
    if part == "accelerator":
        return Accelerator(cfg)
    if part == "pe":
        return ProcessingElement(cfg, 0)
    if part == "decoder":
        return column_decoder(cfg, cfg.act_bits)
    if part == "central":
        return CentralUnit(cfg)
    if part == "core":
        return UARTCore(cfg, accelerator=MockAccelerator)
    raise AreaError(f"unknown part {part!r}")


PARTS = ("accelerator", "pe", "decoder", "central", "core")
def module_table(stat_text):
    """``{module: {cell: count}}`` from the output of yosys ``stat`` (either layout)."""
    table = {}
    current = None
    for line in stat_text.splitlines():
        head = re.match(r"^=== (.+) ===\s*$", line)
        if head:
            current = head.group(1)
            table[current] = {}
            continue
        cell = stat_cell(line)
        if cell and current is not None:
            name, count = cell
            table[current][name] = table[current].get(name, 0) + count
    return table


def synthesise(part="accelerator", n_pes=4, flat=False, workdir=None, model=None,
               input_lanes=None, pointer_ports=None, stream_words=None, board=None,
               huffman=None):
    """Synthesise ``part`` for the ``board``'s family (iCE40 without one; configuration sized
    for the ``model`` file if given) and return ``{module: {cell: count}}``."""
    family = get_family(get_board(board).family if board else "ice40")
    try:
        tools = select_tools(dict(__import__("os").environ), family=family.name)
    except BuildError as exc:
        raise AreaError(str(exc)) from None
    work = Path(workdir or ROOT / "build" / "area")
    work.mkdir(parents=True, exist_ok=True)
    name = part
    component = _component(part, n_pes, model, input_lanes, pointer_ports, stream_words, board,
                           huffman)
    # RTLIL, as the bitstream build reads it (memories keep Amaranth's read-during-write
    # behaviour, which decides how yosys maps them to block RAM)
    (work / f"{name}.il").write_text(rtlil.convert(component, name=name))
    script = (f"read_rtlil {name}.il; {family.synth_command} -top {name}"
              f"{'' if flat else ' -noflatten'}; tee -q -o {name}.stat stat")
    run = subprocess.run([tools["YOSYS"], "-q", "-p", script], cwd=work, capture_output=True,
                         text=True)
    stat = work / f"{name}.stat"
    if run.returncode != 0 or not stat.exists():
        raise AreaError(f"yosys failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    return module_table(stat.read_text())


def _row(name, cells, family):
    n = family.neutral_cells(cells)
    return (f"{name:40s} {n.get('logic', 0):6d} {n.get('ff', 0):6d} {n.get('carry', 0):6d} "
            f"{n.get('bram', 0):4d} {n.get('dsp', 0):4d}")


def build_parser():
    """The command line's options (``python -m hw.area``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.area", description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=PARTS, default="accelerator")
    ap.add_argument("--board", default=None,
                    help="synthesise for this board's family and profile (default: iCE40, "
                         "AcceleratorConfig defaults)")
    ap.add_argument("--pes", type=int, default=None,
                    help="PE count (default: the board's, or 4)")
    ap.add_argument("--flat", action="store_true", help="flattened synthesis, totals only")
    ap.add_argument("--model", help="size the gateware for this model file (as hw.build does)")
    ap.add_argument("--lanes", type=int, default=None,
                    help="input values per input word (default: the AcceleratorConfig default)")
    ap.add_argument("--pointer-ports", type=int, default=None, choices=(1, 2),
                    help="read ports of the PE pointer memory (default: the AcceleratorConfig "
                         "default)")
    ap.add_argument("--stream-words", type=int, default=None, choices=(1, 2),
                    help="memory words per decoder word (default: the AcceleratorConfig default)")
    add_column_code(ap)
    return ap


@command
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.pes is None:
        args.pes = get_board(args.board).default_pes if args.board else 4
    table = synthesise(args.part, args.pes, args.flat, model=args.model, input_lanes=args.lanes,
                       pointer_ports=args.pointer_ports, stream_words=args.stream_words,
                       board=args.board, huffman=huffman_of(args.column_code))
    family = get_family(get_board(args.board).family if args.board else "ice40")
    print(f"{'module':40s} {'LUT4':>6s} {'FF':>6s} {'CARRY':>6s} {'BRAM':>4s} {'DSP':>4s}")
    for name, cells in table.items():
        if name != "design hierarchy" and not args.flat:
            print(_row(name, cells, family))
    total = table.get("design hierarchy") or next(iter(table.values()))
    print(_row("TOTAL", total, family))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def estimate_pes(board, model=None, utilisation=0.85, workdir=None, log=None, start=None,
                 max_rounds=6):
    """The largest PE count that should fit ``board`` (an estimate for ``hw.build --pes auto``,
    which place and route then confirms).

    At a candidate count ``n`` (first the board's default) one PE and the central unit are
    synthesised for the board's family, configured as ``hw.build`` builds ``n`` PEs for
    ``model`` (its widths; PE memories cut to the depth the model needs at ``n``, so the block
    RAM per PE follows ``n``), and the UART + protocol core once: ``fixed + n * per_pe`` must
    keep logic within ``utilisation`` of the device and block RAM and DSPs within it. The
    figures at ``n`` give the next candidate (the largest count they allow); the search stops
    at a count that fits and that its own figures allow no more than.

    Returns ``(n_pes, details)``: the per-PE and fixed figures of the chosen count, the
    capacities and the totals of every count tried.

    Raises
    ------
    AreaError
        not even one PE fits, or a synthesis fails.
    """
    spec = get_board(board)
    family = get_family(spec.family)
    caps = {"logic": utilisation * spec.memory.luts, "bram": spec.memory.bram_blocks,
            "dsp": spec.memory.dsps}
    if spec.facts.pe_memory == "large_ram":
        caps["large_ram"] = spec.memory.large_ram_blocks

    def measure(part, n):
        table = synthesise(part, n, flat=True, workdir=workdir, model=model, board=spec.name)
        cells = table.get("design hierarchy") or next(iter(table.values()))
        found = family.neutral_cells(cells)
        if log:
            log(f"{part} N={n}: {found}")
        return found

    core = measure("core", 1)

    def cost(n):
        pe, central = measure("pe", n), measure("central", n)
        per_pe = {k: pe.get(k, 0) for k in caps}
        fixed = {k: central.get(k, 0) + core.get(k, 0) for k in caps}
        return per_pe, fixed

    def allowed(per_pe, fixed):
        n_fit = spec.max_pes
        for key, cap in caps.items():
            if per_pe[key] > 0:
                n_fit = min(n_fit, int((cap - fixed[key]) // per_pe[key]))
        return n_fit

    n = max(1, min(spec.max_pes, start or spec.default_pes))
    tried, fitting = {}, {}
    for _ in range(max_rounds):
        per_pe, fixed = cost(n)
        total = {k: fixed[k] + n * per_pe[k] for k in caps}
        tried[n] = total
        fits = all(total[k] <= caps[k] for k in caps)
        if fits:
            fitting[n] = {"per_pe": per_pe, "fixed": fixed}
        nxt = allowed(per_pe, fixed)
        if fits and nxt <= n:
            break
        nxt = max(1, nxt if fits else min(nxt, n - 1))
        if nxt in tried:
            break
        n = nxt
    if not fitting:
        raise AreaError(f"not even {min(tried)} PE fits {spec.name}: needs "
                        f"{tried[min(tried)]}, the device has {caps}")
    best = max(fitting)
    details = {**fitting[best], "capacity": caps, "tried": tried}
    return best, details
