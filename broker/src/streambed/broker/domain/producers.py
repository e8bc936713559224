"""Idempotent-producer state of one partition: Kafka's sequence rules, duplicate answers, and the
snapshot that lets the state survive a restart or a partition move.

How the broker uses it, per partition (all calls synchronous, no await between the first two)::

    result = state.check(meta)              # raises KafkaError, or returns Duplicate / None
    if result is None:
        base = stream.next_offset           # the offset this batch will get
        state.apply(meta, base)             # later batches of a pipelining producer see it
        ... stamp base into the batch, append to the stream ...
        state.advance_durable(stream end)   # once the append is durable
    else:                                   # a retry of a batch already written:
        wait until result.last_offset is durable, answer success with result.base_offset

If an append fails, :meth:`PartitionProducerState.discard_pending` forgets the batches that were
applied but never became durable (so their retries are not taken for duplicates).

Durability: :meth:`snapshot` covers exactly the durable prefix of the log. Recovery restores the
latest snapshot and replays the batch headers of the log from the snapshot's offset
(:meth:`replay`), which is what Kafka does with its ``.snapshot`` files; the snapshots are kept
in the metadata store (:class:`ProducerSnapshotStore`), keyed by the partition's stream id, so
whichever broker opens the partition next finds them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streambed.broker.domain import keys
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = [
    "INT32_MAX",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "BatchMeta",
    "CachedBatch",
    "Duplicate",
    "PartitionProducerState",
    "ProducerEntry",
    "ProducerSnapshot",
    "ProducerSnapshotStore",
    "ProducerStateManager",
    "decrement_sequence",
    "increment_sequence",
]

INT32_MAX = 2**31 - 1
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
_RETRIES = 16
BATCHES_TO_RETAIN = 5
"""Kafka remembers the last five batches per producer: the Java producer has at most five in
flight per connection when idempotence is on."""


def increment_sequence(sequence: int, increment: int) -> int:
    """Sequences wrap from INT32_MAX to 0 (``DefaultRecordBatch.incrementSequence``)."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


