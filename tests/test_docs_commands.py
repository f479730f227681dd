"""Every command shown in README.md and docs/*.md runs as written.

Commands are the code spans and the lines of fenced or indented blocks that start with
``python -m`` or ``bash`` (a trailing ``\\`` continues a line, ``# ...`` is a comment,
``A && B`` are two steps). ``[--opt VALUE]`` is an optional part: the command is checked with and
without it. A placeholder (``I``, ``N``, ``MODEL.npz``, ... :data:`PLACEHOLDERS`) takes an
example value.

Every step is checked without running it: the tool's ``build_parser()`` accepts the options,
model files exist and load, a board exists and takes the PE count, pytest paths and markers
exist, bash scripts parse. Then the fast ones run as written, in the order the docs show them
(README.md first: a later command may read what an earlier one wrote to ``out/``), in a
workspace that links the repository's files and keeps what the commands write. The tools in
:data:`SLOW` only parse in the default suite; those that need no board or training run under
``-m slow``.
"""
import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
START = re.compile(r"^(python -m |bash )")

#: Tools (or scripts) whose documented commands only parse in the default suite, and why.
SLOW = {
    "sw.compress": "trains on MNIST (3-30 minutes)",
    "sw.host": "needs the board on a serial port",
    "hw.build": "yosys + nextpnr (minutes)",
    "hw.bench": "Verilator builds and simulations (minutes)",
    "hw.profile": "Amaranth simulation (about 10 s per image and PE count)",
    "hw.area": "yosys synthesis (15 s and more per part)",
    "hw.linkbench": "Verilator simulation of the UART link (minutes)",
    "pytest": "the test suite itself",
    "tools/setup": "installs the dependencies from PyPI",
}
#: Never run, even under -m slow: they need hardware, train for long or install packages.
NEVER_RUN = {"sw.compress", "sw.host", "pytest", "tools/setup"}
NEEDS_BOARD = ("--port", "--program")
#: Example values of the placeholders of synopses (files as the docs' commands write them).
PLACEHOLDERS = {"I": "1", "K": "2", "N": "2", "S": "1", "NAME": "icebreaker",
                "MODEL.npz": "models/lenet300.npz", "DATA.npz": "out/mnist.npz",
                "FILE.onnx": "out/model.onnx"}


def _spans(text):
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        yield text.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split())


def _block_lines(text):
    in_fence = False
    pending, first = "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if not (in_fence or line.startswith("    ") or pending):
            continue
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not pending:
            first = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield first, " ".join((pending + line).split())
        pending = ""


def doc_commands():
    """``{command: "FILE:LINE"}`` of every command in the docs (first place it is shown)."""
    found = {}
    for path in DOCS:
        text = path.read_text()
        for line, cmd in list(_spans(text)) + list(_block_lines(text)):
            if START.match(cmd):
                found.setdefault(cmd, f"{path.name}:{line}")
    return found


COMMANDS = doc_commands()


def _steps(command):
    """The command's steps, each a list of argv variants (optional parts left out / in)."""
    steps = []
    for step in command.split("&&"):
        optional = re.findall(r"\[([^\]]*)\]", step)
        base = re.sub(r"\s*\[[^\]]*\]", "", step)
        full = re.sub(r"\[([^\]]*)\]", r"\1", step)
        steps.append([[PLACEHOLDERS.get(w, w) for w in shlex.split(text)]
                      for text in ([base, full] if optional else [base])])
    return steps


def _tool(argv):
    """``(tool name, its arguments)``: ``python -m MOD ...`` or ``bash SCRIPT ...``."""
    if argv[:2] == ["python", "-m"]:
        return argv[2], argv[3:]
    assert argv[0] == "bash", argv
    return argv[1], argv[2:]


