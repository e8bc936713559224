"""The stream engine: streams over a WAL, a log cache, and objects in an object store.

    append ─► WAL (durable) ─► log cache ─► ack
                                  │ threshold / timer / forced
                                  ▼
                  upload: prepare ids → put objects → commit metadata → trim WAL
    fetch ─► log cache (tail) ─► block cache ─► object store (cold, bounded concurrency)

See docs/engine.md for the model, the ordering rules and the failure handling.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streambed.core.errors import Closed, DataError, Fenced, NotFound, StreambedError, Unavailable
from streambed.core.metadata.api import MetadataStore
from streambed.core.metadata.streams import ObjectMeta, StreamMeta, StreamMetadata
from streambed.core.objects.api import ObjectStore
from streambed.core.objects.format import (
    Batch,
    BlockIndex,
    ObjectBuilder,
    parse_block,
    parse_tail,
)
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.api import WriteAheadLog

__all__ = ["OffsetOutOfRange", "Stream", "StreamEngine"]

log = logging.getLogger("streambed.engine")

# WAL record body: stream id u64 | epoch u64 | base offset u64 | count u32 | payload
_WAL_HEADER = struct.Struct(">QQQI")
_TAIL_GUESS = 64 * 1024


class OffsetOutOfRange(StreambedError):
    """A fetch asked for an offset below the stream's start or above its end."""


@dataclass(slots=True)
class _Entry:
    batch: Batch
    wal_offset: int


@dataclass
class _StreamState:
    meta: StreamMeta
    next: int  # next offset to assign
    confirmed: int  # every offset below is durable (acknowledged)
    committed: int  # every offset below is in committed objects
    cache: collections.deque[_Entry] = field(default_factory=collections.deque)
    objects: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, object id)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    inflight: int = 0
    readahead: int = 0  # grows on sequential cold reads, resets on a jump
    cold_end: int = -1  # where the last cold read ended
    failed_at: int | None = None  # an append at this offset failed; later ones must not be acked


def _failed_at(state: _StreamState) -> int | None:
    return state.failed_at


class Stream:
    """A handle on an open stream. Appends complete in offset order."""

    def __init__(self, engine: StreamEngine, state: _StreamState) -> None:
        self._engine = engine
        self._state = state

    @property
    def id(self) -> int:
        return self._state.meta.id

    @property
    def epoch(self) -> int:
        return self._state.meta.epoch

    @property
    def start_offset(self) -> int:
        return self._state.meta.start

    @property
    def next_offset(self) -> int:
        """The end of acknowledged data (the high watermark)."""
        return self._state.confirmed

    async def append(self, payload: bytes | memoryview, count: int) -> int:
        return await self._engine._append(self._state, payload, count)

    async def fetch(
        self, start: int, end: int | None = None, max_bytes: int = 1 << 20
    ) -> list[Batch]:
        return await self._engine._fetch(self._state, start, end, max_bytes)

    async def trim(self, new_start: int) -> None:
        await self._engine._trim(self._state, new_start)

    async def close(self) -> None:
        await self._engine._close_stream(self._state)

    async def delete(self) -> None:
        await self._engine._delete_stream(self._state)


class _BlockCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._data: collections.OrderedDict[tuple[int, int], bytes] = collections.OrderedDict()
        self.size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int]) -> bytes | None:
        data = self._data.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return data

    def put(self, key: tuple[int, int], data: bytes) -> None:
        if len(data) > self._capacity or key in self._data:
            return
        self._data[key] = data
        self.size += len(data)
        while self.size > self._capacity:
            _, old = self._data.popitem(last=False)
            self.size -= len(old)


