"""Primitive readers and writers shared by the generated message codecs.

Readers take the frame as a ``memoryview`` and a position and return ``(value, new_position)``;
they raise :class:`CorruptFrame` for lengths that lie. Reading past the end of the frame with
``struct.unpack_from`` or indexing raises ``struct.error``/``IndexError``, which the codec's entry
points (:mod:`streambed.broker.protocol.codec`) turn into :class:`CorruptFrame` too, so the generated
code does not repeat bounds checks the interpreter already makes.

Writers append to a ``bytearray``. Record data is the exception: :func:`write_records` hands large
record buffers over as separate chunks so a Fetch response is a list of buffers that the server
passes to ``writelines`` without joining them.

Nullable-ness varies by version while the message classes are shared by all versions, so the
non-nullable writers accept ``None`` and write the empty value: Kafka's rule is to write
``""``/empty, never null, where a version cannot carry null.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeAlias
from uuid import UUID

from streambed.broker.protocol.errors import CorruptFrame

__all__ = [
    "I16",
    "I32",
    "INLINE_RECORDS_MAX",
    "UUID_ZERO",
    "Buffer",
    "RecordsData",
    "check_count",
    "read_bytes",
    "read_compact_array_len",
    "read_compact_bytes",
    "read_compact_nullable_bytes",
    "read_compact_nullable_string",
    "read_compact_records",
    "read_compact_string",
    "read_legacy_array_len",
    "read_nullable_bytes",
    "read_nullable_string",
    "read_records",
    "read_string",
    "read_uuid",
    "read_uvarint",
    "records_size",
    "skip_tagged_fields",
    "truncated",
    "uvarint",
    "write_bytes",
    "write_compact_bytes",
    "write_compact_nullable_bytes",
    "write_compact_nullable_string",
    "write_compact_string",
    "write_nullable_bytes",
    "write_nullable_string",
    "write_records",
    "write_string",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
"""A bytes-like object whose ``len`` is its size in bytes (memoryviews must have format ``B``)."""

RecordsData: TypeAlias = bytes | bytearray | memoryview | Sequence[Buffer]
"""Record data of one partition: one buffer, or several (e.g. batches read separately) that are
written back to back without being joined."""

I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
UUID_ZERO = UUID(int=0)

INLINE_RECORDS_MAX = 1024
"""Record data up to this size is copied into the surrounding buffer: a separate chunk for a few
bytes costs more in ``writelines`` than the copy."""

_SMALL_UVARINTS = tuple(bytes((i,)) for i in range(128))
_NULL_I16 = b"\xff\xff"
_NULL_I32 = b"\xff\xff\xff\xff"


def truncated(what: str, need: int, have: int) -> CorruptFrame:
    return CorruptFrame(f"{what} needs {need} bytes but only {max(have, 0)} remain in the frame")


# -- readers ---------------------------------------------------------------------------------------


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes (Kafka's ``readUnsignedVarint``)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift >= 35:
            raise CorruptFrame("unsigned varint longer than 5 bytes")


def check_count(n: int, min_size: int, buf: memoryview, pos: int) -> None:
    """Reject an array count that cannot fit in what is left of the frame, before allocating."""
    if n * min_size > len(buf) - pos or (min_size == 0 and n > len(buf) - pos):
        raise CorruptFrame(
            f"array of {n} elements (at least {min_size} bytes each) does not fit in the "
            f"{len(buf) - pos} bytes left in the frame"
        )


def _take(buf: memoryview, pos: int, n: int, what: str) -> int:
    end = pos + n
    if end > len(buf):
        raise truncated(what, n, len(buf) - pos)
    return end


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = I16.unpack_from(buf, pos)
    pos += 2
    if n <= 0:
        if n == 0:
            return "", pos
        raise CorruptFrame("null or negative length for a non-nullable string")
    end = _take(buf, pos, n, "string")
    return str(buf[pos:end], "utf-8"), end


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = I16.unpack_from(buf, pos)
    pos += 2
    if n <= 0:
        if n == 0:
            return "", pos
        if n == -1:
            return None, pos
        raise CorruptFrame(f"negative string length {n}")
    end = _take(buf, pos, n, "string")
    return str(buf[pos:end], "utf-8"), end


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n <= 1:
        if n == 1:
            return "", pos
        raise CorruptFrame("null compact string in a non-nullable field")
    end = _take(buf, pos, n - 1, "compact string")
    return str(buf[pos:end], "utf-8"), end


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n <= 1:
        return ("" if n == 1 else None), pos
    end = _take(buf, pos, n - 1, "compact string")
    return str(buf[pos:end], "utf-8"), end


def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise CorruptFrame("null or negative length for non-nullable bytes")
    end = _take(buf, pos, n, "bytes")
    return bytes(buf[pos:end]), end


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        if n == -1:
            return None, pos
        raise CorruptFrame(f"negative bytes length {n}")
    end = _take(buf, pos, n, "bytes")
    return bytes(buf[pos:end]), end


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise CorruptFrame("null compact bytes in a non-nullable field")
    end = _take(buf, pos, n - 1, "compact bytes")
    return bytes(buf[pos:end]), end


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _take(buf, pos, n - 1, "compact bytes")
    return bytes(buf[pos:end]), end


def read_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    """Record data as a view into the frame: never copied."""
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        if n == -1:
            return None, pos
        raise CorruptFrame(f"negative records length {n}")
    end = _take(buf, pos, n, "records")
    return buf[pos:end], end


def read_compact_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _take(buf, pos, n - 1, "records")
    return buf[pos:end], end


def read_uuid(buf: memoryview, pos: int) -> tuple[UUID, int]:
    end = _take(buf, pos, 16, "uuid")
    raw = bytes(buf[pos:end])
    if raw == UUID_ZERO.bytes:
        return UUID_ZERO, end
    return UUID(bytes=raw), end


def read_legacy_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    """Element count of an int32-prefixed array; -1 means null, other negatives are corrupt."""
    (n,) = I32.unpack_from(buf, pos)
    if n < -1:
        raise CorruptFrame(f"negative array length {n}")
    return n, pos + 4


def read_compact_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    """Element count of a compact array (varint N+1); -1 means null."""
    n = buf[pos]
    if n < 0x80:
        return n - 1, pos + 1
    n, pos = read_uvarint(buf, pos)
    return n - 1, pos


def skip_tagged_fields(buf: memoryview, pos: int) -> int:
    """Skip a tagged-field section none of whose tags this version knows."""
    if buf[pos] == 0:
        return pos + 1
    count, pos = read_uvarint(buf, pos)
    if count > len(buf) - pos:
        raise CorruptFrame(f"{count} tagged fields cannot fit in {len(buf) - pos} bytes")
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos = _take(buf, pos, size, "tagged field")
    return pos


# -- writers ---------------------------------------------------------------------------------------


def uvarint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_UVARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_string(out: bytearray, s: str | None) -> None:
    if not s:
        out += b"\x00\x00"
        return
    b = s.encode()
    out += I16.pack(len(b))
    out += b


def write_nullable_string(out: bytearray, s: str | None) -> None:
    if s is None:
        out += _NULL_I16
        return
    b = s.encode()
    out += I16.pack(len(b))
    out += b


def write_compact_string(out: bytearray, s: str | None) -> None:
    if not s:
        out += b"\x01"
        return
    b = s.encode()
    out += uvarint(len(b) + 1)
    out += b


def write_compact_nullable_string(out: bytearray, s: str | None) -> None:
    if s is None:
        out += b"\x00"
        return
    b = s.encode()
    out += uvarint(len(b) + 1)
    out += b


def write_bytes(out: bytearray, b: bytes | None) -> None:
    if b is None:
        out += b"\x00\x00\x00\x00"
        return
    out += I32.pack(len(b))
    out += b


def write_nullable_bytes(out: bytearray, b: bytes | None) -> None:
    if b is None:
        out += _NULL_I32
        return
    out += I32.pack(len(b))
    out += b


def write_compact_bytes(out: bytearray, b: bytes | None) -> None:
    if b is None:
        out += b"\x01"
        return
    out += uvarint(len(b) + 1)
    out += b


def write_compact_nullable_bytes(out: bytearray, b: bytes | None) -> None:
    if b is None:
        out += b"\x00"
        return
    out += uvarint(len(b) + 1)
    out += b


def records_size(r: RecordsData) -> int:
    if isinstance(r, memoryview):
        return r.nbytes
    if isinstance(r, bytes | bytearray):
        return len(r)
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in r)


def write_records(
    out: bytearray, chunks: list[Buffer], r: RecordsData | None, compact: bool
) -> bytearray:
    """Write the length prefix and hand large record data over as chunks; returns the buffer to
    continue writing into (a fresh one when the current one was handed over)."""
    if r is None:
        out += b"\x00" if compact else _NULL_I32
        return out
    size = records_size(r)
    out += uvarint(size + 1) if compact else I32.pack(size)
    pieces: Sequence[Buffer] = (r,) if isinstance(r, bytes | bytearray | memoryview) else r
    if size <= INLINE_RECORDS_MAX:
        for piece in pieces:
            out += piece
        return out
    chunks.append(out)
    chunks.extend(pieces)
    return bytearray()
