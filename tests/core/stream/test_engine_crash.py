"""A real writer process appending through the engine is SIGKILLed again and again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sbtest.enginecrash import crash_loop


@pytest.mark.slow
def test_engine_survives_sigkill_loop(tmp_path: Path) -> None:
    verified = crash_loop(tmp_path, rounds=15)
    assert verified > 1000
