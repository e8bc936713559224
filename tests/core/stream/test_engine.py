from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import Fenced, Unavailable
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.stream.clock import ManualClock
from streambed.core.stream.engine import OffsetOutOfRange, StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.testing.faults import FaultPlan, FaultyObjectStore
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

from .conftest import EngineFactory


def payload(i: int) -> bytes:
    return b"batch-%06d-" % i + bytes([i % 256]) * (i % 700)


async def read_all(engine: StreamEngine, stream_id: int, epoch: int, start: int = 0) -> list[tuple[int, bytes]]:
    stream = await engine.open_stream(stream_id, epoch)
    out: list[tuple[int, bytes]] = []
    position = start
    while position < stream.next_offset:
        batches = await stream.fetch(position, max_bytes=10_000)
        assert batches, f"no progress at {position}"
        for b in batches:
            out.append((b.base, bytes(b.payload)))
            position = b.end
    return out


async def test_append_fetch_dense_offsets(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    sid = await engine.create_stream()
    stream = await engine.open_stream(sid, 1)
    offsets = await asyncio.gather(*(stream.append(payload(i), 3) for i in range(200)))
    assert offsets == [3 * i for i in range(200)]
    assert stream.next_offset == 600
    got = await read_all(engine, sid, 1)
    assert got == [(3 * i, payload(i)) for i in range(200)]
    # Fetch from the middle of a batch returns the whole batch holding that offset.
    batches = await stream.fetch(4, max_bytes=1)
    assert [b.base for b in batches] == [3]
    with pytest.raises(OffsetOutOfRange):
        await stream.fetch(601)
    await engine.close()


async def test_upload_then_read_from_objects_after_restart(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(upload_threshold_bytes=20_000, log_cache_bytes=60_000)
    streams = [await engine.create_stream() for _ in range(3)]
    handles = [await engine.open_stream(s, 1) for s in streams]
    for i in range(300):
        await handles[i % 3].append(payload(i), 1)
    await engine.upload()
    assert engine.uploads >= 1
    assert engine.memory()["log_cache"] <= 60_000
    await engine.close()
    engine = await engine_factory()
    for k, sid in enumerate(streams):
        got = await read_all(engine, sid, 2)
        assert got == [(j, payload(i)) for j, i in enumerate(range(k, 300, 3))]
    await engine.close()


async def test_unuploaded_data_recovered_from_wal(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    sid = await engine.create_stream()
    stream = await engine.open_stream(sid, 1)
    for i in range(50):
        await stream.append(payload(i), 2)
    # Simulate a crash: no upload, no clean close of the engine (the WAL file stays as it is).
    engine._closed = True
    for task in engine._tasks:
        task.cancel()
    await engine.wal.close()
    engine = await engine_factory()
    assert await read_all(engine, sid, 2) == [(2 * i, payload(i)) for i in range(50)]
    stream = await engine.open_stream(sid, 2)
    assert await stream.append(b"next", 1) == 100
    await engine.close()


async def test_older_epoch_is_fenced(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    sid = await engine.create_stream()
    await engine.open_stream(sid, 5)
    with pytest.raises(Fenced):
        await engine.open_stream(sid, 4)
    await engine.close()


async def test_trim_retention_and_compaction(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(upload_threshold_bytes=1 << 30, compaction_min_objects=2,
                                  object_delete_delay_ms=0)
    sid = await engine.create_stream()
    other = await engine.create_stream()
    s = await engine.open_stream(sid, 1)
    o = await engine.open_stream(other, 1)
    for round_ in range(5):
        for i in range(20):
            await s.append(payload(round_ * 20 + i), 1)
            await o.append(b"o%d" % i, 1)
        await engine.upload()
    before = {m.id for m in await engine.meta.list_objects()}
    assert len(before) == 5
    result = await engine.compact()
    assert result["merged"] == 5
    # Merged objects are stream objects; the old stream-set objects are deleted.
    after = await engine.meta.list_objects()
    assert {m.kind for m in after} == {"so"} and not ({m.id for m in after} & before)
    assert await read_all(engine, sid, 1) == [(i, payload(i)) for i in range(100)]
    await s.trim(100)
    result = await engine.compact()
    assert result["expired"] == 1 and result["deleted"] == 1
    keys = []
    page = await engine.objects.list("data/")
    keys = [x.key for x in page.objects]
    assert len(keys) == len(await engine.meta.list_objects()) == 1
    await engine.close()


async def test_object_count_stays_bounded(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(upload_threshold_bytes=1 << 30, compaction_min_objects=3,
                                  object_delete_delay_ms=0)
    streams = [await engine.open_stream(await engine.create_stream(), 1) for _ in range(2)]
    n = 0
    for _round in range(12):
        for stream in streams:
            for _ in range(5):
                await stream.append(payload(n), 1)
                n += 1
        await engine.upload()
        await engine.compact()
        live = [m for m in await engine.meta.list_objects() if m.state == "committed"]
        assert len(live) <= 2 * 3 + 1, [(m.kind, m.ranges) for m in live]
    for k, stream in enumerate(streams):
        got = await read_all(engine, stream.id, 1)
        assert [p for _, p in got] == [payload(i) for i in range(n) if (i // 5) % 2 == k]
    await engine.close()


async def test_delete_and_close_stream(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(compaction_min_objects=2, object_delete_delay_ms=0)
    doomed = await engine.open_stream(await engine.create_stream(), 1)
    kept = await engine.open_stream(await engine.create_stream(), 1)
    for i in range(30):
        await doomed.append(payload(i), 1)
        await kept.append(payload(i), 1)
    await engine.upload()
    await doomed.delete()
    with pytest.raises(Exception, match="deleted"):
        await doomed.append(b"late", 1)
    await engine.compact()  # the shared object still holds `kept`: it is rewritten, not lost
    await kept.close()
    with pytest.raises(Exception, match="closed"):
        await kept.append(b"after close", 1)
    assert await read_all(engine, kept.id, 2) == [(i, payload(i)) for i in range(30)]
    await engine.close()
    engine = await engine_factory(object_delete_delay_ms=0)
    await engine.compact()
    for meta in await engine.meta.list_objects():
        assert all(stream_id == kept.id for stream_id, _, _ in meta.ranges), meta
    await engine.close()


async def test_timer_uploads_and_compaction_follow_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    ctx = NodeContext(data_dir=tmp_path)
    engine = StreamEngine(
        await open_memory_wal(MemoryWalOptions(name="timer"), ctx),
        await open_memory_store(MemoryObjectStoreOptions(name="timer"), ctx),
        await open_memory_metadata(MemoryMetadataOptions(name="timer"), ctx),
        EngineSettings(upload_interval_ms=1_000, compaction_interval_ms=10_000,
                       compaction_min_objects=2, object_delete_delay_ms=0),
        clock=clock,
    )
    await engine.start()
    stream = await engine.open_stream(await engine.create_stream(), 1)
    await stream.append(b"a", 1)
    await clock.advance(0.5)
    assert engine.uploads == 0 and stream.committed_offset == 0
    await clock.advance(0.6)
    for _ in range(50):  # the upload task runs its own course
        if engine.uploads:
            break
        await asyncio.sleep(0.01)
    assert engine.uploads == 1 and stream.committed_offset == 1
    await stream.append(b"b", 1)
    await clock.advance(1.1)
    for _ in range(50):
        if engine.uploads == 2:
            break
        await asyncio.sleep(0.01)
    assert engine.uploads == 2
    await clock.advance(10)
    for _ in range(50):
        if engine.compactions:
            break
        await asyncio.sleep(0.01)
    assert engine.compactions == 1
    kinds = [m.kind for m in await engine.meta.list_objects("committed")]
    assert kinds == ["so"]
    assert [bytes(b.payload) for b in await stream.fetch(0)] == [b"a", b"b"]
    await engine.close()


async def test_reads_across_a_merged_object_with_a_hole(engine_factory: EngineFactory) -> None:
    """A merge of non-adjacent objects yields one object holding two ranges of a stream, with
    the offsets between them in another object: reads must follow the ranges, not the object."""
    engine = await engine_factory(compaction_min_objects=2, object_delete_delay_ms=0,
                                  stream_object_threshold_bytes=1000)
    stream = await engine.open_stream(await engine.create_stream(), 1)
    await stream.append(b"small-0", 1)
    await engine.upload()  # sso [0, 1)
    await stream.append(b"x" * 2000, 1)
    await engine.upload()  # a stream object [1, 2): over the threshold
    await stream.append(b"small-2", 1)
    await engine.upload()  # sso [2, 3)
    await engine.compact()  # merges the two ssos only
    ranges = sorted(r for m in await engine.meta.list_objects("committed") for r in m.ranges)
    assert [(a, b) for _, a, b in ranges] == [(0, 1), (1, 2), (2, 3)]
    assert len({m.id for m in await engine.meta.list_objects("committed")}) == 2
    await engine.close()
    engine = await engine_factory()
    got = await read_all(engine, stream.id, 2)
    assert got == [(0, b"small-0"), (1, b"x" * 2000), (2, b"small-2")]
    await engine.close()


async def test_back_pressure_fails_appends_while_uploads_fail(tmp_path: Path) -> None:
    ctx = NodeContext(data_dir=tmp_path)
    plan = FaultPlan()
    engine = StreamEngine(
        await open_memory_wal(MemoryWalOptions(name="pressure"), ctx),
        FaultyObjectStore(await open_memory_store(MemoryObjectStoreOptions(name="pressure"), ctx), plan),
        await open_memory_metadata(MemoryMetadataOptions(name="pressure"), ctx),
        EngineSettings(log_cache_bytes=64 * 1024, upload_threshold_bytes=1 << 30,
                       upload_interval_ms=3_600_000),
    )
    await engine.start()
    stream = await engine.open_stream(await engine.create_stream(), 1)
    for _ in range(7):
        await stream.append(bytes(8192), 1)
    plan.probability = {"objects.put": 1.0}
    with pytest.raises(Unavailable):
        # The cache is full of data not uploaded and the store refuses it: a retriable error,
        # not an unbounded wait or queue.
        await stream.append(bytes(16384), 1)
    assert engine.memory()["pending"] <= 64 * 1024
    plan.probability = {}
    assert await stream.append(bytes(16384), 1) == 7  # the failed append left no hole
    assert engine.uploads == 1
    await engine.close()


async def test_a_second_incarnation_of_the_node_fences_the_first(tmp_path: Path) -> None:
    ctx = NodeContext(data_dir=tmp_path)

    async def make() -> StreamEngine:
        engine = StreamEngine(
            await open_memory_wal(MemoryWalOptions(name="zombie"), ctx),
            await open_memory_store(MemoryObjectStoreOptions(name="zombie"), ctx),
            await open_memory_metadata(MemoryMetadataOptions(name="zombie"), ctx),
            EngineSettings(upload_interval_ms=3_600_000),
        )
        await engine.start()
        return engine

    zombie = await make()
    stream = await zombie.open_stream(await zombie.create_stream(), 1)
    await stream.append(b"before", 1)
    await zombie.upload()
    successor = await make()
    await stream.append(b"zombie write", 1)  # the WAL still takes it, but it never commits
    with pytest.raises(Fenced):
        await zombie.upload()
    with pytest.raises(Fenced):
        await stream.append(b"more", 1)
    mine = await successor.open_stream(stream.id, 2)
    assert [bytes(b.payload) for b in await mine.fetch(0)] == [b"before"]
    await successor.close()


async def test_object_builds_and_merges_let_the_event_loop_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building an upload object and rebuilding objects in a merge checksum every batch; done in
    one piece they would hold the event loop (or, on a thread, the GIL) for the whole object.
    Other tasks must get to run between the first and the last batch of each."""
    from streambed.core.objects import format as object_format

    ctx = NodeContext(data_dir=tmp_path)
    engine = StreamEngine(
        await open_memory_wal(MemoryWalOptions(name="slices"), ctx),
        await open_memory_store(MemoryObjectStoreOptions(name="slices"), ctx),
        await open_memory_metadata(MemoryMetadataOptions(name="slices"), ctx),
        EngineSettings(upload_threshold_bytes=1 << 30, stream_object_threshold_bytes=1 << 30,
                       compaction_min_objects=2, object_delete_delay_ms=0,
                       upload_interval_ms=600_000, compaction_interval_ms=600_000),
    )
    await engine.start()
    stream = await engine.open_stream(await engine.create_stream(), 1)
    ticks = 0
    seen: list[int] = []
    real_add = object_format.ObjectBuilder.add

    def add(self: object_format.ObjectBuilder, stream_id: int, batch: object_format.Batch) -> None:
        seen.append(ticks)
        real_add(self, stream_id, batch)

    monkeypatch.setattr(object_format.ObjectBuilder, "add", add)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        for _round in range(2):
            for i in range(256):  # 8 MiB per upload
                await stream.append(b"%d" % i + bytes(32 * 1024), 1)
            seen.clear()
            await engine.upload()
            assert len(seen) == 256 and seen[-1] > seen[0], "the upload build never yielded"
        seen.clear()
        result = await engine.compact()
        assert result["merged"] == 2
        assert len(seen) == 512 and seen[-1] > seen[0], "the merge never yielded"
    finally:
        running.cancel()
    assert [p[: p.index(b"\0")] for _, p in await read_all(engine, stream.id, 1)] == [
        b"%d" % i for i in range(256)] * 2
    await engine.close()
