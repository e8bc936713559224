"""The in-process reference WAL: the conformance suite, and what its test-only ``name`` means."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.testing.wal import WalConformance
from streambed.core.wal.api import WriteAheadLog
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

_names = itertools.count()


class TestMemoryWal(WalConformance):
    expects_group_commit = False  # no medium: every append is its own "sync"

    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[WriteAheadLog]]:
        name = f"memory-conformance-{next(_names)}"

        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = MemoryWalOptions(name=name, capacity_bytes=capacity_bytes or 2**30,
                                       full_timeout_ms=int(full_timeout_s * 1000))
            return await open_memory_wal(options, NodeContext(data_dir=tmp_path))

        return open_wal


async def _started(name: str, **options: Any) -> Any:
    wal = await open_memory_wal(MemoryWalOptions(name=name, **options), NodeContext(data_dir=Path(".")))
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.start()
    return wal, records


async def test_names_isolate_logs() -> None:
    a, _ = await _started(f"iso-a-{next(_names)}")
    b_name = f"iso-b-{next(_names)}"
    b, _ = await _started(b_name)
    await a.append(b"only in a")
    await a.close()
    await b.close()
    b, records = await _started(b_name)
    assert records == []
    await b.close()


async def test_usage_follows_appends_and_trims() -> None:
    name = f"usage-{next(_names)}"
    wal, _ = await _started(name, capacity_bytes=10_000)
    offsets = [await wal.append(b"u" * 100) for _ in range(10)]
    assert wal.stats().used == 10 * (100 + 24)
    await wal.trim(offsets[4])
    assert wal.stats().used == 6 * (100 + 24)
    await wal.close()
    wal, records = await _started(name, capacity_bytes=10_000)
    assert wal.stats().used == 6 * (100 + 24) and len(records) == 6
    await wal.close()


async def test_append_before_start_is_a_programming_error() -> None:
    wal = await open_memory_wal(MemoryWalOptions(name=f"early-{next(_names)}"), NodeContext(data_dir=Path(".")))
    with pytest.raises(RuntimeError):
        await wal.append(b"too early")


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        MemoryWalOptions.model_validate({"name": "x", "capcity_bytes": 1})
