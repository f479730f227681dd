"""The bench side of :func:`tb.runner.run_bench`: parameters in, result out.

Inside a cocotb test module::

    from tb.bench import params, save_result
    case = params()                 # the JSON value the pytest test passed as ``params``
    ...
    save_result({"cycles": 123})    # returned by run_bench
"""
import json
import os
from functools import cache

__all__ = ["params", "save_result", "check_sequence"]


@cache
def params():
    """The bench's parameters: the JSON file named by ``TB_PARAMS`` (``{}`` without one)."""
    path = os.environ.get("TB_PARAMS")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def save_result(value):
    """Hand ``value`` (JSON-serialisable) back to :func:`tb.runner.run_bench`."""
    path = os.environ.get("TB_RESULT")
    if path:
        with open(path, "w") as f:
            json.dump(value, f)


def check_sequence(got, expect, what):
    """Raise ``AssertionError`` naming the first difference unless ``got == expect``.

    ``what`` says whose sequence it is (``"input 2 layer 1"``); the message gives both
    lengths and the first differing element of each.
    """
    if got == expect:
        return
    bad = next((k for k, (g, e) in enumerate(zip(got, expect)) if g != e),
               min(len(got), len(expect)))
    raise AssertionError(
        f"{what}: {len(got)} elements, expected {len(expect)}; first difference at #{bad}: got "
        f"{got[bad] if bad < len(got) else None}, expected "
        f"{expect[bad] if bad < len(expect) else None}")
