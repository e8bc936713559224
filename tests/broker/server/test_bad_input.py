"""Bad input against a real broker process: each case gets Kafka's error code or closes that one
connection, writes nothing, and the broker keeps serving everyone else."""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zstandard
from sbtest.broker import BrokerProcess

from streambed.broker.protocol.connection import NEED_DATA, ClientConnection, Response
from streambed.broker.protocol.errors import ErrorCode
from streambed.broker.protocol.messages import api_versions, create_topics, list_offsets, produce
from streambed.broker.protocol.messages import metadata as md
from streambed.broker.protocol.records import Compression, Record, encode_batch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class RawClient:
    """A blocking Kafka connection speaking through the codec (or raw bytes)."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.codec = ClientConnection("bad-input-test")

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, api_key: int, version: int, body: Any) -> Response:
        _, buffers = self.codec.send_request(api_key, version, body)
        self.sock.sendall(b"".join(bytes(b) for b in buffers))
        return self.response()

    def response(self) -> Response:
        while True:
            got = self.codec.next_response()
            if got is not NEED_DATA:
                assert isinstance(got, Response)
                return got
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed by the broker")
            self.codec.receive_data(data)

    def closed_by_peer(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


@pytest.fixture(scope="module")
def kafka(module_broker: BrokerProcess) -> Iterator[BrokerProcess]:
    client = RawClient(module_broker.bootstrap)
    response = client.request(
        19,
        7,
        create_topics.CreateTopicsRequest(
            topics=[
                create_topics.CreatableTopic("bad", 1, -1),
                create_topics.CreatableTopic(
                    "small",
                    1,
                    -1,
                    configs=[create_topics.CreatableTopicConfig("max.message.bytes", "2000")],
                ),
            ],
            timeout_ms=10_000,
        ),
    )
    assert [t.error_code for t in response.body.topics] == [0, 0]
    client.close()
    yield module_broker


def still_serving(broker: BrokerProcess) -> None:
    client = RawClient(broker.bootstrap)
    response = client.request(3, 12, md.MetadataRequest(topics=None))
    client.close()
    assert response.body.brokers, "the broker stopped serving after bad input"


def high_watermark(broker: BrokerProcess, topic: str) -> int:
    client = RawClient(broker.bootstrap)
    response = client.request(
        2,
        7,
        list_offsets.ListOffsetsRequest(
            replica_id=-1,
            topics=[
                list_offsets.ListOffsetsTopic(
                    topic, [list_offsets.ListOffsetsPartition(0, -1, -1)]
                )
            ],
        ),
    )
    client.close()
    return int(response.body.topics[0].partitions[0].offset)


def produce_raw(broker: BrokerProcess, topic: str, records: bytes | bytearray) -> Any:
    client = RawClient(broker.bootstrap)
    response = client.request(
        0,
        9,
        produce.ProduceRequest(
            acks=-1,
            timeout_ms=10_000,
            topic_data=[
                produce.TopicProduceData(
                    name=topic,
                    partition_data=[produce.PartitionProduceData(0, memoryview(bytes(records)))],
                )
            ],
        ),
    )
    client.close()
    return response.body.responses[0].partition_responses[0]


def batch(n: int = 3, size: int = 10, compression: Compression = Compression.NONE) -> bytearray:
    return encode_batch(
        [Record(i, i, b"k", b"v" * size) for i in range(n)],
        base_timestamp=int(time.time() * 1000),
        compression=compression,
    )


def test_valid_produce_is_accepted(kafka: BrokerProcess) -> None:
    before = high_watermark(kafka, "bad")
    answer = produce_raw(kafka, "bad", batch())
    assert answer.error_code == 0
    assert answer.base_offset == before
    assert high_watermark(kafka, "bad") == before + 3


def test_corrupt_crc_is_refused_and_nothing_written(kafka: BrokerProcess) -> None:
    before = high_watermark(kafka, "bad")
    data = batch()
    data[-1] ^= 0xFF
    answer = produce_raw(kafka, "bad", data)
    assert answer.error_code == ErrorCode.CORRUPT_MESSAGE
    assert high_watermark(kafka, "bad") == before
    still_serving(kafka)


def test_batch_over_max_message_bytes_is_refused(kafka: BrokerProcess) -> None:
    before = high_watermark(kafka, "small")
    answer = produce_raw(kafka, "small", batch(n=1, size=5000))
    assert answer.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert high_watermark(kafka, "small") == before


def test_decompression_bomb_is_refused(kafka: BrokerProcess) -> None:
    """A tiny zstd batch whose records would decompress to far more than any limit."""
    before = high_watermark(kafka, "bad")
    section = zstandard.ZstdCompressor().compress(b"\x00" * (300 << 20))
    data = bytearray(batch(compression=Compression.ZSTD))
    header = data[:61]
    forged = bytearray(header) + section
    struct.pack_into(">i", forged, 8, len(forged) - 12)
    from streambed.broker.protocol.records import crc32c

    struct.pack_into(">I", forged, 17, crc32c(memoryview(forged)[21:]))
    answer = produce_raw(kafka, "bad", forged)
    assert answer.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert "decompress" in answer.error_message
    assert high_watermark(kafka, "bad") == before
    still_serving(kafka)


def test_lying_record_count_is_refused(kafka: BrokerProcess) -> None:
    before = high_watermark(kafka, "bad")
    data = batch(n=3)
    struct.pack_into(">i", data, 23, 9)  # lastOffsetDelta says 10 records
    struct.pack_into(">i", data, 57, 10)
    from streambed.broker.protocol.records import crc32c

    struct.pack_into(">I", data, 17, crc32c(memoryview(data)[21:]))
    answer = produce_raw(kafka, "bad", data)
    assert answer.error_code in (ErrorCode.INVALID_RECORD, ErrorCode.CORRUPT_MESSAGE)
    assert high_watermark(kafka, "bad") == before


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # announces a ~1.2 GB frame
        struct.pack(">i", 2 << 20) + b"\x00" * 100,  # over the pre-ApiVersions limit
        struct.pack(">i", -5),
        struct.pack(">i", 8) + struct.pack(">hhi", 999, 0, 1),  # unknown API key
        struct.pack(">i", 10) + struct.pack(">hhi", 3, 12, 7) + b"\xff\xff",  # truncated
    ],
    ids=["http", "oversized", "negative", "unknown-api", "truncated"],
)
def test_garbage_closes_only_that_connection(kafka: BrokerProcess, garbage: bytes) -> None:
    bystander = RawClient(kafka.bootstrap)
    bystander.request(18, 3, api_versions.ApiVersionsRequest("t", "1"))
    client = RawClient(kafka.bootstrap)
    client.send_raw(garbage)
    assert client.closed_by_peer(), "the broker kept a connection that sent garbage"
    client.close()
    response = bystander.request(3, 12, md.MetadataRequest(topics=None))
    assert response.body.brokers
    bystander.close()


def test_api_versions_of_an_unknown_version_answers_v0_with_the_list(
    kafka: BrokerProcess,
) -> None:
    client = RawClient(kafka.bootstrap)
    header = struct.pack(">hhi", 18, 99, 42) + struct.pack(">h", 1) + b"x"
    client.send_raw(struct.pack(">i", len(header)) + header)
    frame = b""
    while len(frame) < 4 or len(frame) < 4 + struct.unpack(">i", frame[:4])[0]:
        frame += client.sock.recv(65536)
    correlation, error = struct.unpack(">ih", frame[4:10])
    assert correlation == 42
    assert error == ErrorCode.UNSUPPORTED_VERSION
    (count,) = struct.unpack(">i", frame[10:14])
    keys = {struct.unpack(">h", frame[14 + 6 * i : 16 + 6 * i])[0] for i in range(count)}
    assert {0, 1, 3, 18} <= keys
    client.close()


def test_mutated_produce_frames_never_hurt_the_broker(kafka: BrokerProcess) -> None:
    """Random byte flips in valid produce frames: each gets an answer or a closed connection."""
    codec = ClientConnection("fuzz")
    _, buffers = codec.send_request(
        0,
        9,
        produce.ProduceRequest(
            acks=-1,
            timeout_ms=1000,
            topic_data=[
                produce.TopicProduceData(
                    name="bad",
                    partition_data=[produce.PartitionProduceData(0, memoryview(bytes(batch())))],
                )
            ],
        ),
    )
    frame = bytearray(b"".join(bytes(b) for b in buffers))
    rng = random.Random(1234)
    before = high_watermark(kafka, "bad")
    accepted = 0
    for _ in range(60):
        mutated = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(4, len(mutated))  # keep the size prefix honest
            mutated[position] = rng.randrange(256)
        client = RawClient(kafka.bootstrap)
        client.send_raw(bytes(mutated))
        client.sock.settimeout(5)
        try:
            data = client.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            data = b""
        client.close()
        if data:
            accepted += 1
    still_serving(kafka)
    # Only batches that still pass the CRC could have been written; a flip in the header before
    # the CRC'd range (offset, length, leader epoch) does not change what the broker stores.
    assert high_watermark(kafka, "bad") - before <= 3 * 60
    assert accepted >= 0
