"""Real Kafka clients against a real broker process: kafka-python, aiokafka, confluent-kafka
(librdkafka) and Debian's kcat. Every test produces with a compression codec and verifies every
record it reads back."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sbtest.broker import BrokerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 500
_ids = itertools.count()


def topic_name(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def expected(n: int = N) -> list[tuple[bytes, bytes]]:
    return [(b"key-%d" % i, b"value-%d-" % i + b"x" * (i % 200)) for i in range(n)]


# -- kafka-python ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trip(module_broker: BrokerProcess, codec: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = topic_name(f"kp-{codec}")
    producer = KafkaProducer(
        bootstrap_servers=module_broker.bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    futures = [producer.send(topic, key=k, value=v) for k, v in expected()]
    producer.flush(30)
    offsets = [f.get(10).offset for f in futures]
    producer.close()
    assert offsets == list(range(N))
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=module_broker.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"g-{topic}",
        consumer_timeout_ms=10_000,
    )
    got = [(m.key, m.value, m.offset) for m in itertools.islice(consumer, N)]
    consumer.commit()
    consumer.close()
    assert [(k, v) for k, v, _ in got] == expected()
    assert [o for _, _, o in got] == list(range(N))


# -- aiokafka --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
async def test_aiokafka_round_trip(module_broker: BrokerProcess, codec: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = topic_name(f"aio-{codec}")
    producer = AIOKafkaProducer(
        bootstrap_servers=module_broker.bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=None if codec == "none" else codec,
    )
    await producer.start()
    try:
        sends = [await producer.send(topic, key=k, value=v) for k, v in expected()]
        metas = await asyncio.gather(*sends)
    finally:
        await producer.stop()
    assert [m.offset for m in metas] == list(range(N))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=module_broker.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"g-{topic}",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < N and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                got.extend((r.key, r.value) for r in records)  # type: ignore[misc]
        await consumer.commit()
        committed = await consumer.committed(next(iter(consumer.assignment())))
    finally:
        await consumer.stop()
    assert got == expected()
    assert committed == N


# -- confluent-kafka (librdkafka) ------------------------------------------------------------


def _confluent_consume(
    bootstrap: str, topic: str, group: str, n: int, timeout: float = 30
) -> list[tuple[bytes | None, bytes | None, int]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes | None, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append((message.key(), message.value(), message.offset()))
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_round_trip(module_broker: BrokerProcess, codec: str) -> None:
    from confluent_kafka import Producer

    topic = topic_name(f"ck-{codec}")
    producer = Producer(
        {
            "bootstrap.servers": module_broker.bootstrap,
            "compression.type": codec,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    delivered: list[int] = []

    def on_delivery(err: Any, message: Any) -> None:
        assert err is None, err
        delivered.append(message.offset())

    for k, v in expected():
        producer.produce(topic, key=k, value=v, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert sorted(delivered) == list(range(N))
    got = _confluent_consume(module_broker.bootstrap, topic, f"g-{topic}", N)
    assert [(k, v) for k, v, _ in got] == expected()


# -- kcat (Debian, librdkafka 2.0) -----------------------------------------------------------


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        import os

        if os.environ.get("CI"):
            raise RuntimeError("kcat is not installed (scripts/system-deps installs it)")
        pytest.skip("kcat is not installed")
    return path


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_round_trip(module_broker: BrokerProcess, kcat: str, codec: str) -> None:
    topic = topic_name(f"kcat-{codec}")
    lines = [f"k{i}:line {i} " + "y" * (i % 100) for i in range(N)]
    produced = subprocess.run(
        [kcat, "-b", module_broker.bootstrap, "-P", "-t", topic, "-K:", "-z", codec,
         "-X", "acks=all"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr + module_broker.log_tail()
    consumed = subprocess.run(
        [kcat, "-b", module_broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
         "-c", str(N), "-f", "%k:%s %o\n"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert consumed.returncode == 0, consumed.stderr + module_broker.log_tail()
    assert consumed.stdout.splitlines() == [f"{line} {i}" for i, line in enumerate(lines)]
    listing = subprocess.run(
        [kcat, "-b", module_broker.bootstrap, "-L", "-t", topic],
        capture_output=True, text=True, timeout=30,
    )
    assert f'topic "{topic}" with 1 partitions' in listing.stdout, listing.stdout


# -- consumer groups -------------------------------------------------------------------------


def test_group_rebalances_without_losing_or_repeating_committed_records(
    module_broker: BrokerProcess,
) -> None:
    """Three librdkafka consumers in one group; members join and leave while records flow.
    Each member commits synchronously after processing, so across the group every record is
    processed, and none twice except what a member processed after its last commit."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = topic_name("grp")
    subprocess_free_create(module_broker, topic, 6)
    group = f"g-{topic}"
    total = 3000
    producer = Producer({"bootstrap.servers": module_broker.bootstrap, "linger.ms": 2})
    for i in range(total):
        producer.produce(topic, key=b"%d" % (i % 50), value=b"%d" % i)
    assert producer.flush(30) == 0

    def member() -> Any:
        consumer = Consumer(
            {
                "bootstrap.servers": module_broker.bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 500,
            }
        )
        consumer.subscribe([topic])
        return consumer

    seen: list[int] = []
    members = [member()]

    def pump(rounds: int) -> None:
        for _ in range(rounds):
            for consumer in members:
                message = consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                seen.append(int(message.value()))
                consumer.commit(message=message, asynchronous=False)

    pump(40)
    members.append(member())
    pump(40)
    members.append(member())
    pump(40)
    members.pop(0).close()  # leaves the group: its partitions move
    pump(40)
    deadline = time.monotonic() + 60
    while len(set(seen)) < total and time.monotonic() < deadline:
        pump(10)
    assert sorted(set(seen)) == list(range(total))
    assert len(seen) == total, "a record was processed twice although its offset was committed"
    committed = members[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    for consumer in members:
        consumer.close()
    assert sum(tp.offset for tp in committed) == total


def subprocess_free_create(broker: BrokerProcess, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(30)


# -- admin through librdkafka ----------------------------------------------------------------


def test_confluent_admin_topics_and_configs(module_broker: BrokerProcess) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap})
    topic = topic_name("adm")
    admin.create_topics(
        [NewTopic(topic, num_partitions=2, config={"retention.ms": "3600000"})]
    )[topic].result(30)
    described = admin.describe_configs([ConfigResource("topic", topic)])
    [(_resource, future)] = described.items()
    configs = future.result(30)
    assert configs["retention.ms"].value == "3600000"
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    metadata = admin.list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3
    # Without an authorizer, Kafka reports every operation a resource supports.
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    described_topic = admin.describe_topics(
        TopicCollection([topic]), include_authorized_operations=True
    )[topic].result(30)
    assert {AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE} <= set(
        described_topic.authorized_operations or []
    ), described_topic.authorized_operations
    cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
    assert AclOperation.DESCRIBE in (cluster.authorized_operations or []), cluster
    admin.delete_topics([topic])[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("restart")).start()
    yield process
    if process.running:
        process.stop()


