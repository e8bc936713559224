"""Framing (split and pipelined frames, size limits), headers, version errors, zero-copy."""

from __future__ import annotations

import struct

import pytest
from corpus import BATCH, populate, request_frames
from kio.schema.api_versions.v0.response import ApiVersion as KioApiVersion
from kio.schema.api_versions.v0.response import ApiVersionsResponse as KioApiVersionsResponse
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.request_header.v1.header import RequestHeader as KioHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as KioHeaderV2
from kio_oracle import kio_encode

from streambed.broker.protocol import (
    NEED_DATA,
    ClientConnection,
    CorruptFrame,
    ErrorCode,
    FrameTooLarge,
    ProtocolError,
    RequestHeader,
    ServerConnection,
    UnknownApiKey,
    UnsupportedVersion,
    decode_request,
    encode_request,
    encode_response,
)
from streambed.broker.protocol.codec import decode_response
from streambed.broker.protocol.messages import API_SPECS, SUPPORTED_VERSIONS
from streambed.broker.protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
)
from streambed.broker.protocol.messages.fetch import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from streambed.broker.protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from streambed.broker.protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from streambed.broker.protocol.records import iter_batches


def frame(
    api_key: int, version: int, body: object, correlation_id: int, client_id: str | None = "c"
) -> bytes:
    return b"".join(
        encode_request(RequestHeader(api_key, version, correlation_id, client_id), body)
    )


def produce(records: bytes = BATCH) -> ProduceRequest:
    return ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[TopicProduceData(name="t", partition_data=[PartitionProduceData(0, records)])],
    )


def pipeline() -> tuple[bytes, list[tuple[int, int, int, object]]]:
    messages = [
        (18, 3, 1, ApiVersionsRequest("kafka-python", "3.0")),
        (
            3,
            12,
            2,
            MetadataRequest(
                topics=[MetadataRequestTopic(name="t")], allow_auto_topic_creation=True
            ),
        ),
        (0, 9, 3, produce()),
        (0, 7, 4, produce(BATCH + BATCH)),
        (18, 0, 5, ApiVersionsRequest()),
    ]
    data = b"".join(frame(k, v, body, c) for k, v, c, body in messages)
    return data, messages


def drain(conn: ServerConnection) -> list:
    out = []
    while (request := conn.next_request()) is not NEED_DATA:
        out.append(request)
    return out


def check(requests: list, messages: list) -> None:
    assert [(r.api_key, r.api_version, r.correlation_id) for r in requests] == [
        (k, v, c) for k, v, c, _ in messages
    ]
    for request, (_, _, _, body) in zip(requests, messages, strict=True):
        assert request.body == body
        assert request.client_id == "c"


def test_split_at_every_byte() -> None:
    data, messages = pipeline()
    for cut in range(len(data) + 1):
        conn = ServerConnection()
        conn.receive_data(data[:cut])
        got = drain(conn)
        conn.receive_data(data[cut:])
        got += drain(conn)
        check(got, messages)
        assert conn.buffered == 0


def test_byte_by_byte_and_in_three_pieces() -> None:
    data, messages = pipeline()
    conn = ServerConnection()
    got = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        got += drain(conn)
    check(got, messages)
    for a in range(0, len(data), 97):
        for b in range(a, len(data), 131):
            conn = ServerConnection()
            got = []
            for piece in (data[:a], data[a:b], data[b:]):
                conn.receive_data(piece)
                got += drain(conn)
            check(got, messages)


def test_partial_frame_stays_buffered() -> None:
    data, _ = pipeline()
    conn = ServerConnection()
    conn.receive_data(data[:20])
    assert conn.next_request() is NEED_DATA
    assert conn.buffered == 20


def test_receive_buffer_reuse_is_safe() -> None:
    data, messages = pipeline()
    buf = bytearray(data)
    conn = ServerConnection()
    conn.receive_data(buf)
    buf[:] = b"\x00" * len(buf)  # a caller reusing its receive buffer
    check(drain(conn), messages)


