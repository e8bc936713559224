from __future__ import annotations

import itertools
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import Unavailable
from streambed.core.testing.wal import WalConformance
from streambed.core.wal.api import WriteAheadLog
from streambed.core.wal.file import HEADER_SIZE, FileWal, FileWalOptions, open_file_wal
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

_names = itertools.count()


class TestMemoryWal(WalConformance):
    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[WriteAheadLog]]:
        name = f"mem-{next(_names)}"

        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = MemoryWalOptions(name=name, capacity_bytes=capacity_bytes or 2**30,
                                       full_timeout_ms=int(full_timeout_s * 1000))
            return await open_memory_wal(options, NodeContext(data_dir=tmp_path))

        return open_wal


def file_options(tmp_path: Path, **kwargs: Any) -> FileWalOptions:
    return FileWalOptions(dir=tmp_path / "wal", **kwargs)


class TestFileWal(WalConformance):
    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[WriteAheadLog]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = file_options(tmp_path, capacity_bytes=capacity_bytes or 2**30,
                                   full_timeout_ms=int(full_timeout_s * 1000),
                                   segment_bytes=16 * 1024)
            return await open_file_wal(options, NodeContext(data_dir=tmp_path))

        return open_wal


async def _open(tmp_path: Path, **kwargs: Any) -> tuple[FileWal, list[tuple[int, bytes]]]:
    wal = await open_file_wal(file_options(tmp_path, **kwargs), NodeContext(data_dir=tmp_path))
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.start()
    return wal, records


def _bodies(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 300)) for _ in range(n)]


@pytest.mark.parametrize("seed", range(40))
async def test_torn_tail_recovers_valid_prefix(tmp_path: Path, seed: int) -> None:
    bodies = _bodies(30, seed)
    wal, _ = await _open(tmp_path)
    for body in bodies:
        await wal.append(body)
    await wal.close()
    segment = sorted((tmp_path / "wal").glob("*.seg"))[-1]
    size = segment.stat().st_size
    cut = random.Random(seed).randrange(0, size)
    os.truncate(segment, cut)
    wal, records = await _open(tmp_path)
    # Whole records before the cut survive, none after it, and nothing is half-served.
    survivors = 0
    position = 0
    for body in bodies:
        position += HEADER_SIZE + len(body)
        if position <= cut:
            survivors += 1
    assert records == list(enumerate(bodies[:survivors]))
    new = await wal.append(b"after-tear")
    assert new == survivors
    await wal.close()
    _, records = await _open(tmp_path)
    assert records[-1] == (survivors, b"after-tear")


@pytest.mark.parametrize("seed", range(40))
async def test_flipped_byte_never_served(tmp_path: Path, seed: int) -> None:
    bodies = _bodies(30, 1000 + seed)
    wal, _ = await _open(tmp_path)
    for body in bodies:
        await wal.append(body)
    await wal.close()
    segment = sorted((tmp_path / "wal").glob("*.seg"))[-1]
    data = bytearray(segment.read_bytes())
    rng = random.Random(seed)
    where = rng.randrange(len(data))
    data[where] ^= 1 << rng.randrange(8)
    segment.write_bytes(bytes(data))
    wal, records = await _open(tmp_path)
    # Every record served is byte-identical to one appended, in order, with no gaps.
    assert records == list(enumerate(bodies[: len(records)]))
    # The corrupt record (and everything after it) is dropped.
    position = 0
    for i, body in enumerate(bodies):
        if position <= where < position + HEADER_SIZE + len(body):
            assert len(records) == i
            break
        position += HEADER_SIZE + len(body)
    await wal.close()


async def test_failed_fsync_fails_appends_and_refuses_more(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = await _open(tmp_path)
    assert await wal.append(b"ok") == 0

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(Unavailable, match="fsync failed"):
        await wal.append(b"lost")
    monkeypatch.undo()
    with pytest.raises(Unavailable):
        await wal.append(b"refused")
    await wal.close()


async def test_trim_persists_and_deletes_segments(tmp_path: Path) -> None:
    wal, _ = await _open(tmp_path, segment_bytes=4096, capacity_bytes=256 * 1024)
    offsets = [await wal.append(b"s" * 1000) for _ in range(40)]
    segments_before = len(list((tmp_path / "wal").glob("*.seg")))
    assert segments_before >= 8
    used_before = wal.stats().used
    await wal.trim(offsets[30])
    assert len(list((tmp_path / "wal").glob("*.seg"))) < segments_before
    assert wal.stats().used < used_before
    await wal.close()
    _, records = await _open(tmp_path, segment_bytes=4096)
    assert [o for o, _ in records] == offsets[30:]


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    import asyncio

    wal, _ = await _open(tmp_path)
    await asyncio.gather(*(wal.append(b"g" * 100) for _ in range(2000)))
    stats = wal.stats()
    assert stats.syncs < stats.appends / 5, stats
    await wal.close()