def test_kcat_consumes_an_empty_then_growing_topic(module_broker: BrokerProcess, kcat: str) -> None:
    """An empty fetch answer carries an empty record set, never a null one: librdkafka 2.0 fails
    to parse a null set ("invalid MessageSetSize -1") and never reads the topic."""
    topic = topic_name("kcat-empty")
    subprocess_free_create(module_broker, topic, 1)
    consumer = subprocess.Popen(
        [kcat, "-b", module_broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-c", "3",
         "-f", "%s\n"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # the consumer polls the empty partition meanwhile
    produced = subprocess.run(
        [kcat, "-b", module_broker.bootstrap, "-P", "-t", topic],
        input="a\nb\nc\n", capture_output=True, text=True, timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    out, err = consumer.communicate(timeout=60)
    assert out.splitlines() == ["a", "b", "c"], err
    assert "MessageSetSize" not in err and "PROTOERR" not in err, err


def test_deleting_a_topic_forgets_its_committed_offsets(module_broker: BrokerProcess) -> None:
    """A topic created again under the same name starts without the old committed offsets."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = topic_name("recreated")
    subprocess_free_create(module_broker, topic, 1)
    group = f"g-{topic}"
    consumer = Consumer({"bootstrap.servers": module_broker.bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
    [before] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    assert before.offset == 42
    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap})
    admin.delete_topics([topic])[topic].result(30)
    subprocess_free_create(module_broker, topic, 1)
    [after] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    assert after.offset < 0, after  # OFFSET_INVALID: nothing committed


def test_offsets_for_times_across_a_restart(fresh: BrokerProcess) -> None:
    """librdkafka's offsets_for_times (ListOffsets by timestamp) and kafka-python's, on records
    appended before and after a restart, with one far-future timestamp among them."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition

    topic = topic_name("times")
    subprocess_free_create(fresh, topic, 1)
    base = 1_700_000_000_000
    stamps = [base + 10 * i for i in range(4000)]
    stamps[1234] = base + 10_000_000  # out of order: far in the future

    def produce(first: int, last: int) -> None:
        producer = Producer({"bootstrap.servers": fresh.bootstrap, "linger.ms": 5,
                             "enable.idempotence": True})
        for i in range(first, last):
            producer.produce(topic, value=b"r%d" % i + b"x" * 200, partition=0,
                             timestamp=stamps[i])
        assert producer.flush(30) == 0

    produce(0, 2500)
    fresh.stop()
    fresh.start()
    produce(2500, 4000)

    def first_at_or_after(ts: int) -> int:
        return next((i for i, s in enumerate(stamps) if s >= ts), -1)

    wanted = [base - 1, base, base + 5, base + 12_345, base + 20_000, base + 39_990,
              base + 39_991, base + 10_000_000, base + 10_000_001]
    consumer = Consumer({"bootstrap.servers": fresh.bootstrap, "group.id": f"g-{topic}"})
    for ts in wanted:
        [answer] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)
        assert answer.error is None
        expected_offset = first_at_or_after(ts)
        # librdkafka reports "no such record" as the end offset (OFFSET_END, -1).
        assert answer.offset == expected_offset, (ts, answer.offset, expected_offset)
    consumer.close()

    kp = KafkaConsumer(bootstrap_servers=fresh.bootstrap)
    partition = KpTopicPartition(topic, 0)
    try:
        found = kp.offsets_for_times({partition: base + 12_345})[partition]
        # The far-future record (1234) is the first one at or after base + 12_345.
        assert found is not None and (found.offset, found.timestamp) == (1234, stamps[1234])
        found = kp.offsets_for_times({partition: base + 5_005})[partition]
        assert found is not None and (found.offset, found.timestamp) == (501, base + 5_010)
        assert kp.offsets_for_times({partition: base + 10_000_001})[partition] is None
    finally:
        kp.close()


def test_transactional_producers_fail_at_once_with_a_clear_error(
    module_broker: BrokerProcess,
) -> None:
    """Transactions are not served: every client's init_transactions() fails at once with the
    authorization error (librdkafka used to wait out its 60 s transaction timeout), and an
    idempotent producer on the same broker is unaffected."""
    from confluent_kafka import KafkaException, Producer
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    began = time.monotonic()
    producer = Producer({"bootstrap.servers": module_broker.bootstrap, "transactional.id": "tx-a"})
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(30)
    error = raised.value.args[0]
    assert error.fatal(), error
    assert "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" in error.name() or "uthoriz" in str(error)
    assert time.monotonic() - began < 10

    began = time.monotonic()
    with pytest.raises(KafkaPythonError) as raised_kp:
        legacy = KafkaProducer(bootstrap_servers=module_broker.bootstrap,
                               transactional_id="tx-b")
        try:
            legacy.init_transactions()
        finally:
            legacy.close(timeout=5)
    assert "uthoriz" in repr(raised_kp.value), repr(raised_kp.value)
    assert time.monotonic() - began < 15

    async def aiokafka_transactional() -> None:
        from aiokafka import AIOKafkaProducer

        aio = AIOKafkaProducer(bootstrap_servers=module_broker.bootstrap,
                               transactional_id="tx-c")
        try:
            await asyncio.wait_for(aio.start(), 15)
        finally:
            await aio.stop()

    began = time.monotonic()
    with pytest.raises(Exception) as raised_aio:
        asyncio.run(aiokafka_transactional())
    assert "uthoriz" in repr(raised_aio.value), repr(raised_aio.value)
    assert time.monotonic() - began < 15
    assert "refused transactional producer 'tx-a'" in module_broker.log_path.read_text()

    plain = Producer({"bootstrap.servers": module_broker.bootstrap, "enable.idempotence": True})
    plain.produce(topic_name("after-txn"), b"v")
    assert plain.flush(15) == 0
