"""Root conftest: makes the shared test-support package (``tests/support/sbtest``) importable from
every test directory, including each plugin's own tests."""

from __future__ import annotations

import sys
from pathlib import Path

_SUPPORT = str(Path(__file__).resolve().parent / "tests" / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

# Real-server fixtures (SeaweedFS, MiniDFSCluster, ...) shared by core, broker and plugin tests.
pytest_plugins = ["sbtest.fixtures"]
