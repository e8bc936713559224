"""Helpers shared by the built-in object stores."""

from __future__ import annotations

from streambed.core.objects.api import Buffers

__all__ = ["as_buffers", "check_key", "total_size"]


def as_buffers(data: Buffers) -> list[bytes | memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        return [data]
    return list(data)


def total_size(buffers: list[bytes | memoryview]) -> int:
    return sum(len(b) for b in buffers)


def check_key(key: str) -> str:
    """Reject keys that could escape a directory or that stores disagree about."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"invalid object key {key!r}: must be non-empty, no leading/trailing '/'")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\0" in key:
        raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    return key
