"""Conformance suite for :class:`~streambed.core.wal.api.WriteAheadLog` implementations.

Subclass :class:`WalConformance` in your plugin's tests and provide the fixture ``wal_factory``: an
async callable that opens the WAL at one fixed location -- and, called again after ``close()``,
*reopens the same location*, so the restart tests see what the first instance left behind::

    class TestMyWal(WalConformance):
        capacity_bytes = 64 * 1024      # used by the back-pressure tests

        @pytest.fixture
        def wal_factory(self, tmp_path):
            async def open_wal(capacity_bytes=None, full_timeout_s=10.0):
                options = MyOptions(path=tmp_path / "wal", capacity_bytes=capacity_bytes or 2**30,
                                    full_timeout_ms=int(full_timeout_s * 1000))
                return await open_my_wal(options, NodeContext(data_dir=tmp_path))
            return open_wal

The factory receives ``capacity_bytes`` (``None``: anything large) and ``full_timeout_s``; the
back-pressure tests pass both and rely on them. The tests call ``recover()`` and ``start()``
themselves. Class attributes tune the suite for a medium (see their comments).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streambed.core.errors import Closed, WalFull
from streambed.core.wal.api import WalRecord, WriteAheadLog

__all__ = ["WalConformance", "WalFactory", "trace_sync_threads"]

WalFactory = Callable[..., Awaitable[WriteAheadLog]]


def trace_sync_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of the thread of every ``os.fdatasync`` from now on (until
    ``monkeypatch.undo()``): tells commits made on the event loop from the writer thread's."""
    threads: list[str] = []
    real = os.fdatasync

    def traced(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", traced)
    return threads


async def _open(factory: WalFactory, **kwargs: Any) -> tuple[WriteAheadLog, list[WalRecord]]:
    wal = await factory(**kwargs)
    records = [record async for record in wal.recover()]
    await wal.start()
    return wal, records


def _pairs(records: list[WalRecord]) -> list[tuple[int, bytes]]:
    return [(r.offset, r.body) for r in records]


class WalConformance:
    """Behaviour every WAL must have. Small, fast tests."""

    capacity_bytes: int = 64 * 1024
    """Capacity for the back-pressure tests: room for a few dozen 1000-byte records."""
    full_timeout_s: float = 0.5
    """How long a full WAL makes an append wait in the back-pressure tests."""
    large_body: int = 1024 * 1024
    concurrent_appends: int = 500
    expects_group_commit: bool = True
    """Whether concurrent appends share durable writes (``stats().syncs < appends``). A WAL
    without a medium (the memory WAL) has nothing to share and turns this off."""

    # -- ordering and durability -----------------------------------------------------------------

    async def test_offsets_increase_and_records_survive_reopen(
        self, wal_factory: WalFactory
    ) -> None:
        wal, records = await _open(wal_factory)
        assert records == []
        bodies = [b"record-%d" % i * (i % 7) for i in range(40)]
        offsets = [await wal.append(body) for body in bodies]
        assert all(a < b for a, b in itertools.pairwise(offsets)), offsets
        await wal.close()
        wal, records = await _open(wal_factory)
        assert _pairs(records) == list(zip(offsets, bodies, strict=True))
        await wal.close()

    async def test_concurrent_appends_complete_in_call_order(
        self, wal_factory: WalFactory
    ) -> None:
        wal, _ = await _open(wal_factory)
        completed: list[int] = []

        async def one(i: int) -> int:
            offset = await wal.append(b"%06d" % i)
            completed.append(offset)
            return offset

        n = self.concurrent_appends
        offsets = await asyncio.gather(*(one(i) for i in range(n)))
        assert all(a < b for a, b in itertools.pairwise(offsets)), \
            "offsets must grow in call order"
        assert completed == offsets, "appends must complete in call order"
        stats = wal.stats()
        assert stats.appends >= n
        assert 0 < stats.syncs <= stats.appends
        if self.expects_group_commit:
            assert stats.syncs < n, f"no group commit under {n} concurrent appends: {stats}"
        await wal.close()
        wal, records = await _open(wal_factory)
        assert _pairs(records) == [(offset, b"%06d" % i) for i, offset in enumerate(offsets)]
        await wal.close()

    async def test_appends_continue_after_recovery(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        first = [await wal.append(b"a%d" % i) for i in range(3)]
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.offset for r in records] == first
        more = [await wal.append(b"b%d" % i) for i in range(3)]
        assert min(more) > max(first)
        await wal.close()
        wal, records = await _open(wal_factory)
        assert _pairs(records) == list(
            zip(first + more, [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"], strict=True)
        )
        await wal.close()

    async def test_close_flushes_outstanding_appends(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        tasks = [asyncio.create_task(wal.append(b"pending-%d" % i)) for i in range(50)]
        await asyncio.sleep(0)  # every append has been called
        await wal.close()
        offsets = await asyncio.gather(*tasks)
        wal, records = await _open(wal_factory)
        assert _pairs(records) == [(o, b"pending-%d" % i) for i, o in enumerate(offsets)]
        await wal.close()

    async def test_append_after_close_raises_closed(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        await wal.append(b"before")
        await wal.close()
        with pytest.raises(Closed):
            await wal.append(b"late")

    # -- bodies ----------------------------------------------------------------------------------

    async def test_bodies_of_every_shape(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        large = os.urandom(self.large_body)
        bodies: list[bytes | memoryview] = [
            b"",
            large,
            memoryview(b"view-body"),
            memoryview(bytearray(b"0123456789"))[2:7],
            b"",
            memoryview(large)[1:-1],
        ]
        offsets = [await wal.append(body) for body in bodies]
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.offset for r in records] == offsets
        assert [r.body for r in records] == [b"", large, b"view-body", b"23456", b"", large[1:-1]]
        assert all(type(r.body) is bytes for r in records)
        await wal.close()

    async def test_buffer_reused_after_append_returns(self, wal_factory: WalFactory) -> None:
        """Once append returned, the record is durable: the caller may overwrite its buffer."""
        wal, _ = await _open(wal_factory)
        buffer = bytearray(b"original")
        await wal.append(memoryview(buffer))
        buffer[:] = b"CHANGED!"
        await wal.append(memoryview(buffer))
        await wal.close()
        wal, records = await _open(wal_factory)
        assert [r.body for r in records] == [b"original", b"CHANGED!"]
        await wal.close()

    # -- trim ------------------------------------------------------------------------------------

    async def test_trim_discards_only_records_below(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        offsets = [await wal.append(b"t%d" % i) for i in range(10)]
        used = wal.stats().used
        await wal.trim(offsets[6])
        assert wal.stats().used <= used
        await wal.trim(offsets[2])  # trimming backwards is a no-op
        await wal.close()
        wal, records = await _open(wal_factory)
        assert _pairs(records) == [(offsets[i], b"t%d" % i) for i in range(6, 10)]
        await wal.close()

    async def test_trim_everything_then_append(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory)
        offsets = [await wal.append(b"x") for _ in range(5)]
        await wal.trim(offsets[-1] + 1)
        after = await wal.append(b"after")
        assert after > offsets[-1]
        await wal.close()
        wal, records = await _open(wal_factory)
        assert _pairs(records) == [(after, b"after")]
        next_one = await wal.append(b"next")
        assert next_one > after
        await wal.close()

    # -- capacity --------------------------------------------------------------------------------

    async def _fill(self, wal: WriteAheadLog, body: bytes) -> list[int]:
        """Append until WalFull; check the failing append waited about full_timeout_s first."""
        offsets: list[int] = []
        with pytest.raises(WalFull):
            for _ in range(10 * self.capacity_bytes // len(body)):
                began = time.monotonic()
                offsets.append(await wal.append(body))
        waited = time.monotonic() - began
        assert waited >= self.full_timeout_s * 0.9, f"WalFull after {waited:.3f} s, not a timeout"
        assert offsets, "nothing fit into the WAL"
        return offsets

    async def test_full_wal_waits_for_trim_then_raises_wal_full(
        self, wal_factory: WalFactory
    ) -> None:
        wal, _ = await _open(
            wal_factory, capacity_bytes=self.capacity_bytes, full_timeout_s=self.full_timeout_s
        )
        assert wal.stats().capacity == self.capacity_bytes
        body = b"f" * 1000
        offsets = await self._fill(wal, body)
        assert len(offsets) * len(body) <= self.capacity_bytes
        waiting = asyncio.create_task(wal.append(body))
        await asyncio.sleep(self.full_timeout_s / 5)
        assert not waiting.done(), "append must wait for space, not fail at once"
        await wal.trim(offsets[-1] + 1)
        assert await asyncio.wait_for(waiting, 10) > offsets[-1]
        await wal.close()
        wal, records = await _open(wal_factory, capacity_bytes=self.capacity_bytes,
                                   full_timeout_s=self.full_timeout_s)
        assert [r.body for r in records] == [body]
        await wal.close()

    async def test_waiting_appends_keep_call_order(self, wal_factory: WalFactory) -> None:
        """A small append must not overtake a larger one that waits for space before it."""
        wal, _ = await _open(
            wal_factory, capacity_bytes=self.capacity_bytes, full_timeout_s=self.full_timeout_s
        )
        offsets = await self._fill(wal, b"f" * 1000)
        await wal.trim(offsets[1])  # room for about one record (a block, on block WALs)
        big = asyncio.create_task(wal.append(b"B" * (self.capacity_bytes // 2)))
        await asyncio.sleep(0)
        small = asyncio.create_task(wal.append(b"s"))
        await asyncio.sleep(self.full_timeout_s / 5)
        assert not big.done()
        assert not small.done(), "a later append completed before an earlier one"
        await wal.trim(offsets[-1] + 1)
        big_offset, small_offset = await asyncio.wait_for(asyncio.gather(big, small), 10)
        assert offsets[-1] < big_offset < small_offset
        await wal.close()

    async def test_record_larger_than_capacity_is_refused(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(
            wal_factory, capacity_bytes=self.capacity_bytes, full_timeout_s=self.full_timeout_s
        )
        began = time.monotonic()
        with pytest.raises(WalFull):
            await wal.append(b"z" * (self.capacity_bytes + 1))
        assert time.monotonic() - began < self.full_timeout_s, "must fail at once, not wait"
        assert await wal.append(b"small") >= 0
        await wal.close()

    async def test_close_wakes_appends_waiting_for_space(self, wal_factory: WalFactory) -> None:
        wal, _ = await _open(wal_factory, capacity_bytes=self.capacity_bytes, full_timeout_s=30)
        body = b"c" * 1000
        for _ in range(10 * self.capacity_bytes // len(body)):
            task = asyncio.create_task(wal.append(body))
            done, _pending = await asyncio.wait({task}, timeout=0.2)
            if not done:
                break
            task.result()
        else:
            pytest.fail("the WAL never filled up")
        await wal.close()
        with pytest.raises(Closed):
            await asyncio.wait_for(task, 5)
