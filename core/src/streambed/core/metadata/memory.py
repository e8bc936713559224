"""In-process reference metadata store: the full transactional KV contract, no durability."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.metadata._kv import compare_holds
from streambed.core.metadata.api import Compare, Delete, KeyValue, Put, TxnResult

__all__ = ["MemoryMetadataOptions", "MemoryMetadataStore", "open_memory_metadata"]


class MemoryMetadataOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", description="Stores with the same name share state (tests).")


@dataclass
class _State:
    data: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    keys: list[bytes] = field(default_factory=list)  # sorted by UTF-8 bytes
    revision: int = 0


_STATES: dict[str, _State] = {}


class MemoryMetadataStore:
    def __init__(self, state: _State) -> None:
        self._s = state
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> KeyValue | None:
        entry = self._s.data.get(key.encode())
        return None if entry is None else KeyValue(key, entry[0], entry[1])

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> list[KeyValue]:
        raw = prefix.encode()
        keys = self._s.keys
        if start_after is not None:
            index = bisect.bisect_right(keys, start_after.encode())
        else:
            index = bisect.bisect_left(keys, raw)
        out: list[KeyValue] = []
        for key in keys[index:]:
            if not key.startswith(raw):
                if key > raw:
                    break
                continue
            value, revision = self._s.data[key]
            out.append(KeyValue(key.decode(), value, revision))
            if limit and len(out) == limit:
                break
        return out

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Put | Delete],
        on_failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        async with self._lock:
            ok = all(
                compare_holds(c, self._s.data.get(c.key.encode(), (b"", 0))[1]) for c in compares
            )
            ops = on_success if ok else on_failure
            if any(True for _ in ops):
                self._s.revision += 1
                for op in ops:
                    self._apply(op, self._s.revision)
            return TxnResult(ok, self._s.revision)

    def _apply(self, op: Put | Delete, revision: int) -> None:
        if isinstance(op, Put):
            key = op.key.encode()
            if key not in self._s.data:
                bisect.insort(self._s.keys, key)
            self._s.data[key] = (bytes(op.value), revision)
            return
        raw = op.key.encode()
        if op.prefix:
            doomed = [k for k in self._s.keys if k.startswith(raw)]
        else:
            doomed = [raw] if raw in self._s.data else []
        for key in doomed:
            del self._s.data[key]
            del self._s.keys[bisect.bisect_left(self._s.keys, key)]

    async def revision(self) -> int:
        return self._s.revision

    async def close(self) -> None:
        return None


async def open_memory_metadata(
    options: MemoryMetadataOptions, context: NodeContext
) -> MemoryMetadataStore:
    return MemoryMetadataStore(_STATES.setdefault(options.name, _State()))
