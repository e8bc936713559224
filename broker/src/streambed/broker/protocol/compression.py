"""Record-batch compression codecs, with a decompressor that never outputs more than a cap.

Kafka compresses the records section of a batch (everything after the 61-byte header) as a whole:

- gzip: one or more gzip members (Java's ``GZIPOutputStream``).
- snappy: either *xerial* framing (Java's ``SnappyOutputStream``: the 16-byte header
  ``\\x82SNAPPY\\x00`` + version + compatible version, then blocks of int32 length + raw snappy) or
  a bare raw snappy block (librdkafka and others); both occur, so both are read.
- lz4: LZ4 frames (magic v2 batches use standard frames; the broken header checksum of Kafka's old
  ``KafkaLZ4BlockOutputStream`` only affected magic v0).
- zstd: one or more zstd frames.

Decompression writes into an anonymous ``mmap`` of ``max_size + 1`` bytes: its pages are committed
only as they are written, so the cap costs no memory up front, and cramjam's ``decompress_into``
stops with an error instead of growing past it. Output over the cap raises
:class:`DecompressionLimitExceeded`; truncated or corrupt input raises :class:`RecordBatchError`
(CORRUPT_MESSAGE).
"""

from __future__ import annotations

import enum
import mmap
import struct

import cramjam

from streambed.broker.protocol._wire import Buffer
from streambed.broker.protocol.errors import ErrorCode, RecordBatchError

__all__ = [
    "XERIAL_MAGIC",
    "Compression",
    "DecompressionLimitExceeded",
    "compress",
    "decompress",
]

XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_XERIAL_BLOCK = 32 * 1024  # xerial's default block size, as Java and kafka-python use
_I32 = struct.Struct(">i")


class Compression(enum.IntEnum):
    """The codec id in bits 0-2 of a batch's attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class DecompressionLimitExceeded(RecordBatchError):
    """Decompressed records would exceed the allowed size (a compression bomb or a huge batch)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.MESSAGE_TOO_LARGE)


def compress(codec: Compression, data: Buffer, *, xerial: bool = True) -> bytes:
    """Compress a records section; snappy uses xerial framing unless ``xerial=False``."""
    if codec == Compression.NONE:
        return bytes(data)
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        if not xerial:
            return bytes(cramjam.snappy.compress_raw(data))
        out = bytearray(_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1))
        view = memoryview(data).cast("B")
        for start in range(0, view.nbytes, _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
            out += _I32.pack(len(block))
            out += block
        return bytes(out)
    if codec == Compression.LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: Compression | int, data: Buffer, max_size: int) -> memoryview:
    """Decompress a records section into at most ``max_size`` bytes."""
    try:
        codec = Compression(codec)
    except ValueError:
        raise RecordBatchError(f"unknown compression codec id {codec}") from None
    if codec == Compression.NONE:
        view = memoryview(data)
        if view.nbytes > max_size:
            raise DecompressionLimitExceeded(f"{view.nbytes} bytes exceed {max_size}")
        return view
    if codec == Compression.SNAPPY:
        return _snappy(memoryview(data).cast("B"), max_size)
    module = {
        Compression.GZIP: cramjam.gzip,
        Compression.LZ4: cramjam.lz4,
        Compression.ZSTD: cramjam.zstd,
    }[codec]
    out = mmap.mmap(-1, max_size + 1)
    try:
        n = module.decompress_into(data, out)
    except cramjam.DecompressionError as exc:
        raise _translate(codec, exc, max_size) from exc
    if n > max_size:
        raise DecompressionLimitExceeded(
            f"{codec.name} records decompress to over {max_size} bytes"
        )
    return memoryview(out)[:n]


def _translate(codec: Compression, exc: Exception, max_size: int) -> RecordBatchError:
    if "whole buffer" in str(exc):
        return DecompressionLimitExceeded(
            f"{codec.name} records decompress to over {max_size} bytes"
        )
    return RecordBatchError(f"corrupt {codec.name} records: {exc}")


def _snappy_length(block: memoryview) -> int:
    """The uncompressed length a raw snappy block announces (its varint preamble)."""
    value = shift = 0
    for i in range(min(5, block.nbytes)):
        b = block[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value
        shift += 7
    raise RecordBatchError("corrupt SNAPPY records: bad length preamble")


def _snappy(data: memoryview, max_size: int) -> memoryview:
    if data[: len(XERIAL_MAGIC)] != XERIAL_MAGIC:
        blocks = [data]
    else:
        if data.nbytes < _XERIAL_HEADER.size:
            raise RecordBatchError("corrupt SNAPPY records: truncated xerial header")
        blocks = []
        pos = _XERIAL_HEADER.size
        while pos < data.nbytes:
            if pos + 4 > data.nbytes:
                raise RecordBatchError("corrupt SNAPPY records: truncated xerial block length")
            (size,) = _I32.unpack_from(data, pos)
            pos += 4
            if size < 0 or pos + size > data.nbytes:
                raise RecordBatchError(
                    f"corrupt SNAPPY records: xerial block of {size} bytes at {pos}, "
                    f"{data.nbytes - pos} left"
                )
            blocks.append(data[pos : pos + size])
            pos += size
    total = 0
    for block in blocks:
        total += _snappy_length(block)
        if total > max_size:
            raise DecompressionLimitExceeded(f"SNAPPY records decompress to over {max_size} bytes")
    out = mmap.mmap(-1, max(total, 1))
    view = memoryview(out)
    pos = 0
    for block in blocks:
        try:
            n = cramjam.snappy.decompress_raw_into(block, view[pos:])
        except cramjam.DecompressionError as exc:
            raise RecordBatchError(f"corrupt SNAPPY records: {exc}") from exc
        pos += n
    return view[:pos]
