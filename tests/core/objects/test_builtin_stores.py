from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.objects.api import ObjectStore
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.testing.objects import ObjectStoreConformance

_names = itertools.count()


class TestMemoryStore(ObjectStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        options = MemoryObjectStoreOptions(name=f"objconf-{next(_names)}")
        yield await open_memory_store(options, NodeContext(data_dir=tmp_path))


class TestMemoryStoreWithoutConditionalPut(ObjectStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        options = MemoryObjectStoreOptions(name=f"objconf-{next(_names)}", conditional_put=False)
        yield await open_memory_store(options, NodeContext(data_dir=tmp_path))


class TestFileStore(ObjectStoreConformance):
    large_object_bytes = 8 * 1024 * 1024

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        yield await open_file_store(FileObjectStoreOptions(), NodeContext(data_dir=tmp_path))


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "..", "a/.", "trailing/", ".tmp/x"])
async def test_file_store_rejects_bad_keys(tmp_path: Path, key: str) -> None:
    store = await open_file_store(FileObjectStoreOptions(), NodeContext(data_dir=tmp_path))
    with pytest.raises(ValueError, match="invalid object key"):
        await store.put(key, b"x")


async def test_file_store_cleans_stale_temporaries(tmp_path: Path) -> None:
    store = await open_file_store(FileObjectStoreOptions(tmp_max_age_s=60), NodeContext(data_dir=tmp_path))
    tmp_dir = tmp_path / "objects" / ".tmp"
    stale, fresh = tmp_dir / "stale", tmp_dir / "fresh"
    stale.write_bytes(b"half an object")
    fresh.write_bytes(b"being written")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert await store.cleanup() == 1
    assert not stale.exists() and fresh.exists()
    assert [o.key for o in (await store.list("")).objects] == []


async def test_file_store_crash_before_rename_leaves_nothing_visible(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = await open_file_store(FileObjectStoreOptions(), NodeContext(data_dir=tmp_path))

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Exception, match="No space left"):
        await store.put("obj", b"data")
    monkeypatch.undo()
    assert (await store.list("")).objects == []
    assert list((tmp_path / "objects" / ".tmp").iterdir()) == []


async def test_file_store_paces_writes(tmp_path: Path) -> None:
    """``write_mib_per_s`` spreads an object's writes over time (off the event loop)."""
    store = await open_file_store(
        FileObjectStoreOptions(root=tmp_path / "paced", write_mib_per_s=8), NodeContext(data_dir=tmp_path)
    )
    began = time.monotonic()
    await store.put("paced", [b"p" * (1 << 20), b"q" * (1 << 20)])  # 2 MiB at 8 MiB/s
    assert time.monotonic() - began >= 0.2
    assert await store.get("paced") == b"p" * (1 << 20) + b"q" * (1 << 20)
    await store.close()