def test_produce_records_are_writable_views_into_the_frame() -> None:
    conn = ServerConnection()
    conn.receive_data(frame(0, 9, produce(BATCH + BATCH), 1))
    request = conn.next_request()
    assert request is not NEED_DATA
    records = request.body.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview)
    assert not records.readonly
    frame_buffer = records.obj
    assert isinstance(frame_buffer, bytearray) and len(frame_buffer) == request.size
    batches = list(iter_batches(records))
    assert [b.data.obj is frame_buffer for b in batches] == [True, True]
    for batch in batches:
        batch.validate(verify_records=True)
        batch.stamp(500, 3)
    start = bytes(frame_buffer).index(bytes(records[12:40])) - 12
    assert struct.unpack_from(">q", frame_buffer, start)[0] == 500  # stamped in the frame itself
    for batch in iter_batches(records):
        batch.validate()


def test_fetch_response_buffers_are_not_copied() -> None:
    big = memoryview(bytearray(BATCH * 100))
    small = BATCH
    body = FetchResponse(
        throttle_time_ms=0,
        error_code=0,
        session_id=5,
        responses=[
            FetchableTopicResponse(
                topic="t",
                partitions=[
                    PartitionData(partition_index=0, high_watermark=10, records=big),
                    PartitionData(partition_index=1, high_watermark=10, records=(big, big)),
                    PartitionData(partition_index=2, high_watermark=10, records=small),
                    PartitionData(partition_index=3, high_watermark=10, records=None),
                ],
            )
        ],
    )
    for version in (4, 11, 12, 16):
        buffers = encode_response(1, version, 9, body)
        assert sum(1 for b in buffers if b is big) == 3
        joined = b"".join(buffers)
        assert struct.unpack_from(">i", joined)[0] == len(joined) - 4
        correlation_id, decoded = decode_response(1, version, joined[4:])
        assert correlation_id == 9
        parts = decoded.responses[0].partitions
        assert bytes(parts[0].records) == bytes(big)
        assert bytes(parts[1].records) == bytes(big) * 2
        assert bytes(parts[2].records) == small
        assert parts[3].records is None


def test_initial_size_limit_applies_before_the_first_request() -> None:
    conn = ServerConnection(max_request_size=10 << 20, initial_max_request_size=1 << 20)
    conn.receive_data(struct.pack(">i", 2 << 20))
    with pytest.raises(FrameTooLarge) as info:
        conn.next_request()
    assert (info.value.size, info.value.limit) == (2 << 20, 1 << 20)
    with pytest.raises(FrameTooLarge):  # the stream cannot be resynchronised
        conn.next_request()

    conn = ServerConnection(max_request_size=10 << 20, initial_max_request_size=1 << 20)
    conn.receive_data(frame(18, 3, ApiVersionsRequest("x", "1"), 1))
    assert conn.next_request() is not NEED_DATA
    big = frame(0, 9, produce(b"\x00" * (2 << 20)), 2)
    conn.receive_data(big)
    request = conn.next_request()
    assert request is not NEED_DATA and request.size == len(big) - 4
    conn.receive_data(struct.pack(">i", (10 << 20) + 1))
    with pytest.raises(FrameTooLarge):
        conn.next_request()


def test_http_and_tls_bytes_are_rejected_from_four_bytes() -> None:
    for junk in (b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        conn = ServerConnection()
        conn.receive_data(junk[:4])
        with pytest.raises(ProtocolError):
            conn.next_request()


def test_negative_size_is_rejected() -> None:
    conn = ServerConnection()
    conn.receive_data(struct.pack(">i", -2))
    with pytest.raises(FrameTooLarge, match="negative frame size -2"):
        conn.next_request()


def test_unknown_api_key_keeps_the_connection_in_sync() -> None:
    bogus = struct.pack(">hhih", 999, 0, 42, 1) + b"c" + b"body"
    data = struct.pack(">i", len(bogus)) + bogus + frame(18, 3, ApiVersionsRequest("x", "1"), 43)
    conn = ServerConnection()
    conn.receive_data(data)
    with pytest.raises(UnknownApiKey) as info:
        conn.next_request()
    assert (info.value.api_key, info.value.correlation_id, info.value.header.client_id) == (
        999,
        42,
        "c",
    )
    request = conn.next_request()
    assert request is not NEED_DATA and request.correlation_id == 43


def test_unsupported_api_versions_answered_with_v0_and_error_35() -> None:
    # A client newer than us sends ApiVersions v9 with a body we cannot know (KIP-511).
    future = struct.pack(">hhih", 18, 9, 77, 3) + b"cli" + b"\x00" + b"\x05hello\x00"
    conn = ServerConnection()
    conn.receive_data(struct.pack(">i", len(future)) + future)
    with pytest.raises(UnsupportedVersion) as info:
        conn.next_request()
    error = info.value
    assert (error.api_key, error.api_version, error.correlation_id) == (18, 9, 77)
    keys = [ApiVersion(k, lo, hi) for k, (lo, hi) in sorted(SUPPORTED_VERSIONS.items())]
    response = ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=keys)
    wire = b"".join(conn.encode_response(error.header, response))
    assert wire == b"".join(encode_response(18, 0, 77, response))
    # header v0 (no tagged fields) + an ApiVersionsResponse v0 body, as kio encodes it
    expected_body = kio_encode(
        KioApiVersionsResponse(
            error_code=KioErrorCode.unsupported_version,
            api_keys=tuple(
                KioApiVersion(
                    api_key=a.api_key, min_version=a.min_version, max_version=a.max_version
                )
                for a in keys
            ),
        )
    )
    assert wire == struct.pack(">ii", 4 + len(expected_body), 77) + expected_body


