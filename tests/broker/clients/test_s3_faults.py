"""A live broker whose S3 (SeaweedFS) sits behind a fault proxy: 503 SlowDown storms, dropped
responses and requests that time out, while clients produce, while the engine uploads, and while a
restarted broker recovers.
Nothing acknowledged is lost and the broker never exits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from sbtest.broker import BrokerProcess
from sbtest.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(600)]

SECRET_ENV = "SB_TEST_S3_SECRET"


class ThreadedProxy:
    """The asyncio fault proxy on its own thread, so a blocking test can drive it."""

    def __init__(self, upstream_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = FaultProxy(upstream_port, seed=7)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def set_faults(self, slowdown: float, drop: float, stall: float = 0.0) -> None:
        def apply() -> None:
            self.proxy.slowdown, self.proxy.drop, self.proxy.stall = slowdown, drop, stall
            self.proxy.stall_s = 3.0

        self.loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        async def shutdown() -> None:
            await self.proxy.stop()
            # Connections still held (a stalled answer) are cancelled and awaited, so nothing is
            # left pending when this loop closes.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def proxy(seaweedfs: Any) -> Iterator[ThreadedProxy]:
    running = ThreadedProxy(int(urlparse(seaweedfs.endpoint).port or 80))
    yield running
    running.close()


def _produce(bootstrap: str, topic: str, start: int, n: int, acked: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 180_000,
        }
    )

    def delivered(err: Any, message: Any) -> None:
        if err is None:
            acked.append(message.value())

    for i in range(start, start + n):
        producer.produce(topic, value=b"%08d" % i + b"p" * 1000, on_delivery=delivered)
        if i % 200 == 0:
            producer.poll(0)
    assert producer.flush(180) == 0


def _read(bootstrap: str, topic: str) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False}
    )
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[bytes] = []
    deadline = time.monotonic() + 120
    while len(out) < high - low and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            out.append(message.value())
    consumer.close()
    return out


@pytest.mark.parametrize("wal", ["file", "s3"])
def test_s3_faults_lose_nothing_acknowledged(
    wal: str, seaweedfs: Any, s3_bucket: str, proxy: ThreadedProxy, tmp_path: Path
) -> None:
    s3 = {
        "bucket": s3_bucket,
        "endpoint_url": f"http://127.0.0.1:{proxy.port}",
        "profile": "seaweedfs",
        "access_key_id": seaweedfs.access_key,
        "secret_access_key": {"env": SECRET_ENV},
        "retry_attempts": 20,
        "retry_max_delay_s": 0.5,
        "read_timeout_s": 1.0,
    }
    storage: dict[str, Any] = {
        "objects": {"type": "s3", "options": s3},
        "engine": {"upload_threshold_bytes": 256 << 10, "upload_interval_ms": 200},
    }
    if wal == "s3":
        storage["wal"] = {"type": "s3", "options": {"s3": s3, "window_ms": 20}}
    broker = BrokerProcess(
        tmp_path / "broker", storage=storage, env={SECRET_ENV: seaweedfs.secret_key}
    ).start(timeout=120)
    acked: list[bytes] = []
    try:
        _produce(broker.bootstrap, "faults", 0, 500, acked)
        # The storm, during produce and uploads: throttling, lost answers, silent server.
        proxy.set_faults(slowdown=0.3, drop=0.1, stall=0.03)
        _produce(broker.bootstrap, "faults", 500, 1500, acked)
        assert broker.running, broker.log_tail()
        broker.kill()
        broker.start(timeout=180)  # recovery replays the WAL and uploads through the storm
        _produce(broker.bootstrap, "faults", 2000, 300, acked)
        proxy.set_faults(slowdown=0.0, drop=0.0)
        stored = _read(broker.bootstrap, "faults")
        assert broker.running, broker.log_tail()
    finally:
        proxy.set_faults(0.0, 0.0)
        if broker.running:
            assert broker.stop() == 0, broker.log_tail()
    counts = proxy.proxy.counts
    assert counts["slowdown"] > 0 and counts["drop"] > 0 and counts["stall"] > 0, counts
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged records lost"
    assert len(stored) == len(set(stored)), "duplicates after retries"
    assert len(acked) == 2300
