"""Conformance suite for :class:`~streambed.core.objects.api.ObjectStore` implementations.

Subclass :class:`ObjectStoreConformance` and provide an async fixture ``store`` that yields a fresh,
**empty** store (for a real server: a unique bucket or prefix per test)::

    class TestMyStore(ObjectStoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            store = await open_my_store(MyOptions(...), NodeContext(data_dir=tmp_path))
            yield store
            await store.close()

Tune the class attributes for slow media (``large_object_bytes``, ``bulk_keys``).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from streambed.core.errors import ConditionFailed, NotFound
from streambed.core.objects.api import ObjectStore

__all__ = ["ObjectStoreConformance"]


async def _all_keys(store: ObjectStore, prefix: str, limit: int = 1000) -> list[str]:
    keys: list[str] = []
    token: str | None = None
    while True:
        page = await store.list(prefix, token=token, limit=limit)
        keys.extend(o.key for o in page.objects)
        if page.next_token is None:
            return keys
        token = page.next_token


class ObjectStoreConformance:
    large_object_bytes: int = 20 * 1024 * 1024
    bulk_keys: int = 1200
    racers: int = 8

    async def test_put_get_round_trip(self, store: ObjectStore) -> None:
        info = await store.put("a/b/one", b"hello")
        assert info.key == "a/b/one" and info.size == 5
        assert await store.get("a/b/one") == b"hello"

    async def test_put_memoryview_and_buffer_list(self, store: ObjectStore) -> None:
        await store.put("mv", memoryview(b"0123456789")[2:6])
        assert await store.get("mv") == b"2345"
        info = await store.put("parts", [b"ab", memoryview(b"cd"), b"", memoryview(bytearray(b"ef"))])
        assert info.size == 6
        assert await store.get("parts") == b"abcdef"

    async def test_empty_object(self, store: ObjectStore) -> None:
        await store.put("empty", b"")
        assert await store.get("empty") == b""
        assert (await store.head("empty")).size == 0

    async def test_overwrite_replaces_whole_object(self, store: ObjectStore) -> None:
        await store.put("k", b"first version, long")
        await store.put("k", b"second")
        assert await store.get("k") == b"second"

    async def test_missing_object_raises_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            await store.get("nope")
        with pytest.raises(NotFound):
            await store.get_range("nope", 0, 10)
        with pytest.raises(NotFound):
            await store.head("nope")

    async def test_head(self, store: ObjectStore) -> None:
        await store.put("h", b"x" * 1234)
        info = await store.head("h")
        assert info.key == "h" and info.size == 1234

    async def test_range_reads(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * 40
        await store.put("r", data)
        for start, end in [(0, 1), (0, 100), (100, 200), (len(data) - 7, len(data)),
                           (5000, 5000), (len(data) - 3, len(data) + 100)]:
            assert await store.get_range("r", start, end) == data[start:end], (start, end)

    async def test_delete_present_missing_and_many(self, store: ObjectStore) -> None:
        await store.put("d/1", b"1")
        await store.put("d/2", b"2")
        await store.delete(["d/1", "d/does-not-exist"])
        with pytest.raises(NotFound):
            await store.get("d/1")
        assert await store.get("d/2") == b"2"
        await store.delete([])
        keys = [f"bulk/{i:05d}" for i in range(self.bulk_keys)]
        semaphore = asyncio.Semaphore(32)

        async def put(key: str) -> None:
            async with semaphore:
                await store.put(key, b"b")

        await asyncio.gather(*(put(k) for k in keys))
        assert len(await _all_keys(store, "bulk/")) == self.bulk_keys
        await store.delete(keys)  # more than one DeleteObjects batch on S3
        assert await _all_keys(store, "bulk/") == []

    async def test_list_prefix_order_and_pagination(self, store: ObjectStore) -> None:
        keys = sorted({f"p/{i:03d}" for i in range(25)} | {"p/sub/x", "p/sub/y", "p-other", "q/1"})
        for key in keys:
            await store.put(key, b"v")
        expected = [k for k in keys if k.startswith("p/")]
        assert await _all_keys(store, "p/", limit=7) == expected
        assert await _all_keys(store, "p/", limit=1000) == expected
        # Hierarchical stores (SeaweedFS) list a directory's children before a sibling key that
        # sorts earlier ("p/..." before "p-other"): every key exactly once, order per directory.
        mixed = await _all_keys(store, "p", limit=5)
        assert sorted(mixed) == sorted([*expected, "p-other"]) and len(set(mixed)) == len(mixed)
        assert await _all_keys(store, "p/sub/") == ["p/sub/x", "p/sub/y"]
        assert await _all_keys(store, "zzz/") == []
        page = await store.list("p/", limit=7)
        assert len(page.objects) == 7 and page.next_token is not None
        assert all(o.size == 1 for o in page.objects)

    async def test_list_sees_deletes(self, store: ObjectStore) -> None:
        for i in range(5):
            await store.put(f"ls/{i}", b"x")
        await store.delete(["ls/1", "ls/3"])
        assert await _all_keys(store, "ls/", limit=2) == ["ls/0", "ls/2", "ls/4"]

    async def test_conditional_put(self, store: ObjectStore) -> None:
        if not store.capabilities.conditional_put:
            pytest.skip("store does not advertise conditional puts")
        await store.put("c", b"first", if_none_match=True)
        with pytest.raises(ConditionFailed):
            await store.put("c", b"second", if_none_match=True)
        assert await store.get("c") == b"first"

    async def test_conditional_put_race_has_one_winner(self, store: ObjectStore) -> None:
        if not store.capabilities.conditional_put:
            pytest.skip("store does not advertise conditional puts")

        async def racer(i: int) -> bool:
            try:
                await store.put("race", b"racer-%d" % i, if_none_match=True)
                return True
            except ConditionFailed:
                return False

        wins = await asyncio.gather(*(racer(i) for i in range(self.racers)))
        assert sum(wins) == 1, wins
        assert await store.get("race") == b"racer-%d" % wins.index(True)

    async def test_large_object(self, store: ObjectStore) -> None:
        data = os.urandom(self.large_object_bytes)
        chunks = [memoryview(data)[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
        await store.put("big", chunks)
        assert (await store.head("big")).size == len(data)
        middle = len(data) // 2
        assert await store.get_range("big", middle, middle + 4096) == data[middle : middle + 4096]
        assert await store.get("big") == data

    async def test_cleanup_returns_count(self, store: ObjectStore) -> None:
        await store.put("keep", b"k")
        removed = await store.cleanup()
        assert isinstance(removed, int) and removed >= 0
        assert await store.get("keep") == b"k"
