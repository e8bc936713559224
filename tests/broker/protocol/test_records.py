"""Record batches against independent encoders (aiokafka's and kafka-python's batch builders)."""

from __future__ import annotations

import struct
import tracemalloc
import warnings

import cramjam
import pytest
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from streambed.broker.protocol.compression import (
    Compression,
    DecompressionLimitExceeded,
    compress,
    decompress,
)
from streambed.broker.protocol.errors import ErrorCode, RecordBatchError
from streambed.broker.protocol.records import (
    CRC_OFFSET,
    HEADER,
    HEADER_SIZE,
    Record,
    RecordBatch,
    TimestampType,
    crc32c,
    encode_batch,
    encode_record,
    iter_batches,
)

with warnings.catch_warnings():
    # kafka-python 3 reads its bundled JSON schemas with a deprecated importlib API at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

CODECS = [Compression.NONE, Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]

RECORDS = [
    (b"k0", b"v" * 300, [("h", b"x")]),
    (None, b"value-1", []),
    (b"k2", None, [("a", None), ("b", b"")]),
    (b"", b"", []),
    (b"k4", bytes(range(256)) * 8, []),
]


def aiokafka_batch(
    codec: Compression, records=RECORDS, *, producer=(-1, -1, -1), ts=1_700_000_000_000
) -> bytearray:
    builder = AioBuilder(2, int(codec), 0, producer[0], producer[1], producer[2], 1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, ts + i * 7, key, value, headers)
    return builder.build()


def kafka_python_batch(codec: Compression) -> bytearray:
    builder = KpBuilder(2, int(codec), 0, 4242, 3, 17, 1 << 20)
    for i, (key, value, headers) in enumerate(RECORDS):
        builder.append(i, 1_700_000_000_000 + i, key, value, headers)
    return builder.build()


def rebuild(batch: bytes | bytearray, section: bytes, codec_id: int) -> bytearray:
    """Replace a batch's records section and codec, fixing length and CRC."""
    out = bytearray(batch[:HEADER_SIZE]) + section
    struct.pack_into(">i", out, 8, len(out) - 12)
    attributes = struct.unpack_from(">h", out, 21)[0]
    struct.pack_into(">h", out, 21, (attributes & ~0x07) | codec_id)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_OFFSET:]))
    return out


def _records_of(batch: RecordBatch) -> list[tuple[object, object, list[tuple[str, object]]]]:
    return [
        (
            None if r.key is None else bytes(r.key),
            None if r.value is None else bytes(r.value),
            [(k, None if v is None else bytes(v)) for k, v in r.headers],
        )
        for r in batch.iter_records()
    ]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_aiokafka_batches_validate_and_read(codec: Compression) -> None:
    raw = aiokafka_batch(codec, producer=(99, 2, 40))
    (batch,) = list(iter_batches(raw))
    assert batch.compression == codec
    assert batch.magic == 2 and batch.record_count == len(RECORDS)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (99, 2, 40)
    assert batch.base_timestamp == 1_700_000_000_000
    assert batch.max_timestamp == 1_700_000_000_000 + 7 * (len(RECORDS) - 1)
    assert batch.size == len(raw)
    batch.validate(verify_records=True, max_batch_size=len(raw))
    assert _records_of(batch) == [(k, v, h) for k, v, h in RECORDS]
    assert [r.offset_delta for r in batch.iter_records()] == list(range(len(RECORDS)))


@pytest.mark.parametrize(
    "codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD], ids=lambda c: c.name
)
def test_kafka_python_batches(codec: Compression) -> None:
    raw = kafka_python_batch(codec)
    (batch,) = list(iter_batches(raw))
    batch.validate(verify_records=True)
    assert batch.producer_id == 4242
    assert _records_of(batch) == [(k, v, h) for k, v, h in RECORDS]


def test_raw_snappy_and_xerial_snappy_both_read() -> None:
    plain = aiokafka_batch(Compression.NONE)
    section = bytes(plain[HEADER_SIZE:])
    raw = rebuild(plain, bytes(cramjam.snappy.compress_raw(section)), 2)
    xerial = rebuild(plain, compress(Compression.SNAPPY, section), 2)
    assert xerial[HEADER_SIZE : HEADER_SIZE + 8] == b"\x82SNAPPY\x00"
    for blob in (raw, xerial):
        (batch,) = list(iter_batches(blob))
        batch.validate(verify_records=True)
        assert _records_of(batch) == [(k, v, h) for k, v, h in RECORDS]
        # and aiokafka reads ours
        assert [r.value for r in AioBatch(blob)] == [v for _, v, _ in RECORDS]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_stamping_keeps_crc_valid(codec: Compression) -> None:
    blob = bytearray(aiokafka_batch(codec) + aiokafka_batch(codec))
    batches = list(iter_batches(blob))
    assert len(batches) == 2
    crcs = [b.crc for b in batches]
    for i, batch in enumerate(batches):
        batch.stamp(1000 * (i + 1), partition_leader_epoch=7)
    for i, batch in enumerate(iter_batches(blob)):
        assert batch.base_offset == 1000 * (i + 1)
        assert batch.partition_leader_epoch == 7
        assert batch.crc == crcs[i]
        batch.validate(verify_records=True)
        # an independent reader agrees, CRC included
        other = AioBatch(batch.data)
        assert other.base_offset == 1000 * (i + 1)
        assert other.validate_crc()