def _body(api_key: int, version: int, body: object) -> bytes:
    spec = API_SPECS[api_key]
    chunks: list = []
    last = spec.response_encoders[version - spec.min_version](body, bytearray(), chunks)
    return b"".join([*chunks, last])


def test_api_versions_response_always_has_header_v0() -> None:
    response = ApiVersionsResponse(
        error_code=0, api_keys=[ApiVersion(0, 0, 13)], throttle_time_ms=0
    )
    for version in range(5):
        wire = b"".join(encode_response(18, version, 5, response))
        assert wire[4:8] == struct.pack(">i", 5)
        assert wire[8:] == _body(18, version, response)  # no tagged-field byte, even for v3+
        _, decoded = decode_response(18, version, wire[4:])
        assert decoded.api_keys == response.api_keys
    # other flexible responses have header v1: a tagged-field byte after the correlation id
    metadata = populate(API_SPECS[3].response_class)
    wire = b"".join(encode_response(3, 12, 5, metadata))
    assert wire[8:] == b"\x00" + _body(3, 12, metadata)
    wire = b"".join(encode_response(3, 8, 5, metadata))
    assert wire[8:] == _body(3, 8, metadata)


def test_unsupported_version_of_other_apis() -> None:
    conn = ServerConnection()
    body = struct.pack(">hhih", 0, 99, 5, -1)
    conn.receive_data(struct.pack(">i", len(body)) + body)
    with pytest.raises(UnsupportedVersion) as info:
        conn.next_request()
    assert info.value.header.client_id is None


def test_advertised_versions_narrow_what_is_accepted() -> None:
    conn = ServerConnection(versions={18: (0, 3), 0: (3, 9)})
    conn.receive_data(frame(18, 4, ApiVersionsRequest(), 1))
    conn.receive_data(frame(0, 10, produce(), 2))
    conn.receive_data(frame(3, 1, MetadataRequest(), 3))
    conn.receive_data(frame(0, 9, produce(), 4))
    with pytest.raises(UnsupportedVersion) as info:
        conn.next_request()
    # ApiVersions v4 is known to the codec but not advertised: answered in v0 all the same
    wire = b"".join(conn.encode_response(info.value.header, ApiVersionsResponse(error_code=35)))
    assert wire == b"".join(encode_response(18, 0, 1, ApiVersionsResponse(error_code=35)))
    with pytest.raises(UnsupportedVersion):
        conn.next_request()
    with pytest.raises(UnknownApiKey):
        conn.next_request()
    request = conn.next_request()
    assert request is not NEED_DATA and request.api_version == 9


@pytest.mark.parametrize("client_id", ["", "producer-1", None, "ü" * 40])
def test_request_headers_match_kio(client_id: str | None) -> None:
    for version, flexible in ((3, False), (12, True)):
        wire = frame(3, version, MetadataRequest(), 7, client_id)
        kio_header = (KioHeaderV2 if flexible else KioHeaderV1)(
            request_api_key=3, request_api_version=version, correlation_id=7, client_id=client_id
        )
        header_bytes = kio_encode(kio_header)
        assert wire[4 : 4 + len(header_bytes)] == header_bytes
        # client_id is an int16-length string even in header v2
        n = -1 if client_id is None else len(client_id.encode())
        assert wire[12:14] == struct.pack(">h", n)
        assert decode_request(wire[4:]).client_id == client_id


