"""Kafka partitions on engine streams: one stream per partition, owned by the partition's leader.

A :class:`Partition` couples an open :class:`~streambed.core.stream.engine.Stream` with what Kafka
keeps next to a log: the leader epoch, the idempotent-producer state and the topic's config. The
:class:`PartitionManager` opens the partitions this node leads (at start-up and when topics are
created), closes and deletes them, and saves producer snapshots so that a restart replays only the
batches appended since the last snapshot.

Produce path, per partition: validate the batch (header, CRC-32C, counts, size) in the request's
own memory → check the producer's sequence → ``stream.append`` with an ``on_assign`` callback that
stamps the base offset and leader epoch into the engine's copy (the only copy) → acknowledge once
the WAL says durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.producers import (
    BatchMeta,
    Duplicate,
    PartitionProducerState,
    ProducerSnapshotStore,
)
from streambed.broker.domain.time_index import TimeIndex, TimeIndexStore
from streambed.broker.domain.topics import NewTopic, TopicConfig, TopicInfo, TopicManager
from streambed.broker.protocol.errors import ErrorCode as WireError
from streambed.broker.protocol.records import RecordBatch, iter_batches
from streambed.core.errors import Closed, Fenced, NotFound, StreambedError
from streambed.core.stream.engine import OffsetOutOfRange, Stream, StreamEngine

__all__ = ["AppendResult", "Partition", "PartitionManager"]

log = logging.getLogger("streambed.broker.partitions")

_SNAPSHOT_INTERVAL_S = 10.0
_REPLAY_CHUNK = 4 << 20


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    log_append_time: int
    log_start_offset: int


def batch_meta(batch: RecordBatch) -> BatchMeta:
    return BatchMeta(
        batch.producer_id,
        batch.producer_epoch,
        batch.base_sequence,
        batch.last_offset_delta,
        batch.max_timestamp,
        batch.is_transactional,
    )


def record_timestamps(batch: RecordBatch, base: int) -> list[tuple[int, int]]:
    """``(offset, timestamp)`` of each record (the batch's max timestamp for LogAppendTime)."""
    if batch.timestamp_type == 1:
        return [(base, batch.max_timestamp)]
    return [
        (base + record.offset_delta, batch.base_timestamp + record.timestamp_delta)
        for record in batch.iter_records()
    ]


class Partition:
    """One partition this node leads."""

    def __init__(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        stream: Stream,
        leader_epoch: int,
        config: TopicConfig,
        producers: PartitionProducerState,
    ) -> None:
        self.topic = topic
        self.index = index
        self.topic_id = topic_id
        self.stream = stream
        self.leader_epoch = leader_epoch
        self.config = config
        self.producers = producers
        self.bytes_appended = 0
        self.offsets_appended = 0
        self._bytes_per_offset: float | None = None
        self._snapshot_end = producers.durable_end
        # Covers what is appended from now on; the older part comes from the saved copy
        # (load_time_index) and what is below that is indexed on first need.
        self.time_index = TimeIndex(stream.next_offset)
        self._time_index_lock = asyncio.Lock()
        self._time_index_saved: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.index}, stream {self.stream_id})"

    @property
    def stream_id(self) -> int:
        return self.stream.id

    @property
    def log_start_offset(self) -> int:
        return self.stream.start_offset

    @property
    def high_watermark(self) -> int:
        return self.stream.next_offset

    @property
    def size_bytes(self) -> int:
        """Approximate bytes held: offsets held times the average batch bytes per offset (what
        this broker appended, or a sample of the tail read at start-up). Streams do not record
        their byte size; this estimate is what retention.bytes and DescribeLogDirs use."""
        per_offset = self._bytes_per_offset
        if self.offsets_appended:
            per_offset = self.bytes_appended / self.offsets_appended
        if per_offset is None:
            return 0
        return int((self.high_watermark - self.log_start_offset) * per_offset)

    async def sample_size(self) -> None:
        """Estimate bytes per offset from the tail (called once when the partition opens)."""
        hw, start = self.high_watermark, self.log_start_offset
        if hw <= start:
            return
        batches = await self.stream.fetch(max(start, hw - 4096), hw, 1 << 20)
        count = sum(b.count for b in batches)
        if count:
            self._bytes_per_offset = sum(len(b.payload) for b in batches) / count

    # -- produce ----------------------------------------------------------------------------

    def validate(self, records: memoryview, verify_records: bool) -> RecordBatch:
        """The one batch of a produce request for this partition, validated in place."""
        batches = list(iter_batches(records))
        if len(batches) != 1:
            raise KafkaError(
                ErrorCode.INVALID_RECORD,
                f"Produce requests must hold exactly one record batch per partition, "
                f"got {len(batches)}",
            )
        batch = batches[0]
        batch.validate(
            max_batch_size=self.config.max_message_bytes, verify_records=verify_records
        )
        return batch

    async def append(self, batch: RecordBatch, now_ms: int) -> AppendResult:
        """Append a validated batch; answers a duplicate with the original offset."""
        meta = batch_meta(batch)
        duplicate = self.producers.check(meta)
        if duplicate is not None:
            return await self._answer_duplicate(duplicate)
        log_append_time = -1
        if self.config.message_timestamp_type == "LogAppendTime":
            batch.stamp_log_append_time(now_ms)
            log_append_time = now_ms
        epoch = self.leader_epoch
        producers = self.producers
        timestamp = log_append_time if log_append_time >= 0 else meta.max_timestamp

        def assign(base: int, data: memoryview) -> None:
            RecordBatch(data).stamp(base, epoch)
            producers.apply(meta, base)
            self.time_index.add(base, timestamp, len(data))

        try:
            base = await self.stream.append(
                batch.data, batch.last_offset_delta + 1, on_assign=assign
            )
        except BaseException:
            # Applied but never durable; the engine fails every later append of this stream too,
            # so the producer retries them all from the last acknowledged sequence.
            producers.discard_pending()
            raise
        producers.advance_durable(self.stream.next_offset)
        self.bytes_appended += batch.size
        self.offsets_appended += batch.last_offset_delta + 1
        return AppendResult(base, log_append_time, self.log_start_offset)

    async def _answer_duplicate(self, duplicate: Duplicate) -> AppendResult:
        if not duplicate.durable:
            # The original is still in flight: answer once it is acknowledged.
            deadline = time.monotonic() + 30
            while self.high_watermark <= duplicate.last_offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaError(
                        ErrorCode.REQUEST_TIMED_OUT,
                        "the original of a retried batch is not durable yet",
                    )
                await self.stream.wait_for(duplicate.last_offset, remaining)
        return AppendResult(duplicate.base_offset, -1, self.log_start_offset)

    # -- records removal --------------------------------------------------------------------

    async def delete_records(self, offset: int) -> int:
        """DeleteRecords: move the log start to ``offset`` (-1: the high watermark)."""
        hw = self.high_watermark
        if offset == -1:
            offset = hw
        if offset < 0 or offset > hw:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"offset {offset} is outside [0, {hw}] of {self.topic}-{self.index}",
            )
        if offset > self.log_start_offset:
            await self.stream.trim(offset)
            self.time_index.forget_below(self.log_start_offset)
        return self.log_start_offset

    # -- lookups by time ----------------------------------------------------------------------

    async def offset_for_timestamp(self, timestamp: int) -> tuple[int, int]:
        """ListOffsets by time: the first record with a timestamp >= ``timestamp`` as
        ``(offset, timestamp)``, or ``(-1, -1)``. Reads from where the time index says the answer
        can start (about a MiB before it), not from the log start."""
        await self._index_whole_log()
        start = self.time_index.start_for(timestamp)
        if start is None:
            return -1, -1
        async for base, batch in self.scan(max(start, self.log_start_offset)):
            if batch.max_timestamp >= timestamp:
                for offset, ts in record_timestamps(batch, base):
                    if ts >= timestamp and offset >= self.log_start_offset:
                        return offset, ts
        return -1, -1

    async def max_timestamp_offset(self) -> tuple[int, int]:
        """ListOffsets MAX_TIMESTAMP: the first record with the largest timestamp."""
        for attempt in range(2):
            await self._index_whole_log()
            index = self.time_index
            if index.max_offset >= 0:
                async for base, batch in self.scan(max(index.max_offset, self.log_start_offset)):
                    for offset, ts in record_timestamps(batch, base):
                        if ts == index.max_timestamp and offset >= self.log_start_offset:
                            return offset, ts
                    break  # only the batch that holds the maximum
            if attempt == 0 and self.high_watermark > self.log_start_offset:
                # The record with the maximum was removed (retention, DeleteRecords): re-index.
                self.time_index = TimeIndex(self.high_watermark)
        return await self._max_timestamp_by_scan()

    async def _max_timestamp_by_scan(self) -> tuple[int, int]:
        best = (-1, -1)
        async for base, batch in self.scan(self.log_start_offset):
            if batch.max_timestamp > best[1]:
                for offset, ts in record_timestamps(batch, base):
                    if ts > best[1] and offset >= self.log_start_offset:
                        best = (offset, ts)
        return best

    async def load_time_index(self, data: bytes) -> None:
        """Start from a saved copy of the time index (at open, before any append): the copy, then
        a scan of what was appended after its end (a MiB or so plus the last seconds before the
        restart), then the live index."""
        saved = TimeIndex.load(data, interval_bytes=self.time_index.interval_bytes)
        live = self.time_index
        if saved.end > live.covered_from or saved.end < self.log_start_offset or not len(saved):
            log.info("%s-%d: ignoring a saved time index that does not fit the log (ends at "
                     "%d, log %d-%d)", self.topic, self.index, saved.end, self.log_start_offset,
                     live.covered_from)
            return
        gap = TimeIndex(saved.end, interval_bytes=live.interval_bytes)
        async for base, batch in self.scan(saved.end, live.covered_from):
            gap.add(base, batch.max_timestamp, batch.size)
        gap.prepend(saved)
        live.prepend(gap)
        live.forget_below(self.log_start_offset)
        self._time_index_saved = live.saved_signature(self.high_watermark)

    def time_index_to_save(self) -> tuple[bytes, tuple[int, int, int]] | None:
        """The time index's durable part and its signature, when it changed since it was last
        saved (:meth:`time_index_saved`)."""
        hw = self.high_watermark
        signature = self.time_index.saved_signature(hw)
        if signature == self._time_index_saved:
            return None
        data = self.time_index.save_below(hw, self.leader_epoch)
        return None if data is None else (data, signature)

    def time_index_saved(self, signature: tuple[int, int, int]) -> None:
        self._time_index_saved = signature

    async def _index_whole_log(self) -> None:
        """Index what lies below the time index's coverage (after a restart), once."""
        if self.time_index.covered_from <= self.log_start_offset:
            return
        async with self._time_index_lock:
            index = self.time_index
            start = self.log_start_offset
            if index.covered_from <= start:
                return
            began = time.monotonic()
            end = index.covered_from
            older = TimeIndex(start, interval_bytes=index.interval_bytes)
            async for base, batch in self.scan(start, end):
                older.add(base, batch.max_timestamp, batch.size)
            index.prepend(older)
            log.info("%s-%d: time index of offsets %d-%d built in %.2f s (%d entries)",
                     self.topic, self.index, start, end, time.monotonic() - began, len(index))

    async def scan(self, start: int, end: int | None = None) -> AsyncIterator[tuple[int, RecordBatch]]:
        """Every batch from the one holding ``start`` up to ``end`` (default the high
        watermark): ``(base offset, batch)``."""
        position = start
        end = self.high_watermark if end is None else end
        while position < end:
            batches = await self.stream.fetch(position, end, _REPLAY_CHUNK)
            if not batches:
                return
            for stored in batches:
                for batch in iter_batches(memoryview(stored.payload)):
                    yield batch.base_offset, batch
                position = stored.end

    async def enforce_retention(self, now_ms: int) -> int:
        """Trim what retention.ms and retention.bytes no longer keep (cleanup.policy=delete), in
        whole batches: by time, every batch whose newest record is older than retention.ms; by
        size, the oldest batches until about retention.bytes remain (never less). Trimmed data
        leaves object storage through the engine's compaction and object cleanup. Returns the
        new log start offset."""
        config = self.config
        if "delete" not in config.cleanup_policy:
            return self.log_start_offset
        target = self.log_start_offset
        hw = self.high_watermark
        if config.retention_ms >= 0:
            cutoff = now_ms - config.retention_ms
            async for base, record_batch in self.scan(target, hw):
                if record_batch.max_timestamp >= cutoff:
                    break
                target = base + record_batch.last_offset_delta + 1
        if config.retention_bytes >= 0:
            size = self.size_bytes
            held = hw - self.log_start_offset
            if size > config.retention_bytes and held > 0:
                keep = int(held * config.retention_bytes / size)
                candidate = hw - keep
                if candidate > target:
                    # Round up to the batch holding ``candidate``: keep at least retention.bytes.
                    batches = await self.stream.fetch(candidate, hw, 1)
                    target = batches[0].base if batches else candidate
                    target = max(target, self.log_start_offset)
        target = min(target, hw)
        if target > self.log_start_offset:
            await self.stream.trim(target)
            self.time_index.forget_below(self.log_start_offset)
            log.info(
                "%s-%d: retention moved the log start to %d", self.topic, self.index, target
            )
        return self.log_start_offset

    # -- recovery ---------------------------------------------------------------------------

    async def replay_producers(self) -> int:
        """Rebuild producer state from the snapshot's offset to the high watermark."""
        start = max(self.producers.durable_end, self.log_start_offset)
        replayed = 0
        end = self.high_watermark
        async for base, record_batch in self.scan(start, end):
            if base + record_batch.last_offset_delta >= start:
                self.producers.replay(batch_meta(record_batch), base)
                replayed += 1
        self.producers.advance_durable(end)
        return replayed

    def snapshot_due(self) -> bool:
        return self.producers.durable_end > self._snapshot_end

    def snapshot_taken(self, end: int) -> None:
        self._snapshot_end = end


