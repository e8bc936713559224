"""The object store interface.

Keys are ``/``-separated strings without a leading slash. Objects are immutable once written: the
engine never overwrites a data object (it writes a new key). ``put`` of a whole object is atomic:
a reader sees either nothing or the whole object. Stores advertise what they can do in
:class:`Capabilities`; callers must never assume a capability that is not advertised.

Errors: a missing key raises :class:`~streambed.core.errors.NotFound`; a lost conditional write raises
:class:`~streambed.core.errors.ConditionFailed`; anything transient raises
:class:`~streambed.core.errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Buffers", "Capabilities", "ListPage", "ObjectInfo", "ObjectStore"]

Buffers = bytes | memoryview | Sequence[bytes | memoryview]
"""A body given as one buffer or as a list of buffers written back to back (no join needed)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    conditional_put: bool = False
    """``put(..., if_none_match=True)`` is atomic: of two racing writers exactly one wins."""
    multipart: bool = False
    """Large puts are split into parts; abandoned parts are cleaned by :meth:`ObjectStore.cleanup`."""
    max_delete_batch: int = 1000


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    modified: float | None = None
    """Seconds since the epoch, when the store knows it."""


@dataclass(frozen=True, slots=True)
class ListPage:
    objects: list[ObjectInfo] = field(default_factory=list)
    next_token: str | None = None
    """Pass back as ``token`` to get the next page; ``None`` on the last page."""


@runtime_checkable
class ObjectStore(Protocol):
    @property
    def capabilities(self) -> Capabilities: ...

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        """Write a whole object atomically. With ``if_none_match`` fail if the key exists
        (only allowed when ``capabilities.conditional_put``)."""
        ...

    async def get(self, key: str) -> bytes:
        """Read a whole object."""
        ...

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Read bytes ``[start, end)``; ``end`` beyond the object's size is clipped."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Size and etag of an object; :class:`NotFound` if absent."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete keys; absent keys are not an error. Batches larger than the store allows are split."""
        ...

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        """One page of objects whose key starts with ``prefix``.

        Keys come in byte order within one "directory"; hierarchical stores (SeaweedFS) may list
        ``p/x`` before ``p-y``. Paging returns every key exactly once; callers that need a strict
        global order sort what they collected."""
        ...

    async def cleanup(self) -> int:
        """Remove debris of interrupted writes (temporary files, abandoned multipart uploads).
        Returns how many items were removed."""
        ...

    async def close(self) -> None: ...
