"""Read path: cold catch-up reads from a slow object store never delay tail reads or appends,
and readahead grows on sequential reads."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from streambed.core.context import NodeContext
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal


class SlowReads:
    """Adds latency to every range read (a slow S3), counting them."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.range_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        self.range_reads += 1
        await asyncio.sleep(self.delay)
        return await self.inner.get_range(key, start, end)


async def make(tmp_path: Path, name: str, delay: float) -> tuple[StreamEngine, SlowReads]:
    ctx = NodeContext(data_dir=tmp_path)
    store = SlowReads(await open_memory_store(MemoryObjectStoreOptions(name=name), ctx), delay)
    engine = StreamEngine(
        await open_memory_wal(MemoryWalOptions(name=name), ctx), store,  # type: ignore[arg-type]
        await open_memory_metadata(MemoryMetadataOptions(name=name), ctx),
        EngineSettings(block_bytes=16 * 1024, upload_interval_ms=3_600_000,
                       readahead_max_bytes=512 * 1024, log_cache_bytes=8 * 1024 * 1024),
    )
    await engine.start()
    return engine, store


async def test_cold_reads_do_not_delay_tail_reads_or_appends(tmp_path: Path) -> None:
    engine, _ = await make(tmp_path, "isolation", delay=0.2)
    cold = await engine.open_stream(await engine.create_stream(), 1)
    hot = await engine.open_stream(await engine.create_stream(), 1)
    for _ in range(200):
        await cold.append(os.urandom(8 * 1024), 1)
    await engine.upload()
    engine._evict()  # the cold stream's data now lives only in objects
    stop = asyncio.Event()

    async def catch_up(reader: int) -> None:
        position = 0
        while not stop.is_set() and position < cold.next_offset:
            batches = await cold.fetch(position, max_bytes=32 * 1024)
            position = batches[-1].end

    readers = [asyncio.create_task(catch_up(i)) for i in range(8)]
    await asyncio.sleep(0.05)
    worst = 0.0
    for i in range(50):
        start = time.perf_counter()
        offset = await hot.append(b"hot-%d" % i, 1)
        got = await hot.fetch(offset, max_bytes=1)
        worst = max(worst, time.perf_counter() - start)
        assert bytes(got[0].payload) == b"hot-%d" % i
    stop.set()
    await asyncio.gather(*readers)
    # Each cold range read takes 200 ms; the hot path must not wait behind any of them.
    assert worst < 0.05, f"tail append+read took {worst * 1000:.0f} ms during cold reads"
    await engine.close()


async def test_readahead_grows_on_sequential_reads(tmp_path: Path) -> None:
    engine, store = await make(tmp_path, "readahead", delay=0.0)
    stream = await engine.open_stream(await engine.create_stream(), 1)
    for _ in range(400):
        await stream.append(os.urandom(4 * 1024), 1)
    await engine.upload()
    engine._evict()
    engine.settings.log_cache_bytes = 1  # nothing stays cached: every read goes to objects
    engine._evict()
    position, reads = 0, 0
    while position < 400:
        batches = await stream.fetch(position, max_bytes=4 * 1024)
        position = batches[-1].end
        reads += 1
    # 400 small sequential fetches, but readahead makes later ones block-cache hits.
    assert store.range_reads < reads / 4, (store.range_reads, reads)
    await engine.close()


async def test_reads_from_inside_a_batch_get_the_batch_that_holds_it(tmp_path: Path) -> None:
    """Cold and cached alike: a fetch from an offset inside a batch returns that whole batch
    first, then the following ones (it once spun the event loop forever on a cold read)."""
    engine, _ = await make(tmp_path, "inside", delay=0.0)
    stream = await engine.open_stream(await engine.create_stream(), 1)
    bases = [await stream.append(b"batch-%d" % i + bytes(3000), 10) for i in range(30)]
    assert bases == [10 * i for i in range(30)]

    async def check() -> None:
        for offset in range(0, 300, 3):
            got = await stream.fetch(offset, max_bytes=1)
            assert [b.base for b in got] == [offset - offset % 10], offset
            assert bytes(got[0].payload).startswith(b"batch-%d" % (offset // 10))
            end = max(offset + 1, 285)  # an end inside a batch includes that batch
            more = await stream.fetch(offset, end, max_bytes=1 << 20)
            assert [b.base for b in more] == list(range(offset - offset % 10, end, 10))

    await check()  # from the log cache
    await engine.close()  # uploads everything
    engine, _ = await make(tmp_path, "inside", delay=0.0)  # a restart: the data is in objects
    stream = await engine.open_stream(stream.id, 2)
    assert not stream._state.cache
    await check()  # from objects
    await engine.close()
