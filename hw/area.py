"""Per-module iCE40 area of the gateware (yosys ``synth_ice40 -dsp``, hierarchy kept).

Command line::

    python -m hw.area [--pes N] [--part accelerator|pe|decoder|central|core] [--flat]
                      [--model FILE] [--lanes K] [--pointer-ports P] [--stream-words S]

Prints, for every module instance of the chosen part, its ``SB_LUT4``, flip-flop, carry, EBR
(``SB_RAM40_4K``) and DSP (``SB_MAC16``) counts, so area work can see where the cells go without a
full place and route (``python -m hw.build`` gives the placed numbers and fmax). ``--flat`` runs
the same flattened synthesis as the bitstream build (cross-module optimisation included) and
prints only the total. ``core`` is the UART + protocol path with the test stand-in accelerator.
``--model`` sizes the configuration for a model file as ``hw.build`` does (its widths, e.g.
5-bit gaps, and tables grown to fit); without it the default ``AcceleratorConfig`` is used.
``--lanes``, ``--pointer-ports`` and ``--stream-words`` override its ``input_lanes``,
``pointer_ports`` and ``stream_words`` (the iCEBreaker build uses ``--lanes 1 --pointer-ports 1
--stream-words 1``, ``hw.build.BOARD_*``).
"""
import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog

from contract.config import AcceleratorConfig
from gateware.accelerator import Accelerator
from gateware.central import CentralUnit
from gateware.huffman import HuffmanDecoder
from gateware.mock_accel import MockAccelerator
from gateware.pe import ProcessingElement
from gateware.top import UARTCore
from hw.build import BuildError, select_tools, size_config
from sw.cli import ToolError, command

__all__ = ["AreaError", "part_config", "synthesise", "module_table", "build_parser", "main"]

ROOT = Path(__file__).resolve().parent.parent


class AreaError(ToolError):
    """Synthesis failed or printed no statistics."""


def part_config(n_pes, model=None, input_lanes=None, pointer_ports=None, stream_words=None):
    """``AcceleratorConfig`` synthesised: the default for ``n_pes`` PEs, or sized for the
    ``model`` file as ``hw.build`` does (its widths, tables grown to fit); ``input_lanes``,
    ``pointer_ports`` and ``stream_words`` override the defaults."""
    cfg = AcceleratorConfig(n_pes=n_pes, memory="ice40")
    overrides = {k: v for k, v in dict(input_lanes=input_lanes, pointer_ports=pointer_ports,
                                       stream_words=stream_words).items() if v is not None}
    try:
        cfg = dataclasses.replace(cfg, **overrides)
    except ValueError as exc:
        raise AreaError(str(exc)) from None
    if model is not None:
        try:
            cfg = size_config(model, cfg)
        except BuildError as exc:
            raise AreaError(str(exc)) from None
    return cfg


def _component(part, n_pes, model=None, input_lanes=None, pointer_ports=None,
               stream_words=None):
    if part not in PARTS:
        raise AreaError(f"unknown part {part!r}")
    cfg = part_config(n_pes, model, input_lanes, pointer_ports, stream_words)
    if part == "accelerator":
        return Accelerator(cfg)
    if part == "pe":
        return ProcessingElement(cfg, 0)
    if part == "decoder":
        return HuffmanDecoder(cfg, tag_bits=cfg.act_bits)
    if part == "central":
        return CentralUnit(cfg)
    if part == "core":
        return UARTCore(cfg, accelerator=MockAccelerator)
    raise AreaError(f"unknown part {part!r}")


PARTS = ("accelerator", "pe", "decoder", "central", "core")
_CELL_RE = re.compile(r"^\s+(\d+)\s+(SB_\w+|\$\w+)\s*$|^\s+(SB_\w+|\$\w+)\s+(\d+)\s*$")


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
        cell = _CELL_RE.match(line)
        if cell and current is not None:
            count, name = (cell.group(1), cell.group(2)) if cell.group(1) else \
                (cell.group(4), cell.group(3))
            table[current][name] = table[current].get(name, 0) + int(count)
    return table


def synthesise(part="accelerator", n_pes=4, flat=False, workdir=None, model=None,
               input_lanes=None, pointer_ports=None, stream_words=None):
    """Synthesise ``part`` for iCE40 (configuration sized for the ``model`` file if given) and
    return ``{module: {cell: count}}``."""
    tools = select_tools(dict(__import__("os").environ))
    work = Path(workdir or ROOT / "build" / "area")
    work.mkdir(parents=True, exist_ok=True)
    name = part
    component = _component(part, n_pes, model, input_lanes, pointer_ports, stream_words)
    (work / f"{name}.v").write_text(verilog.convert(component, name=name))
    script = (f"read_verilog -sv {name}.v; synth_ice40 -dsp -top {name}"
              f"{'' if flat else ' -noflatten'}; tee -q -o {name}.stat stat")
    run = subprocess.run([tools["YOSYS"], "-q", "-p", script], cwd=work, capture_output=True,
                         text=True)
    stat = work / f"{name}.stat"
    if run.returncode != 0 or not stat.exists():
        raise AreaError(f"yosys failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    return module_table(stat.read_text())


def _row(name, cells):
    ffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    return (f"{name:40s} {cells.get('SB_LUT4', 0):6d} {ffs:6d} {cells.get('SB_CARRY', 0):6d} "
            f"{cells.get('SB_RAM40_4K', 0):4d} {cells.get('SB_MAC16', 0):4d}")


def build_parser():
    """The command line's options (``python -m hw.area``)."""
    ap = argparse.ArgumentParser(prog="python -m hw.area", description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=PARTS, default="accelerator")
    ap.add_argument("--pes", type=int, default=4)
    ap.add_argument("--flat", action="store_true", help="flattened synthesis, totals only")
    ap.add_argument("--model", help="size the gateware for this model file (as hw.build does)")
    ap.add_argument("--lanes", type=int, default=None,
                    help="input values per input word (default: the AcceleratorConfig default)")
    ap.add_argument("--pointer-ports", type=int, default=None, choices=(1, 2),
                    help="read ports of the PE pointer memory (default: the AcceleratorConfig "
                         "default)")
    ap.add_argument("--stream-words", type=int, default=None, choices=(1, 2),
                    help="memory words per decoder word (default: the AcceleratorConfig default)")
    return ap


@command
def main(argv=None):
    args = build_parser().parse_args(argv)
    table = synthesise(args.part, args.pes, args.flat, model=args.model, input_lanes=args.lanes,
                       pointer_ports=args.pointer_ports, stream_words=args.stream_words)
    print(f"{'module':40s} {'LUT4':>6s} {'FF':>6s} {'CARRY':>6s} {'EBR':>4s} {'DSP':>4s}")
    for name, cells in table.items():
        if name != "design hierarchy" and not args.flat:
            print(_row(name, cells))
    total = table.get("design hierarchy") or next(iter(table.values()))
    print(_row("TOTAL", total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
