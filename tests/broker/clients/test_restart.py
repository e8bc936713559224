"""SIGKILL the broker under load and start it again on the same storage: every acknowledged record
is there exactly once, offsets continue densely, consumers resume from their committed offsets, and
an idempotent producer that retried across the crash wrote no duplicates."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sbtest.broker import BrokerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 3


def _read_all(bootstrap: str, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of every partition, by partition: ``(offset, value)``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    lows_highs = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        for p in range(PARTITIONS)
    }
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    want = sum(high - low for low, high in lows_highs.values())
    deadline = time.monotonic() + 60
    got = 0
    while got < want and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        out[message.partition()].append((message.offset(), message.value()))
        got += 1
    consumer.close()
    assert got == want, f"read {got} of {want} records"
    return out


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = BrokerProcess(tmp_path / "b").start()
    try:
        topic = "restart"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(30)

        acked: list[bytes] = []
        failed: list[Any] = []
        stop = threading.Event()

        def on_delivery(err: Any, message: Any) -> None:
            if err is None:
                acked.append(message.value())
            else:
                failed.append(err)

        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 120_000,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
            }
        )

        def produce() -> None:
            i = 0
            while not stop.is_set():
                try:
                    producer.produce(topic, key=b"%d" % (i % 97), value=b"%08d" % i,
                                     on_delivery=on_delivery)
                    i += 1
                except BufferError:
                    producer.poll(0.05)
                if i % 100 == 0:
                    producer.poll(0)
                    time.sleep(0.005)

        thread = threading.Thread(target=produce)
        thread.start()

        # A consumer commits what it read so far, then goes away.
        time.sleep(1.5)
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "resume",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        read = 0
        while read < 200:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                read += 1
        consumer.commit(asynchronous=False)
        committed = {
            tp.partition: tp.offset
            for tp in consumer.committed(
                [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
            )
        }
        consumer.close()

        time.sleep(1.0)
        acked_before_kill = len(acked)
        broker.kill()  # mid-load: some batches are durable but not yet acknowledged
        time.sleep(0.5)
        broker.start()
        time.sleep(2.0)
        stop.set()
        thread.join(30)
        assert producer.flush(120) == 0, "the producer could not deliver after the restart"
        assert not failed, failed[:5]
        assert acked_before_kill > 0 and len(acked) > acked_before_kill

        stored = _read_all(broker.bootstrap, topic)
        for p, records in stored.items():
            offsets = [o for o, _ in records]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (
                f"partition {p}: offsets are not dense after the restart"
            )
        values = Counter(v for records in stored.values() for _, v in records)
        duplicates = [v for v, n in values.items() if n > 1]
        assert not duplicates, f"the idempotent producer's retries wrote duplicates: {duplicates[:5]}"
        missing = set(acked) - set(values)
        assert not missing, f"{len(missing)} acknowledged records are gone: {sorted(missing)[:5]}"

        # The group resumes where it committed.
        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "resume",
             "enable.auto.commit": False}
        )
        after = {
            tp.partition: tp.offset
            for tp in consumer.committed(
                [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
            )
        }
        consumer.close()
        assert after == committed

        # A clean restart: everything was uploaded, so every read now comes from object storage;
        # a partition this size is sampled from inside a batch at start-up, and the committed
        # offsets lie inside batches (both once hung the broker on its event loop).
        assert broker.stop() == 0, broker.log_tail()
        broker.start(timeout=60)
        assert _read_all(broker.bootstrap, topic) == stored
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "resume",
                             "enable.auto.commit": False})
        resumed = [p for p in range(PARTITIONS) if committed[p] >= 0]  # partitions it read
        assert resumed
        consumer.assign([TopicPartition(topic, p, committed[p]) for p in resumed])
        first: dict[int, tuple[int, bytes]] = {}
        deadline = time.monotonic() + 30
        while len(first) < len(resumed) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                first.setdefault(message.partition(), (message.offset(), message.value()))
        consumer.close()
        for p, (offset, value) in first.items():
            assert offset == committed[p]
            assert (offset, value) in stored[p]
        assert sorted(first) == resumed
    finally:
        if broker.running:
            broker.stop()
    assert "Traceback" not in broker.log_path.read_text()
