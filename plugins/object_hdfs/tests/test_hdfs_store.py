"""The hdfs store against a real HDFS (MiniDFSCluster), and the fsspec store on memory:// and file://."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sbtest.servers import MiniHdfs, free_port

from streambed.core.context import NodeContext
from streambed.core.errors import Unavailable
from streambed.core.objects.api import ObjectStore
from streambed.core.testing.objects import ObjectStoreConformance
from streambed.plugins.object_hdfs.plugin import (
    FsspecOptions,
    HdfsOptions,
    open_fsspec_store,
    open_hdfs_store,
)

_ids = itertools.count()


class TestFsspecMemory(ObjectStoreConformance):
    large_object_bytes = 4 * 1024 * 1024
    bulk_keys = 300

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        store = await open_fsspec_store(FsspecOptions(url=f"memory://conf-{next(_ids)}"),
                                        NodeContext(data_dir=tmp_path))
        yield store
        await store.close()


class TestFsspecLocal(ObjectStoreConformance):
    large_object_bytes = 4 * 1024 * 1024
    bulk_keys = 300

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        store = await open_fsspec_store(FsspecOptions(url=f"file://{tmp_path}/objects"),
                                        NodeContext(data_dir=tmp_path))
        yield store
        await store.close()


class TestRealHdfs(ObjectStoreConformance):
    large_object_bytes = 8 * 1024 * 1024
    bulk_keys = 80  # each put is several NameNode RPCs; the count matters less than the path

    @pytest.fixture
    async def store(self, minihdfs: MiniHdfs, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        options = HdfsOptions(url=f"{minihdfs.url}/conf-{next(_ids)}", timeout_s=30)
        store = await open_hdfs_store(options, NodeContext(data_dir=tmp_path))
        yield store
        await store.close()


async def test_hdfs_advertises_conditional_puts(minihdfs: MiniHdfs, tmp_path: Path) -> None:
    store = await open_hdfs_store(HdfsOptions(url=f"{minihdfs.url}/caps"), NodeContext(data_dir=tmp_path))
    assert store.capabilities.conditional_put


async def test_dead_namenode_fails_within_timeout(tmp_path: Path) -> None:
    options = HdfsOptions(url=f"hdfs://127.0.0.1:{free_port()}/x", timeout_s=3)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="probe failed"):
        await open_hdfs_store(options, NodeContext(data_dir=tmp_path))
    assert time.monotonic() - start < 10


async def test_hdfs_url_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hdfs://"):
        await open_hdfs_store(HdfsOptions(url="file:///tmp/x"), NodeContext(data_dir=tmp_path))