def decrement_sequence(sequence: int, decrement: int) -> int:
    if sequence < decrement:
        return INT32_MAX - (decrement - sequence) + 1
    return sequence - decrement


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """The producer fields of a record batch header (what the handler reads from the header)."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    last_offset_delta: int
    max_timestamp: int
    is_transactional: bool = False

    @property
    def last_sequence(self) -> int:
        return increment_sequence(self.base_sequence, self.last_offset_delta)


@dataclass(frozen=True, slots=True)
class CachedBatch:
    """Kafka's ``BatchMetadata``: enough to answer a retry of this batch."""

    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The batch is a retry of one already written at ``base_offset``; answer success with it
    once ``last_offset`` is durable."""

    base_offset: int
    last_offset: int
    timestamp: int
    durable: bool


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int = NO_PRODUCER_EPOCH
    batches: collections.deque[CachedBatch] = field(default_factory=collections.deque)
    last_timestamp: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def copy(self) -> ProducerEntry:
        return ProducerEntry(
            self.producer_id, self.epoch, collections.deque(self.batches), self.last_timestamp
        )

    def add(self, meta: BatchMeta, base_offset: int) -> None:
        if meta.producer_epoch != self.epoch:
            # A new epoch starts a new sequence space: older batches can no longer be retried.
            self.epoch = meta.producer_epoch
            self.batches.clear()
        self.batches.append(
            CachedBatch(
                meta.last_sequence,
                base_offset + meta.last_offset_delta,
                meta.last_offset_delta,
                meta.max_timestamp,
            )
        )
        if len(self.batches) > BATCHES_TO_RETAIN:
            self.batches.popleft()
        self.last_timestamp = meta.max_timestamp

    def find_duplicate(self, meta: BatchMeta) -> CachedBatch | None:
        if meta.producer_epoch != self.epoch:
            return None
        last_seq = meta.last_sequence
        for cached in self.batches:
            if cached.first_seq == meta.base_sequence and cached.last_seq == last_seq:
                return cached
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.producer_id,
            "epoch": self.epoch,
            "ts": self.last_timestamp,
            "batches": [
                [b.last_seq, b.last_offset, b.offset_delta, b.timestamp] for b in self.batches
            ],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProducerEntry:
        batches = collections.deque(CachedBatch(*b) for b in raw["batches"])
        return cls(raw["pid"], raw["epoch"], batches, raw["ts"])


@dataclass(frozen=True, slots=True)
class ProducerSnapshot:
    """Producer state as of ``offset``: every batch below it is reflected, none at or above."""

    offset: int
    entries: tuple[ProducerEntry, ...]
    leader_epoch: int = 0
    """The leader epoch of the owner that took it; stale owners cannot overwrite newer ones."""

    def to_bytes(self) -> bytes:
        return keys.encode(
            {
                "v": 1,
                "offset": self.offset,
                "epoch": self.leader_epoch,
                "producers": [e.to_json() for e in self.entries],
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProducerSnapshot:
        data = keys.decode(raw)
        if data.get("v") != 1:
            raise ValueError(f"unknown producer snapshot version {data.get('v')!r}")
        return cls(
            data["offset"],
            tuple(ProducerEntry.from_json(e) for e in data["producers"]),
            data["epoch"],
        )


class PartitionProducerState:
    """Kafka's ``ProducerStateManager`` for one partition (no transactions yet).

    Two views: the *durable* one holds batches known to be in the log; ``apply`` also records
    batches whose append is still in flight, in an overlay per producer, because a pipelining
    producer's next batch must be checked against them. ``advance_durable`` folds the overlay
    into the durable view in log order; ``discard_pending`` drops it.
    """

    def __init__(
        self,
        *,
        producer_id_expiration_ms: int = 86_400_000,
        max_producers: int = 0,
        snapshot: ProducerSnapshot | None = None,
    ) -> None:
        """``max_producers`` (0: unbounded) caps memory beyond Kafka's time-based expiry: the
        least recently written producer is forgotten first (its next batch is then accepted as
        from a new producer, as after expiry)."""
        self._expiration_ms = producer_id_expiration_ms
        self._max_producers = max_producers
        # Insertion order doubles as recency order: every write moves the producer to the end.
        self._durable: dict[int, ProducerEntry] = {}
        self._overlay: dict[int, ProducerEntry] = {}
        self._pending: collections.deque[tuple[BatchMeta, int]] = collections.deque()
        self._in_flight: collections.Counter[int] = collections.Counter()
        self._durable_end = 0
        if snapshot is not None:
            self._durable = {e.producer_id: e.copy() for e in snapshot.entries}
            self._durable_end = snapshot.offset

    @property
    def durable_end(self) -> int:
        """Every batch below this offset is reflected in the durable view."""
        return self._durable_end

    def entry(self, producer_id: int) -> ProducerEntry | None:
        """The newest state of ``producer_id`` (in-flight batches included)."""
        return self._overlay.get(producer_id) or self._durable.get(producer_id)

    def producers(self) -> Iterator[ProducerEntry]:
        """Newest state of every producer (DescribeProducers)."""
        for pid, entry in self._durable.items():
            yield self._overlay.get(pid, entry)
        for pid, entry in self._overlay.items():
            if pid not in self._durable:
                yield entry

    def __len__(self) -> int:
        return len(self._durable.keys() | self._overlay.keys())

    # -- the produce path --------------------------------------------------------------------

    def check(self, meta: BatchMeta) -> Duplicate | None:
        """Validate ``meta`` against the state: None to append it, :class:`Duplicate` for a retry
        of one of the last five batches, or :class:`KafkaError` with INVALID_RECORD,
        INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE_NUMBER, in Kafka's order."""
        if meta.producer_id < 0:
            return None
        if meta.base_sequence < 0:
            raise KafkaError(
                ErrorCode.INVALID_RECORD,
                f"Invalid sequence number {meta.base_sequence} in record batch with producerId "
                f"{meta.producer_id}",
            )
        entry = self.entry(meta.producer_id)
        if entry is None:
            # Unknown producer (new, expired, or its batches are gone): any sequence starts it,
            # as in Kafka since KIP-360.
            return None
        cached = entry.find_duplicate(meta)
        if cached is not None:
            return Duplicate(
                cached.first_offset,
                cached.last_offset,
                cached.timestamp,
                cached.last_offset < self._durable_end,
            )
        if meta.producer_epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Epoch of producer {meta.producer_id} is {meta.producer_epoch}, which is smaller "
                f"than the last seen epoch {entry.epoch}",
            )
        if meta.producer_epoch != entry.epoch:
            if meta.base_sequence != 0 and entry.epoch != NO_PRODUCER_EPOCH:
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"Invalid sequence number for new epoch of producer {meta.producer_id}: "
                    f"{meta.producer_epoch} (request epoch), {meta.base_sequence} (seq. number), "
                    f"{entry.epoch} (current producer epoch)",
                )
            return None
        if entry.epoch != NO_PRODUCER_EPOCH and not _in_sequence(
            entry.last_seq, meta.base_sequence
        ):
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Out of order sequence number for producer {meta.producer_id}: {meta.base_sequence} "
                f"(incoming seq. number), {entry.last_seq} (current end sequence number)",
            )
        return None

    def apply(self, meta: BatchMeta, base_offset: int) -> None:
        """Record a batch about to be appended at ``base_offset`` (after :meth:`check`)."""
        if meta.producer_id < 0:
            return
        pid = meta.producer_id
        entry = self._overlay.pop(pid, None)
        if entry is None:
            durable = self._durable.get(pid)
            entry = durable.copy() if durable is not None else ProducerEntry(pid)
        entry.add(meta, base_offset)
        self._overlay[pid] = entry
        self._pending.append((meta, base_offset))
        self._in_flight[pid] += 1

    def advance_durable(self, end_offset: int) -> None:
        """Everything below ``end_offset`` is now durable in the log."""
        while (
            self._pending
            and self._pending[0][1] + self._pending[0][0].last_offset_delta < end_offset
        ):
            meta, base = self._pending.popleft()
            self._apply_durable(meta, base)
            self._in_flight[meta.producer_id] -= 1
            if not self._in_flight[meta.producer_id]:
                # The durable entry now went through the same batches as the overlay.
                del self._in_flight[meta.producer_id]
                self._overlay.pop(meta.producer_id, None)
        self._durable_end = max(self._durable_end, end_offset)
        self._enforce_cap()

    def discard_pending(self) -> None:
        """Forget batches applied but never made durable (their append failed)."""
        self._pending.clear()
        self._in_flight.clear()
        self._overlay.clear()

    # -- recovery ---------------------------------------------------------------------------

    def replay(self, meta: BatchMeta, base_offset: int) -> None:
        """Apply a batch read back from the log during recovery (no checks: it was accepted)."""
        if meta.producer_id >= 0 and base_offset >= self._durable_end:
            self._apply_durable(meta, base_offset)
        self._durable_end = max(self._durable_end, base_offset + meta.last_offset_delta + 1)

    def replay_all(self, batches: Iterable[tuple[BatchMeta, int]]) -> None:
        for meta, base in batches:
            self.replay(meta, base)
        self._enforce_cap()

    def snapshot(self, *, leader_epoch: int = 0) -> ProducerSnapshot:
        """The durable view; restoring it and replaying from ``offset`` rebuilds this state."""
        return ProducerSnapshot(
            self._durable_end, tuple(e.copy() for e in self._durable.values()), leader_epoch
        )

    @classmethod
    def restore(
        cls,
        snapshot: ProducerSnapshot | None,
        *,
        producer_id_expiration_ms: int = 86_400_000,
        max_producers: int = 0,
    ) -> PartitionProducerState:
        return cls(
            producer_id_expiration_ms=producer_id_expiration_ms,
            max_producers=max_producers,
            snapshot=snapshot,
        )

    def expire(self, now_ms: int) -> int:
        """Forget producers idle for ``producer.id.expiration.ms`` (by their last batch's
        timestamp, as Kafka does); producers with batches in flight are kept. Returns how many."""
        doomed = [
            pid
            for pid, entry in self._durable.items()
            if pid not in self._overlay and now_ms - entry.last_timestamp >= self._expiration_ms
        ]
        for pid in doomed:
            del self._durable[pid]
        return len(doomed)

    # -- internals --------------------------------------------------------------------------

    def _apply_durable(self, meta: BatchMeta, base_offset: int) -> None:
        pid = meta.producer_id
        entry = self._durable.pop(pid, None) or ProducerEntry(pid)
        entry.add(meta, base_offset)
        self._durable[pid] = entry

    def _enforce_cap(self) -> None:
        if not self._max_producers:
            return
        excess = len(self._durable) - self._max_producers
        for pid in list(self._durable)[: max(excess, 0)]:
            if pid not in self._overlay:
                del self._durable[pid]


