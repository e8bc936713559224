"""A partition's sparse time index: where to start looking for the first record at or after a time.

Kafka keeps a time index per log segment: every ``index.interval.bytes`` it records the largest
timestamp seen so far and the offset where it was seen. This is the same idea for a partition held
in a stream, kept in memory:

- every entry ``(ts, offset)`` says: *no record before the batch at ``offset`` ... nor any record
  appended until the next entry has a timestamp above ``ts``*, and the batch at ``offset`` holds a
  record with timestamp ``ts`` (the running maximum). Entries' timestamps strictly increase;
- to find the first record with timestamp >= ``t``, start reading at the offset of the last entry
  whose timestamp is below ``t`` (everything before it is older than ``t``), or at the start of
  what the index covers when there is none, and scan forward: at most about ``interval_bytes`` plus
  the records whose timestamps are out of order;
- a lookup above the running maximum needs no read at all: no record is that new.

The index covers the batches appended through it (:meth:`add`, from :attr:`covered_from` on). A
partition opened after a restart starts with an empty index covering its high watermark; the first
lookup that needs the older part has the caller scan it once and :meth:`prepend` what it found.
Entries below the log start are dropped by :meth:`forget_below` (retention, DeleteRecords).

**Saved copies.** So that the first lookup after a restart (or, later, on a partition's new owner)
does not read the whole partition, the broker saves the index in the metadata store now and then
(:meth:`save_below`, :class:`TimeIndexStore`) and loads it when the partition opens
(:meth:`load`). A saved copy holds only entries for batches below the high watermark at the time,
which are durable and can never change: an entry ``(ts, offset)`` stays true for good. The copy
covers ``[covered_from, end)``, ``end`` being its last entry's offset, and makes no claim about
that batch or anything after it: on first need the caller scans from ``end`` to where the live
index starts (at most an interval plus what was appended between the last save and the restart)
and joins the three with :meth:`prepend`. A copy with more than ``MAX_SAVED_ENTRIES`` entries is
thinned (every other entry dropped, which only makes scans start earlier), so its size stays
bounded (256 KiB) whatever the partition's.
"""

from __future__ import annotations

import bisect
import struct

from streambed.broker.domain import keys
from streambed.core.errors import DataError
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = ["TimeIndex", "TimeIndexStore"]

DEFAULT_INTERVAL_BYTES = 1 << 20
MAX_SAVED_ENTRIES = 16384

# version, leader epoch, covered_from, entry count; then the entries as (timestamp, offset)
_HEADER = struct.Struct(">BiqI")
_ENTRY = struct.Struct(">qq")
_VERSION = 1
_RETRIES = 16