def test_unknown_tagged_fields_are_skipped() -> None:
    plain = frame(0, 9, produce(), 1)[4:]
    tag = b"\x01" + bytes([100]) + b"\x03xyz"  # one tagged field, tag 100, 3 bytes
    # header v2's tags follow client_id "c": 2 + 2 + 4 + 2 + 1 bytes in
    with_header_tag = plain[:11] + tag + plain[12:]
    assert plain[11] == 0
    decoded = decode_request(with_header_tag).body
    assert decoded == produce()
    # the body's top-level tags are its last byte
    assert plain[-1] == 0
    assert decode_request(plain[:-1] + tag).body == produce()
    # a partition's tags: right after the records
    at = plain.index(BATCH) + len(BATCH)
    assert plain[at] == 0
    assert decode_request(plain[:at] + tag + plain[at + 1 :]).body == produce()
    # two tags in one section, one of which (tag 0 of a struct that has no tag 0) is unknown too
    two = b"\x02" + b"\x00\x01z" + b"\x7f\x02ab"
    assert decode_request(plain[:-1] + two).body == produce()


def test_huge_or_lying_tagged_fields_are_corrupt() -> None:
    plain = frame(0, 9, produce(), 1)[4:]
    for tags in (
        b"\x01\x05\xff\xff\xff\xff\x0f",  # a tag claiming 4 GiB
        b"\xff\xff\xff\xff\x0f",  # 4 billion tags
        b"\x01\x05\x80\x80\x80\x80\x80\x01",  # a size varint of 6 bytes
    ):
        with pytest.raises(CorruptFrame):
            decode_request(plain[:-1] + tags)


def test_client_and_server_connections_talk() -> None:
    client = ClientConnection("me")
    server = ServerConnection()
    wire = []
    for version in (0, 3, 4):
        _, buffers = client.send_request(18, version, ApiVersionsRequest("me", "1"))
        wire += buffers
    _, buffers = client.send_request(0, 9, ProduceRequest(acks=0, topic_data=[]))
    wire += buffers
    assert client.in_flight == 3
    server.receive_data(b"".join(wire))
    responses = []
    for request in drain(server):
        if request.api_key == 0:
            assert request.body.acks == 0
            continue
        body = ApiVersionsResponse(error_code=0, api_keys=[ApiVersion(18, 0, 4)])
        responses += server.encode_response(request, body)
    client.receive_data(b"".join(responses))
    got = []
    while (response := client.next_response()) is not NEED_DATA:
        got.append(response)
    assert [(r.api_version, r.correlation_id) for r in got] == [(0, 0), (3, 1), (4, 2)]
    assert all(r.body.api_keys == [ApiVersion(18, 0, 4)] for r in got)


def test_response_out_of_order_is_detected() -> None:
    client = ClientConnection()
    client.send_request(18, 0, ApiVersionsRequest())
    client.receive_data(b"".join(encode_response(18, 0, 12345, ApiVersionsResponse())))
    with pytest.raises(CorruptFrame, match="correlation id 12345"):
        client.next_response()


def test_every_request_version_decodes_through_the_connection() -> None:
    frames = request_frames()
    data = b"".join(struct.pack(">i", len(f)) + f for _, _, f in frames)
    conn = ServerConnection(initial_max_request_size=1 << 30)
    conn.receive_data(data)
    requests = drain(conn)
    assert [(r.api_key, r.api_version) for r in requests] == [(k, v) for k, v, _ in frames]
    for request in requests:
        spec = API_SPECS[request.api_key]
        assert isinstance(request.body, spec.request_class)
        assert request.client_id == "fuzz-client"
        again = b"".join(encode_request(request.header, request.body))[4:]
        assert decode_request(again).body == request.body


def test_populated_corpus_is_not_trivial() -> None:
    body = populate(API_SPECS[3].response_class)
    assert len(body.topics) == 2 and len(body.topics[0].partitions) == 2
    assert len(b"".join(encode_response(3, 12, 1, body))) > 250
