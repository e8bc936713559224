"""In-process reference object store: the full contract, no durability. For tests.

State lives in a process-wide table keyed by ``name`` so a test can reopen the "same" store.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.errors import ConditionFailed, NotFound
from streambed.core.objects._common import as_buffers, check_key
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo

__all__ = ["MemoryObjectStore", "MemoryObjectStoreOptions", "open_memory_store"]


class MemoryObjectStoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", description="Stores with the same name share objects (tests).")
    conditional_put: bool = Field(True, description="Advertise conditional puts (tests).")


@dataclass
class _State:
    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted


_STATES: dict[str, _State] = {}


class MemoryObjectStore:
    def __init__(self, state: _State, conditional_put: bool) -> None:
        self._state = state
        self._caps = Capabilities(conditional_put=conditional_put, multipart=False)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        check_key(key)
        if if_none_match and not self._caps.conditional_put:
            raise ValueError("this store does not advertise conditional puts")
        body = b"".join(bytes(b) for b in as_buffers(data))
        if if_none_match and key in self._state.objects:
            raise ConditionFailed(f"object {key!r} already exists")
        if key not in self._state.objects:
            bisect.insort(self._state.keys, key)
        now = time.time()
        self._state.objects[key] = (body, now)
        return ObjectInfo(key, len(body), etag=str(hash(body)), modified=now)

    def _body(self, key: str) -> bytes:
        try:
            return self._state.objects[key][0]
        except KeyError:
            raise NotFound(f"object {key!r} not found") from None

    async def get(self, key: str) -> bytes:
        return self._body(key)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        return self._body(key)[start:end]

    async def head(self, key: str) -> ObjectInfo:
        body = self._body(key)
        return ObjectInfo(key, len(body), etag=str(hash(body)),
                          modified=self._state.objects[key][1])

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            if self._state.objects.pop(key, None) is not None:
                index = bisect.bisect_left(self._state.keys, key)
                del self._state.keys[index]

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        keys = self._state.keys
        start = bisect.bisect_right(keys, token) if token else bisect.bisect_left(keys, prefix)
        out: list[ObjectInfo] = []
        for key in keys[start:]:
            if not key.startswith(prefix):
                if key > prefix:
                    break
                continue
            if len(out) == limit:
                return ListPage(out, out[-1].key)
            body, modified = self._state.objects[key]
            out.append(ObjectInfo(key, len(body), modified=modified))
        return ListPage(out, None)

    async def cleanup(self) -> int:
        return 0

    async def close(self) -> None:
        return None


async def open_memory_store(
    options: MemoryObjectStoreOptions, context: NodeContext
) -> MemoryObjectStore:
    return MemoryObjectStore(_STATES.setdefault(options.name, _State()), options.conditional_put)