class TimeIndex:
    def __init__(self, covered_from: int, *, interval_bytes: int = DEFAULT_INTERVAL_BYTES) -> None:
        self.interval_bytes = interval_bytes
        self.covered_from = covered_from
        self._ts: list[int] = []
        self._offsets: list[int] = []
        # The running maximum over everything covered, and the base offset of its batch.
        self.max_timestamp = -1
        self.max_offset = -1
        self._since_entry = 0

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, base_offset: int, max_timestamp: int, size: int) -> None:
        """Record an appended batch (in offset order)."""
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.max_offset = base_offset
        self._since_entry += size
        if self._since_entry >= self.interval_bytes or not self._ts:
            self._mark()

    def _mark(self) -> None:
        if self.max_offset >= 0 and (not self._ts or self.max_timestamp > self._ts[-1]):
            self._ts.append(self.max_timestamp)
            self._offsets.append(self.max_offset)
            self._since_entry = 0

    def start_for(self, timestamp: int) -> int | None:
        """Where a scan for the first record with a timestamp >= ``timestamp`` can start (an
        offset >= :attr:`covered_from`), or None when every covered record is older."""
        if timestamp > self.max_timestamp:
            return None
        i = bisect.bisect_left(self._ts, timestamp) - 1
        return self._offsets[i] if i >= 0 else self.covered_from

    def prepend(self, older: TimeIndex) -> None:
        """Take in the index of the range just below this one (``older`` ends where this index's
        coverage starts): the result covers both."""
        ts, offsets = list(older._ts), list(older._offsets)
        if older.max_offset >= 0 and (not ts or older.max_timestamp > ts[-1]):
            # older's running maximum since its last entry must be on record too.
            ts.append(older.max_timestamp)
            offsets.append(older.max_offset)
        ceiling = ts[-1] if ts else -1
        for t, o in zip(self._ts, self._offsets, strict=True):
            if t > ceiling:  # entries must stay strictly increasing: drop dominated ones
                ts.append(t)
                offsets.append(o)
                ceiling = t
        self._ts, self._offsets = ts, offsets
        if older.max_timestamp >= self.max_timestamp and older.max_offset >= 0:
            # Ties keep the earlier offset: Kafka's MAX_TIMESTAMP answers the first such record.
            self.max_timestamp, self.max_offset = older.max_timestamp, older.max_offset
        self.covered_from = older.covered_from

    def entries(self) -> list[tuple[int, int]]:
        """``(timestamp, offset)`` of every entry, oldest first."""
        return list(zip(self._ts, self._offsets, strict=True))

    @property
    def end(self) -> int:
        """Where a loaded copy's coverage ends (its last entry's offset; see the module doc)."""
        return self._offsets[-1] if self._offsets else self.covered_from

    def saved_signature(self, high_watermark: int) -> tuple[int, int, int]:
        """Changes whenever :meth:`save_below` would save something different."""
        n = bisect.bisect_left(self._offsets, high_watermark)
        return n, self._offsets[n - 1] if n else -1, self.covered_from

    def save_below(
        self, high_watermark: int, leader_epoch: int, *, max_entries: int = MAX_SAVED_ENTRIES
    ) -> bytes | None:
        """The entries for batches below ``high_watermark`` (all durable) as a saved copy of at
        most ``max_entries`` entries, or None when there is none."""
        n = bisect.bisect_left(self._offsets, high_watermark)
        if n == 0:
            return None
        ts, offsets = self._ts[:n], self._offsets[:n]
        while len(ts) > max(max_entries, 1):
            # Thin out, always keeping the last entry (the copy's end and maximum).
            ts = ts[-1::-2][::-1]
            offsets = offsets[-1::-2][::-1]
        out = bytearray(_HEADER.pack(_VERSION, leader_epoch, self.covered_from, len(ts)))
        for t, o in zip(ts, offsets, strict=True):
            out += _ENTRY.pack(t, o)
        return bytes(out)

    @classmethod
    def load(cls, data: bytes, *, interval_bytes: int = DEFAULT_INTERVAL_BYTES) -> TimeIndex:
        """A saved copy: covers ``[covered_from, end)``; its maximum is its last entry."""
        try:
            version, _epoch, covered_from, count = _HEADER.unpack_from(data)
            if version != _VERSION or len(data) != _HEADER.size + count * _ENTRY.size:
                raise DataError(f"saved time index: version {version}, {len(data)} bytes")
            index = cls(covered_from, interval_bytes=interval_bytes)
            for i in range(count):
                t, o = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
                if index._ts and (t <= index._ts[-1] or o <= index._offsets[-1]):
                    raise DataError("saved time index: entries out of order")
                index._ts.append(t)
                index._offsets.append(o)
        except struct.error as exc:
            raise DataError(f"saved time index is malformed: {exc}") from exc
        if index._ts:
            index.max_timestamp, index.max_offset = index._ts[-1], index._offsets[-1]
        return index

    @staticmethod
    def saved_epoch(data: bytes) -> int:
        epoch: int = _HEADER.unpack_from(data)[1]
        return epoch

    def forget_below(self, log_start: int) -> None:
        """Drop entries for batches below ``log_start``, keeping the last one before it (the
        running maximum it carries still bounds the records that remain)."""
        i = bisect.bisect_right(self._offsets, log_start) - 1
        if i > 0:
            del self._ts[:i]
            del self._offsets[:i]


class TimeIndexStore:
    """Saved time indexes in the metadata store, one key per partition stream
    (``kafka/time-index/<stream id>``). A save from an older leader epoch than the stored copy's
    is refused, so a deposed owner cannot replace its successor's copy."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def load(self, stream_id: int) -> bytes | None:
        kv = await self._store.get(keys.time_index_key(stream_id))
        return None if kv is None else kv.value

    async def save(self, stream_id: int, data: bytes) -> bool:
        key = keys.time_index_key(stream_id)
        epoch = TimeIndex.saved_epoch(data)
        for _ in range(_RETRIES):
            kv = await self._store.get(key)
            if kv is not None:
                try:
                    if TimeIndex.saved_epoch(kv.value) > epoch:
                        return False
                except struct.error:
                    pass  # unreadable: replace it
            revision = 0 if kv is None else kv.mod_revision
            result = await self._store.txn([Compare(key, "==", revision)], [Put(key, data)])
            if result.succeeded:
                return True
        return False

    async def delete(self, stream_id: int) -> None:
        await self._store.txn([], [Delete(keys.time_index_key(stream_id))])
