"""Every storage combination a user would run — WAL file/ebs/s3 x objects file/s3/hdfs — under a
real broker process with a real client: produce with idempotence and compression, consume and verify
every record, restart (graceful, then SIGKILL) and verify again. S3 is a real SeaweedFS (and Ceph
RGW for the object store), HDFS a real MiniDFSCluster, all started by the tests."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sbtest.broker import BrokerProcess

pytestmark = [pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(600)]

N = 300
SECRET_ENV = "SB_TEST_S3_SECRET"


def _s3(server: Any, bucket: str, profile: str) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "endpoint_url": server.endpoint,
        "profile": profile,
        "access_key_id": server.access_key,
        "secret_access_key": {"env": SECRET_ENV},
    }


def _storage(
    wal: str, objects: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    env: dict[str, str] = {}
    storage: dict[str, Any] = {}
    if "s3" in (wal, objects):
        server = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        env[SECRET_ENV] = server.secret_key
    if wal == "file":
        storage["wal"] = {"type": "file"}
    elif wal == "ebs":
        storage["wal"] = {
            "type": "ebs",
            "options": {"path": str(tmp_path / "ebs.wal"), "capacity_bytes": 256 << 20},
        }
    else:
        storage["wal"] = {
            "type": "s3",
            "options": {"s3": _s3(server, bucket, "seaweedfs"), "window_ms": 20},
        }
    if objects == "file":
        storage["objects"] = {"type": "file"}
    elif objects == "s3":
        storage["objects"] = {"type": "s3", "options": _s3(server, bucket, "seaweedfs")}
    else:
        hdfs = request.getfixturevalue("minihdfs")
        storage["objects"] = {
            "type": "hdfs",
            "options": {"url": f"{hdfs.url}/matrix-{uuid.uuid4().hex[:8]}"},
        }
    # Small upload thresholds so that the data really reaches the object store during the test.
    storage["engine"] = {"upload_threshold_bytes": 64 << 10, "upload_interval_ms": 200}
    return storage, env


def _produce(bootstrap: str, topic: str, start: int, n: int) -> list[int]:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )
    offsets: list[int] = []

    def delivered(err: Any, message: Any) -> None:
        assert err is None, err
        offsets.append(message.offset())

    for i in range(start, start + n):
        producer.produce(topic, key=b"%d" % i, value=b"value-%06d" % i + b"z" * 500,
                         on_delivery=delivered)
    assert producer.flush(60) == 0
    return sorted(offsets)


def _consume_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"m-{uuid.uuid4().hex[:6]}",
         "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        got.append(message.value()[:12])
    consumer.close()
    return got


@pytest.mark.parametrize("objects", ["file", "s3", "hdfs"])
@pytest.mark.parametrize("wal", ["file", "ebs", "s3"])
def test_storage_combination_serves_clients_and_survives_restarts(
    wal: str, objects: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage, env = _storage(wal, objects, request, tmp_path)
    broker = BrokerProcess(tmp_path / "broker", storage=storage, env=env).start(timeout=120)
    topic = "matrix"
    try:
        assert _produce(broker.bootstrap, topic, 0, N) == list(range(N))
        want = [b"value-%06d" % i for i in range(N)]
        assert _consume_all(broker.bootstrap, topic, N) == want
        assert broker.stop() == 0, broker.log_tail()
        broker.start(timeout=120)
        assert _produce(broker.bootstrap, topic, N, N) == list(range(N, 2 * N))
        broker.kill()
        broker.start(timeout=120)
        want += [b"value-%06d" % i for i in range(N, 2 * N)]
        assert _consume_all(broker.bootstrap, topic, 2 * N) == want, broker.log_tail()
    finally:
        if broker.running:
            broker.stop()
    log = broker.log_path.read_text()
    assert "Traceback" not in log, log[-4000:]


def test_s3_objects_on_ceph_rgw(
    ceph_rgw: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from sbtest.servers import create_bucket

    bucket = f"matrix-{uuid.uuid4().hex[:8]}"
    create_bucket(ceph_rgw, bucket)
    storage = {"objects": {"type": "s3", "options": _s3(ceph_rgw, bucket, "ceph")},
               "engine": {"upload_threshold_bytes": 64 << 10, "upload_interval_ms": 200}}
    broker = BrokerProcess(
        tmp_path / "broker", storage=storage, env={SECRET_ENV: ceph_rgw.secret_key}
    ).start(timeout=120)
    try:
        assert _produce(broker.bootstrap, "ceph", 0, N) == list(range(N))
        broker.kill()
        broker.start(timeout=120)
        assert _consume_all(broker.bootstrap, "ceph", N) == [b"value-%06d" % i for i in range(N)]
    finally:
        if broker.running:
            broker.stop()


def test_wrong_s3_secret_refuses_to_start_with_a_clear_message(
    seaweedfs: Any, s3_bucket: str, tmp_path: Path
) -> None:
    storage = {"objects": {"type": "s3", "options": _s3(seaweedfs, s3_bucket, "seaweedfs")}}
    broker = BrokerProcess(tmp_path / "broker", storage=storage, env={SECRET_ENV: "wrong-secret"})
    with pytest.raises(RuntimeError) as info:
        broker.start(timeout=120)
    message = str(info.value)
    assert "Traceback" not in message, message
    assert any(w in message.lower() for w in ("credential", "signature", "access denied", "secret")), (
        message
    )
