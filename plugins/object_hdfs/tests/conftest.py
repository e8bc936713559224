"""Fixtures of the hdfs plugin's tests.

The real HDFS is the session-scoped ``minihdfs`` fixture from ``sbtest.fixtures`` (registered by the
repository's root conftest): Hadoop's MiniDFSCluster from Maven Central, started by the Java
launcher in ``tests/support/hdfs/``; it skips with the reason when Java or Maven is missing (and
fails instead when ``CI`` is set). Broker end-to-end tests use the same fixture.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sbtest.servers import MiniHdfs

from streambed.core.context import NodeContext
from streambed.plugins.object_hdfs.options import FsspecOptions, HdfsOptions
from streambed.plugins.object_hdfs.plugin import open_fsspec_store, open_hdfs_store
from streambed.plugins.object_hdfs.store import FsspecObjectStore

_roots = itertools.count()


@pytest.fixture
def hdfs_url(minihdfs: MiniHdfs) -> str:
    """A fresh, empty directory on the session's HDFS."""
    return f"{minihdfs.url}/t{next(_roots)}"


@pytest.fixture
async def hdfs_store(hdfs_url: str, tmp_path: Path) -> AsyncIterator[FsspecObjectStore]:
    store = await open_hdfs_store(HdfsOptions(url=hdfs_url), NodeContext(data_dir=tmp_path))
    yield store
    await store.close()


@pytest.fixture(params=["memory", "file"])
async def fsspec_store(request: pytest.FixtureRequest,
                       tmp_path: Path) -> AsyncIterator[FsspecObjectStore]:
    url = f"memory://objects-{next(_roots)}" if request.param == "memory" else f"file://{tmp_path}/o"
    store = await open_fsspec_store(FsspecOptions(url=url), NodeContext(data_dir=tmp_path))
    yield store
    await store.close()
