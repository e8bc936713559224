from __future__ import annotations

import asyncio

import pytest

from streambed.core.errors import Fenced
from streambed.core.stream.engine import OffsetOutOfRange, StreamEngine

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
