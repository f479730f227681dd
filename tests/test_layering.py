"""The layers of docs/ARCHITECTURE.md ("Layers") hold: who may import whom, and imports at
module top unless a comment says why.

- ``contract/``: the standard library only (no Amaranth, nothing of the project's other layers);
- ``sw/``: no Amaranth, no gateware, no flow tools;
- ``gateware/``: Amaranth and the contract only (no ``sw``, ``hw``, ``boards``, ``tb``);
- ``boards/``: plain data (no Amaranth: ``sw`` reads it), nothing of the other layers;
- ``hw/`` (flow tools): anything but ``tb``;
- nothing outside ``tb/`` and ``tests/`` imports ``tb``.

Two checks: every module of a layer is imported in a fresh interpreter whose import system
refuses the layer's forbidden packages (catches indirect edges: a module that imports one that
imports Amaranth), and a static read of every import statement (catches the imports inside
functions, which an import does not run). A third insists that an import inside a function
carries a ``# lazy: why`` comment (on its line or the comment lines just above it).
"""
import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer (top-level package) -> packages it must not import, directly or through another module.
FORBIDDEN = {
    "contract": ("amaranth", "amaranth_boards", "numpy", "gateware", "sw", "hw", "boards", "tb"),
    "sw": ("amaranth", "amaranth_boards", "gateware", "hw", "tb"),
    "gateware": ("sw", "hw", "boards", "tb"),
    "hw": ("tb",),
    "boards": ("amaranth", "amaranth_boards", "gateware", "sw", "hw", "tb"),
}

#: Packages whose function-level imports must say why they are lazy.
LAZY_CHECKED = ("contract", "sw", "gateware", "hw", "boards")

#: Run in the fresh interpreter: a meta-path finder in front of every other that refuses the
#: forbidden packages and records who asked (even when the importer catches the error).
_CHILD = textwrap.dedent('''
    import importlib, json, sys

    forbidden, modules = set(sys.argv[1].split(",")), sys.argv[2].split(",")
    hits = []

    class LayeringViolation(Exception):
        """Not an ImportError: code that falls back on a missing package must not hide it."""

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] not in forbidden:
                return None
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith(
                    ("importlib", "_frozen_importlib")):
                frame = frame.f_back
            who = frame.f_globals.get("__name__", "?") if frame is not None else "?"
            hits.append({"module": current, "importer": who, "imported": name})
            raise LayeringViolation(f"{who} imports {name}")

    sys.meta_path.insert(0, Refuse())
    errors = []
    for current in modules:
        try:
            importlib.import_module(current)
        except Exception as exc:
            errors.append({"module": current, "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps({"hits": hits, "errors": errors}))
''')


def _modules(package, root=ROOT):
    """Dotted names of every module of ``package`` (a directory below ``root``)."""
    names = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_violations(package, forbidden, root=ROOT):
    """Import every module of ``package`` with ``forbidden`` refused; returns the list of
    violations (``"module: importer imports name"``) and import errors."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONWARNINGS="error")
    run = subprocess.run([sys.executable, "-c", _CHILD, ",".join(forbidden),
                          ",".join(_modules(package, root))],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    out = [f"{h['module']}: {h['importer']} imports {h['imported']}" for h in report["hits"]]
    out += [f"{e['module']}: {e['error']}" for e in report["errors"]
            if "LayeringViolation" not in e["error"]]
    return out


def _imports(tree):
    """``(node, top-level package)`` of every absolute import statement in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.partition(".")[0]


def static_violations(source, name, forbidden):
    """Import statements of one module's ``source`` that name a forbidden package (function
    bodies included)."""
    tree = ast.parse(source)
    return [f"{name}:{node.lineno} imports {top}" for node, top in _imports(tree)
            if top in forbidden]


def unexplained_lazy_imports(source, name):
    """Imports inside functions without a ``# lazy:`` comment on their line or in the run of
    comment and import lines just above them."""
    lines = source.splitlines()
    tree = ast.parse(source)
    bad = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            own = lines[node.lineno - 1:node.end_lineno]
            above = []
            k = node.lineno - 2
            while k >= 0 and lines[k].strip().startswith(("#", "import ", "from ")):
                above.append(lines[k])
                k -= 1
            if not any("# lazy:" in line for line in own + above):
                bad.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(bad))


def _sources(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text()


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_forbidden(layer):
    """Importing every module of the layer never reaches a forbidden package."""
    assert import_violations(layer, FORBIDDEN[layer]) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_import_statements(layer):
    """No import statement of the layer, at module top or inside a function, names a
    forbidden package."""
    bad = [v for name, src in _sources(layer) for v in static_violations(src, name,
                                                                           FORBIDDEN[layer])]
    assert bad == []


def test_nothing_outside_tb_and_tests_imports_tb():
    tops = sorted(p.name for p in ROOT.iterdir()
                  if p.is_dir() and (p / "__init__.py").exists() and p.name != "tb")
    assert set(FORBIDDEN) <= set(tops)
    bad = [v for top in tops for name, src in _sources(top)
           for v in static_violations(src, name, ("tb",))]
    assert bad == []


@pytest.mark.parametrize("package", LAZY_CHECKED)
def test_function_level_imports_say_why(package):
    bad = [v for name, src in _sources(package) for v in unexplained_lazy_imports(src, name)]
    assert bad == [], "imports inside functions need a '# lazy: why' comment:\n" + "\n".join(bad)


# ---- the checks catch what they are meant to catch ----------------------------------------

_PLANTED = '''\
import json


def load():
    import numpy as np
    return np


def plot():
    # lazy: optional dependency
    import matplotlib
    return matplotlib


def fit():
    from gateware.config import LoadWrite  # lazy: breaks a cycle
    return LoadWrite
'''


def test_static_checks_catch_planted_violations():
    assert unexplained_lazy_imports(_PLANTED, "m.py") == ["m.py:5: import numpy as np"]
    assert static_violations(_PLANTED, "m.py", FORBIDDEN["sw"]) == ["m.py:16 imports gateware"]
    assert static_violations(_PLANTED, "m.py", FORBIDDEN["hw"]) == []


def test_import_check_catches_an_indirect_planted_violation(tmp_path):
    """A module that imports (at top) a module that falls back quietly when Amaranth is
    missing is still reported, naming the importer."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "__init__.py").write_text("")
    (tmp_path / "fake" / "inner.py").write_text(
        "try:\n    import amaranth\nexcept ImportError:\n    amaranth = None\n")
    (tmp_path / "fake" / "outer.py").write_text("import fake.inner\n")
    found = import_violations("fake", ("amaranth",), root=tmp_path)
    assert found and all("fake.inner imports amaranth" in v for v in found), found
