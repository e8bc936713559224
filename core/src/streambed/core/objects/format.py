"""The data object format: blocks of one stream each, an index, and a fixed footer.

::

    [block 0][block 1]...[block n-1][index][footer (32 bytes)]

A block holds consecutive batches of one stream, each as an entry::

    base offset u64 | count u32 | payload length u32 | payload

then the CRC-32C of the block's entries (u32). An index entry (40 bytes) describes one block::

    stream id u64 | start offset u64 | end offset u64 | position u64 | size u32 | batches u32

The footer: magic u32 "SBO1" | version u16 | reserved u16 | index position u64 | index size u32 |
index CRC-32C u32 | object size u64. A reader fetches the footer and the index with one range read
from the tail, then only the blocks it needs, merging adjacent ranges. See docs/object-format.md.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c

from streambed.core.errors import DataError

__all__ = ["FOOTER_SIZE", "Batch", "BlockIndex", "ObjectBuilder", "parse_block", "parse_tail"]

_ENTRY = struct.Struct(">QII")
_INDEX = struct.Struct(">QQQQII")
_FOOTER = struct.Struct(">IHHQIIQ")
FOOTER_SIZE = _FOOTER.size
MAGIC = 0x53424F31  # "SBO1"


@dataclass(frozen=True, slots=True)
class Batch:
    """One appended batch: it spans offsets ``[base, base + count)``."""

    base: int
    count: int
    payload: bytes | memoryview

    @property
    def end(self) -> int:
        return self.base + self.count


@dataclass(frozen=True, slots=True)
class BlockIndex:
    stream_id: int
    start: int
    end: int
    position: int
    size: int
    batches: int


class ObjectBuilder:
    """Accumulates batches (streams in ascending order, offsets ascending) into one object."""

    def __init__(self, block_bytes: int) -> None:
        self._block_bytes = block_bytes
        self._parts: list[bytes | memoryview] = []
        self._index: list[BlockIndex] = []
        self._size = 0
        self._open: tuple[int, int, int, int] | None = None  # stream, start, position, batches
        self._block: list[bytes | memoryview] = []
        self._block_size = 0
        self._block_crc = 0
        self._end = 0

    @property
    def size(self) -> int:
        return self._size + self._block_size

    def add(self, stream_id: int, batch: Batch) -> None:
        if self._open is not None and (
            self._open[0] != stream_id
            or self._block_size >= self._block_bytes
            or batch.base != self._end
        ):
            self._close_block()
        if self._open is None:
            self._open = (stream_id, batch.base, self._size, 0)
        head = _ENTRY.pack(batch.base, batch.count, len(batch.payload))
        self._block_crc = crc32c.crc32c(batch.payload, crc32c.crc32c(head, self._block_crc))
        self._block += [head, batch.payload]
        self._block_size += len(head) + len(batch.payload)
        stream, start, position, batches = self._open
        self._open = (stream, start, position, batches + 1)
        self._end = batch.end

    def _close_block(self) -> None:
        assert self._open is not None
        stream, start, position, batches = self._open
        self._block.append(self._block_crc.to_bytes(4, "big"))
        size = self._block_size + 4
        self._parts += self._block
        self._index.append(BlockIndex(stream, start, self._end, position, size, batches))
        self._size += size
        self._open, self._block, self._block_size, self._block_crc = None, [], 0, 0

    def finish(self) -> tuple[list[bytes | memoryview], list[BlockIndex]]:
        """The object's buffers (never joined here) and its block index."""
        if self._open is not None:
            self._close_block()
        index = b"".join(
            _INDEX.pack(b.stream_id, b.start, b.end, b.position, b.size, b.batches)
            for b in self._index
        )
        total = self._size + len(index) + FOOTER_SIZE
        footer = _FOOTER.pack(MAGIC, 1, 0, self._size, len(index), crc32c.crc32c(index), total)
        return [*self._parts, index, footer], list(self._index)


def parse_tail(tail: bytes, object_size: int) -> tuple[list[BlockIndex], int] | int:
    """Parse the footer and index from the last bytes of an object.

    Returns ``(index, index position)``, or the number of tail bytes needed when ``tail`` is too
    short to hold the whole index.
    """
    if len(tail) < FOOTER_SIZE:
        raise DataError("object shorter than its footer")
    magic, version, reserved, index_pos, index_size, index_crc, total = _FOOTER.unpack(
        tail[-FOOTER_SIZE:]
    )
    consistent = index_pos + index_size + FOOTER_SIZE == total
    if magic != MAGIC or version != 1 or reserved or total != object_size or not consistent:
        raise DataError("object footer is invalid (magic, version or size)")
    needed = int(index_size) + FOOTER_SIZE
    if len(tail) < needed:
        return needed
    raw = tail[len(tail) - needed : len(tail) - FOOTER_SIZE]
    if crc32c.crc32c(raw) != index_crc or index_size % _INDEX.size:
        raise DataError("object index fails its checksum")
    index = [BlockIndex(*_INDEX.unpack_from(raw, i)) for i in range(0, index_size, _INDEX.size)]
    return index, int(index_pos)


def parse_block(data: bytes | memoryview, block: BlockIndex) -> Iterator[Batch]:
    """The batches of one block; raises DataError when its checksum fails."""
    view = memoryview(data)
    if len(view) != block.size:
        raise DataError(f"block of stream {block.stream_id} is truncated")
    body = view[: block.size - 4]
    if crc32c.crc32c(body) != int.from_bytes(view[block.size - 4 :], "big"):
        raise DataError(f"block of stream {block.stream_id} at {block.position} fails its checksum")
    position = 0
    for _ in range(block.batches):
        base, count, length = _ENTRY.unpack_from(body, position)
        position += _ENTRY.size
        yield Batch(base, count, body[position : position + length])
        position += length


def blocks_for(index: Sequence[BlockIndex], stream_id: int, start: int) -> list[BlockIndex]:
    """Blocks of ``stream_id`` that hold offsets at or after ``start``, in order."""
    return [b for b in index if b.stream_id == stream_id and b.end > start]
