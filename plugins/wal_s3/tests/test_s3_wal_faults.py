"""The S3 WAL on a real SeaweedFS behind a fault proxy: 503 storms and dropped responses during
appends and during recovery lose no acknowledged record and never stop the WAL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sbtest.faultproxy import FaultProxy
from sbtest.servers import SeaweedFS

from streambed.core.context import NodeContext
from streambed.plugins.wal_s3.plugin import S3WalOptions, open_s3_wal


def options(server: SeaweedFS, bucket: str, port: int) -> S3WalOptions:
    return S3WalOptions(
        s3={"bucket": bucket, "endpoint_url": f"http://127.0.0.1:{port}", "profile": "seaweedfs",
            "access_key_id": server.access_key, "secret_access_key": server.secret_key,
            "retry_attempts": 2, "retry_max_delay_s": 0.05, "probe": False},
        window_ms=5,
    )


async def test_storm_during_appends_and_recovery(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    upstream = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(upstream, slowdown=0.25, drop=0.15, seed=3)
    port = await proxy.start()
    try:
        wal = await open_s3_wal(options(seaweedfs, s3_bucket, port),
                                NodeContext(data_dir=tmp_path, node_id=5, node_epoch=1))
        _ = [r async for r in wal.recover()]
        await wal.start()
        acked: list[int] = []
        for wave in range(15):  # many windows, so many requests meet a fault
            acked += await asyncio.gather(*(wal.append(b"record-%d" % (wave * 20 + i)) for i in range(20)))
        await wal.trim(acked[100])
        await wal.close()
        assert proxy.counts["slowdown"] >= 3 and proxy.counts["drop"] >= 2, proxy.counts

        again = await open_s3_wal(options(seaweedfs, s3_bucket, port),
                                  NodeContext(data_dir=tmp_path, node_id=5, node_epoch=2))
        recovered = [(r.offset, r.body) async for r in again.recover()]
        await again.start()
        assert recovered == [(o, b"record-%d" % i) for i, o in enumerate(acked) if i >= 100]
        await again.close()
    finally:
        await proxy.stop()
