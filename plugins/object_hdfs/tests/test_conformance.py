"""The core object-store conformance suite: on a real HDFS, and through fsspec on memory:// and
file://."""

from __future__ import annotations

import pytest

from streambed.core.objects.api import ObjectStore
from streambed.core.testing.objects import ObjectStoreConformance
from streambed.plugins.object_hdfs.store import FsspecObjectStore


@pytest.mark.external
@pytest.mark.slow
class TestHdfs(ObjectStoreConformance):
    large_object_bytes = 8 * 1024 * 1024
    # A put with data takes ~0.5 s here (hdfs-native's close() polls the NameNode with a fixed
    # 500 ms back-off); 100 keys still span two delete chunks.
    bulk_keys = 100

    @pytest.fixture
    def store(self, hdfs_store: FsspecObjectStore) -> ObjectStore:
        return hdfs_store


class TestFsspec(ObjectStoreConformance):
    large_object_bytes = 4 * 1024 * 1024
    bulk_keys = 300

    @pytest.fixture
    def store(self, fsspec_store: FsspecObjectStore) -> ObjectStore:
        return fsspec_store
