"""The defaults the docs state are the code's (``contract``): docs/ARCHITECTURE.md section 1's
width table, and every "`name`, default V" / "`name` (the default" of the configuration in
docs/*.md."""
import re
from pathlib import Path

import pytest

from contract.config import AcceleratorConfig
from contract.widths import WIDTH_DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIG = AcceleratorConfig()

#: Section 1's parameter names -> the contract's width keys.
WIDTH_NAMES = {"A_BITS": "act_bits", "W_BITS": "weight_bits", "ACC_BITS": "acc_bits",
               "IDX_BITS": "idx_bits", "GAP_BITS": "gap_bits", "HUFF_MAX_LEN": "huff_max_len"}


def width_table(text):
    """``{width key: default}`` from the rows ``| `NAME` ... | default |`` of section 1."""
    out = {}
    for name, default in re.findall(r"^\| `([A-Z_]+)`[^\n]*\| (\d+) \|$", text, re.M):
        if name in WIDTH_NAMES:
            out[WIDTH_NAMES[name]] = int(default)
    return out


def stated_defaults(text):
    """``[(field, value as written)]`` for the ``AcceleratorConfig`` fields a text states a
    default of: "`K = input_lanes`, default 16", "`column_skip`, default for N <= 16",
    "`requant_overlap` (the default; ...)", "the default K = 16 input lanes", and the
    "- 2 (the default" item of the list after "`AcceleratorConfig.pointer_ports` sets"."""
    fields = set(AcceleratorConfig.__dataclass_fields__)
    out = []
    for name, value in re.findall(r"`(?:\w+ = )?(\w+)`,? (?:the )?default (\d+)", text):
        out.append((name, int(value)))
    for name in re.findall(r"`(\w+)`,? \(?(?:the )?default(?: for| up to|;|\)| with)", text):
        out.append((name, True))
    for value in re.findall(r"the default K = (\d+) input lanes", text):
        out.append(("input_lanes", int(value)))
    for name, items in re.findall(r"`AcceleratorConfig\.(\w+)` sets[^\n]*\n\n((?:[-\s][^\n]*\n)+)",
                                  text):
        out += [(name, int(v)) for v in re.findall(r"^- (\d+) \(the default", items, re.M)]
    return [(name, value) for name, value in out if name in fields]


def test_width_table_is_the_contracts():
    text = (DOCS / "ARCHITECTURE.md").read_text()
    assert width_table(text) == WIDTH_DEFAULTS


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_stated_configuration_defaults_are_the_contracts(doc):
    found = stated_defaults((DOCS / doc).read_text())
    wrong = [f"{name}: the doc says {value}, AcceleratorConfig() has {getattr(CONFIG, name)}"
             for name, value in found if getattr(CONFIG, name) != value]
    assert wrong == []


def test_architecture_states_the_defaults_it_should():
    """The parser finds what docs/ARCHITECTURE.md states (so the check above checks them)."""
    found = dict(stated_defaults((DOCS / "ARCHITECTURE.md").read_text()))
    assert {"input_lanes", "column_skip", "requant_overlap", "pointer_ports",
            "stream_words"} <= set(found)


def test_a_drifted_default_is_caught():
    text = (DOCS / "ARCHITECTURE.md").read_text()
    drifted = text.replace("(`K = input_lanes`, default 16)", "(`K = input_lanes`, default 4)")
    assert drifted != text
    assert ("input_lanes", 4) in stated_defaults(drifted)
    bad_table = text.replace("| longest Huffman code, `<= 15` | 12 |",
                             "| longest Huffman code, `<= 15` | 13 |")
    assert bad_table != text and width_table(bad_table) != WIDTH_DEFAULTS
