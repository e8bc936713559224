"""The block WAL: a ring buffer on a block device or a preallocated file, written with O_DIRECT.

Layout (all integers big-endian)::

    [0, 4096)        header slot 0 ┐ written alternately; the valid slot with the higher sequence
    [4096, 8192)     header slot 1 ┘ number wins, so a torn header write never loses the other
    [8192, 8192+C)   data ring of capacity C (a multiple of 4096)

Header slot (then zero padding to 4096)::

    magic u32 "SBEB" | version u16 | sequence u64 | capacity u64 | trim offset u64 |
    owner node u32 | owner epoch u64 | clean shutdown u8 | CRC-32C of the preceding bytes u32

Logical offsets are byte positions in an infinite log; position in the ring = offset mod C. One
group-commit write packs its records back to back and pads to the next 4 KiB boundary, so every
write is aligned (O_DIRECT) and starts a block. A record is a 24-byte header — magic u32 | body
length u32 | logical offset u64 | body CRC u32 | header CRC u32 — and the body. A record's offset
field must equal where it is found: data left from an earlier lap of the ring never matches.

Recovery reads from the trim offset, record after record; when a record does not parse it skips to
the next 4 KiB boundary (the padding after a write) and tries once more; a second miss is the end of
the log. Back-pressure: appends wait while ``next - trim + size > capacity``.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import stat
import struct
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import crc32c

from streambed.core.errors import Closed, Fenced, Unavailable, WalFull
from streambed.core.wal.api import WalRecord, WalStats
from streambed.core.wal.capacity import SpaceGate
from streambed.core.wal.inline import InlineGate

__all__ = ["BLOCK", "BlockWal", "Header"]

log = logging.getLogger("streambed.wal.ebs")

BLOCK = 4096
DATA_START = 2 * BLOCK
_HEADER = struct.Struct(">IHQQQIQB")
_HEADER_MAGIC = 0x53424542  # "SBEB"
_RECORD_HEAD = struct.Struct(">IIQI")
_RECORD = struct.Struct(">IIQII")
_RECORD_MAGIC = 0x53425231  # "SBR1"
RECORD_HEADER = _RECORD.size
_MIN_IO_CHUNK = 256 * 1024


def _align_up(value: int) -> int:
    return (value + BLOCK - 1) // BLOCK * BLOCK


@dataclass(slots=True)
class Header:
    sequence: int
    capacity: int
    trim: int
    owner: int
    epoch: int
    clean: bool

    def encode(self) -> bytes:
        body = _HEADER.pack(
            _HEADER_MAGIC,
            1,
            self.sequence,
            self.capacity,
            self.trim,
            self.owner,
            self.epoch,
            int(self.clean),
        )
        return (body + crc32c.crc32c(body).to_bytes(4, "big")).ljust(BLOCK, b"\0")

    @classmethod
    def decode(cls, block: bytes) -> Header | None:
        body = block[: _HEADER.size]
        crc = int.from_bytes(block[_HEADER.size : _HEADER.size + 4], "big")
        if len(body) < _HEADER.size or crc32c.crc32c(body) != crc:
            return None
        magic, version, seq, capacity, trim, owner, epoch, clean = _HEADER.unpack(body)
        if magic != _HEADER_MAGIC or version != 1:
            return None
        return cls(seq, capacity, trim, owner, epoch, bool(clean))


@dataclass(slots=True)
class _Item:
    offset: int
    body: bytes | memoryview
    future: asyncio.Future[int]


class BlockWal:
    def __init__(
        self,
        path: Path,
        *,
        capacity: int,
        node_id: int,
        epoch: int,
        direct_io: bool | None,
        takeover: bool = False,
        max_batch_bytes: int = 8 * 1024 * 1024,
        full_timeout_s: float = 10.0,
        owner_check_interval_s: float = 1.0,
        io_depth: int = 1,
        inline_max_bytes: int = 256 * 1024,
    ) -> None:
        self._io_depth = io_depth
        # Inline commits, as in the file WAL (docs/wal.md): the appends of one loop iteration are
        # written on the loop while the writer thread has nothing outstanding.
        self._inline_max = min(inline_max_bytes, max_batch_bytes)
        self._inline: list[_Item] = []
        self._inline_bytes = 0
        self._gate = InlineGate()
        self._threaded = 0
        self._pool = ThreadPoolExecutor(max_workers=io_depth, thread_name_prefix="ebs-wal-io")
        if capacity % BLOCK or capacity < 4 * BLOCK:
            raise ValueError(f"capacity must be a multiple of {BLOCK} and at least {4 * BLOCK}")
        self._path = path
        self._capacity = capacity
        self._node = node_id
        self._epoch = epoch
        self._want_direct = direct_io
        self._takeover = takeover
        self._max_batch = max_batch_bytes
        self._owner_interval = owner_check_interval_s
        self._fd = -1
        self._direct = False
        self._header = Header(0, capacity, 0, node_id, epoch, False)
        self._next = 0  # end of the durable log, as the event loop knows it
        self._disk_next = 0  # where the writer thread puts the next batch (block aligned)
        self._pending = 0  # bytes appended but not yet written
        self._trim = 0
        self._queue: list[_Item] = []
        self._lock = threading.Condition()
        self._space = SpaceGate(full_timeout_s, str(path))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: Exception | None = None
        self._closing = False
        self._closed = False
        self._recovered = False
        self._appends = 0
        self._syncs = 0
        self._last_owner_check = 0.0
        self._buffer = mmap.mmap(-1, _align_up(max_batch_bytes + RECORD_HEADER) + BLOCK)

    # -- device ----------------------------------------------------------------------------------

    def _open_device(self) -> None:
        exists = self._path.exists()
        is_block = exists and stat.S_ISBLK(os.stat(self._path).st_mode)
        flags = os.O_RDWR | (0 if exists else os.O_CREAT)
        if self._want_direct is not False:
            try:
                self._fd = os.open(self._path, flags | os.O_DIRECT, 0o644)
                self._direct = True
            except OSError as exc:
                if self._want_direct:
                    raise Unavailable(f"O_DIRECT not supported for {self._path}: {exc}") from exc
                log.warning(
                    "O_DIRECT unsupported on %s (%s); using buffered I/O + fdatasync",
                    self._path,
                    exc,
                )
        if self._fd < 0:
            self._fd = os.open(self._path, flags, 0o644)
        size = DATA_START + self._capacity
        if is_block:
            device_size = os.lseek(self._fd, 0, os.SEEK_END)
            if device_size < size:
                raise Unavailable(
                    f"block device {self._path} holds {device_size} bytes; the WAL "
                    f"needs {size} (capacity {self._capacity} + 8 KiB of headers)"
                )
        elif os.fstat(self._fd).st_size < size:
            os.posix_fallocate(self._fd, 0, size)
            os.fsync(self._fd)

    def _read(self, position: int, length: int) -> bytes:
        start = position // BLOCK * BLOCK
        end = _align_up(position + length)
        buffer = mmap.mmap(-1, end - start)
        try:
            got = os.preadv(self._fd, [buffer], start)
            return bytes(buffer[position - start : min(position - start + length, got)])
        finally:
            buffer.close()

    def _read_ring(self, offset: int, length: int) -> bytes:
        """Bytes of the logical log at ``offset`` (may wrap around the end of the ring)."""
        out = b""
        while length > 0:
            ring = offset % self._capacity
            chunk = min(length, self._capacity - ring)
            out += self._read(DATA_START + ring, chunk)
            offset += chunk
            length -= chunk
        return out

    def _read_headers(self) -> Header | None:
        slots = [Header.decode(self._read(i * BLOCK, BLOCK)) for i in (0, 1)]
        valid = [h for h in slots if h is not None]
        return max(valid, key=lambda h: h.sequence) if valid else None

    def _write_header(self, clean: bool) -> None:
        self._header = Header(
            self._header.sequence + 1, self._capacity, self._trim, self._node, self._epoch, clean
        )
        buffer = mmap.mmap(-1, BLOCK)
        buffer.write(self._header.encode())
        try:
            os.pwritev(self._fd, [buffer], (self._header.sequence % 2) * BLOCK)
            os.fdatasync(self._fd)
        finally:
            buffer.close()

    # -- recovery --------------------------------------------------------------------------------

    async def recover(self) -> AsyncIterator[WalRecord]:
        if self._recovered:
            raise RuntimeError("recover() may run only once")
        self._recovered = True
        try:
            await asyncio.to_thread(self._open_device)
        except OSError as exc:
            raise Unavailable(
                f"EBS WAL {self._path} is not usable: {exc.strerror or exc}"
            ) from exc
        header = await asyncio.to_thread(self._read_headers)
        if header is not None:
            if header.capacity != self._capacity:
                raise Unavailable(
                    f"WAL {self._path} was formatted with capacity {header.capacity}, "
                    f"configured {self._capacity}"
                )
            if header.epoch > self._epoch:
                raise Fenced(
                    f"WAL {self._path} is owned by node {header.owner} epoch "
                    f"{header.epoch}, newer than ours ({self._epoch})"
                )
            if header.owner != self._node and not self._takeover:
                raise Fenced(
                    f"WAL {self._path} belongs to node {header.owner}; set takeover: true "
                    "to replay it after that node died"
                )
            self._header = header
            self._trim = header.trim
            if not header.clean:
                log.info(
                    "WAL %s: recovering after an unclean shutdown of node %d",
                    self._path,
                    header.owner,
                )
        # Claim the volume before replaying: a stale owner that re-reads the header stops.
        await asyncio.to_thread(self._write_header, False)
        position = self._trim
        while True:
            found = await asyncio.to_thread(self._record_at, position)
            if found is None and position % BLOCK:
                position = _align_up(position)
                found = await asyncio.to_thread(self._record_at, position)
            if found is None:
                break
            body, end = found
            yield WalRecord(position, body)
            position = end
        self._next = self._disk_next = _align_up(position)

    def _record_at(self, position: int) -> tuple[bytes, int] | None:
        if position - self._trim + RECORD_HEADER > self._capacity:
            return None
        head = self._read_ring(position, RECORD_HEADER)
        if len(head) < RECORD_HEADER:
            return None
        magic, length, offset, body_crc, head_crc = _RECORD.unpack(head)
        if magic != _RECORD_MAGIC or crc32c.crc32c(head[:20]) != head_crc or offset != position:
            return None
        if position - self._trim + RECORD_HEADER + length > self._capacity:
            return None
        body = self._read_ring(position + RECORD_HEADER, length)
        if crc32c.crc32c(body) != body_crc:
            log.warning(
                "WAL %s: record at %d fails its body checksum; log ends there", self._path, position
            )
            return None
        return body, position + RECORD_HEADER + length

    # -- appends ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._recovered:
            async for _ in self.recover():
                pass
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._writer, name=f"ebs-wal:{self._path}", daemon=True
        )
        self._thread.start()

    async def append(self, body: bytes | memoryview) -> int:
        if self._closed or self._closing:
            raise Closed(f"WAL {self._path} is closed")
        if self._failure is not None:
            raise (
                self._failure
                if isinstance(self._failure, Fenced)
                else Unavailable(f"WAL {self._path} failed earlier: {self._failure}")
            )
        if self._thread is None:
            raise RuntimeError("append() before start()")
        size = RECORD_HEADER + len(body)
        if _align_up(size) > self._capacity or size > self._max_batch:
            raise WalFull(f"record of {size} bytes exceeds the WAL capacity or max batch size")
        if self._space.waiting or self._used + size > self._capacity:
            await self._wait_for_space(size)
            if self._closed or self._closing:  # closed while this append waited for space
                raise Closed(f"WAL {self._path} is closed")
        assert self._loop is not None
        # The writer thread assigns the offset: padding between batches depends on batching.
        item = _Item(-1, body, self._loop.create_future())
        self._pending += size
        self._appends += 1
        if self._inline_max > 0:
            self._inline.append(item)
            self._inline_bytes += size
            if len(self._inline) == 1:
                self._loop.call_soon(self._commit_inline)
        else:
            self._to_thread([item])
        return await item.future

    def _to_thread(self, items: list[_Item]) -> None:
        self._threaded += len(items)
        with self._lock:
            self._queue.extend(items)
            self._lock.notify()

    def _commit_inline(self) -> None:
        """Write the gathered appends on the loop, or hand them to the writer thread when it
        holds a batch (completions stay in order) or they are too big to block the loop for."""
        batch, size = self._inline, self._inline_bytes
        if not batch:
            return
        self._inline, self._inline_bytes = [], 0
        if self._threaded or not self._gate.open or size > self._inline_max:
            self._to_thread(batch)
            return
        began = self._gate.began()
        end, error = self._write_or_fail(batch, size)
        self._gate.finished(began)  # a slow disk: the writer thread syncs for a while
        self._complete(batch, size, end, error)

    def _write_or_fail(self, batch: list[_Item], size: int) -> tuple[int, Exception | None]:
        """Write one batch (on whichever side holds it): the new end, or the error."""
        if self._failure is not None:
            return self._disk_next, self._failure
        try:
            return self._write_batch(batch, size), None
        except (OSError, Fenced) as exc:
            self._failure = exc
            log.error("WAL %s: write failed, refusing further appends: %s", self._path, exc)
            return self._disk_next, exc

    @property
    def _used(self) -> int:
        # A block of slack per write covers the padding that batching adds.
        return self._next - self._trim + self._pending + BLOCK

    async def _wait_for_space(self, size: int) -> None:
        await self._space.reserve(
            lambda: self._used + size <= self._capacity,
            lambda: f"{self._used} of {self._capacity} bytes",
        )

    def _writer(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait(self._owner_interval)
                    if not self._queue and not self._closing:
                        self._check_owner_quietly()
                if not self._queue:
                    return
                count, size = 0, 0
                for item in self._queue:
                    record = RECORD_HEADER + len(item.body)
                    if count and size + record > self._max_batch:
                        break
                    count += 1
                    size += record
                batch = self._queue[:count]
                del self._queue[:count]
            end, error = self._write_or_fail(batch, size)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._complete_threaded, batch, size, end, error)
            except RuntimeError:
                return

    def _check_owner_quietly(self) -> None:
        if self._failure is not None:
            return
        try:
            self._check_owner()
        except (OSError, Fenced) as exc:
            self._failure = exc
            log.error("WAL %s: %s", self._path, exc)

    def _check_owner(self) -> None:
        now = time.monotonic()
        if now - self._last_owner_check < self._owner_interval:
            return
        self._last_owner_check = now
        header = self._read_headers()
        if header is not None and (header.owner, header.epoch) != (self._node, self._epoch):
            raise Fenced(
                f"WAL {self._path} was taken over by node {header.owner} epoch "
                f"{header.epoch}; this node stops writing"
            )

    def _write_batch(self, batch: list[_Item], size: int) -> int:
        """Write one batch at the end of the log; returns the new (block-aligned) end."""
        self._check_owner()
        start = self._disk_next
        padded = _align_up(size)
        view = memoryview(self._buffer)
        position = 0
        for item in batch:
            item.offset = start + position
            head = _RECORD_HEAD.pack(
                _RECORD_MAGIC, len(item.body), item.offset, crc32c.crc32c(item.body)
            )
            view[position : position + 20] = head
            view[position + 20 : position + 24] = crc32c.crc32c(head).to_bytes(4, "big")
            position += RECORD_HEADER
            view[position : position + len(item.body)] = item.body
            position += len(item.body)
        view[position:padded] = bytes(padded - position)
        ring = start % self._capacity
        first = min(padded, self._capacity - ring)
        pieces = [(view[:first], DATA_START + ring)]
        if first < padded:
            pieces.append((view[first:padded], DATA_START))
        if self._io_depth > 1 and padded >= self._io_depth * _MIN_IO_CHUNK:
            # Split large writes so up to io_depth requests are in flight at once (NVMe and EBS
            # serve parallel requests faster than one long one); one fdatasync covers them all.
            chunk = _align_up(padded // self._io_depth)
            split = [
                (part[i : i + chunk], where + i)
                for part, where in pieces
                for i in range(0, len(part), chunk)
            ]
            list(self._pool.map(lambda p: os.pwritev(self._fd, [p[0]], p[1]), split))
        else:
            for part, where in pieces:
                os.pwritev(self._fd, [part], where)
        view.release()
        os.fdatasync(self._fd)
        self._syncs += 1
        self._disk_next = start + padded
        return self._disk_next

    def _complete_threaded(
        self, batch: list[_Item], size: int, end: int, error: Exception | None
    ) -> None:
        self._threaded -= len(batch)
        self._complete(batch, size, end, error)

    def _complete(self, batch: list[_Item], size: int, end: int, error: Exception | None) -> None:
        self._pending -= size
        self._next = end
        for item in batch:
            if item.future.done():
                continue
            if error is None:
                item.future.set_result(item.offset)
            elif isinstance(error, Fenced):
                item.future.set_exception(error)
            else:
                item.future.set_exception(Unavailable(f"WAL {self._path}: write failed: {error}"))

    # -- trim and close --------------------------------------------------------------------------

    async def trim(self, offset: int) -> None:
        if offset <= self._trim:
            return
        self._trim = min(offset, self._next)
        await asyncio.to_thread(self._write_header, False)
        await self._space.release()

    async def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        self._commit_inline()  # gathered appends are written before the writer is stopped
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)
        self._closed = True
        if self._fd >= 0:
            if self._failure is None:
                await asyncio.to_thread(self._write_header, True)
            os.close(self._fd)
            self._fd = -1
        self._buffer.close()
        self._pool.shutdown(wait=False)
        await self._space.close()

    def stats(self) -> WalStats:
        return WalStats(
            self._capacity, self._next - self._trim + self._pending, self._appends, self._syncs
        )

    @property
    def direct_io(self) -> bool:
        return self._direct
