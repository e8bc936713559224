"""The write-ahead log interface.

A WAL stores opaque records durably and hands back a monotonically increasing *logical offset* for each
one. Lifecycle::

    wal = factory(options, context)
    async for record in wal.recover():   # once, before the first append; yields every record
        ...                              # at or above the trim point, in offset order
    await wal.start()                    # appends are accepted from here on
    result = await wal.append(body)      # returns once the record is durable (fsync'd / PUT acked)
    await wal.trim(offset)               # records with offset < `offset` may be discarded
    await wal.close()                    # flushes, marks a clean shutdown

Ordering: ``append`` calls complete in the order they were made, and offsets grow in that order
(AutoMQ ``WriteAheadLog``). A failed append fails every later append that was not yet durable, and
the WAL refuses further appends (it never acknowledges after a failed fsync). When the WAL is full,
``append`` waits up to ``full_timeout`` for a trim and then raises :class:`~streambed.core.errors.WalFull`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["WalRecord", "WalStats", "WriteAheadLog"]


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One recovered record: its logical offset and its body, exactly as appended."""

    offset: int
    body: bytes


@dataclass(frozen=True, slots=True)
class WalStats:
    capacity: int
    """Bytes the WAL may hold before appends apply back-pressure."""
    used: int
    """Bytes between the trim point and the end."""
    appends: int
    syncs: int
    """Number of durable writes (fsync/PUT); appends/syncs is the group-commit factor."""


@runtime_checkable
class WriteAheadLog(Protocol):
    def recover(self) -> AsyncIterator[WalRecord]:
        """Yield every record at or above the trim point that passed its checksum, in order."""
        ...

    async def start(self) -> None:
        """Begin accepting appends. Called once, after :meth:`recover` was consumed."""
        ...

    async def append(self, body: bytes | memoryview) -> int:
        """Durably append ``body`` and return its logical offset."""
        ...

    async def trim(self, offset: int) -> None:
        """Allow records with an offset below ``offset`` to be discarded."""
        ...

    async def close(self) -> None:
        """Flush outstanding appends, record a clean shutdown and release resources."""
        ...

    def stats(self) -> WalStats:
        """Current capacity, usage and group-commit counters."""
        ...
