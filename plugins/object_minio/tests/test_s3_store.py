"""The s3 object store against a real SeaweedFS server (started by the tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sbtest.servers import SeaweedFS

from streambed.core.context import NodeContext
from streambed.core.errors import Unavailable
from streambed.core.objects.api import ObjectStore
from streambed.core.testing.objects import ObjectStoreConformance
from streambed.plugins.object_minio.options import S3Options
from streambed.plugins.object_minio.plugin import open_s3_store


def options(server: SeaweedFS, bucket: str, **kwargs: Any) -> S3Options:
    base: dict[str, Any] = {
        "bucket": bucket, "endpoint_url": server.endpoint, "profile": "seaweedfs",
        "access_key_id": server.access_key, "secret_access_key": server.secret_key,
        "retry_attempts": 3, "retry_max_delay_s": 0.2,
    }
    base.update(kwargs)
    return S3Options(**base)


class TestSeaweedFS(ObjectStoreConformance):
    large_object_bytes = 70 * 1024 * 1024  # above the multipart threshold
    bulk_keys = 1100

    @pytest.fixture
    async def store(self, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        store = await open_s3_store(options(seaweedfs, s3_bucket, prefix="conf/"), NodeContext(data_dir=tmp_path))
        yield store
        await store.close()


async def test_probe_detects_conditional_writes(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    store = await open_s3_store(options(seaweedfs, s3_bucket), NodeContext(data_dir=tmp_path))
    assert store.capabilities.conditional_put is True
    assert store.capabilities.multipart is True
    await store.close()


async def test_wrong_secret_fails_clearly(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(Unavailable) as err:
        await open_s3_store(options(seaweedfs, s3_bucket, secret_access_key="wrong"), NodeContext(data_dir=tmp_path))
    message = str(err.value)
    assert "probe failed at step 'write'" in message and seaweedfs.endpoint in message
    assert seaweedfs.access_key in message and "wrong" not in message


async def test_create_bucket_option(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    store = await open_s3_store(options(seaweedfs, "created-by-option", create_bucket=True),
                                NodeContext(data_dir=tmp_path))
    await store.put("x", b"1")
    assert await store.get("x") == b"1"
    await store.close()


async def test_unreachable_endpoint_fails_within_timeout(tmp_path: Path) -> None:
    from sbtest.servers import free_port

    opts = S3Options(bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="a",
                     secret_access_key="b", retry_attempts=2, retry_max_delay_s=0.1, connect_timeout_s=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(Unavailable, match="probe failed"):
        await open_s3_store(opts, NodeContext(data_dir=tmp_path))
    assert loop.time() - start < 15


async def test_cleanup_aborts_abandoned_multipart(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    raw = boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=seaweedfs.access_key,
                       aws_secret_access_key=seaweedfs.secret_key, region_name="us-east-1")
    raw.create_multipart_upload(Bucket=s3_bucket, Key="mp/abandoned")
    store = await open_s3_store(options(seaweedfs, s3_bucket, abandoned_upload_age_s=0.001),
                                NodeContext(data_dir=tmp_path))
    await asyncio.sleep(0.05)
    assert await store.cleanup() >= 1
    assert raw.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    await store.close()


_ceph_buckets = iter(range(10_000))


class TestCephRgw(ObjectStoreConformance):
    """The same suite against Ceph RGW 16 (Debian's radosgw), multipart included."""

    large_object_bytes = 12 * 1024 * 1024
    bulk_keys = 1100

    @pytest.fixture
    async def store(self, ceph_rgw: Any, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        from sbtest.servers import create_bucket

        bucket = f"ceph-{next(_ceph_buckets)}"
        create_bucket(ceph_rgw, bucket)
        opts = S3Options(bucket=bucket, endpoint_url=ceph_rgw.endpoint, profile="ceph",
                         access_key_id=ceph_rgw.access_key, secret_access_key=ceph_rgw.secret_key,
                         multipart_threshold_bytes=5 * 1024 * 1024, multipart_part_bytes=5 * 1024 * 1024,
                         retry_attempts=3, retry_max_delay_s=0.2)
        store = await open_s3_store(opts, NodeContext(data_dir=tmp_path))
        yield store
        await store.close()


async def test_ceph_wrong_secret_fails_clearly(ceph_rgw: Any, tmp_path: Path) -> None:
    from sbtest.servers import create_bucket

    create_bucket(ceph_rgw, "ceph-auth")
    opts = S3Options(bucket="ceph-auth", endpoint_url=ceph_rgw.endpoint, profile="ceph",
                     access_key_id=ceph_rgw.access_key, secret_access_key="not-the-secret", retry_attempts=2)
    with pytest.raises(Unavailable, match="probe failed at step 'write'"):
        await open_s3_store(opts, NodeContext(data_dir=tmp_path))


async def test_a_silent_endpoint_is_a_timeout_not_a_hang(tmp_path: Path) -> None:
    """An endpoint that accepts connections and never answers: the start-up probe fails after
    its read timeouts and retries (it used to wait forever for "100 Continue")."""
    received: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        received.append(await reader.read(4096))
        await done.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    opts = S3Options(bucket="b", endpoint_url=f"http://127.0.0.1:{port}", profile="seaweedfs",
                     access_key_id="a", secret_access_key="s", read_timeout_s=0.5,
                     connect_timeout_s=0.5, retry_attempts=2, retry_max_delay_s=0.1)
    try:
        with pytest.raises(Unavailable) as err:
            await asyncio.wait_for(open_s3_store(opts, NodeContext(data_dir=tmp_path)), 30)
    finally:
        done.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert "probe failed" in str(err.value)
    assert received and b"100-continue" not in received[0].lower()