class StreamEngine:
    """Owns streams on one node. ``start()`` recovers; ``close()`` uploads what is pending."""

    def __init__(
        self,
        wal: WriteAheadLog,
        objects: ObjectStore,
        metadata: MetadataStore,
        settings: EngineSettings | None = None,
        *,
        node_id: int = 1,
        clock: collections.abc.Callable[[], float] = time.time,
    ) -> None:
        self.wal = wal
        self.objects = objects
        self.meta = StreamMetadata(metadata, clock)
        self.settings = settings or EngineSettings()
        self.node_id = node_id
        self._clock = clock
        self._streams: dict[int, _StreamState] = {}
        self._object_index: dict[int, ObjectMeta] = {}
        self._tails: collections.OrderedDict[int, list[BlockIndex]] = collections.OrderedDict()
        self._blocks = _BlockCache(self.settings.block_cache_bytes)
        self._pending_bytes = 0  # cached, not yet uploaded
        self._cached_bytes = 0
        self._space = asyncio.Condition()
        self._upload_lock = asyncio.Lock()
        self._upload_wanted = asyncio.Event()
        self._cold = asyncio.Semaphore(self.settings.cold_read_concurrency)
        self._max_wal_offset = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._failure: StreambedError | None = None
        self.uploads = 0
        self.compactions = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for stream in await self.meta.list_streams():
            self._streams[stream.id] = _StreamState(stream, stream.end, stream.end, stream.end)
        for obj in await self.meta.list_objects():
            if obj.state == "committed":
                self._index_object(obj)
        replayed = 0
        async for record in self.wal.recover():
            stream_id, _epoch, base, count = _WAL_HEADER.unpack_from(record.body)
            state = self._streams.get(stream_id)
            self._max_wal_offset = max(self._max_wal_offset, record.offset)
            if state is None or state.meta.state == "deleted" or base < state.committed:
                continue
            if base != state.next:
                # An append that followed a failed one: written, never acknowledged, and its
                # offsets were reassigned after the failure. Skip it, keep reading.
                log.debug(
                    "skipping orphan WAL record of stream %d at %d (expected %d)",
                    stream_id,
                    base,
                    state.next,
                )
                continue
            payload = record.body[_WAL_HEADER.size :]
            state.cache.append(_Entry(Batch(base, count, payload), record.offset))
            state.next = state.confirmed = base + count
            self._pending_bytes += len(payload)
            self._cached_bytes += len(payload)
            replayed += 1
        await self.wal.start()
        if replayed:
            log.info("recovered %d batches from the WAL; uploading them", replayed)
            await self.upload()
        self._tasks = [
            asyncio.create_task(self._upload_loop(), name="engine-upload"),
            asyncio.create_task(self._compaction_loop(), name="engine-compaction"),
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, StreambedError):
                await task
        if self._failure is None:
            try:
                await self.upload()
            except StreambedError as exc:
                log.warning("upload at shutdown failed (data stays in the WAL): %s", exc)
        await self.wal.close()
        async with self._space:
            self._space.notify_all()

    # -- streams ---------------------------------------------------------------------------------

    async def create_stream(self) -> int:
        meta = await self.meta.create_stream()
        self._streams[meta.id] = _StreamState(meta, 0, 0, 0)
        return meta.id

    async def open_stream(self, stream_id: int, epoch: int) -> Stream:
        meta = await self.meta.open_stream(stream_id, epoch, self.node_id)
        state = self._streams.get(stream_id)
        if state is None:
            state = _StreamState(meta, meta.end, meta.end, meta.end)
            self._streams[stream_id] = state
        else:
            state.meta = meta
        return Stream(self, state)

    def _live(self, state: _StreamState) -> None:
        if self._closed:
            raise Closed("stream engine is closed")
        if self._failure is not None:
            raise self._failure
        if state.meta.state != "open":
            raise Closed(f"stream {state.meta.id} is {state.meta.state}")

    # -- appends ---------------------------------------------------------------------------------

    async def _append(self, state: _StreamState, payload: bytes | memoryview, count: int) -> int:
        self._live(state)
        if count <= 0:
            raise ValueError("a batch spans at least one offset")
        size = len(payload)
        if self._pending_bytes + size > self.settings.log_cache_bytes:
            await self._wait_for_space(size)
            self._live(state)
        if state.failed_at is not None:
            raise Unavailable(f"stream {state.meta.id}: an earlier append failed; retry")
        base = state.next
        state.next += count
        state.inflight += 1
        self._pending_bytes += size
        self._cached_bytes += size
        body = _WAL_HEADER.pack(state.meta.id, state.meta.epoch, base, count) + bytes(payload)
        try:
            try:
                wal_offset = await self.wal.append(body)
            except StreambedError as exc:
                state.failed_at = base if state.failed_at is None else min(state.failed_at, base)
                log.error("append to stream %d at %d failed: %s", state.meta.id, base, exc)
                raise
            failed_at = _failed_at(state)  # may have been set while we awaited the WAL
            if failed_at is not None and base > failed_at:
                # Durable, but an earlier offset is missing: it must never be acknowledged, and
                # its offsets are handed out again (recovery skips such orphan records).
                raise Unavailable(f"stream {state.meta.id}: an earlier append failed; retry")
        except BaseException:
            self._pending_bytes -= size
            self._cached_bytes -= size
            state.inflight -= 1
            self._settle(state)
            raise
        state.inflight -= 1
        # WAL appends complete in order, so the cache stays sorted by offset.
        state.cache.append(_Entry(Batch(base, count, body[_WAL_HEADER.size :]), wal_offset))
        state.confirmed = base + count
        self._max_wal_offset = max(self._max_wal_offset, wal_offset)
        for waiter in list(state.waiting.values()):
            if not waiter.done():
                waiter.set_result(None)
        self._settle(state)
        if self._cached_bytes > self.settings.log_cache_bytes:
            self._evict()
        if self._pending_bytes >= self.settings.upload_threshold_bytes:
            self._upload_wanted.set()
        return base

    @staticmethod
    def _settle(state: _StreamState) -> None:
        """After a failed append, once nothing is in flight, hand out its offsets again."""
        if state.inflight == 0 and state.failed_at is not None:
            state.next = state.confirmed  # == the first failed offset: offsets stay dense
            state.failed_at = None

    async def _wait_for_space(self, size: int) -> None:
        self._upload_wanted.set()
        async with self._space:
            while (
                self._pending_bytes + size > self.settings.log_cache_bytes and self._pending_bytes
            ):
                if self._closed or self._failure is not None:
                    raise Closed("stream engine is closed")
                self._upload_wanted.set()
                await self._space.wait()

    async def wait_for_data(self, state_id: int, offset: int, timeout: float) -> None:
        """Wait until the stream's acknowledged end passes ``offset`` (long-polling fetches)."""
        state = self._streams[state_id]
        if state.confirmed > offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = id(future)
        state.waiting[key] = future
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            state.waiting.pop(key, None)

    # -- upload ----------------------------------------------------------------------------------

    async def _upload_loop(self) -> None:
        interval = self.settings.upload_interval_ms / 1000.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._upload_wanted.wait(), interval)
            self._upload_wanted.clear()
            try:
                await self.upload()
            except Fenced as exc:
                self._failure = exc
                log.error("stream engine fenced, stopping: %s", exc)
                return
            except StreambedError as exc:
                log.warning("upload failed, will retry: %s", exc)
                await asyncio.sleep(min(interval, 1.0))

    async def upload(self) -> int:
        """Upload every acknowledged, not yet uploaded batch; returns bytes uploaded."""
        async with self._upload_lock:
            plan: list[tuple[_StreamState, list[Batch]]] = []
            for state in sorted(self._streams.values(), key=lambda s: s.meta.id):
                batches = [
                    e.batch
                    for e in state.cache
                    if e.batch.base >= state.committed and e.batch.end <= state.confirmed
                ]
                if batches:
                    plan.append((state, batches))
            if not plan:
                await self._trim_wal()
                return 0
            small: list[tuple[_StreamState, list[Batch]]] = []
            objects: list[
                tuple[ObjectMeta, list[bytes | memoryview], list[tuple[_StreamState, list[Batch]]]]
            ] = []
            for state, batches in plan:
                size = sum(len(b.payload) for b in batches)
                if size >= self.settings.stream_object_threshold_bytes:
                    objects.append(await self._build("so", [(state, batches)]))
                else:
                    small.append((state, batches))
            if small:
                objects.append(await self._build("sso", small))
            for meta, parts, _ in objects:
                await self.objects.put(meta.key, parts)
            advance = {
                state.meta.id: (state.meta.epoch, batches[-1].end) for state, batches in plan
            }
            await self.meta.commit_objects([m for m, _, _ in objects], advance)
            uploaded = 0
            for meta, _, _ in objects:
                self._index_object(meta)
            for state, batches in plan:
                state.committed = batches[-1].end
                size = sum(len(b.payload) for b in batches)
                self._pending_bytes -= size
                uploaded += size
            self.uploads += 1
            await self._trim_wal()
            self._evict()
            async with self._space:
                self._space.notify_all()
            return uploaded

    async def _build(
        self, kind: str, streams: list[tuple[_StreamState, list[Batch]]]
    ) -> tuple[ObjectMeta, list[bytes | memoryview], list[tuple[_StreamState, list[Batch]]]]:
        meta = await self.meta.prepare_object("so" if kind == "so" else "sso")
        for state, batches in streams:
            meta.ranges.append((state.meta.id, batches[0].base, batches[-1].end))

        def build() -> list[bytes | memoryview]:
            builder = ObjectBuilder(self.settings.block_bytes)
            for state, batches in streams:
                for batch in batches:
                    builder.add(state.meta.id, batch)
            return builder.finish()[0]

        # Checksumming tens of MiB must not stall appends and tail reads on the event loop.
        parts = await asyncio.to_thread(build)
        meta.size = sum(len(p) for p in parts)
        return meta, parts, streams

    async def _trim_wal(self) -> None:
        pending = [
            e.wal_offset
            for s in self._streams.values()
            for e in s.cache
            if e.batch.base >= s.committed
        ]
        target = min(pending) if pending else self._max_wal_offset + 1
        if target > 0:
            await self.wal.trim(target)

    def _evict(self) -> None:
        """Drop uploaded batches, oldest first, while the cache is over its budget."""
        budget = self.settings.log_cache_bytes
        if self._cached_bytes <= budget:
            return
        for state in sorted(self._streams.values(), key=lambda s: len(s.cache), reverse=True):
            while state.cache and state.cache[0].batch.end <= state.committed:
                if self._cached_bytes <= budget:
                    return
                self._cached_bytes -= len(state.cache.popleft().batch.payload)

    def _index_object(self, meta: ObjectMeta) -> None:
        self._object_index[meta.id] = meta
        for stream_id, start, end in meta.ranges:
            state = self._streams.get(stream_id)
            if state is not None:
                bisect.insort(state.objects, (start, end, meta.id))

    def _unindex_object(self, meta: ObjectMeta) -> None:
        self._object_index.pop(meta.id, None)
        self._tails.pop(meta.id, None)
        for stream_id, start, end in meta.ranges:
            state = self._streams.get(stream_id)
            if state is not None:
                with contextlib.suppress(ValueError):
                    state.objects.remove((start, end, meta.id))

    # -- reads -----------------------------------------------------------------------------------

    async def _fetch(
        self, state: _StreamState, start: int, end: int | None, max_bytes: int
    ) -> list[Batch]:
        if start < state.meta.start or start > state.confirmed:
            raise OffsetOutOfRange(
                f"stream {state.meta.id}: offset {start} outside [{state.meta.start}, "
                f"{state.confirmed}]"
            )
        limit = state.confirmed if end is None else min(end, state.confirmed)
        out: list[Batch] = []
        size = 0
        position = start
        cache_start = state.cache[0].batch.base if state.cache else state.confirmed
        if position < cache_start:
            for batch in await self._read_objects(
                state, position, min(limit, cache_start), max_bytes
            ):
                if batch.end <= position:
                    continue
                if out and size + len(batch.payload) > max_bytes:
                    return out
                out.append(batch)
                size += len(batch.payload)
                position = batch.end
            if position < cache_start and out:
                return out
        entries = state.cache
        # Binary search the cache by base offset.
        low, high = 0, len(entries)
        while low < high:
            mid = (low + high) // 2
            if entries[mid].batch.end <= position:
                low = mid + 1
            else:
                high = mid
        for i in range(low, len(entries)):
            batch = entries[i].batch
            if batch.base >= limit:
                break
            if out and size + len(batch.payload) > max_bytes:
                break
            out.append(batch)
            size += len(batch.payload)
        return out

    async def _read_objects(
        self, state: _StreamState, start: int, end: int, max_bytes: int
    ) -> list[Batch]:
        out: list[Batch] = []
        size = 0
        position = start
        while position < end and (not out or size < max_bytes):
            index = bisect.bisect_right(state.objects, (position, float("inf"), 0)) - 1
            candidates = state.objects[max(index, 0) :]
            located = next(((s, e, oid) for s, e, oid in candidates if s <= position < e), None)
            if located is None:
                if out:
                    break
                raise DataError(f"stream {state.meta.id}: no object holds offset {position}")
            object_id = located[2]
            batches = await self._read_object(
                object_id,
                state.meta.id,
                position,
                max_bytes - size + self._readahead(state, position),
            )
            if not batches:
                raise DataError(
                    f"stream {state.meta.id}: object {object_id} lacks offset {position}"
                )
            for batch in batches:
                if batch.end <= position:
                    continue
                out.append(batch)
                size += len(batch.payload)
                position = batch.end
                if size >= max_bytes or position >= end:
                    break
        state.cold_end = position
        return out

    def _readahead(self, state: _StreamState, position: int) -> int:
        """Extra bytes to read: doubles while a reader goes on sequentially, resets on a jump."""
        if position == state.cold_end:
            state.readahead = min(
                max(2 * state.readahead, self.settings.block_bytes),
                self.settings.readahead_max_bytes,
            )
        else:
            state.readahead = 0
        return state.readahead

    async def _tail(self, meta: ObjectMeta) -> list[BlockIndex]:
        cached = self._tails.get(meta.id)
        if cached is not None:
            self._tails.move_to_end(meta.id)
            return cached
        want = min(meta.size, _TAIL_GUESS)
        tail = await self.objects.get_range(meta.key, meta.size - want, meta.size)
        parsed = parse_tail(tail, meta.size)
        if isinstance(parsed, int):
            tail = await self.objects.get_range(meta.key, meta.size - parsed, meta.size)
            parsed = parse_tail(tail, meta.size)
            assert not isinstance(parsed, int)
        index, _ = parsed
        self._tails[meta.id] = index
        while len(self._tails) > 4096:
            self._tails.popitem(last=False)
        return index

    async def _read_object(
        self, object_id: int, stream_id: int, start: int, max_bytes: int
    ) -> list[Batch]:
        meta = self._object_index.get(object_id)
        if meta is None:
            raise NotFound(f"object {object_id} is not indexed")
        async with self._cold:
            index = await self._tail(meta)
            wanted: list[BlockIndex] = []
            total = 0
            for block in index:
                if block.stream_id != stream_id or block.end <= start:
                    continue
                wanted.append(block)
                total += block.size
                if total >= max_bytes:
                    break
            blocks: dict[int, bytes] = {}
            missing = [b for b in wanted if self._blocks.get((object_id, b.position)) is None]
            # Merge adjacent missing blocks into one range read.
            runs: list[list[BlockIndex]] = []
            for block in missing:
                if runs and runs[-1][-1].position + runs[-1][-1].size == block.position:
                    runs[-1].append(block)
                else:
                    runs.append([block])
            for run in runs:
                first, last = run[0], run[-1]
                data = await self.objects.get_range(
                    meta.key, first.position, last.position + last.size
                )
                for block in run:
                    offset = block.position - first.position
                    piece = data[offset : offset + block.size]
                    blocks[block.position] = piece
                    self._blocks.put((object_id, block.position), piece)
        out: list[Batch] = []
        for block in wanted:
            block_data = blocks.get(block.position) or self._blocks.get((object_id, block.position))
            if block_data is None:
                block_data = await self.objects.get_range(
                    meta.key, block.position, block.position + block.size
                )
            out.extend(b for b in parse_block(block_data, block) if b.end > start)
        return out

    # -- trim, close, delete -----------------------------------------------------------------------

    async def _trim(self, state: _StreamState, new_start: int) -> None:
        self._live(state)
        new_start = min(new_start, state.confirmed)
        state.meta = await self.meta.trim_stream(state.meta.id, state.meta.epoch, new_start)

    async def _close_stream(self, state: _StreamState) -> None:
        await self.upload()
        state.meta = await self.meta.close_stream(state.meta.id, state.meta.epoch)

    async def _delete_stream(self, state: _StreamState) -> None:
        state.meta = await self.meta.delete_stream(state.meta.id, state.meta.epoch)
        dropped = sum(len(e.batch.payload) for e in state.cache if e.batch.base >= state.committed)
        self._pending_bytes -= dropped
        self._cached_bytes -= sum(len(e.batch.payload) for e in state.cache)
        state.cache.clear()
        await self._trim_wal()

    # -- compaction, retention, cleanup ------------------------------------------------------------

    async def _compaction_loop(self) -> None:
        interval = self.settings.compaction_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.compact()
            except Fenced as exc:
                self._failure = exc
                return
            except StreambedError as exc:
                log.warning("compaction failed, will retry: %s", exc)

    async def compact(self, *, now: float | None = None) -> dict[str, int]:
        """One round: retention, merging stream-set objects, and cleanup. Returns counts."""
        async with self._upload_lock:
            fixed_now = now
            streams = {s.id: s for s in await self.meta.list_streams()}
            objects = await self.meta.list_objects()
            result = {"expired": 0, "merged": 0, "deleted": 0, "abandoned": 0}

            def live_range(stream_id: int, end: int) -> bool:
                stream = streams.get(stream_id)
                return stream is not None and stream.state != "deleted" and end > stream.start

            expired = [
                o
                for o in objects
                if o.state == "committed" and not any(live_range(s, e) for s, _, e in o.ranges)
            ]
            if expired:
                await self.meta.mark_objects(expired)
                for meta in expired:
                    self._unindex_object(meta)
                result["expired"] = len(expired)

            ssos = [
                o
                for o in objects
                if o.state == "committed" and o.kind == "sso" and o not in expired
            ]
            # Objects that also hold dead ranges (deleted or trimmed-away streams) are rewritten
            # even when there are few of them, so deleted data does not linger.
            holds_dead = any(not live_range(s, e) for o in ssos for s, _, e in o.ranges)
            if ssos and (len(ssos) >= self.settings.compaction_min_objects or holds_dead):
                chosen: list[ObjectMeta] = []
                total = 0
                for meta in sorted(ssos, key=lambda m: m.id):
                    if chosen and total + meta.size > self.settings.compaction_max_bytes:
                        break
                    chosen.append(meta)
                    total += meta.size
                result["merged"] = await self._merge(chosen, streams)

            # Small stream objects of one stream are merged too, so the object count stays bounded.
            by_stream: dict[int, list[ObjectMeta]] = collections.defaultdict(list)
            for meta in await self.meta.list_objects():
                if (
                    meta.state == "committed"
                    and meta.kind == "so"
                    and len(meta.ranges) == 1
                    and meta.size < self.settings.compaction_small_object_bytes
                ):
                    by_stream[meta.ranges[0][0]].append(meta)
            for small in by_stream.values():
                if len(small) < self.settings.compaction_min_objects:
                    continue
                chosen, total = [], 0
                for meta in sorted(small, key=lambda m: m.ranges[0][1]):
                    if chosen and total + meta.size > self.settings.compaction_max_bytes:
                        break
                    chosen.append(meta)
                    total += meta.size
                if len(chosen) >= 2:
                    result["merged"] += await self._merge(chosen, streams)

            delay = self.settings.object_delete_delay_ms / 1000.0
            timeout = self.settings.prepared_timeout_ms / 1000.0
            now = self._clock() if fixed_now is None else fixed_now
            for meta in await self.meta.list_objects():
                if meta.state == "marked" and now - meta.marked_at >= delay:
                    await self.objects.delete([meta.key])
                    await self.meta.forget_object(meta)
                    result["deleted"] += 1
                elif meta.state == "prepared" and now - meta.prepared_at >= timeout:
                    await self.objects.delete([meta.key])
                    await self.meta.forget_object(meta)
                    result["abandoned"] += 1
            await self.objects.cleanup()
            self.compactions += 1
            return result

    async def _merge(self, chosen: list[ObjectMeta], streams: dict[int, StreamMeta]) -> int:
        """Rewrite stream-set objects as one stream object per stream (ranges preserved)."""
        per_stream: dict[int, list[Batch]] = collections.defaultdict(list)
        for meta in chosen:
            index = await self._tail(meta)
            data = await self.objects.get(meta.key)
            for block in index:
                stream = streams.get(block.stream_id)
                if stream is None or stream.state == "deleted":
                    continue
                piece = data[block.position : block.position + block.size]
                per_stream[block.stream_id].extend(
                    Batch(b.base, b.count, bytes(b.payload)) for b in parse_block(piece, block)
                )
        new: list[ObjectMeta] = []
        for stream_id in sorted(per_stream):
            batches = sorted(per_stream[stream_id], key=lambda b: b.base)
            meta = await self.meta.prepare_object("so")
            builder = ObjectBuilder(self.settings.block_bytes)
            # Contiguous runs only: a range must never claim offsets it does not hold.
            run_start = batches[0].base
            previous_end = run_start
            for batch in batches:
                if batch.base != previous_end:
                    meta.ranges.append((stream_id, run_start, previous_end))
                    run_start = batch.base
                builder.add(stream_id, batch)
                previous_end = batch.end
            meta.ranges.append((stream_id, run_start, previous_end))
            parts, _ = builder.finish()
            meta.size = sum(len(p) for p in parts)
            await self.objects.put(meta.key, parts)
            new.append(meta)
        await self.meta.commit_objects(new, {}, chosen)
        for meta in chosen:
            self._unindex_object(meta)
        for meta in new:
            self._index_object(meta)
        return len(chosen)

    # -- introspection -----------------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """Bytes held by the caches (for tests and metrics)."""
        return {
            "log_cache": self._cached_bytes,
            "pending": self._pending_bytes,
            "block_cache": self._blocks.size,
        }

    def stream_ids(self) -> Sequence[int]:
        return sorted(self._streams)
