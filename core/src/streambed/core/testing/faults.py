"""Fault injection as wrappers over the storage interfaces (never code inside a store).

A :class:`FaultPlan` decides, per I/O point (``"objects.put"``, ``"metadata.txn"``, ``"wal.append"``,
...), whether a call fails with :class:`~streambed.core.errors.Unavailable` *before* it reaches the
medium, or *after* it succeeded (the classic dropped response: the write happened, the caller sees an
error). It is deterministic: driven by a seeded ``random.Random`` and a per-point probability, or an
explicit schedule of call numbers. ``counts`` records every call per point.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from streambed.core.errors import Unavailable
from streambed.core.metadata.api import Compare, Delete, KeyValue, MetadataStore, Put, TxnResult
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo, ObjectStore
from streambed.core.wal.api import WalRecord, WalStats, WriteAheadLog

__all__ = ["FaultPlan", "FaultyMetadataStore", "FaultyObjectStore", "FaultyWal"]

T = TypeVar("T")
When = Literal["before", "after"]


class FaultPlan:
    def __init__(
        self,
        seed: int = 0,
        probability: dict[str, float] | None = None,
        schedule: dict[str, set[int]] | None = None,
        after_share: float = 0.5,
    ) -> None:
        self.rng = random.Random(seed)
        self.after_share = after_share  # share of faults injected after the operation happened
        self.probability = dict(probability or {})
        self.schedule = {k: set(v) for k, v in (schedule or {}).items()}
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.enabled = True

    def decide(self, point: str) -> When | None:
        self.counts[point] += 1
        if not self.enabled:
            return None
        hit = self.counts[point] in self.schedule.get(point, set())
        hit = hit or self.rng.random() < self.probability.get(point, 0.0)
        if not hit:
            return None
        self.injected[point] += 1
        return "after" if self.rng.random() < self.after_share else "before"

    async def run(
        self, point: str, op: Callable[[], Awaitable[T]], *, idempotent_only: bool = False
    ) -> T:
        when = self.decide(point)
        if when == "before" or (when == "after" and idempotent_only):
            raise Unavailable(f"injected fault before {point}")
        result = await op()
        if when == "after":
            raise Unavailable(f"injected fault after {point} (the operation happened)")
        return result


class FaultyObjectStore:
    def __init__(self, inner: ObjectStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        return await self.plan.run(
            "objects.put", lambda: self.inner.put(key, data, if_none_match=if_none_match)
        )

    async def get(self, key: str) -> bytes:
        return await self.plan.run("objects.get", lambda: self.inner.get(key))

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        return await self.plan.run(
            "objects.get_range", lambda: self.inner.get_range(key, start, end)
        )

    async def head(self, key: str) -> ObjectInfo:
        return await self.plan.run("objects.head", lambda: self.inner.head(key))

    async def delete(self, keys: Sequence[str]) -> None:
        await self.plan.run("objects.delete", lambda: self.inner.delete(keys))

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        return await self.plan.run(
            "objects.list", lambda: self.inner.list(prefix, token=token, limit=limit)
        )

    async def cleanup(self) -> int:
        return await self.plan.run("objects.cleanup", self.inner.cleanup)

    async def close(self) -> None:
        await self.inner.close()


class FaultyMetadataStore:
    def __init__(self, inner: MetadataStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    async def get(self, key: str) -> KeyValue | None:
        return await self.plan.run("metadata.get", lambda: self.inner.get(key))

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> list[KeyValue]:
        return await self.plan.run(
            "metadata.range", lambda: self.inner.range(prefix, start_after=start_after, limit=limit)
        )

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Put | Delete],
        on_failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        return await self.plan.run(
            "metadata.txn", lambda: self.inner.txn(compares, on_success, on_failure)
        )

    async def revision(self) -> int:
        return await self.inner.revision()

    async def close(self) -> None:
        await self.inner.close()


class FaultyWal:
    """WAL faults are only injected *before* a write: a WAL that fails after writing refuses all
    later appends (so an injected "after" would model a dead WAL, which a crash models better)."""

    def __init__(self, inner: WriteAheadLog, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def recover(self) -> AsyncIterator[WalRecord]:
        return self.inner.recover()

    async def start(self) -> None:
        await self.inner.start()

    async def append(self, body: bytes | memoryview) -> int:
        return await self.plan.run(
            "wal.append", lambda: self.inner.append(body), idempotent_only=True
        )

    async def trim(self, offset: int) -> None:
        await self.plan.run("wal.trim", lambda: self.inner.trim(offset))

    async def close(self) -> None:
        await self.inner.close()

    def stats(self) -> WalStats:
        return self.inner.stats()
