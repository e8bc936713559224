"""The transaction semantics shared by the built-in metadata stores."""

from __future__ import annotations

from streambed.core.metadata.api import Compare

__all__ = ["compare_holds", "prefix_end"]


def compare_holds(compare: Compare, revision: int) -> bool:
    if compare.op == "==":
        return revision == compare.revision
    if compare.op == "!=":
        return revision != compare.revision
    if compare.op == "<":
        return revision < compare.revision
    if compare.op == ">":
        return revision > compare.revision
    raise ValueError(f"unknown compare operator {compare.op!r}")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix`` (etcd's
    range_end), or None when there is none (prefix empty or all 0xff)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