def test_stamp_needs_a_writable_buffer() -> None:
    (batch,) = list(iter_batches(bytes(aiokafka_batch(Compression.NONE))))
    with pytest.raises(TypeError, match="read-only"):
        batch.stamp(5)


def test_log_append_time_rewrites_crc() -> None:
    blob = aiokafka_batch(Compression.LZ4)
    (batch,) = list(iter_batches(blob))
    batch.stamp_log_append_time(1_800_000_000_000)
    (again,) = list(iter_batches(blob))
    assert again.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert again.max_timestamp == 1_800_000_000_000
    again.validate(verify_records=True)
    assert AioBatch(blob).validate_crc()
    assert AioBatch(blob).timestamp_type == 1


def test_crc_covers_attributes_to_end_only() -> None:
    blob = aiokafka_batch(Compression.NONE)
    for position in (0, 7, 12, 15):  # baseOffset, partitionLeaderEpoch: outside the CRC
        copy = bytearray(blob)
        copy[position] ^= 0x01
        (batch,) = list(iter_batches(copy))
        assert batch.crc_is_valid()
    for position in range(CRC_OFFSET, len(blob), 37):
        copy = bytearray(blob)
        copy[position] ^= 0x10
        (batch,) = list(iter_batches(copy))
        with pytest.raises(RecordBatchError) as info:
            batch.validate()
        assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE


def test_encode_batch_matches_aiokafka_bytes() -> None:
    ts = 1_700_000_000_000
    expected = aiokafka_batch(Compression.NONE, producer=(5, 1, 9), ts=ts)
    ours = encode_batch(
        [Record(i, i * 7, k, v, tuple(h)) for i, (k, v, h) in enumerate(RECORDS)],
        base_timestamp=ts,
        producer_id=5,
        producer_epoch=1,
        base_sequence=9,
    )
    # aiokafka leaves the partition leader epoch at its builder default
    (theirs,) = list(iter_batches(expected))
    struct.pack_into(">i", ours, 12, theirs.partition_leader_epoch)
    struct.pack_into(">I", ours, 17, crc32c(memoryview(ours)[CRC_OFFSET:]))
    assert bytes(ours) == bytes(expected)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_encoded_batches_read_by_aiokafka(codec: Compression) -> None:
    records = [Record(i, i, b"key%d" % i, b"value" * i, (("h", b"v"),)) for i in range(20)]
    blob = encode_batch(
        records, base_offset=50, base_timestamp=10, compression=codec, control=False
    )
    theirs = AioBatch(blob)
    assert theirs.validate_crc()
    assert [(r.offset, r.key, r.value) for r in theirs] == [
        (50 + i, b"key%d" % i, b"value" * i) for i in range(20)
    ]


def test_truncated_blobs_fail_precisely() -> None:
    one = aiokafka_batch(Compression.GZIP)
    blob = one + aiokafka_batch(Compression.NONE)
    for cut in range(1, len(blob)):
        if cut == len(one):
            assert len(list(iter_batches(blob[:cut]))) == 1
            continue
        with pytest.raises(RecordBatchError) as info:
            list(iter_batches(blob[:cut]))
        message = str(info.value)
        at = 0 if cut < len(one) else len(one)
        assert f"at byte {at}" in message
        assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize(
    ("length", "fragment"),
    [
        (2**31 - 1, "declares 2147483659 bytes but only"),
        (-2, "less than its 49-byte header"),
        (10, "less than"),
    ],
)
def test_lying_batch_length(length: int, fragment: str) -> None:
    blob = bytearray(aiokafka_batch(Compression.NONE))
    struct.pack_into(">i", blob, 8, length)
    with pytest.raises(RecordBatchError, match=fragment):
        list(iter_batches(blob))


def test_wrong_magic_is_rejected() -> None:
    blob = bytearray(aiokafka_batch(Compression.NONE))
    blob[16] = 1
    with pytest.raises(RecordBatchError) as info:
        list(iter_batches(blob))
    assert info.value.error_code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


def _with_header(blob: bytearray, **fields: int) -> bytearray:
    names = [
        "base_offset",
        "batch_length",
        "partition_leader_epoch",
        "magic",
        "crc",
        "attributes",
        "last_offset_delta",
        "base_timestamp",
        "max_timestamp",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "record_count",
    ]
    values = dict(zip(names, HEADER.unpack_from(blob, 0), strict=True))
    values.update(fields)
    HEADER.pack_into(blob, 0, *(values[n] for n in names))
    struct.pack_into(">I", blob, 17, crc32c(memoryview(blob)[CRC_OFFSET:]))
    return blob


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.ZSTD], ids=lambda c: c.name)
def test_record_count_must_match_records(codec: Compression) -> None:
    blob = _with_header(bytearray(aiokafka_batch(codec)), record_count=6, last_offset_delta=5)
    (batch,) = list(iter_batches(blob))
    batch.validate()  # the header alone is consistent
    with pytest.raises(RecordBatchError) as info:
        batch.validate(verify_records=True)
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    assert "declares 6 records but holds 5" in str(info.value)


