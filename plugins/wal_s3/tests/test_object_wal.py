"""The S3 WAL's logic over the in-memory reference object store (faults injected by wrappers).

The same WAL against a real SeaweedFS server is in test_s3_wal_seaweedfs.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import Fenced, Unavailable
from streambed.core.objects.api import ObjectStore
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.testing.wal import WalConformance
from streambed.plugins.wal_s3.wal import ObjectWal, decode_object, encode_object

_names = itertools.count()


async def memory_store(name: str, tmp_path: Path) -> ObjectStore:
    return await open_memory_store(MemoryObjectStoreOptions(name=name), NodeContext(data_dir=tmp_path))


def make_wal(store: ObjectStore, epoch: int = 1, **kwargs: Any) -> ObjectWal:
    defaults: dict[str, Any] = {"window_ms": 2.0, "retry_base_s": 0.001, "retry_max_s": 0.01,
                                "owns_store": False}
    defaults.update(kwargs)
    return ObjectWal(store, wal_node_id=7, holder_node_id=7, epoch=epoch, **defaults)


class TestObjectWalConformance(WalConformance):
    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[[], Awaitable[Any]]:
        name = f"walconf-{next(_names)}"
        epochs = itertools.count(1)

        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            store = await memory_store(name, tmp_path)
            return make_wal(store, epoch=next(epochs), capacity_bytes=capacity_bytes or 2**30,
                            full_timeout_s=full_timeout_s)

        return open_wal


async def test_object_codec_round_trip_and_corruption() -> None:
    bodies = [b"", b"a", b"x" * 1000]
    data = b"".join(bytes(p) for p in encode_object(7, 3, 100, bodies))
    first, records = decode_object(data, "k")
    assert first == 100 and [(r.offset, r.body) for r in records] == [(100, b""), (101, b"a"), (102, b"x" * 1000)]
    for i in range(0, len(data), 7):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x40
        with pytest.raises(Exception) as err:
            decode_object(bytes(corrupt), "k")
        assert type(err.value).__name__ == "DataError"


async def _recover_all(wal: ObjectWal) -> list[tuple[int, bytes]]:
    out = [(r.offset, r.body) async for r in wal.recover()]
    await wal.start()
    return out


async def test_batches_many_appends_into_few_objects(tmp_path: Path) -> None:
    store = await memory_store("batch", tmp_path)
    wal = make_wal(store, window_ms=20.0)
    await _recover_all(wal)
    offsets = await asyncio.gather(*(wal.append(b"r%d" % i) for i in range(500)))
    assert offsets == list(range(500))
    puts = wal.request_counts()["put"]
    assert puts < 20, f"{puts} PUTs for 500 appends: the window does not batch"
    await wal.close()


async def test_stale_owner_is_fenced_and_never_acks(tmp_path: Path) -> None:
    store = await memory_store("fence", tmp_path)
    old = make_wal(store, epoch=1)
    await _recover_all(old)
    assert await old.append(b"before") == 0
    new = ObjectWal(store, wal_node_id=7, holder_node_id=9, epoch=2, window_ms=2.0, owns_store=False)
    recovered = await _recover_all(new)
    assert recovered == [(0, b"before")]
    with pytest.raises(Fenced):
        await old.append(b"after takeover")
    with pytest.raises(Fenced):
        await old.append(b"again")
    assert await new.append(b"new owner") == 1
    await new.close()
    await old.close()
    reopened = make_wal(store, epoch=1)
    with pytest.raises(Fenced):
        await _recover_all(reopened)


async def test_gap_after_crash_is_not_replayed(tmp_path: Path) -> None:
    store = await memory_store("gap", tmp_path)
    wal = make_wal(store)
    await _recover_all(wal)
    for i in range(3):
        await wal.append(b"%d" % i)
    await wal.close()
    # An object that was uploaded while its predecessor never was (writer died in between).
    parts = encode_object(7, 1, 10, [b"never acked"])
    await store.put("wal/0000000007/data/00000000000000000010", parts)
    again = make_wal(store, epoch=2)
    assert [b for _, b in await _recover_all(again)] == [b"0", b"1", b"2"]
    assert await again.append(b"next") == 3
    keys = [o.key for o in (await store.list("wal/0000000007/data/")).objects]
    assert "wal/0000000007/data/00000000000000000010" not in keys
    await again.close()


class FlakyStore:
    """Fails the first `failures` puts with Unavailable (a 503 storm), then recovers."""

    def __init__(self, inner: ObjectStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, data: Any, *, if_none_match: bool = False) -> Any:
        if "/data/" in key and self.failures > 0:
            self.failures -= 1
            raise Unavailable("503 SlowDown (injected)")
        return await self.inner.put(key, data, if_none_match=if_none_match)


async def test_outage_delays_acks_but_loses_nothing(tmp_path: Path) -> None:
    store = FlakyStore(await memory_store("flaky", tmp_path), failures=25)
    wal = make_wal(store)  # type: ignore[arg-type]
    await _recover_all(wal)
    offsets = await asyncio.gather(*(wal.append(b"v%d" % i) for i in range(50)))
    assert offsets == list(range(50))
    await wal.close()
    again = make_wal(store.inner, epoch=2)
    assert [b for _, b in await _recover_all(again)] == [b"v%d" % i for i in range(50)]
    await again.close()


async def test_trim_deletes_objects_and_survives_restart(tmp_path: Path) -> None:
    store = await memory_store("trim", tmp_path)
    wal = make_wal(store)
    await _recover_all(wal)
    for i in range(10):
        await wal.append(b"%d" % i)
    await wal.trim(6)
    await wal.close()
    again = make_wal(store, epoch=2)
    assert [o for o, _ in await _recover_all(again)] == [6, 7, 8, 9]
    assert len((await store.list("wal/0000000007/data/")).objects) <= 4
    await again.close()
