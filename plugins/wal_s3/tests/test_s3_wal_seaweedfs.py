"""The S3 WAL on a real SeaweedFS server: conformance, fencing, and the request count per GB."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sbtest.servers import SeaweedFS

from streambed.core.context import NodeContext
from streambed.core.errors import Fenced
from streambed.core.testing.wal import WalConformance
from streambed.plugins.wal_s3.plugin import S3WalOptions, open_s3_wal

_epochs = itertools.count(1000)


def wal_options(server: SeaweedFS, bucket: str, **kwargs: Any) -> S3WalOptions:
    s3 = {"bucket": bucket, "endpoint_url": server.endpoint, "profile": "seaweedfs",
          "access_key_id": server.access_key, "secret_access_key": server.secret_key}
    return S3WalOptions(s3=s3, window_ms=5, **kwargs)


class TestS3WalOnSeaweedFS(WalConformance):
    concurrent_appends = 300

    @pytest.fixture
    def wal_factory(self, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> Callable[..., Awaitable[Any]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = wal_options(seaweedfs, s3_bucket, capacity_bytes=capacity_bytes or 2**30,
                                  full_timeout_ms=int(full_timeout_s * 1000))
            return await open_s3_wal(options, NodeContext(data_dir=tmp_path, node_id=1, node_epoch=next(_epochs)))

        return open_wal


async def test_takeover_by_another_node_fences_the_old_owner(seaweedfs: SeaweedFS, s3_bucket: str,
                                                              tmp_path: Path) -> None:
    old = await open_s3_wal(wal_options(seaweedfs, s3_bucket),
                            NodeContext(data_dir=tmp_path, node_id=1, node_epoch=10))
    _ = [r async for r in old.recover()]
    await old.start()
    acked = await asyncio.gather(*(old.append(b"acked-%d" % i) for i in range(20)))
    new = await open_s3_wal(wal_options(seaweedfs, s3_bucket, wal_node_id=1),
                            NodeContext(data_dir=tmp_path, node_id=2, node_epoch=20))
    replayed = [(r.offset, r.body) async for r in new.recover()]
    await new.start()
    assert replayed == [(o, b"acked-%d" % i) for i, o in enumerate(acked)]
    with pytest.raises(Fenced):
        await old.append(b"stale")
    await new.close()
    await old.close()


async def test_few_puts_per_gigabyte(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    wal = await open_s3_wal(wal_options(seaweedfs, s3_bucket, window_bytes=8 * 1024 * 1024),
                            NodeContext(data_dir=tmp_path, node_id=3, node_epoch=1))
    _ = [r async for r in wal.recover()]
    await wal.start()
    body = b"r" * 1024
    total = 16 * 1024 * 1024
    sem = asyncio.Semaphore(2000)

    async def one() -> None:
        async with sem:
            await wal.append(body)

    await asyncio.gather(*(one() for _ in range(total // len(body))))
    counts = wal.request_counts()
    puts_per_gb = counts["put"] * (1024**3 / total)
    # One PUT per window: thousands of 1 KiB appends share each object.
    assert puts_per_gb < 2000, counts
    await wal.close()
