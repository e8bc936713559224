"""The metadata store interface: a small transactional key-value store with revisions.

Every piece of cluster metadata (streams, ranges, epochs, objects, topics, groups, producer state,
broker registrations) is stored as keys in one ordered key space, and every change is an atomic
transaction guarded by compare-and-swap on key revisions. This is exactly what etcd offers, so the
cluster store is a thin adapter, and the domain logic (fencing, object states) is written once in
:mod:`streambed.core.metadata.streams` on top of this interface (see ``docs/rfcs/0002``).

Semantics (the conformance suite checks each):

* Keys are ``str``; values are ``bytes``. ``range`` returns keys in byte order of their UTF-8 encoding.
* Every successful transaction increments the store's *revision* by one; each key it writes gets that
  revision as ``mod_revision``. A key that does not exist has ``mod_revision == 0``.
* ``txn(compares, on_success, on_failure)`` evaluates all compares atomically; if all hold it applies
  ``on_success`` else ``on_failure``; the whole thing is atomic and durable when it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Compare",
    "Delete",
    "KeyValue",
    "MetadataStore",
    "Put",
    "TxnResult",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when the key's ``mod_revision`` compares to ``revision`` with ``op``.

    ``Compare(key, "==", 0)`` means "the key does not exist".
    """

    key: str
    op: Literal["==", "!=", "<", ">"]
    revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False
    """Delete every key starting with ``key``."""


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    """Store revision after the transaction (unchanged when nothing was written)."""
    responses: list[KeyValue | None] = field(default_factory=list)


@runtime_checkable
class MetadataStore(Protocol):
    async def get(self, key: str) -> KeyValue | None:
        """The current value of ``key`` or ``None``."""
        ...

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> list[KeyValue]:
        """Keys starting with ``prefix`` (after ``start_after`` if given), in key order;
        ``limit=0`` means all."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Put | Delete],
        on_failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        """Atomically apply ``on_success`` if every compare holds, else ``on_failure``."""
        ...

    async def revision(self) -> int:
        """The store's current revision."""
        ...

    async def close(self) -> None: ...
