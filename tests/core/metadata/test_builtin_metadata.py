from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.metadata.api import MetadataStore
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.testing.metadata import MetadataStoreConformance

_names = itertools.count()


class TestMemoryMetadata(MetadataStoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], Awaitable[MetadataStore]]:
        name = f"metaconf-{next(_names)}"

        async def open_store() -> MetadataStore:
            return await open_memory_metadata(MemoryMetadataOptions(name=name), NodeContext(data_dir=tmp_path))

        return open_store


class TestLocalMetadata(MetadataStoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], Awaitable[MetadataStore]]:
        async def open_store() -> MetadataStore:
            return await open_local_metadata(LocalMetadataOptions(), NodeContext(data_dir=tmp_path))

        return open_store


async def test_local_store_file_location(tmp_path: Path) -> None:
    store = await open_local_metadata(LocalMetadataOptions(), NodeContext(data_dir=tmp_path))
    await store.close()
    assert (tmp_path / "metadata.sqlite3").is_file()