def _check_values(tool, args):
    """What the parser cannot know: files exist and load, the board takes the PE count."""
    from sw.modelfile import load_model
    for name in ("model", "packdir"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value.endswith(".npz"):
            load_model(ROOT / value)
        elif isinstance(value, str) and name == "packdir":
            assert (ROOT / value).is_dir(), value
    if getattr(args, "board", None):
        from boards import get_board
        spec = get_board(args.board)
        pes = getattr(args, "pes", None)
        if isinstance(pes, int):
            assert 1 <= pes <= spec.max_pes, f"board {spec.name} takes 1..{spec.max_pes} PEs"
        if tool == "hw.build":
            from hw.platforms import get_platform
            get_platform(args.board)


def _check_pytest(args, names):
    it = iter(args)
    for a in it:
        if a == "-m":
            expr = next(it)
            words = set(re.findall(r"\w+", expr)) - {"not", "and", "or"}
            assert words <= names, f"unknown marker(s) {words - names} in -m {expr!r}"
        elif a in ("-n", "-k", "-p", "--durations", "--dist"):
            next(it)                    # an option's value, not a path
        elif not a.startswith("-"):
            assert (ROOT / a.split("::")[0]).exists(), f"{a} does not exist"


def check_parses(argv, markers):
    """Check ``argv`` without running it (``markers``: the names pytest's ``-m`` knows)."""
    tool, args = _tool(argv)
    if tool == "pytest":
        return _check_pytest(args, markers)
    if argv[0] == "bash":
        assert (ROOT / tool).is_file(), f"{tool} does not exist"
        subprocess.run(["bash", "-n", str(ROOT / tool)], check=True, timeout=30)
        return None
    module = importlib.import_module(tool)
    try:
        ns = module.build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{tool} refuses the options {args} (exit {exc.code})") from None
    _check_values(tool, ns)
    return module


def _workspace(path):
    """A directory that links every file of the repository but ``out/`` and ``build/`` (the
    commands write there), as a checkout in which the docs' commands run."""
    path.mkdir(exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name not in ("out", "build", ".git") and not (path / entry.name).exists():
            (path / entry.name).symlink_to(entry)
    return path


def run_as_written(argv, workspace, timeout):
    """Run ``argv`` in ``workspace``; the failure's text, or None."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable] + argv[1:], cwd=workspace, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0 or "Traceback" in p.stderr:
        return f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}"
    return None


def _is_slow(argv):
    return _tool(argv)[0] in SLOW


def test_commands_found():
    # The extraction itself: the documented tools and a sample of the commands.
    tools = {_tool(v[0])[0] for c in COMMANDS for v in _steps(c)}
    assert {"sw.compress", "sw.golden", "sw.pack", "sw.host", "hw.build", "hw.bench",
            "hw.profile", "hw.area", "pytest", "tools/setup"} <= tools
    assert "bash tools/setup && python -m pytest" in COMMANDS
    assert "python -m pytest tests/test_sw_mnist.py tests/test_sw_nn.py tests/test_sw_prune.py " \
        "tests/test_sw_quantize.py tests/test_sw_report.py tests/test_sw_compress.py" in COMMANDS
    assert "python -m hw.bench --images 10 --pes 1 --lanes 1 --fifo-depth 2 --no-overlap " \
        "--no-skip --pointer-ports 1 --stream-words 1 --segment-queue 1" in COMMANDS  # two lines
    assert "python -m hw.profile --pes 4 [--image I] [--images K]" in COMMANDS
    assert set(SLOW) <= tools, "SLOW lists a tool the docs no longer show"
    assert _steps("python -m hw.profile --pes 4 [--image I]") == [
        [["python", "-m", "hw.profile", "--pes", "4"],
         ["python", "-m", "hw.profile", "--pes", "4", "--image", "1"]]]
    assert _steps("python -m sw.dataset DATA.npz") == [
        [["python", "-m", "sw.dataset", "out/mnist.npz"]]]


def _id(command):
    return f"{COMMANDS[command]}:" + "+".join(_tool(v[0])[0] for v in _steps(command))


@pytest.fixture
def markers(pytestconfig):
    return {m.split(":")[0].strip() for m in pytestconfig.getini("markers")}


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=_id)
def test_doc_command_parses(command, markers):
    for variants in _steps(command):
        for argv in variants:
            check_parses(argv, markers)


def test_fast_doc_commands_run(tmp_path):
    # In the docs' order, one workspace: README's `sw.dataset out/mnist.npz --write-mnist`
    # writes the data set that docs/COMPRESSION.md's `sw.dataset DATA.npz` checks.
    workspace = _workspace(tmp_path / "checkout")
    failures, ran = [], []
    for command, where in COMMANDS.items():
        for variants in _steps(command):
            if not _is_slow(variants[0]):
                ran.append(command)
                failures.append(run_as_written(variants[0], workspace, timeout=600))
    assert len(ran) >= 8, ran
    assert not any(failures), "\n\n".join(f for f in failures if f)


def _slow_runs():
    """``{argv: "FILE:LINE"}``: each slow step that needs no board, training or installation
    once (a command shown twice, or as a synopsis and as an example, runs once)."""
    runs = {}
    for command, where in COMMANDS.items():
        for variants in _steps(command):
            argv = variants[0]
            tool = _tool(argv)[0]
            if tool in SLOW and tool not in NEVER_RUN and not set(NEEDS_BOARD) & set(argv):
                runs.setdefault(" ".join(argv), where)
    return runs


SLOW_RUNS = _slow_runs()


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(SLOW_RUNS), ids=lambda c: f"{SLOW_RUNS[c]}:{c[10:]}")
def test_slow_doc_command_runs(command, tmp_path):
    failure = run_as_written(command.split(), _workspace(tmp_path / "checkout"), timeout=3600)
    assert failure is None, failure


def test_checks_catch_wrong_commands(markers):
    # The checks fail on the kind of mistake the docs had (a mutated command must fail).
    for bad in ("python -m sw.pack models/lenet300.npz --pes 4 --board icebreaker",
                "python -m hw.build --board icebreaker --pes 3",
                "python -m hw.bench --no-such-option",
                "python -m sw.golden models/missing.npz",
                "python -m sw.host",
                "python -m pytest -m nosuchmarker",
                "python -m pytest tests/test_missing.py",
                "bash tools/missing"):
        with pytest.raises(Exception):
            for variants in _steps(bad):
                for argv in variants:
                    check_parses(argv, markers)
