"""SIGKILL a real writer process at random moments; every acknowledged record must survive."""

from __future__ import annotations

from pathlib import Path

import pytest
from sbtest.walcrash import crash_loop


@pytest.mark.slow
def test_file_wal_survives_sigkill_loop(tmp_path: Path) -> None:
    verified = crash_loop("file", {"segment_bytes": 256 * 1024}, tmp_path, rounds=20)
    assert verified > 1000, "too few acknowledged records to mean anything"
