"""The Kafka server's own logic through the wire: idempotent produce, fetch (long poll, sessions,
limits), ListOffsets by timestamp, OffsetForLeaderEpoch, retention, pipelining order, shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sbtest.inprocess import AsyncKafkaClient, InProcessKafka, start_kafka, stop_kafka

from streambed.broker.domain import keys
from streambed.broker.protocol.errors import ErrorCode
from streambed.broker.protocol.messages import (
    api_versions,
    create_topics,
    delete_records,
    describe_configs,
    fetch,
    list_offsets,
    offset_for_leader_epoch,
    produce,
)
from streambed.broker.protocol.messages import metadata as md
from streambed.broker.protocol.records import Record, encode_batch, iter_batches
from streambed.core.metadata.api import Delete


async def create(client: AsyncKafkaClient, name: str, partitions: int = 1, **configs: str) -> None:
    body = await client.request(
        19,
        7,
        create_topics.CreateTopicsRequest(
            topics=[
                create_topics.CreatableTopic(
                    name,
                    partitions,
                    -1,
                    configs=[
                        create_topics.CreatableTopicConfig(k.replace("_", "."), v)
                        for k, v in configs.items()
                    ],
                )
            ]
        ),
    )
    assert body.topics[0].error_code == 0, body.topics[0]


def batch(
    n: int = 2,
    *,
    ts: int | None = None,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    size: int = 10,
) -> bytearray:
    return encode_batch(
        [Record(i, 0, b"k%d" % i, b"v" * size) for i in range(n)],
        base_timestamp=int(time.time() * 1000) if ts is None else ts,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


async def send(
    client: AsyncKafkaClient, topic: str, data: bytes | bytearray, partition: int = 0,
    acks: int = -1,
) -> Any:
    request = produce.ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            produce.TopicProduceData(
                name=topic,
                partition_data=[produce.PartitionProduceData(partition, memoryview(bytearray(data)))],
            )
        ],
    )
    if acks == 0:
        _, buffers = client.codec.send_request(0, 9, request)
        client.writer.writelines(buffers)
        await client.writer.drain()
        return None
    body = await client.request(0, 9, request)
    return body.responses[0].partition_responses[0]


def fetch_request(topic: str, offset: int, **kwargs: Any) -> fetch.FetchRequest:
    return fetch.FetchRequest(
        replica_id=-1,
        max_wait_ms=kwargs.pop("max_wait_ms", 0),
        min_bytes=kwargs.pop("min_bytes", 1),
        topics=[
            fetch.FetchTopic(
                topic=topic,
                partitions=[
                    fetch.FetchPartition(
                        partition=0,
                        fetch_offset=offset,
                        partition_max_bytes=kwargs.pop("partition_max_bytes", 1 << 20),
                    )
                ],
            )
        ],
        **kwargs,
    )


def records_of(partition: Any) -> list[int]:
    """Base offsets of the batches in a fetched partition."""
    if partition.records is None:
        return []
    data = b"".join(bytes(r) for r in partition.records) if isinstance(
        partition.records, list
    ) else bytes(partition.records)
    return [b.base_offset for b in iter_batches(memoryview(bytearray(data)))]


async def test_api_versions_advertises_exactly_the_served_apis(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    body = await client.request(18, 3, api_versions.ApiVersionsRequest("t", "1"))
    keys = {k.api_key for k in body.api_keys}
    assert keys == set(kafka.server.listener.handlers)  # type: ignore[union-attr]
    produce_range = next(k for k in body.api_keys if k.api_key == 0)
    assert produce_range.max_version >= 9
    await client.close()


async def test_idempotent_retry_gets_the_original_offset(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "idem")
    first = await send(client, "idem", batch(3, pid=7, epoch=0, seq=0))
    assert (first.error_code, first.base_offset) == (0, 0)
    retry = await send(client, "idem", batch(3, pid=7, epoch=0, seq=0))
    assert (retry.error_code, retry.base_offset) == (0, 0)
    gap = await send(client, "idem", batch(1, pid=7, epoch=0, seq=10))
    assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    nxt = await send(client, "idem", batch(1, pid=7, epoch=0, seq=3))
    assert (nxt.error_code, nxt.base_offset) == (0, 3)
    stale = await send(client, "idem", batch(1, pid=7, epoch=-1 + 0, seq=4))
    assert stale.error_code in (0, ErrorCode.INVALID_PRODUCER_EPOCH)
    await client.close()


async def test_producer_state_survives_a_restart(tmp_path: Path) -> None:
    name = "restart-producers"
    kafka = await start_kafka(tmp_path, name)
    client = await kafka.client()
    await create(client, "p")
    assert (await send(client, "p", batch(2, pid=9, epoch=0, seq=0))).base_offset == 0
    assert (await send(client, "p", batch(2, pid=9, epoch=0, seq=2))).base_offset == 2
    await client.close()
    await stop_kafka(kafka)
    kafka = await start_kafka(tmp_path, name)  # same in-memory media: a restart
    client = await kafka.client()
    retry = await send(client, "p", batch(2, pid=9, epoch=0, seq=2))
    assert (retry.error_code, retry.base_offset) == (0, 2), "a retry after restart duplicated"
    fresh = await send(client, "p", batch(1, pid=9, epoch=0, seq=4))
    assert (fresh.error_code, fresh.base_offset) == (0, 4)
    await client.close()
    await stop_kafka(kafka)


async def test_pipelined_produces_are_appended_in_request_order(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "order")
    for i in range(50):
        request = produce.ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=[
                produce.TopicProduceData(
                    name="order",
                    partition_data=[
                        produce.PartitionProduceData(
                            0, memoryview(batch(1, pid=5, epoch=0, seq=i))
                        )
                    ],
                )
            ],
        )
        _, buffers = client.codec.send_request(0, 9, request)
        client.writer.writelines(buffers)
    await client.writer.drain()
    offsets = []
    for _ in range(50):
        response = await client.response()
        part = response.body.responses[0].partition_responses[0]
        assert part.error_code == 0
        offsets.append(part.base_offset)
    assert offsets == list(range(50))
    await client.close()


async def test_acks_zero_gets_no_response_but_is_written(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "fire")
    await send(client, "fire", batch(2), acks=0)
    after = await send(client, "fire", batch(1))
    assert after.base_offset == 2  # the acks=0 batch went first; its response was skipped
    await client.close()


async def test_fetch_long_poll_wakes_on_produce(kafka: InProcessKafka) -> None:
    consumer = await kafka.client()
    producer = await kafka.client()
    await create(consumer, "poll")
    began = time.monotonic()
    pending = asyncio.create_task(
        consumer.request(1, 12, fetch_request("poll", 0, max_wait_ms=5000))
    )
    await asyncio.sleep(0.2)
    await send(producer, "poll", batch(2))
    body = await pending
    assert time.monotonic() - began < 3, "the fetch waited its full max wait"
    assert records_of(body.responses[0].partitions[0]) == [0]
    # Nothing new: waits about max_wait_ms and returns empty.
    began = time.monotonic()
    body = await consumer.request(1, 12, fetch_request("poll", 2, max_wait_ms=300))
    assert 0.25 < time.monotonic() - began < 3
    assert records_of(body.responses[0].partitions[0]) == []
    out_of_range = await consumer.request(1, 12, fetch_request("poll", 99))
    assert out_of_range.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    await consumer.close()
    await producer.close()


async def test_restart_and_fetch_from_inside_a_batch(tmp_path: Path) -> None:
    """After a restart the data lives in objects only: opening a partition of more than 4096
    offsets (its size is sampled from inside a batch) and fetching from inside a batch (where
    committed offsets usually are) both once spun the event loop forever."""
    kafka = await start_kafka(tmp_path, "inside")
    client = await kafka.client()
    await create(client, "tens")
    for _ in range(503):
        await send(client, "tens", batch(10))
    await client.close()
    await stop_kafka(kafka)
    kafka = await asyncio.wait_for(start_kafka(tmp_path, "inside"), 30)
    client = await kafka.client()
    for offset in (5, 2017, 5025):
        body = await asyncio.wait_for(client.request(1, 12, fetch_request("tens", offset)), 10)
        part = body.responses[0].partitions[0]
        assert part.error_code == 0
        assert records_of(part)[0] == offset - offset % 10
    await client.close()
    await stop_kafka(kafka)


async def test_fetch_waits_for_min_bytes_across_partitions_with_data(
    kafka: InProcessKafka,
) -> None:
    """fetch.min.bytes above what is there: the fetch waits (up to max_wait) for more data even
    when the partition already has some, and answers as soon as enough arrived (it answered at
    once with whatever was there)."""
    consumer = await kafka.client()
    producer = await kafka.client()
    await create(consumer, "minbytes")
    await send(producer, "minbytes", batch(1, size=100))
    began = time.monotonic()
    body = await consumer.request(1, 12, fetch_request("minbytes", 0, max_wait_ms=400,
                                                      min_bytes=50_000))
    waited = time.monotonic() - began
    assert records_of(body.responses[0].partitions[0]) == [0]
    assert 0.35 < waited < 3, f"answered after {waited:.2f} s"
    pending = asyncio.create_task(consumer.request(
        1, 12, fetch_request("minbytes", 0, max_wait_ms=10_000, min_bytes=50_000)))
    await asyncio.sleep(0.2)
    began = time.monotonic()
    await send(producer, "minbytes", batch(1, size=60_000))
    body = await pending
    assert time.monotonic() - began < 3, "min_bytes was reached but the fetch kept waiting"
    assert records_of(body.responses[0].partitions[0]) == [0, 1]
    await consumer.close()
    await producer.close()


async def test_a_connection_has_one_fetch_in_memory_at_a_time(tmp_path: Path) -> None:
    """Pipelined fetches whose answers are not read: one is handled at a time, each response
    capped by fetch.max.bytes (64 of them at once held gigabytes across a few connections); all
    are answered, in order, once the client reads."""
    kafka = await start_kafka(tmp_path, "fetch-memory", {"fetch.max.bytes": "350000"})
    client = await kafka.client()
    await create(client, "big")
    for _ in range(8):
        await send(client, "big", batch(1, size=100_000))
    listener = kafka.server.listener
    assert listener is not None
    real = listener.handlers[1]
    running = 0
    most = 0

    async def counting(ctx: Any, body: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.02)  # a fetch that takes a while (a long poll, a cold read)
            return await real(ctx, body)
        finally:
            running -= 1

    listener.handlers[1] = counting
    for _ in range(20):
        _, buffers = client.codec.send_request(1, 12, fetch_request(
            "big", 0, partition_max_bytes=50 << 20, max_bytes=50 << 20))
        client.writer.writelines(buffers)
    await client.writer.drain()
    await asyncio.sleep(0.5)
    assert most == 1
    for _ in range(20):
        part = (await client.response()).body.responses[0].partitions[0]
        assert records_of(part) == [0, 1, 2]  # 350 kB of ~100 kB batches: the cap, not 50 MiB
    await client.close()
    await stop_kafka(kafka)


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    """connections.max.idle.ms: a connection that sends nothing is closed; a busy one and one
    waiting for a long-poll fetch are not."""
    kafka = await start_kafka(tmp_path, "idle", {"connections.max.idle.ms": "400"})
    idle = await kafka.client()
    busy = await kafka.client()
    polling = await kafka.client()
    await create(busy, "idle-topic")
    await idle.request(18, 3, api_versions.ApiVersionsRequest("idle", "1"))
    pending = asyncio.create_task(polling.request(
        1, 12, fetch_request("idle-topic", 0, max_wait_ms=1500)))
    began = time.monotonic()
    while time.monotonic() - began < 1.2:
        await busy.request(18, 3, api_versions.ApiVersionsRequest("busy", "1"))
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(idle.reader.read(1), 5) == b""  # closed by the broker
    body = await pending  # the long poll was answered, not cut off
    assert body.responses[0].partitions[0].error_code == 0
    await busy.request(18, 3, api_versions.ApiVersionsRequest("busy", "1"))
    assert kafka.server.listener is not None and kafka.server.listener.idle_closed >= 1
    for client in (idle, busy, polling):
        await client.close()
    await stop_kafka(kafka)


async def test_fetch_respects_partition_max_bytes_but_returns_one_batch(
    kafka: InProcessKafka,
) -> None:
    client = await kafka.client()
    await create(client, "limits")
    for _ in range(5):
        await send(client, "limits", batch(1, size=1000))
    body = await client.request(1, 12, fetch_request("limits", 0, partition_max_bytes=10))
    assert records_of(body.responses[0].partitions[0]) == [0]
    body = await client.request(1, 12, fetch_request("limits", 0, partition_max_bytes=2500))
    assert records_of(body.responses[0].partitions[0]) == [0, 1]
    await client.close()


async def test_fetch_sessions_send_only_changes(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "sess")
    await send(client, "sess", batch(2))
    full = await client.request(1, 12, fetch_request("sess", 0, session_id=0, session_epoch=0))
    session = full.session_id
    assert session > 0
    assert records_of(full.responses[0].partitions[0]) == [0]
    # Incremental with the new position and nothing new: the partition is left out.
    quiet = await client.request(
        1, 12, fetch_request("sess", 2, session_id=session, session_epoch=1, min_bytes=0)
    )
    assert quiet.error_code == 0 and quiet.responses == []
    await send(client, "sess", batch(1))
    # Incremental naming no partition: the session remembers position 2, and data is there.
    more = await client.request(
        1, 12, fetch.FetchRequest(replica_id=-1, session_id=session, session_epoch=2,
                                  max_wait_ms=0, min_bytes=1)
    )
    assert records_of(more.responses[0].partitions[0]) == [2]
    stale = await client.request(
        1, 12, fetch_request("sess", 3, session_id=session, session_epoch=2)
    )
    assert stale.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    unknown = await client.request(
        1, 12, fetch_request("sess", 3, session_id=session + 1, session_epoch=1)
    )
    assert unknown.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    await client.close()


async def test_list_offsets_by_timestamp_and_max_timestamp(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "times")
    for i, ts in enumerate([1000, 2000, 3000]):
        assert (await send(client, "times", batch(2, ts=ts))).base_offset == 2 * i

    async def lookup(timestamp: int) -> tuple[int, int]:
        body = await client.request(
            2,
            8,
            list_offsets.ListOffsetsRequest(
                replica_id=-1,
                topics=[
                    list_offsets.ListOffsetsTopic(
                        "times", [list_offsets.ListOffsetsPartition(0, -1, timestamp)]
                    )
                ],
            ),
        )
        p = body.topics[0].partitions[0]
        return p.offset, p.timestamp

    assert await lookup(-2) == (0, -1)
    assert await lookup(-1) == (6, -1)
    assert await lookup(-4) == (0, -1)  # EARLIEST_LOCAL: the log start
    assert await lookup(-5) == (-1, -1)  # LATEST_TIERED: none, as Kafka without tiering
    assert await lookup(-6) == (-1, -1)  # EARLIEST_PENDING_UPLOAD: likewise
    assert await lookup(1500) == (2, 2000)
    assert await lookup(2000) == (2, 2000)
    assert await lookup(9999) == (-1, -1)
    assert await lookup(-3) == (4, 3000)
    await client.close()


async def list_offset(client: AsyncKafkaClient, topic: str, timestamp: int) -> tuple[int, int]:
    body = await client.request(
        2,
        8,
        list_offsets.ListOffsetsRequest(
            replica_id=-1,
            topics=[
                list_offsets.ListOffsetsTopic(
                    topic, [list_offsets.ListOffsetsPartition(0, -1, timestamp)]
                )
            ],
        ),
    )
    p = body.topics[0].partitions[0]
    assert p.error_code == 0
    return p.offset, p.timestamp


async def test_time_lookups_across_a_restart_and_record_deletion(tmp_path: Path) -> None:
    """The time index covers what a broker appended and is saved in the metadata store; after a
    restart the saved copy plus a scan of the few batches after it cover the old part. Without a
    copy the old part is indexed on the first lookup. Deleting the record with the maximum
    timestamp moves MAX_TIMESTAMP."""
    kafka = await start_kafka(tmp_path, "time-index")
    client = await kafka.client()
    await create(client, "clock")
    # Out of order on purpose: 400 batches of 2 records, timestamps rising, one far-future batch.
    stamps = [10_000 + 10 * i for i in range(400)]
    stamps[250] = 99_999
    first = kafka.server.services.partitions.lookup("clock", 0)
    assert not isinstance(first, int)
    first.time_index.interval_bytes = 20_000  # an entry every few batches
    for ts in stamps[:300]:
        await send(client, "clock", batch(2, ts=ts, size=2000))
    before = first.time_index.entries()
    assert len(before) > 5
    await client.close()
    await stop_kafka(kafka)  # saves the index

    kafka = await start_kafka(tmp_path, "time-index")  # same in-memory media: a restart
    client = await kafka.client()
    partition = kafka.server.services.partitions.lookup("clock", 0)
    assert not isinstance(partition, int)
    assert partition.time_index.covered_from == 0  # the saved copy covers the old part
    assert partition.time_index.entries() == before
    for ts in stamps[300:]:
        await send(client, "clock", batch(2, ts=ts, size=2000))

    async def check_lookups() -> None:
        assert await list_offset(client, "clock", 10_000) == (0, 10_000)
        assert await list_offset(client, "clock", 10_995) == (200, 11_000)
        assert await list_offset(client, "clock", 13_000) == (500, 99_999)  # the future batch
        assert await list_offset(client, "clock", 100_000) == (-1, -1)
        assert await list_offset(client, "clock", -3) == (500, 99_999)
        for at in (0, 250, 500, 610, 798):
            expected = next((2 * i, ts) for i, ts in enumerate(stamps) if ts >= stamps[at // 2])
            assert await list_offset(client, "clock", stamps[at // 2]) == expected

    await check_lookups()
    await client.close()
    # Without a saved copy (a broker from before copies were saved, or a lost key) the old part
    # is indexed by a scan on the first lookup.
    stream_id = partition.stream_id
    await kafka.server.store.txn([], [Delete(keys.time_index_key(stream_id))])
    kafka.server.services.partitions.time_indexes = None  # nothing saved at close
    await stop_kafka(kafka)
    kafka = await start_kafka(tmp_path, "time-index")
    client = await kafka.client()
    partition = kafka.server.services.partitions.lookup("clock", 0)
    assert not isinstance(partition, int)
    assert partition.time_index.covered_from == 800  # only what this broker appends
    await check_lookups()
    assert partition.time_index.covered_from == 0  # the older part was indexed once
    # Delete up to past the far-future batch: the maximum is the newest batch's now.
    body = await client.request(21, 2, delete_records.DeleteRecordsRequest(
        topics=[delete_records.DeleteRecordsTopic("clock", [
            delete_records.DeleteRecordsPartition(0, 502)])], timeout_ms=5000))
    assert body.topics[0].partitions[0].error_code == 0
    assert await list_offset(client, "clock", -3) == (798, stamps[-1])
    assert await list_offset(client, "clock", 0) == (502, stamps[251])
    await client.close()
    await stop_kafka(kafka)
    # The copy saved at that close starts at the new log start's batch; it is used again.
    kafka = await start_kafka(tmp_path, "time-index")
    partition = kafka.server.services.partitions.lookup("clock", 0)
    assert not isinstance(partition, int)
    assert partition.time_index.covered_from <= 502
    client = await kafka.client()
    assert await list_offset(client, "clock", 0) == (502, stamps[251])
    assert await list_offset(client, "clock", -3) == (798, stamps[-1])
    await client.close()
    await stop_kafka(kafka)


async def test_deleting_a_topic_removes_its_saved_state(tmp_path: Path) -> None:
    """A topic's producer snapshots and saved time indexes are keyed by stream id and go with
    it: a new topic must never meet them."""
    kafka = await start_kafka(tmp_path, "saved-state")
    client = await kafka.client()
    await create(client, "gone")
    await send(client, "gone", batch(2, pid=4, epoch=0, seq=0, ts=5_000))
    await client.close()
    partition = kafka.server.services.partitions.lookup("gone", 0)
    assert not isinstance(partition, int)
    stream_id = partition.stream_id
    await kafka.server.services.partitions.save_snapshots()
    store = kafka.server.store
    saved = [keys.time_index_key(stream_id), keys.producer_state_key(stream_id)]
    for key in saved:
        assert await store.get(key) is not None, key
    await kafka.server.services.partitions.delete_topic("gone")
    deadline = time.monotonic() + 10
    while any([await store.get(key) is not None for key in saved]):
        assert time.monotonic() < deadline, "saved state outlived its topic"
        await asyncio.sleep(0.05)
    await stop_kafka(kafka)


async def test_broker_settings_show_as_kafka_configs(tmp_path: Path) -> None:
    """``broker.num_partitions`` and ``broker.auto_create_topics`` are what DescribeConfigs
    reports as num.partitions / auto.create.topics.enable, and a topic created without a
    partition count gets num.partitions, as in Kafka."""
    kafka = await start_kafka(tmp_path, "settings", broker={"num_partitions": 3,
                                                            "auto_create_topics": False})
    client = await kafka.client()
    body = await client.request(32, 4, describe_configs.DescribeConfigsRequest(
        resources=[describe_configs.DescribeConfigsResource(
            4, "1", ["num.partitions", "auto.create.topics.enable", "socket.request.max.bytes"])]))
    found = {c.name: (c.value, c.config_source) for c in body.results[0].configs}
    assert found["num.partitions"] == ("3", 4)  # STATIC_BROKER_CONFIG
    assert found["auto.create.topics.enable"] == ("false", 4)
    assert found["socket.request.max.bytes"] == ("104857600", 5)  # DEFAULT: not changed
    await create(client, "defaulted", partitions=-1)
    partition = kafka.server.services.partitions.lookup("defaulted", 2)
    assert not isinstance(partition, int)
    await client.close()
    await stop_kafka(kafka)


async def test_offset_for_leader_epoch(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "epochs")
    await send(client, "epochs", batch(3))
    body = await client.request(
        23,
        4,
        offset_for_leader_epoch.OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[
                offset_for_leader_epoch.OffsetForLeaderTopic(
                    "epochs", [offset_for_leader_epoch.OffsetForLeaderPartition(0, 0, 0)]
                )
            ],
        ),
    )
    answer = body.topics[0].partitions[0]
    assert (answer.error_code, answer.leader_epoch, answer.end_offset) == (0, 0, 3)
    await client.close()


async def test_retention_by_time_and_size(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    now = int(time.time() * 1000)
    await create(client, "old", retention_ms="60000")
    await send(client, "old", batch(2, ts=now - 3_600_000))
    await send(client, "old", batch(2, ts=now - 3_600_000))
    await send(client, "old", batch(2, ts=now))
    await create(client, "big", retention_bytes="3000")
    for _ in range(10):
        await send(client, "big", batch(1, size=1000))
    await kafka.server.services.partitions.enforce_retention()  # type: ignore[union-attr]
    partitions = kafka.server.services.partitions  # type: ignore[union-attr]
    old = partitions.get("old", 0)
    big = partitions.get("big", 0)
    assert old is not None and big is not None
    assert old.log_start_offset == 4
    assert big.log_start_offset in (7, 8), big.log_start_offset
    assert big.size_bytes >= 2000
    body = await client.request(1, 12, fetch_request("old", 0))
    assert body.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert body.responses[0].partitions[0].log_start_offset == 4
    await client.close()


async def test_graceful_shutdown_answers_in_flight_requests(tmp_path: Path) -> None:
    kafka = await start_kafka(tmp_path, "shutdown")
    client = await kafka.client()
    await create(client, "drain")
    waiting = asyncio.create_task(
        client.request(1, 12, fetch_request("drain", 0, max_wait_ms=1500))
    )
    await asyncio.sleep(0.2)
    began = time.monotonic()
    await stop_kafka(kafka)
    body = await waiting
    assert body.responses[0].partitions[0].error_code == 0
    assert time.monotonic() - began < 10
    await client.close()


async def test_unknown_topics_and_stale_epochs_get_error_codes(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "known")
    offsets = await client.request(
        2,
        8,
        list_offsets.ListOffsetsRequest(
            replica_id=-1,
            topics=[
                list_offsets.ListOffsetsTopic("nope", [list_offsets.ListOffsetsPartition(0, -1, -1)]),
                list_offsets.ListOffsetsTopic(
                    "known",
                    [
                        list_offsets.ListOffsetsPartition(5, -1, -1),
                        list_offsets.ListOffsetsPartition(0, 3, -1),
                    ],
                ),
            ],
        ),
    )
    assert offsets.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert [p.error_code for p in offsets.topics[1].partitions] == [
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
    ]
    epochs = await client.request(
        23,
        4,
        offset_for_leader_epoch.OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[
                offset_for_leader_epoch.OffsetForLeaderTopic(
                    "nope", [offset_for_leader_epoch.OffsetForLeaderPartition(0, 0, 0)]
                )
            ],
        ),
    )
    assert epochs.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    answer = await send(client, "nope", batch(1))
    assert answer.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    body = await client.request(1, 12, fetch_request("nope", 0))
    assert body.responses[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    await client.close()


async def test_metadata_all_topics_in_v0_and_v12(kafka: InProcessKafka) -> None:
    client = await kafka.client()
    await create(client, "listed")
    v0 = await client.request(3, 0, md.MetadataRequest(topics=[]))
    assert [t.name for t in v0.topics] == ["listed"]
    none = await client.request(3, 12, md.MetadataRequest(topics=[]))
    assert none.topics == []
    every = await client.request(3, 12, md.MetadataRequest(topics=None))
    assert [t.name for t in every.topics] == ["listed"]
    assert every.brokers[0].port == kafka.port
    assert every.cluster_id and every.controller_id == 1
    await client.close()


async def test_config_changes_reach_open_partitions(kafka: InProcessKafka) -> None:
    """max.message.bytes set on the topic, and then on the broker (which the topic inherits
    once its own override is gone), applies to the next produce at once."""
    from streambed.broker.protocol.messages import incremental_alter_configs as iac

    client = await kafka.client()
    await create(client, "sized")
    assert (await send(client, "sized", batch(1, size=5000))).error_code == 0

    async def alter(resource_type: int, name: str, key: str, op: int, value: str | None) -> None:
        body = await client.request(
            44,
            1,
            iac.IncrementalAlterConfigsRequest(
                [iac.AlterConfigsResource(resource_type, name, [iac.AlterableConfig(key, op, value)])]
            ),
        )
        assert body.responses[0].error_code == 0, body.responses[0]

    await alter(2, "sized", "max.message.bytes", 0, "2000")  # topic, SET
    assert (await send(client, "sized", batch(1, size=5000))).error_code == (
        ErrorCode.MESSAGE_TOO_LARGE
    )
    await alter(2, "sized", "max.message.bytes", 1, None)  # topic, DELETE: back to the default
    assert (await send(client, "sized", batch(1, size=5000))).error_code == 0
    await alter(4, "1", "message.max.bytes", 0, "3000")  # broker: topics default to it
    assert (await send(client, "sized", batch(1, size=5000))).error_code == (
        ErrorCode.MESSAGE_TOO_LARGE
    )
    await client.close()