class PartitionManager:
    """The partitions this node leads, and the adapter the topic manager creates streams with."""

    def __init__(
        self,
        engine: StreamEngine,
        topics: TopicManager,
        snapshots: ProducerSnapshotStore,
        *,
        time_indexes: TimeIndexStore | None = None,
        node_id: int,
        producer_id_expiration_ms: int = 86_400_000,
        verify_records: bool = True,
        retention_check_interval_s: float = 300.0,
    ) -> None:
        self.engine = engine
        self.topics = topics
        self.snapshots = snapshots
        self.time_indexes = time_indexes
        self.node_id = node_id
        self.verify_records = verify_records
        self.retention_check_interval_s = retention_check_interval_s
        self._expiration_ms = producer_id_expiration_ms
        self.on_topic_deleted: Callable[[str], Awaitable[None]] | None = None
        self._partitions: dict[tuple[str, int], Partition] = {}
        self._by_stream: dict[int, Partition] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- StreamAllocator (used by TopicManager) ---------------------------------------------

    async def create_stream(self) -> int:
        return await self.engine.create_stream()

    async def delete_stream(self, stream_id: int) -> None:
        partition = self._by_stream.pop(stream_id, None)
        if partition is not None:
            self._partitions.pop((partition.topic, partition.index), None)
            await partition.stream.delete()
            return
        meta = await self.engine.meta.get_stream(stream_id)
        if meta.state == "deleted":
            raise NotFound(f"stream {stream_id} does not exist")
        stream = await self.engine.open_stream(stream_id, meta.epoch + 1)
        await stream.delete()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every partition this node leads (after ``topics.start()``)."""
        began = time.monotonic()
        for info in self.topics.topics():
            await self._open_topic(info)
        log.info(
            "opened %d partitions in %.2f s", len(self._partitions), time.monotonic() - began
        )
        self._task = asyncio.create_task(self._snapshot_loop(), name="producer-snapshots")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.save_snapshots()
        self._partitions.clear()
        self._by_stream.clear()

    async def _snapshot_loop(self) -> None:
        last_retention = time.monotonic()
        while True:
            await asyncio.sleep(min(_SNAPSHOT_INTERVAL_S, self.retention_check_interval_s))
            try:
                await self.save_snapshots()
            except Exception:
                log.warning("saving producer snapshots failed; will retry", exc_info=True)
            if time.monotonic() - last_retention >= self.retention_check_interval_s:
                last_retention = time.monotonic()
                await self.enforce_retention()

    async def enforce_retention(self) -> None:
        """One pass of retention over every partition (log.retention.check.interval.ms)."""
        now_ms = int(time.time() * 1000)
        for partition in list(self._partitions.values()):
            try:
                await partition.enforce_retention(now_ms)
            except (StreambedError, KafkaError) as exc:
                log.warning("retention of %s-%d failed: %s", partition.topic, partition.index, exc)

    async def save_snapshots(self) -> int:
        saved = 0
        now_ms = int(time.time() * 1000)
        for partition in list(self._partitions.values()):
            partition.producers.expire(now_ms)
            if not partition.snapshot_due():
                continue
            snapshot = partition.producers.snapshot(leader_epoch=partition.leader_epoch)
            with contextlib.suppress(StreambedError):
                await self.snapshots.save(partition.stream_id, snapshot)
                partition.snapshot_taken(snapshot.offset)
                saved += 1
        await self.save_time_indexes()
        return saved

    async def save_time_indexes(self) -> int:
        """Save each partition's time index where it grew since its last save."""
        if self.time_indexes is None:
            return 0
        saved = 0
        for partition in list(self._partitions.values()):
            due = partition.time_index_to_save()
            if due is None:
                continue
            data, signature = due
            with contextlib.suppress(StreambedError):
                if await self.time_indexes.save(partition.stream_id, data):
                    saved += 1
                partition.time_index_saved(signature)
        return saved

    async def _open_topic(self, info: TopicInfo) -> None:
        config = self.topics.topic_config(info.name)
        for p in info.partitions:
            if p.leader != self.node_id or (info.name, p.index) in self._partitions:
                continue
            try:
                stream = await self.engine.open_stream(p.stream_id, p.leader_epoch)
            except (Fenced, NotFound) as exc:
                log.warning("cannot open %s-%d (stream %d): %s", info.name, p.index,
                            p.stream_id, exc)
                continue
            snapshot = await self.snapshots.load(p.stream_id)
            producers = PartitionProducerState(
                producer_id_expiration_ms=self._expiration_ms,
                snapshot=snapshot if snapshot is not None and snapshot.offset <= stream.next_offset
                else None,
            )
            partition = Partition(
                info.name, p.index, info.topic_id, stream, p.leader_epoch, config, producers
            )
            await partition.sample_size()
            if self.time_indexes is not None:
                await self._load_time_index(partition)
            replayed = await partition.replay_producers()
            if replayed:
                log.info("%s-%d: replayed %d batches into producer state", info.name, p.index,
                         replayed)
            self._partitions[(info.name, p.index)] = partition
            self._by_stream[p.stream_id] = partition

    async def _load_time_index(self, partition: Partition) -> None:
        assert self.time_indexes is not None
        try:
            data = await self.time_indexes.load(partition.stream_id)
            if data is not None:
                await partition.load_time_index(data)
        except StreambedError as exc:  # a lookup will index by scanning, as without a copy
            log.warning("%s-%d: cannot use the saved time index: %s", partition.topic,
                        partition.index, exc)

    # -- lookups -----------------------------------------------------------------------------

    def get(self, topic: str, index: int) -> Partition | None:
        return self._partitions.get((topic, index))

    def lookup(
        self,
        topic: str,
        index: int,
        *,
        by_id: bool = False,
        current_leader_epoch: int = -1,
    ) -> Partition | int:
        """The partition a produce, fetch or offset request names, or the Kafka error code to
        answer with: unknown topic (or topic id), unknown partition, not the leader here, or a
        client whose leader epoch is behind (FENCED_LEADER_EPOCH) or ahead (UNKNOWN_LEADER_EPOCH)
        of the partition's."""
        partition = self._partitions.get((topic, index))
        if partition is None:
            info = self.topics.get(topic) if topic else None
            if info is None:
                return (
                    WireError.UNKNOWN_TOPIC_ID if by_id else WireError.UNKNOWN_TOPIC_OR_PARTITION
                )
            if info.partition(index) is None:
                return WireError.UNKNOWN_TOPIC_OR_PARTITION
            return WireError.NOT_LEADER_OR_FOLLOWER
        if 0 <= current_leader_epoch != partition.leader_epoch:
            if current_leader_epoch < partition.leader_epoch:
                return WireError.FENCED_LEADER_EPOCH
            return WireError.UNKNOWN_LEADER_EPOCH
        return partition

    def all(self) -> list[Partition]:
        return list(self._partitions.values())

    # -- topic changes -----------------------------------------------------------------------

    async def create_topic(self, spec: NewTopic, *, validate_only: bool = False) -> TopicInfo:
        async with self._lock:
            info = await self.topics.create_topic(spec, validate_only=validate_only)
            if not validate_only:
                await self._open_topic(info)
            return info

    async def ensure_topic(self, name: str, partitions: int) -> TopicInfo | None:
        """Auto-create ``name`` (Metadata with auto-creation); None when it cannot be."""
        info = self.topics.get(name)
        if info is not None:
            return info
        try:
            return await self.create_topic(NewTopic(name, partitions))
        except KafkaError as exc:
            if exc.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                await self.topics.refresh()
                return self.topics.get(name)
            raise

    async def create_partitions(
        self,
        name: str,
        count: int,
        assignments: Sequence[Sequence[int]] | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicInfo:
        async with self._lock:
            info = await self.topics.create_partitions(
                name, count, assignments, validate_only=validate_only
            )
            if not validate_only:
                await self._open_topic(info)
            return info

    async def delete_topic(self, name: str) -> TopicInfo:
        async with self._lock:
            info = await self.topics.delete_topic(name)
        await self._topic_deleted(info)
        return info

    async def delete_topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo:
        async with self._lock:
            info = await self.topics.delete_topic_by_id(topic_id)
        await self._topic_deleted(info)
        return info

    async def _topic_deleted(self, info: TopicInfo) -> None:
        """What else goes with a topic (its groups' committed offsets, as in Kafka): a topic
        created again under the same name must not inherit them."""
        if self.on_topic_deleted is None:
            return
        try:
            await self.on_topic_deleted(info.name)
        except Exception:
            log.warning("cleaning up after deleted topic %s failed", info.name, exc_info=True)

    async def configs_changed(self, name: str | None) -> None:
        """Refresh the cached effective configs of one topic's partitions, or of every
        partition (``None``: a broker config changed, and topic configs default to it)."""
        names = [name] if name is not None else sorted({p.topic for p in self.all()})
        for topic in names:
            info = self.topics.get(topic)
            if info is None:
                continue
            config = self.topics.topic_config(topic)
            for p in info.partitions:
                partition = self._partitions.get((topic, p.index))
                if partition is not None:
                    partition.config = config


def storage_error_code(exc: BaseException) -> int:
    """The Kafka error a produce or fetch answers with when the storage layer fails."""
    if isinstance(exc, KafkaError):
        return int(exc.code)
    if isinstance(exc, OffsetOutOfRange):
        return WireError.OFFSET_OUT_OF_RANGE
    if isinstance(exc, Fenced | Closed):
        return WireError.NOT_LEADER_OR_FOLLOWER
    return WireError.KAFKA_STORAGE_ERROR
