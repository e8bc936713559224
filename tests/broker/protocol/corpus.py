"""Deterministic, fully populated messages of every API and version: the seed corpus for framing
and fuzz tests (every array has elements, every nullable field a value, records hold real batches)."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
import uuid
from typing import Any

from streambed.broker.protocol import RequestHeader, encode_request, encode_response
from streambed.broker.protocol.messages import API_SPECS
from streambed.broker.protocol.records import Record, encode_batch

BATCH = bytes(
    encode_batch(
        [Record(i, i, b"key-%d" % i, b"value-%d" % i * 20, (("h", b"v"),)) for i in range(5)],
        base_timestamp=1_700_000_000_000,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
    )
)


def populate(cls: type[Any], width: int = 2) -> Any:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    kwargs: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        kwargs[f.name] = _value(hints[f.name], width, i)
    return cls(**kwargs)


def _value(hint: Any, width: int, salt: int) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if any(a is memoryview for a in args):  # RecordsData
            return BATCH
        return _value(args[0], width, salt)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_value(item, width, salt + k) for k in range(width)]
    if hint is int:
        return 3 + salt
    if hint is bool:
        return True
    if hint is float:
        return 1.5
    if hint is str:
        return f"s{salt}-ü"
    if hint is bytes:
        return b"bytes-%d" % salt
    if hint is uuid.UUID:
        return uuid.UUID(int=0x1234_5678_9ABC_DEF0 + salt)
    if dataclasses.is_dataclass(hint):
        return populate(hint, width)
    raise TypeError(f"no value for {hint!r}")


def request_frames(versions: str = "all") -> list[tuple[int, int, bytes]]:
    """``(api_key, version, frame without size prefix)`` for every request version."""
    frames = []
    for spec in API_SPECS.values():
        body = populate(spec.request_class)
        for version in _versions(spec, versions):
            header = RequestHeader(spec.api_key, version, 1000 + version, "fuzz-client")
            frames.append((spec.api_key, version, b"".join(encode_request(header, body))[4:]))
    return frames


def response_frames(versions: str = "all") -> list[tuple[int, int, bytes]]:
    frames = []
    for spec in API_SPECS.values():
        body = populate(spec.response_class)
        for version in _versions(spec, versions):
            frame = b"".join(encode_response(spec.api_key, version, 77, body))[4:]
            frames.append((spec.api_key, version, frame))
    return frames


def _versions(spec: Any, which: str) -> list[int]:
    if which == "all":
        return list(range(spec.min_version, spec.max_version + 1))
    chosen = {spec.min_version, spec.max_version}
    if spec.flexible_min is not None:
        chosen |= {spec.flexible_min, spec.flexible_min - 1} & set(
            range(spec.min_version, spec.max_version + 1)
        )
    return sorted(chosen)
