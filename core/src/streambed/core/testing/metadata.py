"""Conformance suite for :class:`~streambed.core.metadata.api.MetadataStore` implementations.

Subclass :class:`MetadataStoreConformance` and provide a fixture ``store_factory``: an async callable
returning a store opened on the **same** underlying storage each time it is called, so durability
across close and reopen is tested::

    class TestMyStore(MetadataStoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            async def open_store():
                return await open_my_store(MyOptions(path=tmp_path / "m"), ctx)
            return open_store
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = ["MetadataStoreConformance"]

StoreFactory = Callable[[], Awaitable[MetadataStore]]


class MetadataStoreConformance:
    concurrent_writers: int = 20

    async def test_get_missing_is_none(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        assert await store.get("nope") is None
        await store.close()

    async def test_put_get_and_revisions(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        start = await store.revision()
        result = await store.txn([], [Put("a", b"1")])
        assert result.succeeded and result.revision == start + 1
        kv = await store.get("a")
        assert kv is not None and kv.value == b"1" and kv.mod_revision == start + 1
        result = await store.txn([], [Put("b", b"2"), Put("c", b"3")])
        assert result.revision == start + 2  # one transaction, one revision
        c = await store.get("c")
        assert c is not None and c.mod_revision == start + 2
        assert await store.revision() == start + 2
        await store.close()

    async def test_compare_operators(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        rev = (await store.txn([], [Put("k", b"v")])).revision
        cases = [
            (Compare("k", "==", rev), True), (Compare("k", "==", rev + 1), False),
            (Compare("k", "!=", rev), False), (Compare("k", "!=", 0), True),
            (Compare("k", "<", rev + 1), True), (Compare("k", "<", rev), False),
            (Compare("k", ">", rev - 1), True), (Compare("k", ">", rev), False),
            (Compare("absent", "==", 0), True), (Compare("absent", ">", 0), False),
        ]
        for compare, expected in cases:
            before = await store.revision()
            result = await store.txn([compare], [Put("marker", b"s")], [Put("marker", b"f")])
            assert result.succeeded is expected, compare
            marker = await store.get("marker")
            assert marker is not None and marker.value == (b"s" if expected else b"f")
            assert result.revision == before + 1
        await store.close()

    async def test_failed_compare_without_failure_ops_changes_nothing(
        self, store_factory: StoreFactory
    ) -> None:
        store = await store_factory()
        await store.txn([], [Put("x", b"1")])
        before = await store.revision()
        result = await store.txn([Compare("x", "==", 0)], [Put("x", b"2")])
        assert not result.succeeded
        assert await store.revision() == before
        x = await store.get("x")
        assert x is not None and x.value == b"1"
        await store.close()

    async def test_all_compares_must_hold(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        rev = (await store.txn([], [Put("p", b"1")])).revision
        result = await store.txn([Compare("p", "==", rev), Compare("q", "!=", 0)], [Put("r", b"1")])
        assert not result.succeeded and await store.get("r") is None
        await store.close()

    async def test_delete_and_prefix_delete(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.txn([], [Put("d/1", b""), Put("d/2", b""), Put("d/3/x", b""), Put("e", b"")])
        await store.txn([], [Delete("d/1")])
        assert await store.get("d/1") is None
        await store.txn([], [Delete("d/", prefix=True)])
        assert [kv.key for kv in await store.range("")] == ["e"]
        await store.close()

    async def test_range_order_and_pagination(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        keys = ["s/a", "s/b", "s/b/c", "s/bb", "s/é", "s/z", "s0", "r/a", "s/\u4e2d"]
        await store.txn([], [Put(k, k.encode()) for k in keys])
        expected = sorted((k for k in keys if k.startswith("s/")), key=lambda k: k.encode())
        got = await store.range("s/")
        assert [kv.key for kv in got] == expected
        assert all(kv.value == kv.key.encode() for kv in got)
        assert [kv.key for kv in await store.range("s/", limit=2)] == expected[:2]
        paged: list[str] = []
        after: str | None = None
        while True:
            page = await store.range("s/", start_after=after, limit=3)
            if not page:
                break
            paged += [kv.key for kv in page]
            after = page[-1].key
        assert paged == expected
        await store.close()

    async def test_concurrent_compare_and_swap_counter(self, store_factory: StoreFactory) -> None:
        store = await store_factory()

        async def increment() -> None:
            while True:
                kv = await store.get("counter")
                value = int(kv.value) if kv else 0
                revision = kv.mod_revision if kv else 0
                result = await store.txn(
                    [Compare("counter", "==", revision)], [Put("counter", b"%d" % (value + 1))]
                )
                if result.succeeded:
                    return
                await asyncio.sleep(0)

        await asyncio.gather(*(increment() for _ in range(self.concurrent_writers)))
        kv = await store.get("counter")
        assert kv is not None and int(kv.value) == self.concurrent_writers
        await store.close()

    async def test_reopen_keeps_data_and_revision(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.txn([], [Put("durable", b"yes"), Put("gone", b"x")])
        await store.txn([], [Delete("gone")])
        revision = await store.revision()
        await store.close()
        store = await store_factory()
        kv = await store.get("durable")
        assert kv is not None and kv.value == b"yes"
        assert await store.get("gone") is None
        assert await store.revision() == revision
        assert (await store.txn([], [Put("more", b"")])).revision == revision + 1
        await store.close()
