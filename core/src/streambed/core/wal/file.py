"""The built-in file WAL: segment files with group commit and fsync before acknowledgement.

Layout under ``dir`` (default ``<data_dir>/wal``)::

    00000000000000000000.seg   records from logical offset 0 (the name is the first offset)
    00000000000000052113.seg   next segment, created when the previous one passed segment_bytes
    trim                       the trim offset, rewritten atomically (tmp + fsync + rename)

A record is a 24-byte header followed by the body (big-endian)::

    offset size field
    0      4    magic        0x53424C31 ("SBL1")
    4      4    body length
    8      8    logical offset (record sequence number, dense)
    16     4    CRC-32C of the body
    20     4    CRC-32C of bytes 0..19 (the header itself)

Logical offsets are record sequence numbers rather than byte positions: they stay dense across
segment deletion and make recovery's "is this the record I expect next" check exact.

Group commit: appends are queued on the event loop; one writer thread takes everything queued (up
to ``max_batch_bytes``), writes it with one ``writev`` and one ``fdatasync``, then completes the
appends in order. While it syncs, the next batch accumulates, so the batch size adapts to load. If a
write or sync fails, that batch and every later append fail and the WAL refuses further appends:
after a failed fsync the page cache state is unknown, so nothing may be acknowledged (fsyncgate).

Recovery scans segments from the trim offset and stops at the first record whose magic, header CRC,
expected offset or body CRC is wrong (a torn or corrupt tail); the file is truncated there and any
later segments are removed, so new appends continue the valid prefix.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import crc32c
from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.errors import Closed, Unavailable, WalFull
from streambed.core.wal.api import WalRecord, WalStats
from streambed.core.wal.capacity import SpaceGate

__all__ = ["FileWal", "FileWalOptions", "open_file_wal"]

log = logging.getLogger("streambed.wal.file")

MAGIC = 0x53424C31
_HEAD = struct.Struct(">IIQI")
_HEADER = struct.Struct(">IIQII")
HEADER_SIZE = _HEADER.size
_SEGMENT_SUFFIX = ".seg"
MiB = 1024 * 1024
_MARK_BYTES = 256 * 1024


class FileWalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(None, description="Directory of the WAL; default <data_dir>/wal.")
    capacity_bytes: int = Field(
        2 * 1024 * MiB, gt=0, description="Bytes above the trim point before appends wait."
    )
    segment_bytes: int = Field(64 * MiB, ge=4096, description="Size at which a new segment starts.")
    max_batch_bytes: int = Field(
        8 * MiB, gt=0, description="Most bytes one group-commit write carries."
    )
    full_timeout_ms: int = Field(
        10_000, ge=0, description="How long an append waits for space before WalFull."
    )
    fsync: bool = Field(
        True, description="fdatasync before acknowledging. false is UNSAFE: acks may be lost."
    )


def encode_header(offset: int, body: bytes | memoryview) -> bytes:
    head = _HEAD.pack(MAGIC, len(body), offset, crc32c.crc32c(body))
    return head + crc32c.crc32c(head).to_bytes(4, "big")


@dataclass(slots=True)
class _Item:
    offset: int
    body: bytes | memoryview
    future: asyncio.Future[int]


def _segment_name(first: int) -> str:
    return f"{first:020d}{_SEGMENT_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scan_segment(data: bytes, expected: int) -> Iterator[tuple[int, int, memoryview]]:
    """Yield (offset, end position, body) of valid records; stop silently at the first bad one."""
    view = memoryview(data)
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        magic, length, offset, body_crc, head_crc = _HEADER.unpack_from(data, pos)
        if magic != MAGIC or crc32c.crc32c(view[pos : pos + 20]) != head_crc:
            return
        if offset != expected or pos + HEADER_SIZE + length > len(data):
            return
        body = view[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
        if crc32c.crc32c(body) != body_crc:
            return
        pos += HEADER_SIZE + length
        yield offset, pos, body
        expected += 1


class FileWal:
    def __init__(self, directory: Path, options: FileWalOptions) -> None:
        self._dir = directory
        self._opts = options
        self._mark_bytes = max(4096, min(_MARK_BYTES, options.capacity_bytes // 64))
        self._segments: list[int] = []  # first offsets, ascending
        self._fd = -1
        self._segment_size = 0
        self._next = 0
        self._trim = 0
        # (first offset of a write batch, cumulative bytes before it) for capacity accounting.
        self._marks: collections.deque[tuple[int, int]] = collections.deque()
        self._written = 0  # cumulative bytes accepted (including queued)
        self._trimmed_bytes = 0
        self._disk_next = 0  # next offset the writer thread will put on disk
        self._space = SpaceGate(options.full_timeout_ms / 1000.0, str(directory))
        self._queue: list[_Item] = []
        self._queue_bytes = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: Exception | None = None
        self._closing = False
        self._closed = False
        self._recovered = False
        self._appends = 0
        self._syncs = 0

    # -- recovery --------------------------------------------------------------------------------

    def _read_trim(self) -> int:
        try:
            return int((self._dir / "trim").read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("WAL %s: unreadable trim file, recovering from the oldest segment", self._dir)
            return 0

    async def recover(self) -> AsyncIterator[WalRecord]:
        if self._recovered:
            raise RuntimeError("recover() may run only once")
        self._recovered = True
        self._dir.mkdir(parents=True, exist_ok=True)
        self._trim = await asyncio.to_thread(self._read_trim)
        names = sorted(p.name for p in self._dir.iterdir() if p.name.endswith(_SEGMENT_SUFFIX))
        firsts = [int(n[: -len(_SEGMENT_SUFFIX)]) for n in names]
        # Segments wholly below the trim point may remain when a delete was interrupted.
        while len(firsts) > 1 and firsts[1] <= self._trim:
            await asyncio.to_thread(os.unlink, self._dir / _segment_name(firsts.pop(0)))
        expected = firsts[0] if firsts else self._trim
        kept: list[int] = []
        for i, first in enumerate(firsts):
            path = self._dir / _segment_name(first)
            if first != expected:
                log.error("WAL %s: segment %s does not continue offset %d; it and later segments "
                          "are dropped", self._dir, path.name, expected)
                for later in firsts[i:]:
                    await asyncio.to_thread(os.unlink, self._dir / _segment_name(later))
                break
            data = await asyncio.to_thread(path.read_bytes)
            end = 0
            for offset, record_end, body in scan_segment(data, expected):
                end = record_end
                if offset >= self._trim:
                    self._account(offset, len(body) + HEADER_SIZE)
                    yield WalRecord(offset, bytes(body))
                expected = offset + 1
            kept.append(first)
            size = end
            if end < len(data):
                log.warning("WAL %s: %d bytes of torn or corrupt tail in %s dropped at offset %d",
                            self._dir, len(data) - end, path.name, expected)
                await asyncio.to_thread(os.truncate, path, end)
                for later in firsts[i + 1 :]:
                    log.error("WAL %s: segment %s after a corrupt record dropped", self._dir,
                              _segment_name(later))
                    await asyncio.to_thread(os.unlink, self._dir / _segment_name(later))
                self._segment_size = size
                break
            self._segment_size = size
        self._segments = kept
        self._next = self._disk_next = max(expected, self._trim)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._recovered:
            async for _ in self.recover():
                pass
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_active)
        self._thread = threading.Thread(target=self._writer, name=f"wal-writer:{self._dir}",
                                        daemon=True)
        self._thread.start()

    def _open_active(self) -> None:
        if not self._segments or self._segment_size >= self._opts.segment_bytes:
            self._roll()
            return
        path = self._dir / _segment_name(self._segments[-1])
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _roll(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        first = self._disk_next
        path = self._dir / _segment_name(first)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._opts.fsync:
            _fsync_dir(self._dir)
        self._segments.append(first)
        self._segment_size = 0

    # -- appends ---------------------------------------------------------------------------------

    async def append(self, body: bytes | memoryview) -> int:
        if self._closed or self._closing:
            raise Closed(f"WAL {self._dir} is closed")
        if self._failure is not None:
            raise Unavailable(f"WAL {self._dir} failed earlier: {self._failure}")
        if self._thread is None:
            raise RuntimeError("append() before start()")
        size = len(body) + HEADER_SIZE
        if size > self._opts.capacity_bytes:
            raise WalFull(f"record of {size} bytes exceeds the WAL capacity")
        if self._used + size > self._opts.capacity_bytes:
            await self._wait_for_space(size)
        assert self._loop is not None
        item = _Item(self._next, body, self._loop.create_future())
        self._next += 1
        self._appends += 1
        self._account(item.offset, size)
        with self._lock:
            self._queue.append(item)
            self._queue_bytes += size
            self._lock.notify()
        return await item.future

    def _account(self, offset: int, size: int) -> None:
        # A mark every _MARK_BYTES lets trim free space at that granularity with a small index.
        if not self._marks or self._written - self._marks[-1][1] >= self._mark_bytes:
            self._marks.append((offset, self._written))
        self._written += size

    @property
    def _used(self) -> int:
        return self._written - self._trimmed_bytes

    async def _wait_for_space(self, size: int) -> None:
        await self._space.wait_until(
            lambda: self._used + size <= self._opts.capacity_bytes,
            lambda: f"{self._used} of {self._opts.capacity_bytes} bytes",
        )

    def _writer(self) -> None:
        """The one thread that writes and syncs; completes appends in order via the loop."""
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue and self._closing:
                    return
                count, batch_bytes = 0, 0
                for item in self._queue:
                    if count and batch_bytes >= self._opts.max_batch_bytes:
                        break
                    count += 1
                    batch_bytes += len(item.body) + HEADER_SIZE
                batch = self._queue[:count]
                del self._queue[:count]
                self._queue_bytes -= batch_bytes
            error: Exception | None = self._failure
            if error is None:
                try:
                    self._write_batch(batch, batch_bytes)
                except OSError as exc:
                    error = exc
                    self._failure = exc
                    log.error("WAL %s: write/fsync failed, refusing further appends: %s",
                              self._dir, exc)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._complete, batch, error)
            except RuntimeError:  # loop closed: nobody is waiting any more
                return

    def _write_batch(self, batch: list[_Item], batch_bytes: int) -> None:
        if self._segment_size >= self._opts.segment_bytes:
            self._disk_next = batch[0].offset
            self._roll()
        buffers: list[bytes | memoryview] = []
        for item in batch:
            buffers.append(encode_header(item.offset, item.body))
            if len(item.body):
                buffers.append(item.body)
        buffers.reverse()  # pop from the end: O(1) per buffer
        while buffers:
            # writev takes at most IOV_MAX (1024) buffers and may write partially.
            written = os.writev(self._fd, buffers[: -1025 : -1])
            while written:
                last = buffers[-1]
                if written >= len(last):
                    written -= len(last)
                    buffers.pop()
                else:
                    buffers[-1] = memoryview(last)[written:]
                    written = 0
        if self._opts.fsync:
            os.fdatasync(self._fd)
        self._syncs += 1
        self._segment_size += batch_bytes
        self._disk_next = batch[-1].offset + 1

    def _complete(self, batch: list[_Item], error: Exception | None) -> None:
        for item in batch:
            if item.future.done():
                continue
            if error is None:
                item.future.set_result(item.offset)
            else:
                item.future.set_exception(
                    Unavailable(f"WAL {self._dir}: write or fsync failed: {error}")
                )

    # -- trim ------------------------------------------------------------------------------------

    async def trim(self, offset: int) -> None:
        offset = min(offset, self._next)
        if offset <= self._trim:
            return
        self._trim = offset
        await asyncio.to_thread(self._persist_trim_and_delete, offset)
        while len(self._marks) > 1 and self._marks[1][0] <= offset:
            self._marks.popleft()
        if self._marks and self._marks[0][0] <= offset:
            self._trimmed_bytes = max(self._trimmed_bytes, self._marks[0][1])
        if offset >= self._next:
            self._trimmed_bytes = self._written
        await self._space.release()

    def _persist_trim_and_delete(self, offset: int) -> None:
        tmp = self._dir / "trim.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{offset}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._dir / "trim")
        _fsync_dir(self._dir)
        with self._lock:
            # Never delete the active segment (the writer appends to it).
            doomed = [
                first
                for first, following in zip(self._segments, self._segments[1:], strict=False)
                if following <= offset
            ]
            self._segments = [s for s in self._segments if s not in set(doomed)]
        for first in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / _segment_name(first))

    # -- shutdown --------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            # Let completions scheduled by the writer thread run before we report closed.
            await asyncio.sleep(0)
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        await self._space.close()

    def stats(self) -> WalStats:
        return WalStats(self._opts.capacity_bytes, self._used, self._appends, self._syncs)


async def open_file_wal(options: FileWalOptions, context: NodeContext) -> FileWal:
    directory = options.dir if options.dir is not None else context.local_path("wal")
    return FileWal(Path(directory), options)
