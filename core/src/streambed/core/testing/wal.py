"""Conformance suite for :class:`~streambed.core.wal.api.WriteAheadLog` implementations.

Subclass :class:`WalConformance` in your plugin's tests and provide the fixture ``wal_factory``:
an async callable that opens (or, called again, *reopens*) the same WAL location::

    class TestMyWal(WalConformance):
        capacity_bytes = 64 * 1024      # used by the back-pressure tests

        @pytest.fixture
        def wal_factory(self, tmp_path):
            async def open_wal(capacity_bytes: int | None = None):
                return await open_my_wal(MyOptions(path=tmp_path / "wal",
                                                   capacity_bytes=capacity_bytes or 2**30), ctx)
            return open_wal

The factory receives ``capacity_bytes`` (``None`` = a large default) and, for the back-pressure
tests, must honour it and a short full timeout (``full_timeout_s``, default 0.5 s).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streambed.core.errors import Closed, WalFull
from streambed.core.wal.api import WalRecord, WriteAheadLog

__all__ = ["WalConformance"]

WalFactory = Callable[..., Awaitable[WriteAheadLog]]


async def _open(factory: WalFactory, **kwargs: Any) -> tuple[WriteAheadLog, list[WalRecord]]:
    wal = await factory(**kwargs)
    records = [record async for record in wal.recover()]
    await wal.start()
    return wal, records


class WalConformance:
    """Behaviour every WAL must have. Small, fast tests; override a class attribute to tune."""

    capacity_bytes: int = 64 * 1024
    full_timeout_s: float = 0.5
    large_body: int = 1024 * 1024
    concurrent_appends: int = 500

    async def test_offsets_increase_and_records_survive_reopen(self, wal_factory: WalFactory) -> None:
        wal, records = await _open(wal_factory)
        assert records == []
        offsets = [await wal.append(b"record-%d" % i) for i in range(20)]
        assert offsets == sorted(offsets) and len(set(offsets)) == 20
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.body for r in records] == [b"record-%d" % i for i in range(20)]
        assert [r.offset for r in records] == offsets
        await wal.close()

    async def test_concurrent_appends_complete_in_order(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        completed: list[int] = []

        async def one(i: int) -> int:
            offset = await wal.append(b"%06d" % i)
            completed.append(offset)
            return offset

        offsets = await asyncio.gather(*(one(i) for i in range(self.concurrent_appends)))
        assert offsets == sorted(offsets), "offsets must follow call order"
        assert completed == sorted(completed), "appends must complete in offset order"
        stats = wal.stats()
        assert stats.appends >= self.concurrent_appends
        assert 0 < stats.syncs <= stats.appends
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.body for r in records] == [b"%06d" % i for i in range(self.concurrent_appends)]
        await wal.close()

    async def test_appends_continue_after_recovery(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        first = [await wal.append(b"a%d" % i) for i in range(3)]
        await wal.close()
        wal, records = await _open(wal_factory)
        more = [await wal.append(b"b%d" % i) for i in range(3)]
        assert min(more) > max(first)
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.body for r in records] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
        await wal.close()

    async def test_trim_discards_only_records_below(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        offsets = [await wal.append(b"t%d" % i) for i in range(10)]
        await wal.trim(offsets[6])
        await wal.trim(offsets[2])  # trimming backwards is a no-op
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.offset for r in records] == offsets[6:]
        assert [r.body for r in records] == [b"t%d" % i for i in range(6, 10)]
        await wal.close()

    async def test_trim_everything_then_append(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        offsets = [await wal.append(b"x") for _ in range(5)]
        await wal.trim(offsets[-1] + 1)
        after = await wal.append(b"after")
        assert after > offsets[-1]
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [(r.offset, r.body) for r in records] == [(after, b"after")]
        await wal.close()

    async def test_bodies_of_every_shape(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        large = os.urandom(self.large_body)
        bodies: list[bytes | memoryview] = [b"", large, memoryview(b"view-body"),
                                            memoryview(bytearray(b"0123456789"))[2:7]]
        for body in bodies:
            await wal.append(body)
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.body for r in records] == [b"", large, b"view-body", b"23456"]
        await wal.close()

    async def test_append_after_close_raises_closed(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        await wal.close()
        with pytest.raises(Closed):
            await wal.append(b"late")

    async def test_full_wal_applies_back_pressure_until_trim(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory, capacity_bytes=self.capacity_bytes,
                             full_timeout_s=self.full_timeout_s)
        body = b"f" * 1000
        offsets = []
        with pytest.raises(WalFull):
            for _ in range(10 * self.capacity_bytes // len(body)):
                offsets.append(await wal.append(body))
        assert offsets, "nothing fit into the WAL"
        waiting = asyncio.create_task(wal.append(body))
        await asyncio.sleep(self.full_timeout_s / 5)
        assert not waiting.done(), "append must wait for space, not fail at once"
        await wal.trim(offsets[-1] + 1)
        assert await asyncio.wait_for(waiting, 10) > offsets[-1]
        await wal.close()

    async def test_record_larger_than_capacity_is_refused(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory, capacity_bytes=self.capacity_bytes,
                             full_timeout_s=self.full_timeout_s)
        with pytest.raises(WalFull):
            await wal.append(b"z" * (self.capacity_bytes + 1))
        assert await wal.append(b"small") >= 0
        await wal.close()
