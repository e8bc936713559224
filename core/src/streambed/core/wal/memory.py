"""In-process reference WAL: the full contract, no durability. For tests and experiments.

State lives in a process-wide table keyed by ``name``, so a test can "restart" (close and reopen)
and see what a durable WAL would have kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.errors import Closed, WalFull
from streambed.core.wal.api import WalRecord, WalStats
from streambed.core.wal.capacity import SpaceGate

__all__ = ["MemoryWal", "MemoryWalOptions", "open_memory_wal"]

RECORD_OVERHEAD = 24  # counted like the file WAL's record header, so capacity behaves alike


class MemoryWalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", description="Instances with the same name share state (tests).")
    capacity_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Back-pressure bound.")
    full_timeout_ms: int = Field(10_000, ge=0, description="How long append waits for space.")


@dataclass
class _State:
    records: dict[int, bytes] = field(default_factory=dict)
    next_offset: int = 0
    trim: int = 0


_STATES: dict[str, _State] = {}


class MemoryWal:
    def __init__(self, state: _State, capacity: int, full_timeout_s: float) -> None:
        self._state = state
        self._capacity = capacity
        self._space = SpaceGate(full_timeout_s, "memory")
        self._closed = False
        self._appends = 0
        self._syncs = 0
        self._used = sum(len(b) + RECORD_OVERHEAD for b in state.records.values())

    async def recover(self) -> AsyncIterator[WalRecord]:
        for offset in sorted(self._state.records):
            if offset >= self._state.trim:
                yield WalRecord(offset, self._state.records[offset])

    async def start(self) -> None:
        return None

    async def append(self, body: bytes | memoryview) -> int:
        if self._closed:
            raise Closed("memory WAL is closed")
        size = len(body) + RECORD_OVERHEAD
        if size > self._capacity:
            raise WalFull(f"record of {size} bytes exceeds the WAL capacity {self._capacity}")
        if self._used + size > self._capacity:
            await self._space.wait_until(
                lambda: self._used + size <= self._capacity,
                lambda: f"{self._used} of {self._capacity} bytes",
            )
        offset = self._state.next_offset
        self._state.next_offset += 1
        self._state.records[offset] = bytes(body)
        self._used += size
        self._appends += 1
        self._syncs += 1
        return offset

    async def trim(self, offset: int) -> None:
        if offset <= self._state.trim:
            return
        self._state.trim = offset
        for key in [k for k in self._state.records if k < offset]:
            self._used -= len(self._state.records.pop(key)) + RECORD_OVERHEAD
        await self._space.release()

    async def close(self) -> None:
        self._closed = True
        await self._space.close()

    def stats(self) -> WalStats:
        return WalStats(self._capacity, self._used, self._appends, self._syncs)


async def open_memory_wal(options: MemoryWalOptions, context: NodeContext) -> MemoryWal:
    state = _STATES.setdefault(options.name, _State())
    return MemoryWal(state, options.capacity_bytes, options.full_timeout_ms / 1000.0)
