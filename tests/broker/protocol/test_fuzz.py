"""Mutated frames: the decoder raises only ProtocolError, in bounded memory and time.

Seeds are fully populated requests and responses of every API (``corpus.py``). Mutations are
systematic at every byte position (lengths and counts set to INT32_MAX, -2, 0x7fff; 0xff bytes;
overlong varints inserted; truncation) and random (Hypothesis: bit flips, overwrites, insertions,
cuts, huge tagged fields).
"""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from corpus import populate, request_frames, response_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambed.broker.protocol import (
    NEED_DATA,
    ProtocolError,
    RequestHeader,
    ServerConnection,
    decode_request,
    encode_request,
)
from streambed.broker.protocol.codec import decode_response
from streambed.broker.protocol.messages import API_SPECS
from streambed.broker.protocol.records import iter_batches

MEMORY_FACTOR = 8
MEMORY_CONSTANT = 64 * 1024
TIME_LIMIT_S = 0.25

REQUESTS = request_frames("edges")
RESPONSES = response_frames("edges")

PATTERNS: list[tuple[str, Callable[[bytes, int], bytes]]] = [
    ("int32-max", lambda f, p: f[:p] + struct.pack(">i", 2**31 - 1) + f[p + 4 :]),
    ("int32-minus-2", lambda f, p: f[:p] + struct.pack(">i", -2) + f[p + 4 :]),
    ("int16-max", lambda f, p: f[:p] + struct.pack(">h", 2**15 - 1) + f[p + 2 :]),
    ("int16-minus-2", lambda f, p: f[:p] + struct.pack(">h", -2) + f[p + 2 :]),
    ("byte-ff", lambda f, p: f[:p] + b"\xff" + f[p + 1 :]),
    ("varint-6-bytes", lambda f, p: f[:p] + b"\xff" * 6 + b"\x01" + f[p:]),
    ("huge-tag", lambda f, p: f[:p] + b"\x01\x05\xff\xff\xff\xff\x0f" + f[p + 1 :]),
    ("truncate", lambda f, p: f[:p]),
]


def _decode_request(frame: bytes) -> Any:
    request = decode_request(frame)
    _touch_records(request.body)
    return request


def _touch_records(message: Any) -> None:
    """Run the record-batch iterator over every records field, as the produce path would."""
    for name in getattr(message, "__slots__", ()):
        value = getattr(message, name)
        if isinstance(value, memoryview):
            for batch in iter_batches(value):
                batch.validate(verify_records=True, max_records_size=1 << 20)
        elif isinstance(value, list):
            for item in value:
                _touch_records(item)
        elif hasattr(value, "__slots__"):
            _touch_records(value)


def _mutations(frame: bytes, stride: int = 1) -> Iterator[tuple[str, int, bytes]]:
    for position in range(0, len(frame), stride):
        for name, mutate in PATTERNS:
            yield name, position, mutate(frame, position)


def _bounded(decode: Callable[[bytes], Any], data: bytes, *, measure_memory: bool) -> None:
    start = time.perf_counter()
    if measure_memory:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    with contextlib.suppress(ProtocolError):
        decode(data)
    if measure_memory:
        peak = tracemalloc.get_traced_memory()[1] - base
        assert peak <= MEMORY_FACTOR * len(data) + MEMORY_CONSTANT, (peak, len(data))
    else:
        # (tracing allocations slows decoding several times over, so time only untraced runs)
        elapsed = time.perf_counter() - start
        assert elapsed < TIME_LIMIT_S, elapsed


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_systematic_request_mutations() -> None:
    count = 0
    for api_key, version, frame in REQUESTS:
        stride = max(1, len(frame) // 300)
        for name, position, mutated in _mutations(frame, stride):
            try:
                _bounded(_decode_request, mutated, measure_memory=False)
            except AssertionError as exc:
                raise AssertionError(f"api {api_key} v{version} {name} at {position}") from exc
            count += 1
    assert count > 20_000


@pytest.mark.slow
def test_systematic_response_mutations() -> None:
    for api_key, version, frame in RESPONSES:
        stride = max(1, len(frame) // 150)
        for _, _, mutated in _mutations(frame, stride):
            _bounded(
                lambda d, k=api_key, v=version: decode_response(k, v, d),
                mutated,
                measure_memory=False,
            )


def test_memory_of_systematic_mutations(traced: None) -> None:
    for _, _, frame in REQUESTS[::3]:
        stride = max(1, len(frame) // 40)
        for _, _, mutated in _mutations(frame, stride):
            _bounded(_decode_request, mutated, measure_memory=True)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    _, _, frame = draw(st.sampled_from(REQUESTS))
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "cut", "count"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            blob = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(blob)] = blob
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "cut":
            del data[at:]
        else:
            value = draw(st.sampled_from([2**31 - 1, -2, -1, 2**16, 2**24]))
            data[at : at + 4] = struct.pack(">i", value)
    return bytes(data)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(frame=mutated_frames())
def test_random_mutations(traced: None, frame: bytes) -> None:
    _bounded(_decode_request, frame, measure_memory=True)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_bodies_after_valid_headers(traced: None, data: st.DataObject) -> None:
    api_key, version, frame = data.draw(st.sampled_from(REQUESTS))
    header_end = 10 + len("fuzz-client") + (1 if API_SPECS[api_key].is_flexible(version) else 0)
    garbage = data.draw(st.binary(max_size=300))
    _bounded(_decode_request, frame[:header_end] + garbage, measure_memory=True)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(chunks=st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_into_a_connection(traced: None, chunks: list[bytes]) -> None:
    conn = ServerConnection(initial_max_request_size=4096)
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while conn.next_request() is not NEED_DATA:
                pass
    except ProtocolError:
        pass
    peak = tracemalloc.get_traced_memory()[1] - base
    assert peak <= MEMORY_FACTOR * sum(map(len, chunks)) + MEMORY_CONSTANT


def test_lying_sizes_do_not_allocate(traced: None) -> None:
    # A frame announcing the maximum size is not allocated until its bytes arrive.
    conn = ServerConnection()
    conn.receive_data(b"\x00\x0f\xff\xff" + b"\x00\x12\x00\x03")  # ~1 MiB announced
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    assert conn.next_request() is NEED_DATA
    assert tracemalloc.get_traced_memory()[1] - base < 4096


def _large_request_frames() -> list[tuple[int, int, bytes]]:
    frames = []
    for spec in API_SPECS.values():
        if spec.api_key == 0:
            continue  # 900 partitions of records: slow to validate, and covered above
        body = populate(spec.request_class, width=30)
        for version in (spec.min_version, spec.max_version):
            header = RequestHeader(spec.api_key, version, 1, "fuzz-client")
            frame = b"".join(encode_request(header, body))[4:]
            if len(frame) > 16 * 1024:
                frames.append((spec.api_key, version, frame))
    return frames


LARGE = _large_request_frames()


def test_memory_of_large_mutated_frames(traced: None) -> None:
    """Where 8 x frame size is well above the constant, so the factor is what is checked."""
    assert len(LARGE) >= 8
    for _, _, frame in LARGE:
        _bounded(_decode_request, frame, measure_memory=True)
        for _, _, mutated in _mutations(frame, max(1, len(frame) // 5)):
            _bounded(_decode_request, mutated, measure_memory=True)


def test_time_of_large_mutated_frames() -> None:
    for _, _, frame in LARGE:
        for _, _, mutated in _mutations(frame, max(1, len(frame) // 10)):
            _bounded(_decode_request, mutated, measure_memory=False)
