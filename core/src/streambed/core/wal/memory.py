"""In-process reference WAL: the whole contract, no durability. For tests and experiments.

Each append is "durable" the moment it is made (there is no medium), so appends complete in call
order trivially and every append counts as one sync: there is nothing to group-commit.

Offsets are record sequence numbers (0, 1, 2, ...). Capacity counts each record as its body plus
:data:`RECORD_OVERHEAD` bytes, like the file WAL's record header, so back-pressure behaves alike.

State lives in a process-wide table keyed by :attr:`MemoryWalOptions.name` (test-only): closing a
WAL and opening another with the same name is a "restart" that sees what a durable WAL would have
kept. Two *open* instances with one name are two processes writing one log: not supported.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.errors import Closed, WalFull
from streambed.core.wal.api import WalRecord, WalStats
from streambed.core.wal.capacity import SpaceGate

__all__ = ["RECORD_OVERHEAD", "MemoryWal", "MemoryWalOptions", "open_memory_wal"]

RECORD_OVERHEAD = 24
"""Bytes each record costs beside its body (the file WAL's header size)."""


class MemoryWalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "default",
        description="Test-only: instances opened with the same name share one log in this "
        "process, so a test can close and reopen ('restart') the WAL.",
    )
    capacity_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Bytes above the trim point before appends wait."
    )
    full_timeout_ms: int = Field(
        10_000, ge=0, description="How long an append waits for space before WalFull."
    )


@dataclass
class _Log:
    records: collections.deque[WalRecord] = field(default_factory=collections.deque)
    next_offset: int = 0
    trim: int = 0


_LOGS: dict[str, _Log] = {}


class MemoryWal:
    def __init__(self, log: _Log, name: str, capacity: int, full_timeout_s: float) -> None:
        self._log = log
        self._name = name
        self._capacity = capacity
        self._space = SpaceGate(full_timeout_s, f"memory:{name}")
        self._used = sum(len(r.body) + RECORD_OVERHEAD for r in log.records)
        self._started = False
        self._closed = False
        self._appends = 0

    async def recover(self) -> AsyncIterator[WalRecord]:
        for record in list(self._log.records):
            if record.offset >= self._log.trim:
                yield record

    async def start(self) -> None:
        if self._closed:
            raise Closed(f"memory WAL {self._name} is closed")
        self._started = True

    async def append(self, body: bytes | memoryview) -> int:
        if self._closed:
            raise Closed(f"memory WAL {self._name} is closed")
        if not self._started:
            raise RuntimeError("append() before start()")
        size = len(body) + RECORD_OVERHEAD
        if size > self._capacity:
            raise WalFull(f"a record of {size} bytes exceeds the WAL capacity {self._capacity}")
        await self._space.reserve(
            lambda: self._used + size <= self._capacity,
            lambda: f"{self._used} of {self._capacity} bytes used",
        )
        if self._closed:  # closed while this append waited for space
            raise Closed(f"memory WAL {self._name} is closed")
        offset = self._log.next_offset
        self._log.next_offset += 1
        # A copy: the caller may reuse its buffer once the append returned.
        self._log.records.append(WalRecord(offset, bytes(body)))
        self._used += size
        self._appends += 1
        return offset

    async def trim(self, offset: int) -> None:
        if self._closed:
            raise Closed(f"memory WAL {self._name} is closed")
        log = self._log
        offset = min(offset, log.next_offset)
        if offset <= log.trim:
            return
        log.trim = offset
        while log.records and log.records[0].offset < offset:
            self._used -= len(log.records.popleft().body) + RECORD_OVERHEAD
        await self._space.release()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._space.close()

    def stats(self) -> WalStats:
        return WalStats(self._capacity, self._used, self._appends, self._appends)


async def open_memory_wal(options: MemoryWalOptions, context: NodeContext) -> MemoryWal:
    log = _LOGS.setdefault(options.name, _Log())
    return MemoryWal(log, options.name, options.capacity_bytes, options.full_timeout_ms / 1000.0)
