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
"""

from __future__ import annotations

import bisect

__all__ = ["TimeIndex"]

DEFAULT_INTERVAL_BYTES = 1 << 20


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

    def forget_below(self, log_start: int) -> None:
        """Drop entries for batches below ``log_start``, keeping the last one before it (the
        running maximum it carries still bounds the records that remain)."""
        i = bisect.bisect_right(self._offsets, log_start) - 1
        if i > 0:
            del self._ts[:i]
            del self._offsets[:i]
