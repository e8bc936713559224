from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streambed.core.errors import DataError
from streambed.core.objects.format import Batch, ObjectBuilder, parse_block, parse_tail

streams = st.dictionaries(
    st.integers(0, 2**40),
    st.lists(st.tuples(st.integers(1, 5), st.binary(max_size=3000)), min_size=1, max_size=30),
    min_size=1, max_size=5,
)


def build(data: dict[int, list[tuple[int, bytes]]], block_bytes: int) -> tuple[bytes, dict[int, list[Batch]]]:
    builder = ObjectBuilder(block_bytes)
    expected: dict[int, list[Batch]] = {}
    for sid in sorted(data):
        base = sid % 1000
        for count, payload in data[sid]:
            batch = Batch(base, count, payload)
            builder.add(sid, batch)
            expected.setdefault(sid, []).append(batch)
            base += count
    parts, _ = builder.finish()
    return b"".join(bytes(p) for p in parts), expected


@settings(max_examples=150, deadline=None)
@given(streams, st.sampled_from([64, 1024, 4096, 1 << 20]))
def test_round_trip_through_range_reads(data: dict[int, list[tuple[int, bytes]]], block_bytes: int) -> None:
    blob, expected = build(data, block_bytes)
    parsed = parse_tail(blob[-200:], len(blob))
    if isinstance(parsed, int):
        parsed = parse_tail(blob[-parsed:], len(blob))
    assert not isinstance(parsed, int)
    index, _ = parsed
    got: dict[int, list[Batch]] = {}
    for block in index:
        piece = blob[block.position : block.position + block.size]
        batches = list(parse_block(piece, block))
        assert batches[0].base == block.start and batches[-1].end == block.end
        got.setdefault(block.stream_id, []).extend(batches)
    assert {k: [(b.base, b.count, bytes(b.payload)) for b in v] for k, v in got.items()} == {
        k: [(b.base, b.count, bytes(b.payload)) for b in v] for k, v in expected.items()
    }


@settings(max_examples=60, deadline=None)
@given(streams, st.data())
def test_any_flipped_byte_is_detected(data: dict[int, list[tuple[int, bytes]]], draw: st.DataObject) -> None:
    blob, _ = build(data, 1024)
    where = draw.draw(st.integers(0, len(blob) - 1))
    corrupt = bytearray(blob)
    corrupt[where] ^= 0x01
    with pytest.raises(DataError):
        parsed = parse_tail(bytes(corrupt), len(corrupt))
        assert not isinstance(parsed, int)
        for block in parsed[0]:
            list(parse_block(bytes(corrupt[block.position : block.position + block.size]), block))
