"""The stream engine: streams over a WAL, a log cache, and objects in an object store.

    append ─► WAL (durable) ─► log cache ─► ack
                                  │ threshold / timer / forced by back-pressure
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streambed.core.errors import Closed, DataError, Fenced, NotFound, StreambedError, Unavailable
from streambed.core.metadata.api import MetadataStore
from streambed.core.metadata.streams import ObjectKind, ObjectMeta, StreamMeta, StreamMetadata
from streambed.core.objects.api import ObjectStore
from streambed.core.objects.format import Batch, BlockIndex, ObjectBuilder, parse_block, parse_tail
from streambed.core.stream.block_cache import BlockCache
from streambed.core.stream.clock import Clock, SystemClock
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.api import WriteAheadLog

__all__ = ["WAL_HEADER", "OffsetOutOfRange", "OnAssign", "Stream", "StreamEngine"]

_BUILD_SLICE = 2 * 1024 * 1024  # bytes checksummed between two yields to the event loop


class _Slices:
    """Cooperative CPU work on the event loop: ``await slices.done(n)`` after each piece yields
    to the loop once ``_BUILD_SLICE`` bytes were processed since the last yield.

    Checksumming and parsing tens of MiB (object builds, compaction merges) holds the GIL: on a
    worker thread that stalled the loop 10-15 ms per upload, because the loop waits for the GIL in
    5 ms switch intervals. Slices of ~0.5 ms let requests run between them.
    """

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = 0

    async def done(self, size: int) -> None:
        self._since += size
        if self._since >= _BUILD_SLICE:
            self._since = 0
            await asyncio.sleep(0)

log = logging.getLogger("streambed.engine")

WAL_HEADER = struct.Struct(">QQQI")
"""WAL record body: stream id u64 | stream epoch u64 | base offset u64 | count u32 | payload."""
OnAssign = Callable[[int, memoryview], None]
"""``on_assign(base_offset, payload)``: see :meth:`Stream.append`."""
_TAIL_GUESS = 64 * 1024  # one range read fetches footer + index of almost any object
_MAX_CACHED_INDEXES = 4096


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
    confirmed: int  # every offset below is durable and acknowledged
    committed: int  # every offset below is in committed objects
    cache: collections.deque[_Entry] = field(default_factory=collections.deque)
    objects: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, object id)
    waiting: set[asyncio.Future[None]] = field(default_factory=set)
    inflight: int = 0
    failed_at: int | None = None  # an append at this offset failed; later ones must not be acked
    readahead: int = 0  # grows on sequential cold reads, resets on a jump
    cold_end: int = -1  # where the last cold read ended

    def first_failure(self) -> int | None:
        return self.failed_at

    def pending(self) -> list[Batch]:
        """Acknowledged batches not yet in committed objects, in offset order."""
        out = []
        for entry in reversed(self.cache):
            if entry.batch.base < self.committed:
                break
            out.append(entry.batch)
        out.reverse()
        return out


class Stream:
    """A handle on a stream opened by this engine. Appends complete in offset order."""

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

    @property
    def ranges(self) -> list[tuple[int, int, int, int]]:
        """Ownership history ``(epoch, node, start, end)``, oldest first (the last range's end is
        only final once another owner took over)."""
        return list(self._state.meta.ranges)

    @property
    def committed_offset(self) -> int:
        """Every offset below this is in object storage (the rest is in the WAL)."""
        return self._state.committed

    async def append(
        self, payload: bytes | memoryview, count: int, *, on_assign: OnAssign | None = None
    ) -> int:
        """Append one batch spanning ``count`` offsets; returns its base offset once durable.

        Offsets are assigned in call order (an append waiting for log-cache space holds back the
        ones after it), so concurrent appends complete in call order. ``on_assign(base, data)``
        runs synchronously once the base offset is known, on the engine's own copy of the
        payload, before it is written: a Kafka broker stamps the batch's base offset there, so the
        WAL holds the stamped bytes and the payload is copied exactly once."""
        return await self._engine._append(self._state, payload, count, on_assign)

    async def fetch(
        self, start: int, end: int | None = None, max_bytes: int = 1 << 20
    ) -> list[Batch]:
        """Whole batches from the one holding ``start`` up to ``end`` (exclusive, default: the
        acknowledged end), about ``max_bytes`` of payload but always at least one batch."""
        return await self._engine._fetch(self._state, start, end, max_bytes)

    async def wait_for(self, offset: int, timeout: float) -> bool:
        """Wait until acknowledged data passes ``offset`` (long-polling fetches)."""
        return await self._engine._wait_for_data(self._state, offset, timeout)

    async def trim(self, new_start: int) -> None:
        await self._engine._trim(self._state, new_start)

    async def close(self) -> None:
        """Upload what is pending and give up ownership (a graceful move to another node)."""
        await self._engine._close_stream(self._state)

    async def delete(self) -> None:
        await self._engine._delete_stream(self._state)


class StreamEngine:
    """Owns streams on one node. ``start()`` recovers; ``close()`` uploads what is pending.

    ``node_epoch`` fences earlier incarnations of this node (default: above every earlier one);
    ``wal_identity`` is recorded in metadata so another node can take the WAL over on failover.
    """

    def __init__(
        self,
        wal: WriteAheadLog,
        objects: ObjectStore,
        metadata: MetadataStore,
        settings: EngineSettings | None = None,
        *,
        node_id: int = 1,
        node_epoch: int | None = None,
        wal_identity: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.wal = wal
        self.objects = objects
        self.clock = clock or SystemClock()
        self.meta = StreamMetadata(metadata, node_id=node_id, clock=self.clock.time)
        self.settings = settings or EngineSettings()
        self.node_id = node_id
        self._node_epoch = node_epoch
        self._wal_identity = wal_identity
        self._streams: dict[int, _StreamState] = {}
        self._object_index: dict[int, ObjectMeta] = {}
        self._indexes: collections.OrderedDict[int, list[BlockIndex]] = collections.OrderedDict()
        self._blocks = BlockCache(self.settings.block_cache_bytes)
        self._pending_bytes = 0  # acknowledged, not yet in committed objects
        self._cached_bytes = 0  # everything in the log cache (pending or uploaded)
        self._space_queue: collections.deque[object] = collections.deque()
        self._space_changed = asyncio.Event()  # set when log-cache room may have appeared
        self._upload_lock = asyncio.Lock()
        self._compaction_lock = asyncio.Lock()
        self._upload_wanted = asyncio.Event()
        self._cold = asyncio.Semaphore(self.settings.cold_read_concurrency)
        self._max_wal_offset = -1
        self._resync = False  # a commit may have happened without us knowing: re-read first
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._failure: StreambedError | None = None
        self._failed = asyncio.Event()
        self.uploads = 0
        self.compactions = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node incarnation, load metadata, replay the WAL from its trim point
        (dropping what committed objects already hold), upload what it held and trim it."""
        node = await self.meta.register_node(self._node_epoch, self._wal_identity)
        log.info("node %d registered with epoch %d", self.node_id, node.epoch)
        for stream in await self.meta.list_streams():
            self._streams[stream.id] = _StreamState(stream, stream.end, stream.end, stream.end)
        for obj in await self.meta.list_objects("committed"):
            self._index_object(obj)
        replayed = 0
        async for record in self.wal.recover():
            self._max_wal_offset = max(self._max_wal_offset, record.offset)
            if self._replay(record.offset, record.body):
                replayed += 1
        await self.wal.start()
        self._started = True
        if replayed:
            log.info("recovered %d batches from the WAL; uploading them", replayed)
            try:
                await self.upload()
            except Fenced:
                raise
            except StreambedError as exc:
                # The data is safe in the WAL and the cache; the upload loop retries.
                log.warning("upload of recovered data failed, will retry: %s", exc)
        else:
            await self._trim_wal()
        self._tasks = [
            asyncio.create_task(self._upload_loop(), name="engine-upload"),
            asyncio.create_task(self._compaction_loop(), name="engine-compaction"),
        ]

    def _replay(self, wal_offset: int, body: bytes) -> bool:
        if len(body) < WAL_HEADER.size:
            log.warning("WAL record %d is too short for an engine record; skipped", wal_offset)
            return False
        stream_id, _epoch, base, count = WAL_HEADER.unpack_from(body)
        state = self._streams.get(stream_id)
        if state is None or state.meta.state == "deleted" or state.meta.node != self.node_id:
            # Deleted, or owned by another node since (which only happens after this data was
            # uploaded or this WAL was taken over).
            return False
        if base + count <= state.committed:
            return False
        if base < state.committed or base > state.next:
            # Not acknowledged: it followed an append that failed, and its offsets were handed
            # out again (see _settle).
            log.debug("skipping orphan WAL record of stream %d at %d", stream_id, base)
            return False
        if base < state.next:
            # A later record reuses these offsets: the earlier ones were never acknowledged.
            while state.cache and state.cache[-1].batch.base >= base:
                dropped = len(state.cache.pop().batch.payload)
                self._pending_bytes -= dropped
                self._cached_bytes -= dropped
        payload = memoryview(body)[WAL_HEADER.size :]
        state.cache.append(_Entry(Batch(base, count, payload), wal_offset))
        state.next = state.confirmed = base + count
        self._pending_bytes += len(payload)
        self._cached_bytes += len(payload)
        return True

    async def close(self) -> None:
        """Stop background work, upload what is pending (when possible) and close the WAL."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, StreambedError):
                await task
        if self._failure is None and self._started:
            try:
                await self._upload()
            except StreambedError as exc:
                log.warning("upload at shutdown failed (the data stays in the WAL): %s", exc)
        await self.wal.close()
        self._space_changed.set()
        for state in self._streams.values():
            for waiter in state.waiting:
                if not waiter.done():
                    waiter.set_result(None)

    def _check_live(self) -> None:
        if self._closed:
            raise Closed("stream engine is closed")
        if self._failure is not None:
            raise self._failure

    # -- streams ---------------------------------------------------------------------------------

    async def create_stream(self) -> int:
        self._check_live()
        meta = await self.meta.create_stream()
        self._streams[meta.id] = _StreamState(meta, 0, 0, 0)
        return meta.id

    async def open_stream(self, stream_id: int, epoch: int) -> Stream:
        """Own ``stream_id`` with ``epoch`` (an older epoch is :class:`Fenced`)."""
        self._check_live()
        meta = await self.meta.open_stream(stream_id, epoch)
        state = self._streams.get(stream_id)
        if state is None or (state.meta.node != self.node_id and not state.cache):
            # New to this node: locate its objects through the stream's locators.
            state = _StreamState(meta, meta.end, meta.end, meta.end)
            self._streams[stream_id] = state
            for located in await self.meta.objects_covering(stream_id, meta.start):
                obj = self._object_index.get(located.object_id)
                if obj is None:
                    obj = await self.meta.get_object(located.object_id)
                if obj is not None and obj.state == "committed":
                    self._index_object(obj)
        else:
            state.meta = meta
        return Stream(self, state)

    def stream_ids(self) -> Sequence[int]:
        """Streams known to this engine that are not deleted."""
        return sorted(s for s, st in self._streams.items() if st.meta.state != "deleted")

    def _check_open(self, state: _StreamState) -> None:
        self._check_live()
        if state.meta.state != "open" or state.meta.node != self.node_id:
            raise Closed(f"stream {state.meta.id} is {state.meta.state} on this node")

    # -- appends ---------------------------------------------------------------------------------

    async def _append(
        self,
        state: _StreamState,
        payload: bytes | memoryview,
        count: int,
        on_assign: OnAssign | None = None,
    ) -> int:
        self._check_open(state)
        if count <= 0:
            raise ValueError("a batch spans at least one offset")
        size = len(payload)
        if self._space_queue or self._pending_bytes + size > self.settings.log_cache_bytes:
            await self._wait_for_space(size)
            self._check_open(state)
        if state.failed_at is not None:
            raise Unavailable(f"stream {state.meta.id}: an earlier append failed; retry")
        base = state.next
        state.next += count
        state.inflight += 1
        self._pending_bytes += size
        self._cached_bytes += size
        body = bytearray(WAL_HEADER.size + size)
        WAL_HEADER.pack_into(body, 0, state.meta.id, state.meta.epoch, base, count)
        body[WAL_HEADER.size :] = payload
        try:
            if on_assign is not None:
                on_assign(base, memoryview(body)[WAL_HEADER.size :])
            try:
                wal_offset = await self.wal.append(memoryview(body))
            except StreambedError as exc:
                state.failed_at = base if state.failed_at is None else min(state.failed_at, base)
                log.warning("append to stream %d at %d failed: %s", state.meta.id, base, exc)
                raise
            failed_at = state.first_failure()  # may have been set while we awaited the WAL
            if failed_at is not None and base > failed_at:
                # Durable, but an earlier offset is missing: this must never be acknowledged,
                # and its offsets are handed out again (recovery skips such orphan records).
                raise Unavailable(f"stream {state.meta.id}: an earlier append failed; retry")
        except BaseException:
            self._pending_bytes -= size
            self._cached_bytes -= size
            state.inflight -= 1
            self._settle(state)
            self._space_changed.set()
            raise
        state.inflight -= 1
        # WAL appends complete in order, so the cache stays sorted by offset.
        state.cache.append(_Entry(Batch(base, count, memoryview(body)[WAL_HEADER.size :]), wal_offset))
        state.confirmed = base + count
        self._max_wal_offset = max(self._max_wal_offset, wal_offset)
        for waiter in state.waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._settle(state)
        self._space_changed.set()
        if self._cached_bytes > self.settings.log_cache_bytes:
            self._evict()
        if self._pending_bytes >= self._upload_threshold():
            self._upload_wanted.set()
        return base

    def _upload_threshold(self) -> int:
        return min(self.settings.upload_threshold_bytes, self.settings.log_cache_bytes)

    @staticmethod
    def _settle(state: _StreamState) -> None:
        """After a failed append, once nothing is in flight, hand its offsets out again."""
        if state.inflight == 0 and state.failed_at is not None:
            state.next = state.confirmed  # == the first failed offset: offsets stay dense
            state.failed_at = None

    async def _wait_for_space(self, size: int) -> None:
        """Back-pressure: upload (or wait for the upload under way) until ``size`` bytes fit in
        the log cache. A failed upload fails the append with a retriable error: appends never
        queue without bound behind a medium that is down."""
        ticket = object()
        self._space_queue.append(ticket)  # first come, first served: offsets stay in call order
        try:
            while self._space_queue[0] is not ticket or (
                self._pending_bytes + size > self.settings.log_cache_bytes and self._pending_bytes
            ):
                self._check_live()
                self._space_changed.clear()
                if (
                    self._space_queue[0] is ticket
                    and not self._upload_lock.locked()
                    and any(s.pending() for s in self._streams.values())
                ):
                    await self._upload()
                else:
                    # An upload is under way, the data is still in flight to the WAL, or an
                    # earlier append is first in the queue.
                    await self._space_changed.wait()
        finally:
            self._space_queue.remove(ticket)
            self._space_changed.set()  # the next in the queue may go now

    async def _wait_for_data(self, state: _StreamState, offset: int, timeout: float) -> bool:
        if state.confirmed > offset:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiting.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            state.waiting.discard(future)
        return state.confirmed > offset

    async def wait_for_data(self, stream_id: int, offset: int, timeout: float) -> None:
        """Wait until a stream's acknowledged end passes ``offset`` or ``timeout`` passes."""
        await self._wait_for_data(self._streams[stream_id], offset, timeout)

    # -- upload ----------------------------------------------------------------------------------

    async def _upload_loop(self) -> None:
        interval = self.settings.upload_interval_ms / 1000.0
        while True:
            await self._wait_or_sleep(self._upload_wanted, interval)
            self._upload_wanted.clear()
            try:
                await self._upload()
            except Fenced:
                return
            except StreambedError as exc:
                log.warning("upload failed, will retry: %s", exc)
                await self.clock.sleep(min(interval, 0.5))
                self._upload_wanted.set()

    async def _wait_or_sleep(self, event: asyncio.Event, seconds: float) -> None:
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def wait_failed(self) -> StreambedError:
        """Wait until the engine stops for good because this node was fenced (another process
        registered as this node, or took over its streams); the error that stopped it."""
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    def _fail(self, exc: StreambedError) -> None:
        log.error("stream engine fenced, stopping: %s", exc)
        self._failure = exc
        self._failed.set()
        self._space_changed.set()
        for state in self._streams.values():
            for waiter in state.waiting:
                if not waiter.done():
                    waiter.set_result(None)

    async def upload(self) -> int:
        """Upload every acknowledged, not yet uploaded batch now; returns bytes uploaded."""
        self._check_live()
        return await self._upload()

    async def _upload(self) -> int:
        try:
            return await self._upload_locked()
        except Fenced as exc:
            # Streams taken over are handled inside; what escapes means this node was fenced.
            self._fail(exc)
            raise
        finally:
            self._space_changed.set()

    async def _upload_locked(self) -> int:
        async with self._upload_lock:
            if self._resync:
                await self._resync_streams()
            plan = [
                (state, batches)
                for state in sorted(self._streams.values(), key=lambda s: s.meta.id)
                if (batches := state.pending())
            ]
            if not plan:
                await self._trim_wal()
                return 0
            groups = self._group(plan)
            metas = await self.meta.prepare_objects(
                [kind for kind, _ in groups], self.settings.prepared_timeout_ms / 1000.0
            )
            try:
                for meta, (_, streams) in zip(metas, groups, strict=True):
                    for state, batches in streams:
                        meta.ranges.append((state.meta.id, batches[0].base, batches[-1].end))
                    parts = await self._build(streams)
                    meta.size = sum(len(p) for p in parts)
                    await self.objects.put(meta.key, parts)
            except BaseException:
                # Never committed: remove now rather than waiting for the prepared deadline.
                await self._abandon(metas)
                raise
            advance = {
                state.meta.id: (state.meta.epoch, batches[-1].end) for state, batches in plan
            }
            try:
                await self.meta.commit_objects(metas, advance)
            except Fenced:
                # Either a stream changed owner, this node was fenced (re-raised by the resync),
                # or an earlier ambiguous commit of ours did happen: find out, retry later.
                self._resync = True
                await self._resync_streams()
                raise Unavailable("upload raced with an ownership change; will retry") from None
            except Unavailable:
                self._resync = True
                raise
            for meta in metas:
                self._index_object(meta)
            uploaded = 0
            for state, batches in plan:
                state.committed = batches[-1].end
                uploaded += sum(len(b.payload) for b in batches)
            self._pending_bytes -= uploaded
            self.uploads += 1
            await self._trim_wal()
            self._evict()
            return uploaded

    def _group(
        self, plan: list[tuple[_StreamState, list[Batch]]]
    ) -> list[tuple[ObjectKind, list[tuple[_StreamState, list[Batch]]]]]:
        """Streams with much data get stream objects; the rest share stream-set objects; no
        object passes ``object_max_bytes`` (unless one batch alone does)."""
        limit = self.settings.object_max_bytes
        groups: list[tuple[ObjectKind, list[tuple[_StreamState, list[Batch]]]]] = []
        shared: list[tuple[_StreamState, list[Batch]]] = []
        shared_size = 0
        for state, batches in plan:
            size = sum(len(b.payload) for b in batches)
            if size >= self.settings.stream_object_threshold_bytes:
                chunk: list[Batch] = []
                chunk_size = 0
                for batch in batches:
                    if chunk and chunk_size + len(batch.payload) > limit:
                        groups.append(("so", [(state, chunk)]))
                        chunk, chunk_size = [], 0
                    chunk.append(batch)
                    chunk_size += len(batch.payload)
                groups.append(("so", [(state, chunk)]))
                continue
            if shared and shared_size + size > limit:
                groups.append(("sso", shared))
                shared, shared_size = [], 0
            shared.append((state, batches))
            shared_size += size
        if shared:
            groups.append(("sso", shared))
        return groups

    async def _build(
        self, streams: list[tuple[_StreamState, list[Batch]]]
    ) -> list[bytes | memoryview]:
        """The object's buffers, built on the loop in slices (see :class:`_Slices`)."""
        builder = ObjectBuilder(self.settings.block_bytes)
        slices = _Slices()
        for state, batches in streams:
            for batch in batches:
                builder.add(state.meta.id, batch)
                await slices.done(len(batch.payload))
        return builder.finish()[0]

    async def _abandon(self, metas: Sequence[ObjectMeta]) -> None:
        for meta in metas:
            try:
                await self.objects.delete([meta.key])
                await self.meta.forget_object(meta)
            except StreambedError as exc:
                log.debug("object %d left for cleanup: %s", meta.id, exc)

    async def _resync_streams(self) -> None:
        """After an ambiguous or refused commit: adopt what metadata says we committed, and stop
        writing streams that another owner took."""
        for state in list(self._streams.values()):
            if state.meta.state == "deleted" or not state.pending():
                continue
            meta = await self.meta.get_stream(state.meta.id)
            if (meta.epoch, meta.node) != (state.meta.epoch, state.meta.node) or (
                meta.state == "deleted"
            ):
                log.error("stream %d was taken over (%s); dropping its pending data", meta.id, meta)
                dropped = sum(len(b.payload) for b in state.pending())
                self._pending_bytes -= dropped
                state.meta = meta
                state.committed = state.confirmed
                continue
            if meta.end > state.committed:
                for located in await self.meta.objects_covering(
                    meta.id, state.committed, meta.end
                ):
                    obj = await self.meta.get_object(located.object_id)
                    if obj is not None and obj.id not in self._object_index:
                        self._index_object(obj)
                adopted = [b for b in state.pending() if b.end <= meta.end]
                self._pending_bytes -= sum(len(b.payload) for b in adopted)
                state.committed = meta.end
            state.meta = meta
        await self.meta.check_node()
        self._resync = False

    async def _trim_wal(self) -> None:
        pending = [
            state.cache[index].wal_offset
            for state in self._streams.values()
            if (index := self._first_pending(state)) is not None
        ]
        target = min(pending) if pending else self._max_wal_offset + 1
        if target > 0:
            await self.wal.trim(target)

    @staticmethod
    def _first_pending(state: _StreamState) -> int | None:
        """Index of the oldest cache entry not yet committed."""
        cache = state.cache
        if not cache or cache[-1].batch.base < state.committed:
            return None
        low, high = 0, len(cache)
        while low < high:
            mid = (low + high) // 2
            if cache[mid].batch.base < state.committed:
                low = mid + 1
            else:
                high = mid
        return low

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
            if state is not None and (start, end, meta.id) not in state.objects:
                bisect.insort(state.objects, (start, end, meta.id))

    def _unindex_object(self, meta: ObjectMeta) -> None:
        self._object_index.pop(meta.id, None)
        self._indexes.pop(meta.id, None)
        for stream_id, start, end in meta.ranges:
            state = self._streams.get(stream_id)
            if state is not None:
                with contextlib.suppress(ValueError):
                    state.objects.remove((start, end, meta.id))

    # -- reads -----------------------------------------------------------------------------------

    async def _fetch(
        self, state: _StreamState, start: int, end: int | None, max_bytes: int
    ) -> list[Batch]:
        self._check_live()
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
        if position < min(cache_start, limit):
            for batch in await self._read_objects(
                state, position, min(limit, cache_start), max_bytes
            ):
                if out and size + len(batch.payload) > max_bytes:
                    return out
                out.append(batch)
                size += len(batch.payload)
                position = batch.end
            if position < cache_start:
                return out
        # Tail: binary search the cache (sorted by offset) for the batch holding `position`.
        entries = state.cache
        low, high = 0, len(entries)
        while low < high:
            mid = (low + high) // 2
            if entries[mid].batch.end <= position:
                low = mid + 1
            else:
                high = mid
        for i in range(low, len(entries)):
            batch = entries[i].batch
            if batch.base >= limit or (out and size + len(batch.payload) > max_bytes):
                break
            out.append(batch)
            size += len(batch.payload)
        return out

    def _locate(self, state: _StreamState, position: int) -> tuple[int, int, int] | None:
        """The ``(start, end, object id)`` range holding ``position``. One object may hold
        several ranges of a stream (a merge of non-adjacent objects), so the range matters."""
        index = bisect.bisect_right(state.objects, (position, 1 << 63, 0)) - 1
        for located in state.objects[max(index, 0) :]:
            if located[0] <= position < located[1]:
                return located
            if located[0] > position:
                break
        return None

    async def _read_objects(
        self, state: _StreamState, start: int, end: int, max_bytes: int
    ) -> list[Batch]:
        out: list[Batch] = []
        size = 0
        position = start
        readahead = self._readahead(state, position)
        retried = False
        while position < end and (not out or size < max_bytes):
            before = position
            located = self._locate(state, position)
            if located is None:
                raise DataError(f"stream {state.meta.id}: no object holds offset {position}")
            _, stop, object_id = located
            stop = min(stop, end)
            try:
                batches = await self._read_object(
                    object_id, state.meta.id, position, stop, max_bytes - size + readahead
                )
            except NotFound:
                # Replaced by compaction (here or, after an unclear commit, without our index
                # knowing) and deleted: metadata is the truth, reload the stream's objects.
                if retried:
                    raise
                retried = True
                await self._reload_objects(state)
                continue
            if not batches or batches[0].base > position:
                raise DataError(f"stream {state.meta.id}: object {object_id} lacks {position}")
            for batch in batches:
                if batch.end <= position:
                    continue
                # The first batch may begin before ``start`` (a read from inside a batch gets the
                # whole batch that holds it); every later one begins where the previous ended.
                if batch.base > position or batch.base >= stop:
                    break  # the range ends here; the next one may be in another object
                out.append(batch)
                size += len(batch.payload)
                position = batch.end
                if size >= max_bytes:
                    break
            if position == before:  # never spin: the loop must move on or fail
                raise DataError(
                    f"stream {state.meta.id}: object {object_id} returned nothing at {position}"
                )
        state.cold_end = position
        return out

    async def _reload_objects(self, state: _StreamState) -> None:
        located = await self.meta.objects_covering(state.meta.id, state.meta.start)
        for meta in [self._object_index.get(o) for _, _, o in state.objects]:
            if meta is not None and meta.id not in {x.object_id for x in located}:
                self._unindex_object(meta)
        for item in located:
            if item.object_id not in self._object_index:
                obj = await self.meta.get_object(item.object_id)
                if obj is not None and obj.state == "committed":
                    self._index_object(obj)

    def _readahead(self, state: _StreamState, position: int) -> int:
        """Extra bytes to read: grows while a reader goes on sequentially, resets on a jump."""
        if position == state.cold_end:
            state.readahead = min(
                max(2 * state.readahead, self.settings.readahead_min_bytes),
                self.settings.readahead_max_bytes,
            )
        else:
            state.readahead = 0
        return state.readahead

    async def _object_index_of(self, meta: ObjectMeta) -> list[BlockIndex]:
        cached = self._indexes.get(meta.id)
        if cached is not None:
            self._indexes.move_to_end(meta.id)
            return cached
        want = min(meta.size, _TAIL_GUESS)
        tail = await self.objects.get_range(meta.key, meta.size - want, meta.size)
        parsed = parse_tail(tail, meta.size)
        if isinstance(parsed, int):
            tail = await self.objects.get_range(meta.key, meta.size - parsed, meta.size)
            parsed = parse_tail(tail, meta.size)
            if isinstance(parsed, int):
                raise DataError(f"object {meta.id}: index longer than the object")
        index = parsed[0]
        self._indexes[meta.id] = index
        while len(self._indexes) > _MAX_CACHED_INDEXES:
            self._indexes.popitem(last=False)
        return index

    async def _read_object(
        self, object_id: int, stream_id: int, start: int, stop: int, max_bytes: int
    ) -> list[Batch]:
        """Batches of ``stream_id`` in ``[start, stop)`` from one object, about ``max_bytes``."""
        meta = self._object_index.get(object_id)
        if meta is None:
            raise NotFound(f"object {object_id} is not indexed")
        wanted: list[BlockIndex] = []
        found: dict[int, bytes] = {}
        async with self._cold:
            index = await self._object_index_of(meta)
            total = 0
            for block in index:
                if block.stream_id != stream_id or block.end <= start or block.start >= stop:
                    continue
                wanted.append(block)
                total += block.size
                if total >= max_bytes:
                    break
            runs: list[list[BlockIndex]] = []
            for block in wanted:
                cached = self._blocks.get((object_id, block.position))
                if cached is not None:
                    found[block.position] = cached
                elif runs and runs[-1][-1].position + runs[-1][-1].size == block.position:
                    runs[-1].append(block)  # adjacent: one range read for the run
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
                    found[block.position] = piece
                    self._blocks.put((object_id, block.position), piece)
        out: list[Batch] = []
        for block in wanted:
            out.extend(
                b for b in parse_block(found[block.position], block) if start < b.end and b.base < stop
            )
        return out

    # -- trim, close, delete -----------------------------------------------------------------------

    async def _trim(self, state: _StreamState, new_start: int) -> None:
        self._check_open(state)
        new_start = min(new_start, state.confirmed)
        state.meta = await self.meta.trim_stream(state.meta.id, state.meta.epoch, new_start)

    async def _close_stream(self, state: _StreamState) -> None:
        self._check_open(state)
        await self.upload()
        state.meta = await self.meta.close_stream(state.meta.id, state.meta.epoch)

    async def _delete_stream(self, state: _StreamState) -> None:
        self._check_open(state)
        async with self._upload_lock:
            state.meta = await self.meta.delete_stream(state.meta.id, state.meta.epoch)
            self._pending_bytes -= sum(len(b.payload) for b in state.pending())
            self._cached_bytes -= sum(len(e.batch.payload) for e in state.cache)
            state.cache.clear()
            state.committed = state.confirmed
            await self._trim_wal()
        self._space_changed.set()

    # -- compaction, retention, cleanup ------------------------------------------------------------

    async def _compaction_loop(self) -> None:
        interval = self.settings.compaction_interval_ms / 1000.0
        while True:
            await self.clock.sleep(interval)
            try:
                await self.compact()
            except Fenced:
                return
            except StreambedError as exc:
                log.warning("compaction failed, will retry: %s", exc)

    async def compact(self, *, now: float | None = None) -> dict[str, int]:
        """One round of retention, merging and cleanup. Returns what it did, by kind."""
        self._check_live()
        try:
            return await self._compact(now)
        except Fenced as exc:
            if not await self._node_alive():
                self._fail(exc)
            raise

    async def _node_alive(self) -> bool:
        try:
            await self.meta.check_node()
        except Fenced:
            return False
        except StreambedError:
            return True
        return True

    async def _compact(self, now: float | None) -> dict[str, int]:
        async with self._compaction_lock:
            result = {"expired": 0, "merged": 0, "deleted": 0, "abandoned": 0, "purged": 0}
            streams = {s.id: s for s in await self.meta.list_streams()}
            objects = await self.meta.list_objects("committed")

            def live(stream_id: int, end: int) -> bool:
                stream = streams.get(stream_id)
                return stream is not None and stream.state != "deleted" and end > stream.start

            expired = [o for o in objects if not any(live(s, e) for s, _, e in o.ranges)]
            for meta in await self.meta.mark_objects(expired):
                self._unindex_object(meta)
                result["expired"] += 1
            dead = {m.id for m in expired}
            objects = [o for o in objects if o.id not in dead]

            # Stream-set objects become stream objects; those holding deleted or trimmed-away
            # ranges are rewritten even when few, so dead data does not linger.
            ssos = sorted((o for o in objects if o.kind == "sso"), key=lambda m: m.id)
            holds_dead = any(not live(s, e) for o in ssos for s, _, e in o.ranges)
            if ssos and (len(ssos) >= self.settings.compaction_min_objects or holds_dead):
                result["merged"] += await self._merge(self._take(ssos), streams)

            # Small stream objects of one stream are merged, so the object count stays bounded.
            by_stream: dict[int, list[ObjectMeta]] = collections.defaultdict(list)
            for meta in objects:
                if (
                    meta.kind == "so"
                    and meta.size < self.settings.compaction_small_object_bytes
                    and len({s for s, _, _ in meta.ranges}) == 1
                ):
                    by_stream[meta.ranges[0][0]].append(meta)
            for small in by_stream.values():
                if len(small) >= self.settings.compaction_min_objects:
                    chosen = self._take(sorted(small, key=lambda m: m.ranges[0][1]))
                    if len(chosen) >= 2:
                        result["merged"] += await self._merge(chosen, streams)

            result["deleted"], result["abandoned"] = await self._cleanup(
                self.clock.time() if now is None else now
            )
            for stream in streams.values():
                if stream.state == "deleted" and await self.meta.purge_stream(stream.id):
                    self._streams.pop(stream.id, None)
                    result["purged"] += 1
            await self.objects.cleanup()
            self.compactions += 1
            return result

    def _take(self, candidates: list[ObjectMeta]) -> list[ObjectMeta]:
        chosen: list[ObjectMeta] = []
        total = 0
        for meta in candidates:
            if chosen and total + meta.size > self.settings.compaction_max_bytes:
                break
            chosen.append(meta)
            total += meta.size
        return chosen

    async def _cleanup(self, now: float) -> tuple[int, int]:
        """Delete the data of marked objects past the delay and prepared objects past their
        deadline, then their records (data first: a crash in between leaves a record that the
        next round finishes, never an unreferenced object)."""
        delay = self.settings.object_delete_delay_ms / 1000.0
        deleted = abandoned = 0
        for meta in await self.meta.list_objects():
            if meta.state == "marked" and now - meta.marked_at >= delay:
                deleted += 1
            elif meta.state == "prepared" and now >= meta.deadline:
                abandoned += 1
            else:
                continue
            await self.objects.delete([meta.key])
            self._blocks.drop_object(meta.id)
            await self.meta.forget_object(meta)
        return deleted, abandoned

    async def _merge(self, chosen: list[ObjectMeta], streams: dict[int, StreamMeta]) -> int:
        """Rewrite objects as one stream object per stream, keeping only live data."""
        sources: list[tuple[list[BlockIndex], bytes]] = []
        for meta in chosen:
            sources.append((await self._object_index_of(meta), await self.objects.get(meta.key)))
        plans = await self._build_merged(sources, streams)
        new = await self.meta.prepare_objects(
            ["so"] * len(plans), self.settings.prepared_timeout_ms / 1000.0
        )
        try:
            for meta, (ranges, parts) in zip(new, plans, strict=True):
                meta.ranges.extend(ranges)
                meta.size = sum(len(p) for p in parts)
                await self.objects.put(meta.key, parts)
        except BaseException:
            await self._abandon(new)
            raise
        try:
            await self.meta.commit_objects(new, {}, chosen)
        except Unavailable:
            # Unclear whether it happened: if it did, readers find out through _reload_objects;
            # if not, the new objects stay prepared until cleanup passes their deadline.
            raise
        for meta in chosen:
            self._unindex_object(meta)
        for meta in new:
            self._index_object(meta)
        return len(chosen)

    async def _build_merged(
        self, sources: list[tuple[list[BlockIndex], bytes]], streams: dict[int, StreamMeta]
    ) -> list[tuple[list[tuple[int, int, int]], list[bytes | memoryview]]]:
        """``(ranges, parts)`` of one new stream object per stream with live data. Parsing and
        rebuilding up to compaction_max_bytes is CPU work: done in slices (:class:`_Slices`)."""
        slices = _Slices()
        per_stream: dict[int, list[Batch]] = collections.defaultdict(list)
        for index, data in sources:
            for block in index:
                stream = streams.get(block.stream_id)
                if stream is None or stream.state == "deleted" or block.end <= stream.start:
                    continue
                piece = data[block.position : block.position + block.size]
                per_stream[block.stream_id].extend(parse_block(piece, block))
                await slices.done(block.size)
        out: list[tuple[list[tuple[int, int, int]], list[bytes | memoryview]]] = []
        for stream_id in sorted(per_stream):
            batches = sorted(per_stream[stream_id], key=lambda b: b.base)
            builder = ObjectBuilder(self.settings.block_bytes)
            ranges: list[tuple[int, int, int]] = []
            # Contiguous runs only: a range must never claim offsets it does not hold.
            run_start = previous_end = batches[0].base
            for batch in batches:
                if batch.base != previous_end:
                    ranges.append((stream_id, run_start, previous_end))
                    run_start = batch.base
                builder.add(stream_id, batch)
                previous_end = batch.end
                await slices.done(len(batch.payload))
            ranges.append((stream_id, run_start, previous_end))
            out.append((ranges, builder.finish()[0]))
        return out

    # -- introspection -----------------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """Bytes held by the caches (for tests and metrics)."""
        return {
            "log_cache": self._cached_bytes,
            "pending": self._pending_bytes,
            "block_cache": self._blocks.size,
        }
