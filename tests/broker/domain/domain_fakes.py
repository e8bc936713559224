"""Test doubles for the domain tests: a stream allocator that remembers what exists, and a store
wrapper that "crashes" the process at a chosen transaction."""

from __future__ import annotations

from collections.abc import Sequence

from streambed.core.errors import NotFound
from streambed.core.metadata.api import Compare, Delete, KeyValue, MetadataStore, Put, TxnResult


class FakeAllocator:
    """Stream ids from 1 up; ``live`` is what exists. ``fail_create_after`` makes the n+1-th
    create raise, ``fail_delete`` makes deletes raise (an unreachable object store)."""

    def __init__(self) -> None:
        self.next_id = 1
        self.live: set[int] = set()
        self.deleted: list[int] = []
        self.fail_create_after: int | None = None
        self.fail_delete = False
        self.creates = 0

    async def create_stream(self) -> int:
        if self.fail_create_after is not None and self.creates >= self.fail_create_after:
            raise OSError("injected: stream creation failed")
        self.creates += 1
        sid = self.next_id
        self.next_id += 1
        self.live.add(sid)
        return sid

    async def delete_stream(self, stream_id: int) -> None:
        if self.fail_delete:
            raise OSError("injected: stream deletion failed")
        if stream_id not in self.live:
            raise NotFound(f"stream {stream_id}")
        self.live.remove(stream_id)
        self.deleted.append(stream_id)


class Crashed(BaseException):
    """The simulated process died; nothing may catch this and carry on."""


class CrashingStore:
    """Forwards to ``inner`` until ``crash_after`` more transactions have run; then every call
    raises :class:`Crashed`, as if the broker was killed between two store writes."""

    def __init__(self, inner: MetadataStore, crash_after: int | None = None) -> None:
        self.inner = inner
        self.crash_after = crash_after
        self.txns = 0

    def _check(self) -> None:
        if self.crash_after is not None and self.txns >= self.crash_after:
            raise Crashed

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return await self.inner.get(key)

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> list[KeyValue]:
        self._check()
        return await self.inner.range(prefix, start_after=start_after, limit=limit)

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Put | Delete],
        on_failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        self._check()
        self.txns += 1
        return await self.inner.txn(compares, on_success, on_failure)

    async def revision(self) -> int:
        self._check()
        return await self.inner.revision()

    async def close(self) -> None:
        return None


def subscription(*topics: str, version: int = 1) -> bytes:
    """A ConsumerProtocolSubscription (v0 prefix: version, topics, user data)."""
    import struct

    out = struct.pack(">hi", version, len(topics))
    for topic in topics:
        raw = topic.encode()
        out += struct.pack(">h", len(raw)) + raw
    return out + struct.pack(">i", -1)
