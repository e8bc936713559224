"""A write-ahead log made of objects ("direct S3" WAL).

Appends are collected for a *window* (``window_ms`` or ``window_bytes``, whichever comes first) and
written as one WAL object; up to ``max_inflight`` objects upload at once, and appends are acknowledged
strictly in offset order, only after their object is stored **and** a fence check that started after
the upload finished still finds this WAL's owner record unchanged.

Key layout under ``prefix`` (``NNNNNNNNNN`` = the WAL's node id, zero padded)::

    NNNNNNNNNN/owner                 JSON {"epoch": ..., "holder": ...}: the current owner
    NNNNNNNNNN/trim                  JSON {"offset": ...}: records below it may be discarded
    NNNNNNNNNN/data/<first offset>   one WAL object: header + records, first offset 20 digits

Logical offsets are record sequence numbers. Object ``k`` holds records ``k .. k+count-1`` and the
next object's key is ``k+count``, so recovery walks keys and stops at the first gap: objects after a
gap were never acknowledged (an earlier object was missing when the writer died) and are deleted.

Ownership: ``recover`` claims the WAL by writing the owner record with this node's epoch; an owner
record with a higher epoch means a newer owner took over, and this WAL raises ``Fenced`` and never
acknowledges again. Another node takes a dead node's WAL over by opening it with ``wal_node_id`` set to
the dead node's id and its own (higher) epoch. See ``docs/rfcs/0005-s3-wal.md``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import crc32c

from streambed.core.errors import (
    Closed,
    DataError,
    Fenced,
    NotFound,
    StreambedError,
    Unavailable,
    WalFull,
)
from streambed.core.objects.api import ObjectStore
from streambed.core.wal.api import WalRecord, WalStats
from streambed.core.wal.capacity import SpaceGate

__all__ = ["ObjectWal"]

log = logging.getLogger("streambed.wal.s3")

# Object header: magic, version, flags, wal node id, writer epoch, first offset, record count,
# followed by the CRC-32C of those 32 bytes.
_OBJECT = struct.Struct(">IHHIqQI")
_OBJECT_MAGIC = 0x53425757  # "SBWW"
# Record header: body length, logical offset, CRC-32C of the body.
_RECORD = struct.Struct(">IQI")


def encode_object(
    node_id: int, epoch: int, first: int, bodies: Sequence[bytes | memoryview]
) -> list[bytes | memoryview]:
    """The buffers of one WAL object (written back to back, never joined here)."""
    header = _OBJECT.pack(_OBJECT_MAGIC, 1, 0, node_id, epoch, first, len(bodies))
    parts: list[bytes | memoryview] = [header, crc32c.crc32c(header).to_bytes(4, "big")]
    for i, body in enumerate(bodies):
        parts.append(_RECORD.pack(len(body), first + i, crc32c.crc32c(body)))
        parts.append(body)
    return parts


def decode_object(data: bytes, key: str) -> tuple[int, list[WalRecord]]:
    """Parse a WAL object; raises DataError on any inconsistency (never returns a bad record)."""
    if len(data) < _OBJECT.size + 4:
        raise DataError(f"WAL object {key}: truncated header")
    magic, version, _flags, _node, _epoch, first, count = _OBJECT.unpack_from(data)
    header_crc = int.from_bytes(data[_OBJECT.size : _OBJECT.size + 4], "big")
    if magic != _OBJECT_MAGIC or version != 1 or crc32c.crc32c(data[: _OBJECT.size]) != header_crc:
        raise DataError(f"WAL object {key}: bad header (magic, version or checksum)")
    records: list[WalRecord] = []
    pos = _OBJECT.size + 4
    view = memoryview(data)
    for i in range(count):
        if pos + _RECORD.size > len(data):
            raise DataError(f"WAL object {key}: truncated record {i}")
        length, offset, crc = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        body = view[pos : pos + length]
        if len(body) != length or offset != first + i or crc32c.crc32c(body) != crc:
            raise DataError(f"WAL object {key}: record {i} fails its checksum or offset")
        records.append(WalRecord(offset, bytes(body)))
        pos += length
    if pos != len(data):
        raise DataError(f"WAL object {key}: {len(data) - pos} trailing bytes")
    return first, records


@dataclass(slots=True)
class _Pending:
    offset: int
    body: bytes | memoryview
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Upload:
    first: int
    records: list[_Pending]
    size: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    finished_at: float = 0.0


@dataclass(slots=True)
class _Stored:
    first: int
    count: int
    size: int


class ObjectWal:
    """A :class:`~streambed.core.wal.api.WriteAheadLog` over any object store."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        wal_node_id: int,
        holder_node_id: int,
        epoch: int,
        prefix: str = "wal/",
        window_ms: float = 50.0,
        window_bytes: int = 4 * 1024 * 1024,
        max_inflight: int = 4,
        capacity_bytes: int = 2 * 1024**3,
        full_timeout_s: float = 10.0,
        retry_base_s: float = 0.05,
        retry_max_s: float = 2.0,
        owns_store: bool = True,
        close_timeout_s: float = 30.0,
    ) -> None:
        self._close_timeout = close_timeout_s
        self._store = store
        self._owns_store = owns_store
        self._node = wal_node_id
        self._holder = holder_node_id
        self._epoch = epoch
        self._base = f"{prefix}{wal_node_id:010d}/"
        self._window_s = window_ms / 1000.0
        self._window_bytes = window_bytes
        self._inflight = asyncio.Semaphore(max_inflight)
        self._capacity = capacity_bytes
        self._retry_base = retry_base_s
        self._retry_max = retry_max_s

        self._next = 0
        self._trim = 0
        self._stored: collections.deque[_Stored] = collections.deque()
        self._used = 0  # bytes of stored + pending records above the trim point
        self._space = SpaceGate(full_timeout_s, self._base)
        self._batch: list[_Pending] = []
        self._batch_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._uploads: collections.deque[_Upload] = collections.deque()
        self._upload_tasks: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self._failure: StreambedError | None = None
        self._recovered = False
        self._started = False
        self._closed = False
        self._appends = 0
        self._puts = 0
        self._gets = 0
        self._deletes = 0

    # -- keys ------------------------------------------------------------------------------------

    def _data_key(self, first: int) -> str:
        return f"{self._base}data/{first:020d}"

    @property
    def _owner_key(self) -> str:
        return f"{self._base}owner"

    @property
    def _trim_key(self) -> str:
        return f"{self._base}trim"

    # -- retries ---------------------------------------------------------------------------------

    async def _retry(self, what: str, op: Callable[[], Awaitable[object]]) -> object:
        """Run ``op`` until it succeeds; ``Unavailable`` is retried with capped, jittered backoff
        until the WAL is closed (an outage delays acknowledgements, it never drops data)."""
        delay = self._retry_base
        attempt = 0
        while True:
            try:
                return await op()
            except Unavailable as exc:
                attempt += 1
                if self._failure is not None:
                    raise
                if attempt in (1, 10) or attempt % 100 == 0:
                    log.warning(
                        "WAL %s: %s failed (attempt %d), retrying: %s", self._base, what, attempt, exc
                    )
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(self._retry_max, delay * 2)

    # -- ownership -------------------------------------------------------------------------------

    async def _read_owner(self) -> tuple[int, int] | None:
        async def get() -> bytes | None:
            try:
                return await self._store.get(self._owner_key)
            except NotFound:
                return None

        self._gets += 1
        raw = await self._retry("owner check", get)
        if raw is None:
            return None
        assert isinstance(raw, bytes)
        try:
            doc = json.loads(raw)
            return int(doc["epoch"]), int(doc["holder"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"WAL {self._base}: unreadable owner record: {exc}") from exc

    async def _claim(self) -> None:
        current = await self._read_owner()
        if current is not None and current[0] > self._epoch:
            raise Fenced(
                f"WAL {self._base} is owned by node {current[1]} with epoch {current[0]}, "
                f"newer than ours ({self._epoch})"
            )
        body = json.dumps({"epoch": self._epoch, "holder": self._holder}).encode()
        self._puts += 1
        await self._retry("owner claim", lambda: self._store.put(self._owner_key, body))
        # Re-read: of two nodes claiming at once, the one with the higher epoch must win.
        check = await self._read_owner()
        if check != (self._epoch, self._holder):
            raise Fenced(f"WAL {self._base} was claimed concurrently by {check}")
        log.info("WAL %s claimed by node %d epoch %d", self._base, self._holder, self._epoch)

    async def _check_owner(self) -> None:
        current = await self._read_owner()
        if current != (self._epoch, self._holder):
            raise Fenced(
                f"WAL {self._base}: ownership moved to {current}; this node (epoch {self._epoch}) "
                "stops acknowledging"
            )

    # -- recovery --------------------------------------------------------------------------------

    async def _list_data(self) -> list[tuple[int, int]]:
        """(first offset, size) of every data object, in offset order (all pages)."""
        found: list[tuple[int, int]] = []
        token: str | None = None
        prefix = f"{self._base}data/"
        while True:
            page = await self._retry(
                "list", lambda t=token: self._store.list(prefix, token=t, limit=1000)  # type: ignore[misc]
            )
            for info in page.objects:  # type: ignore[attr-defined]
                name = info.key[len(prefix) :]
                if name.isdigit():
                    found.append((int(name), info.size))
            token = page.next_token  # type: ignore[attr-defined]
            if token is None:
                break
        found.sort()
        return found

    async def _read_trim(self) -> int:
        async def get() -> bytes | None:
            try:
                return await self._store.get(self._trim_key)
            except NotFound:
                return None

        raw = await self._retry("read trim point", get)
        if raw is None:
            return 0
        assert isinstance(raw, bytes)
        try:
            return int(json.loads(raw)["offset"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"WAL {self._base}: unreadable trim record: {exc}") from exc

    async def recover(self) -> AsyncIterator[WalRecord]:
        if self._recovered:
            raise RuntimeError("recover() may run only once")
        self._recovered = True
        await self._claim()
        self._trim = await self._read_trim()
        objects = await self._list_data()
        # Start at the object covering the trim point (objects wholly below it may linger when a
        # delete failed), then follow contiguous keys. The first object must start at or before
        # the trim point, and each next one where the previous ended; anything after a gap was
        # never acknowledged (its predecessor was missing when the writer stopped).
        covering = [i for i, (first, _) in enumerate(objects) if first <= self._trim]
        start = covering[-1] if covering else 0
        expected: int | None = None
        broken = False
        garbage: list[str] = []
        position = self._trim
        for first, size in objects[start:]:
            key = self._data_key(first)
            contiguous = first <= self._trim if expected is None else first == expected
            if broken or not contiguous:
                broken = True
                garbage.append(key)
                continue
            self._gets += 1
            data = await self._retry("read", lambda k=key: self._store.get(k))  # type: ignore[misc]
            assert isinstance(data, bytes)
            try:
                _first, records = decode_object(data, key)
            except DataError as exc:
                log.error("WAL %s: %s; records from offset %d on are dropped", self._base, exc, first)
                broken = True
                garbage.append(key)
                continue
            self._stored.append(_Stored(first, len(records), size))
            self._used += size
            for record in records:
                if record.offset >= self._trim:
                    yield record
            expected = first + len(records)
            position = max(position, expected)
        self._next = max(position, self._trim)
        if garbage:
            log.warning(
                "WAL %s: deleting %d unacknowledged object(s) after offset %d",
                self._base, len(garbage), self._next,
            )
            await self._delete(garbage)

    # -- appends ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._recovered:
            async for _ in self.recover():
                pass
        self._started = True
        self._acker = asyncio.create_task(self._ack_loop(), name=f"wal-s3-acker-{self._node}")

    async def append(self, body: bytes | memoryview) -> int:
        if self._closed:
            raise Closed(f"WAL {self._base} is closed")
        if self._failure is not None:
            raise self._failure
        if not self._started:
            raise RuntimeError("append() before start()")
        size = len(body) + _RECORD.size
        if size > self._capacity:
            raise WalFull(f"record of {size} bytes exceeds the WAL capacity {self._capacity}")
        if self._space.waiting or self._used + size > self._capacity:
            await self._wait_for_space(size)
            if self._closed:  # closed while this append waited for space
                raise Closed(f"WAL {self._base} is closed")
        loop = asyncio.get_running_loop()
        pending = _Pending(self._next, body, loop.create_future())
        self._next += 1
        self._appends += 1
        self._used += size
        self._batch.append(pending)
        self._batch_bytes += size
        if self._batch_bytes >= self._window_bytes:
            self._seal()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._seal)
        return await pending.future

    async def _wait_for_space(self, size: int) -> None:
        await self._space.reserve(
            lambda: self._used + size <= self._capacity or self._failure is not None,
            lambda: f"{self._used} of {self._capacity} bytes",
        )
        if self._failure is not None:
            raise self._failure

    def _seal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._batch:
            return
        upload = _Upload(self._batch[0].offset, self._batch, self._batch_bytes)
        self._batch, self._batch_bytes = [], 0
        self._uploads.append(upload)
        task = asyncio.create_task(self._upload(upload))
        self._upload_tasks.add(task)
        task.add_done_callback(self._upload_tasks.discard)

    async def _upload(self, upload: _Upload) -> None:
        key = self._data_key(upload.first)
        parts = encode_object(self._node, self._epoch, upload.first, [p.body for p in upload.records])
        try:
            async with self._inflight:
                if self._failure is not None:
                    raise self._failure
                self._puts += 1
                await self._retry("upload", lambda: self._store.put(key, parts))
        except BaseException as exc:
            upload.error = exc
        upload.finished_at = time.monotonic()
        upload.done.set()
        self._progress.set()

    async def _ack_loop(self) -> None:
        """Acknowledge uploads strictly in order, each after a fence check that began after it."""
        while True:
            await self._progress.wait()
            self._progress.clear()
            ready: list[_Upload] = []
            while self._uploads and self._uploads[0].done.is_set():
                ready.append(self._uploads.popleft())
            if not ready:
                if self._closed and not self._uploads:
                    return
                continue
            failed = next((u.error for u in ready if u.error is not None), None)
            if failed is None:
                try:
                    await self._check_owner()
                except BaseException as exc:
                    failed = exc
            if failed is not None:
                self._fail(failed, ready)
                return
            for upload in ready:
                self._stored.append(_Stored(upload.first, len(upload.records), upload.size))
                for pending in upload.records:
                    if not pending.future.done():
                        pending.future.set_result(pending.offset)
            if self._uploads and self._uploads[0].done.is_set():
                self._progress.set()
            if self._closed and not self._uploads and not self._batch:
                return

    def _fail(self, exc: BaseException, ready: list[_Upload]) -> None:
        error = exc if isinstance(exc, StreambedError) else Unavailable(f"WAL {self._base}: {exc!r}")
        self._failure = error
        log.error("WAL %s stops acknowledging: %s", self._base, error)
        doomed = [p for u in ready for p in u.records] + [p for u in self._uploads for p in u.records]
        doomed += self._batch
        for pending in doomed:
            if not pending.future.done():
                pending.future.set_exception(error)
        self._uploads.clear()
        self._batch = []

    # -- trim ------------------------------------------------------------------------------------

    async def trim(self, offset: int) -> None:
        if offset <= self._trim:
            return
        offset = min(offset, self._next)
        body = json.dumps({"offset": offset}).encode()
        self._puts += 1
        # The trim point is stored before anything is deleted, so a failed delete never opens a
        # gap that recovery would mistake for the end of the log.
        await self._retry("store trim point", lambda: self._store.put(self._trim_key, body))
        self._trim = offset
        doomed: list[str] = []
        while self._stored and self._stored[0].first + self._stored[0].count <= offset:
            stored = self._stored.popleft()
            doomed.append(self._data_key(stored.first))
            self._used -= stored.size
        if doomed:
            await self._delete(doomed)
        await self._space.release()

    async def _delete(self, keys: list[str]) -> None:
        self._deletes += len(keys)
        await self._retry("delete", lambda: self._store.delete(keys))

    # -- shutdown --------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._seal()
        self._closed = True
        await self._space.close()  # appends waiting for space fail with Closed
        if self._upload_tasks:
            _done, stuck = await asyncio.wait(set(self._upload_tasks), timeout=self._close_timeout)
            if stuck:
                log.error(
                    "WAL %s: %d upload(s) still failing after %.0f s at close; their appends "
                    "were not acknowledged",
                    self._base, len(stuck), self._close_timeout,
                )
                self._fail(Closed(f"WAL {self._base} closed before its uploads finished"), [])
                for task in stuck:
                    task.cancel()
        self._progress.set()
        if self._acker is not None:
            with contextlib.suppress(BaseException):
                await self._acker
        for pending in self._batch:
            if not pending.future.done():
                pending.future.set_exception(Closed(f"WAL {self._base} closed"))
        if self._owns_store:
            await self._store.close()

    def stats(self) -> WalStats:
        return WalStats(capacity=self._capacity, used=self._used, appends=self._appends, syncs=self._puts)

    def request_counts(self) -> dict[str, int]:
        """Object store requests issued so far (for the S3 cost benchmark)."""
        return {"put": self._puts, "get": self._gets, "delete": self._deletes}

    @property
    def conditional_fencing(self) -> bool:
        return self._store.capabilities.conditional_put

