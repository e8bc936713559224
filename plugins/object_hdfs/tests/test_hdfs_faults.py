"""HDFS failures: a dead NameNode, one that accepts connections and never answers, a frozen real
NameNode (SIGSTOP), and readers racing an overwrite. Every call must end within its bound with
``Unavailable``, and the store must work again once the NameNode is back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sbtest.servers import MiniHdfs, free_port

from streambed.core.context import NodeContext
from streambed.core.errors import NotFound, Unavailable
from streambed.plugins.object_hdfs.options import HdfsOptions
from streambed.plugins.object_hdfs.plugin import open_hdfs_store
from streambed.plugins.object_hdfs.store import FsspecObjectStore

pytestmark = pytest.mark.external


async def test_dead_namenode_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    url = f"hdfs://127.0.0.1:{free_port()}/streambed"
    start = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await open_hdfs_store(HdfsOptions(url=url, timeout_s=8), NodeContext(data_dir=tmp_path))
    elapsed = time.monotonic() - start
    # The capped client retries give up in about a second, well before the 8 s call bound.
    assert elapsed < 5, elapsed
    message = str(caught.value)
    assert url in message and "unusable" in message and "Connection refused" in message, message


@pytest.fixture
def silent_namenode() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_silent_namenode_is_bounded_by_timeout(silent_namenode: int, tmp_path: Path) -> None:
    url = f"hdfs://127.0.0.1:{silent_namenode}/streambed"
    start = time.monotonic()
    with pytest.raises(Unavailable, match=r"no answer within 2\.0 s"):
        await open_hdfs_store(HdfsOptions(url=url, timeout_s=2), NodeContext(data_dir=tmp_path))
    assert time.monotonic() - start < 4


@pytest.mark.slow
async def test_frozen_namenode_then_recovery(minihdfs: MiniHdfs, tmp_path: Path) -> None:
    store = await open_hdfs_store(
        HdfsOptions(url=f"{minihdfs.url}/frozen", timeout_s=2, io_threads=4),
        NodeContext(data_dir=tmp_path),
    )
    try:
        await store.put("before", b"1")
        os.kill(minihdfs.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            results = await asyncio.gather(
                store.put("during", b"2"), store.head("before"), store.get_range("before", 0, 1),
                store.list(""), store.delete(["before"]), return_exceptions=True,
            )
            elapsed = time.monotonic() - start
            assert all(isinstance(r, Unavailable) for r in results), results
            assert "no answer within 2.0 s" in str(results[0])
            assert elapsed < 4, elapsed
        finally:
            os.kill(minihdfs.proc.pid, signal.SIGCONT)
        # Back: the same store works again (the stuck calls finish in the background).
        deadline = time.monotonic() + 30
        while True:
            try:
                await store.put("after", b"3")
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert await store.get("after") == b"3"
    finally:
        await store.close()


@pytest.mark.slow
async def test_readers_never_see_a_partial_object(hdfs_store: FsspecObjectStore) -> None:
    size = 2 * 1024 * 1024
    versions = [bytes([65 + i]) * size for i in range(4)]
    seen: set[bytes] = set()
    writes_done = asyncio.Event()

    async def writer() -> None:
        for body in versions:
            await hdfs_store.put("hot", body)
        writes_done.set()

    async def reader() -> None:
        while not writes_done.is_set():
            try:
                body = await hdfs_store.get("hot")
            except NotFound:
                continue  # not written yet
            except Unavailable:
                continue  # the file read was replaced under us: an error, never mixed bytes
            assert body in versions, (len(body), body[:1], body[-1:])
            seen.add(body[:1])

    await asyncio.gather(writer(), reader(), reader())
    assert await hdfs_store.get("hot") == versions[-1]
    assert seen, "the readers never saw the object"


async def test_ha_nameservice_fails_over_from_a_dead_namenode(minihdfs: MiniHdfs,
                                                              tmp_path: Path) -> None:
    live = minihdfs.url.removeprefix("hdfs://")
    options = HdfsOptions(url="hdfs://MiniNS/ha", timeout_s=8, hdfs_config={
        "dfs.nameservices": "MiniNS",
        "dfs.ha.namenodes.MiniNS": "dead,live",
        "dfs.namenode.rpc-address.MiniNS.dead": f"127.0.0.1:{free_port()}",
        "dfs.namenode.rpc-address.MiniNS.live": live,
        "dfs.client.failover.random.order.MiniNS": "false",
    })
    store = await open_hdfs_store(options, NodeContext(data_dir=tmp_path))
    try:
        await store.put("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()