def test_header_consistency_checks() -> None:
    for fields, fragment in [
        ({"record_count": 0, "last_offset_delta": -1}, "invalid record count"),
        ({"last_offset_delta": 9}, "does not match"),
        ({"attributes": 6}, "unknown compression codec id 6"),
    ]:
        blob = _with_header(bytearray(aiokafka_batch(Compression.NONE)), **fields)
        (batch,) = list(iter_batches(blob))
        with pytest.raises(RecordBatchError, match=fragment):
            batch.validate()


def test_max_message_bytes() -> None:
    blob = aiokafka_batch(Compression.NONE)
    (batch,) = list(iter_batches(blob))
    batch.validate(max_batch_size=len(blob))
    with pytest.raises(RecordBatchError) as info:
        batch.validate(max_batch_size=len(blob) - 1)
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_corrupt_records_inside_a_valid_crc() -> None:
    plain = aiokafka_batch(Compression.NONE)
    section = bytearray(plain[HEADER_SIZE:])
    section[0] = 0x7E  # first record's length: zig-zag 63, more than the record holds
    (batch,) = list(iter_batches(rebuild(plain, bytes(section), 0)))
    batch.validate()
    with pytest.raises(RecordBatchError) as info:
        batch.validate(verify_records=True)
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    garbage = rebuild(plain, b"\x00\x01\x02garbage", 4)
    (batch,) = list(iter_batches(garbage))
    with pytest.raises(RecordBatchError) as info:
        batch.validate(verify_records=True)
    assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize(
    "codec",
    [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD],
    ids=lambda c: c.name,
)
def test_decompression_is_capped(codec: Compression) -> None:
    bomb = compress(codec, bytes(20 * 1024 * 1024))
    assert len(bomb) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitExceeded) as info:
            decompress(codec, bomb, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert peak < 4 * 1024 * 1024
    assert bytes(decompress(codec, bomb, 20 * 1024 * 1024)) == bytes(20 * 1024 * 1024)


def test_snappy_bomb_rejected_from_its_preamble() -> None:
    lying = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10  # raw block announcing 4 GiB
    with pytest.raises(DecompressionLimitExceeded):
        decompress(Compression.SNAPPY, lying, 1 << 20)


@pytest.mark.parametrize(
    "codec",
    [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD],
    ids=lambda c: c.name,
)
def test_truncated_compressed_data(codec: Compression) -> None:
    data = compress(codec, b"hello world " * 1000)
    with pytest.raises(RecordBatchError) as info:
        decompress(codec, data[: len(data) // 2], 1 << 20)
    assert not isinstance(info.value, DecompressionLimitExceeded)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.none() | st.binary(max_size=40),
            st.none() | st.binary(max_size=200),
            st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=3),
        ),
        min_size=1,
        max_size=12,
    ),
    codec=st.sampled_from(CODECS),
)
def test_random_batches_agree_with_aiokafka(records, codec) -> None:
    raw = aiokafka_batch(codec, records)
    (batch,) = list(iter_batches(raw))
    batch.validate(verify_records=True)
    assert _records_of(batch) == [(k, v, list(h)) for k, v, h in records]
    ours = encode_batch(
        [Record(i, i * 7, k, v, tuple(h)) for i, (k, v, h) in enumerate(records)],
        base_timestamp=1_700_000_000_000,
        compression=codec,
    )
    assert [(r.key, r.value, list(r.headers)) for r in AioBatch(ours)] == [
        (k, v, list(h)) for k, v, h in records
    ]


@settings(max_examples=200, deadline=None)
@given(section=st.binary(max_size=300), count=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_record_walk_agrees_with_the_full_parse(section: bytes, count: int, seed: int) -> None:
    """The produce path's cheap walk never accepts what the full parse proves is framed
    differently, and counts what the full parse reads."""
    from streambed.broker.protocol.records import _iter_records, _walk_records

    valid = b"".join(
        encode_record(Record(i, i, b"k" * ((seed + i) % 7), b"v" * (seed % 13))) for i in range(count)
    )
    assert _walk_records(memoryview(valid)) == count
    for candidate in (section, valid + section, valid[: len(valid) // 2] + section):
        try:
            parsed = list(_iter_records(memoryview(candidate)))
        except RecordBatchError:
            parsed = None
        try:
            walked: int | None = _walk_records(memoryview(candidate))
        except RecordBatchError:
            walked = None
        if parsed is not None and [r.offset_delta for r in parsed] == list(range(len(parsed))):
            assert walked == len(parsed)
