import os
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class FakeLoader:
    """Stands in for ``subprocess.run`` of openFPGALoader (no hardware in the tests): records
    each command line in ``calls`` and answers with ``returncode`` and ``stderr``."""

    def __init__(self, returncode=0, stderr=""):
        self.calls = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        return types.SimpleNamespace(returncode=self.returncode, stdout="", stderr=self.stderr)


@pytest.fixture
def fake_loader():
    """:class:`FakeLoader` (call it for one: ``fake_loader(returncode=1, stderr="...")``)."""
    return FakeLoader