ProducerStateManager = PartitionProducerState
"""Kafka's name for it."""


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


class ProducerSnapshotStore:
    """Producer snapshots in the metadata store, one key per partition stream
    (``kafka/producer-state/<stream id>``).

    A save never goes backwards: a snapshot from an older leader epoch, or for a smaller offset
    than the stored one, is refused (a deposed owner cannot undo its successor's snapshot).
    """

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def load(self, stream_id: int) -> ProducerSnapshot | None:
        kv = await self._store.get(keys.producer_state_key(stream_id))
        return None if kv is None else ProducerSnapshot.from_bytes(kv.value)

    async def save(self, stream_id: int, snapshot: ProducerSnapshot) -> bool:
        """Store ``snapshot`` unless a newer one is there; True when stored."""
        key = keys.producer_state_key(stream_id)
        for _ in range(_RETRIES):
            kv = await self._store.get(key)
            if kv is not None:
                stored = ProducerSnapshot.from_bytes(kv.value)
                if (stored.leader_epoch, stored.offset) > (snapshot.leader_epoch, snapshot.offset):
                    return False
            revision = 0 if kv is None else kv.mod_revision
            result = await self._store.txn(
                [Compare(key, "==", revision)], [Put(key, snapshot.to_bytes())]
            )
            if result.succeeded:
                return True
        raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"{key} kept changing; giving up")

    async def delete(self, stream_id: int) -> None:
        await self._store.txn([], [Delete(keys.producer_state_key(stream_id))])
