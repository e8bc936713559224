"""Old non-flexible versions against a second independent encoder: aiokafka's protocol module.

Produce v0-2 are not in kio (Kafka 4 dropped them from its schemas) but the broker advertises Produce
from v0 as Kafka 4.x does, so their layout is checked here byte for byte.
"""

from __future__ import annotations

from aiokafka.protocol import metadata as aio_metadata
from aiokafka.protocol import produce as aio_produce
from hypothesis import given, settings
from hypothesis import strategies as st

from streambed.broker.protocol.messages import API_SPECS
from streambed.broker.protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from streambed.broker.protocol.messages.produce import (
    PartitionProduceData,
    PartitionProduceResponse,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
    TopicProduceResponse,
)

int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
names = st.text(max_size=10)


def _codec(api_key: int, version: int, direction: str):  # type: ignore[no-untyped-def]
    spec = API_SPECS[api_key]
    i = version - spec.min_version
    if direction == "request":
        return spec.request_encoders[i], spec.request_decoders[i]
    return spec.response_encoders[i], spec.response_decoders[i]


def _encode(encoder, message) -> bytes:  # type: ignore[no-untyped-def]
    chunks: list = []
    last = encoder(message, bytearray(), chunks)
    return b"".join([*chunks, last])


topics_in = st.lists(
    st.tuples(names, st.lists(st.tuples(int32, st.none() | st.binary(max_size=2000)), max_size=3)),
    max_size=3,
)


@settings(max_examples=60, deadline=None, database=None)
@given(
    version=st.integers(0, 8), acks=int16, timeout=int32, topics=topics_in, txn=st.none() | names
)
def test_produce_requests_match_aiokafka(version, acks, timeout, topics, txn) -> None:  # type: ignore[no-untyped-def]
    cls = getattr(aio_produce, f"ProduceRequest_v{version}")
    if version >= 3:
        theirs = cls(txn, acks, timeout, topics).encode()
    else:
        txn = None
        theirs = cls(acks, timeout, topics).encode()
    ours = ProduceRequest(
        transactional_id=txn,
        acks=acks,
        timeout_ms=timeout,
        topic_data=[
            TopicProduceData(name=t, partition_data=[PartitionProduceData(p, r) for p, r in parts])
            for t, parts in topics
        ],
    )
    encoder, decoder = _codec(0, version, "request")
    assert _encode(encoder, ours) == theirs
    decoded, end = decoder(memoryview(theirs), 0)
    assert end == len(theirs)
    assert decoded == ours


partitions_out = st.lists(st.tuples(int32, int16, int64, int64, int64), max_size=3)


@settings(max_examples=60, deadline=None, database=None)
@given(
    version=st.integers(0, 7),
    throttle=int32,
    topics=st.lists(st.tuples(names, partitions_out), max_size=3),
)
def test_produce_responses_match_aiokafka(version, throttle, topics) -> None:  # type: ignore[no-untyped-def]
    def fields(p):  # type: ignore[no-untyped-def]
        index, error, offset, append_time, start = p
        return (
            index,
            error,
            offset,
            *((append_time,) if version >= 2 else ()),
            *((start,) if version >= 5 else ()),
        )

    their_topics = [(t, [fields(p) for p in parts]) for t, parts in topics]
    cls = getattr(aio_produce, f"ProduceResponse_v{version}")
    theirs = (cls(their_topics) if version == 0 else cls(their_topics, throttle)).encode()
    ours = ProduceResponse(
        throttle_time_ms=throttle if version >= 1 else 0,
        responses=[
            TopicProduceResponse(
                name=t,
                partition_responses=[
                    PartitionProduceResponse(
                        index=p[0],
                        error_code=p[1],
                        base_offset=p[2],
                        log_append_time_ms=p[3] if version >= 2 else -1,
                        log_start_offset=p[4] if version >= 5 else -1,
                    )
                    for p in parts
                ],
            )
            for t, parts in topics
        ],
    )
    encoder, decoder = _codec(0, version, "response")
    assert _encode(encoder, ours) == theirs
    decoded, _ = decoder(memoryview(theirs), 0)
    assert decoded == ours


@settings(max_examples=40, deadline=None, database=None)
@given(
    version=st.integers(0, 5), topics=st.none() | st.lists(names, max_size=4), auto=st.booleans()
)
def test_metadata_requests_match_aiokafka(version, topics, auto) -> None:  # type: ignore[no-untyped-def]
    if version == 0 and topics is None:
        topics = []  # v0 cannot say null: the empty list means "all topics"
    cls = getattr(aio_metadata, f"MetadataRequest_v{version}")
    theirs = (cls(topics, auto) if version >= 4 else cls(topics)).encode()
    ours = MetadataRequest(
        topics=None if topics is None else [MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=auto if version >= 4 else True,
    )
    encoder, decoder = _codec(3, version, "request")
    assert _encode(encoder, ours) == theirs
    decoded, _ = decoder(memoryview(theirs), 0)
    assert decoded == ours
