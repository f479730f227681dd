"""No function in sw/, hw/ or contract/ is longer than :data:`MAX_LINES` lines unless a
``# long: why`` comment (on its ``def`` line or the comment lines just above it and its
decorators) says why it cannot be split. (The gateware's ``elaborate`` methods are split into
components separately.)"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sw", "hw", "contract")
MAX_LINES = 150


def long_functions(source, name, max_lines=MAX_LINES):
    """``"name:line function (n lines)"`` of every function longer than ``max_lines`` without a
    ``# long:`` comment."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= max_lines:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        marks = [lines[node.lineno - 1]]
        k = first - 2
        while k >= 0 and lines[k].strip().startswith("#"):
            marks.append(lines[k])
            k -= 1
        if not any("# long:" in line for line in marks):
            out.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_no_unexplained_long_functions(package):
    bad = [v for path in sorted((ROOT / package).rglob("*.py"))
           for v in long_functions(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert bad == [], "split these or say why with a '# long:' comment:\n" + "\n".join(bad)


def test_a_planted_long_function_is_caught():
    body = "".join(f"    x{i} = {i}\n" for i in range(6))
    short = "def short():\n    return 1\n"
    long = f"def long():\n{body}"
    explained = f"# long: one table, row by row\n@staticmethod\ndef explained():\n{body}"
    source = "\n\n".join([short, long, explained])
    assert long_functions(short, "m.py", max_lines=6) == []
    assert long_functions(source, "m.py", max_lines=6) == [
        "m.py:5 long (7 lines)"]
