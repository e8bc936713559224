"""The stream/object domain layer over the transactional KV: fencing, ranges, object states,
locators, and the rules that make a lost or overlapping range impossible to commit."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import DataError, Fenced, NotFound, Unavailable
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put, TxnResult
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.metadata.streams import ObjectMeta, StreamMetadata

_names = itertools.count()


@pytest.fixture(params=["memory", "local"])
async def kv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    ctx = NodeContext(data_dir=tmp_path)
    store: MetadataStore
    if request.param == "memory":
        store = await open_memory_metadata(MemoryMetadataOptions(name=f"streams-{next(_names)}"), ctx)
    else:
        store = await open_local_metadata(LocalMetadataOptions(), ctx)
    yield store
    await store.close()


async def upload(meta: StreamMetadata, epoch: int, ranges: dict[int, tuple[int, int]], kind: str = "sso") -> ObjectMeta:
    """Prepare and commit one object holding ``ranges`` ({stream: (start, end)})."""
    obj = await meta.prepare_object(kind, ttl=60)  # type: ignore[arg-type]
    obj.ranges = [(s, a, b) for s, (a, b) in sorted(ranges.items())]
    obj.size = 100
    await meta.commit_objects([obj], {s: (epoch, b) for s, (_, b) in ranges.items()})
    return obj


async def tiling(meta: StreamMetadata, stream_id: int) -> list[tuple[int, int, int]]:
    return [(x.start, x.end, x.object_id) for x in await meta.objects_covering(stream_id, 0)]


async def test_open_fences_older_epochs_and_other_nodes(kv: MetadataStore) -> None:
    one = StreamMetadata(kv, node_id=1)
    two = StreamMetadata(kv, node_id=2)
    sid = (await one.create_stream()).id
    await one.open_stream(sid, 5)
    with pytest.raises(Fenced):
        await one.open_stream(sid, 4)
    with pytest.raises(Fenced, match="not newer"):
        await two.open_stream(sid, 5)  # same epoch, another node
    assert (await one.open_stream(sid, 5)).revision  # reopening by the owner is a no-op
    stream = await two.open_stream(sid, 6)
    assert (stream.epoch, stream.node, stream.state) == (6, 2, "open")
    assert stream.ranges == [(5, 1, 0, 0), (6, 2, 0, 0)]
    with pytest.raises(NotFound):
        await one.open_stream(999, 1)


async def test_new_owner_starts_a_range_at_the_committed_end(kv: MetadataStore) -> None:
    one = StreamMetadata(kv, node_id=1)
    two = StreamMetadata(kv, node_id=2)
    sid = (await one.create_stream()).id
    await one.open_stream(sid, 1)
    await upload(one, 1, {sid: (0, 10)})
    await upload(one, 1, {sid: (10, 25)})
    await one.close_stream(sid, 1)
    await two.open_stream(sid, 2)
    await upload(two, 2, {sid: (25, 30)})
    stream = await two.get_stream(sid)
    assert stream.end == 30
    assert stream.ranges == [(1, 1, 0, 25), (2, 2, 25, 30)]
    # The old owner can no longer commit: its range is closed.
    with pytest.raises(Fenced):
        await upload(one, 1, {sid: (30, 31)})
    assert [(a, b) for a, b, _ in await tiling(two, sid)] == [(0, 10), (10, 25), (25, 30)]


async def test_commit_refuses_gaps_overlaps_and_wrong_ends(kv: MetadataStore) -> None:
    meta = StreamMetadata(kv)
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    await upload(meta, 1, {sid: (0, 10)})
    obj = await meta.prepare_object("sso")
    obj.ranges = [(sid, 11, 20)]
    with pytest.raises(DataError, match="gap"):
        await meta.commit_objects([obj], {sid: (1, 20)})
    obj.ranges = [(sid, 5, 20)]
    with pytest.raises(Fenced, match="already committed"):
        await meta.commit_objects([obj], {sid: (1, 20)})
    obj.ranges = [(sid, 10, 20)]
    with pytest.raises(DataError, match="not 25"):
        await meta.commit_objects([obj], {sid: (1, 25)})
    # Nothing of the refused attempts was written.
    assert (await meta.get_stream(sid)).end == 10
    assert (await meta.get_object(obj.id)).state == "prepared"  # type: ignore[union-attr]
    await meta.commit_objects([obj], {sid: (1, 20)})
    assert (await meta.get_object(obj.id)).state == "committed"  # type: ignore[union-attr]


async def test_compaction_commit_replaces_objects_and_locators(kv: MetadataStore) -> None:
    meta = StreamMetadata(kv)
    a, b = (await meta.create_stream()).id, (await meta.create_stream()).id
    for sid in (a, b):
        await meta.open_stream(sid, 1)
    first = await upload(meta, 1, {a: (0, 10), b: (0, 3)})
    second = await upload(meta, 1, {a: (10, 20), b: (3, 9)})
    third = await upload(meta, 1, {a: (20, 30)})
    so_a = await meta.prepare_object("so")
    so_a.ranges = [(a, 0, 20)]
    so_b = await meta.prepare_object("so")
    so_b.ranges = [(b, 0, 9)]
    await meta.commit_objects([so_a, so_b], {}, [first, second])
    assert await tiling(meta, a) == [(0, 20, so_a.id), (20, 30, third.id)]
    assert await tiling(meta, b) == [(0, 9, so_b.id)]
    states = {o.id: o.state for o in await meta.list_objects()}
    assert states == {first.id: "marked", second.id: "marked", third.id: "committed",
                      so_a.id: "committed", so_b.id: "committed"}
    # Stream ends are untouched by compaction.
    assert (await meta.get_stream(a)).end == 30
    # A merge may not claim offsets that the replaced objects do not hold...
    bad = await meta.prepare_object("so")
    bad.ranges = [(a, 0, 30)]
    with pytest.raises(DataError, match="no replaced object"):
        await meta.commit_objects([bad], {}, [so_a])
    # ...nor replace an object that changed since it was read (here: already replaced).
    again = await meta.prepare_object("so")
    again.ranges = [(a, 0, 10)]
    with pytest.raises(Fenced):
        await meta.commit_objects([again], {}, [first])


async def test_objects_covering_finds_the_range_with_paging(kv: MetadataStore) -> None:
    meta = StreamMetadata(kv)
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    objs = [await upload(meta, 1, {sid: (3 * i, 3 * i + 3)}) for i in range(300)]
    found = await meta.objects_covering(sid, 100, 112)
    # 100 is in [99, 102); 111 in [111, 114); 112 would start [112...) which is not asked.
    assert [(x.start, x.end) for x in found] == [(99, 102), (102, 105), (105, 108), (108, 111), (111, 114)]
    assert [x.object_id for x in found] == [o.id for o in objs[33:38]]
    assert len(await meta.objects_covering(sid, 0)) == 300  # more than one page of 256
    assert await meta.objects_covering(sid, 900) == []


async def test_stale_node_incarnation_is_fenced(kv: MetadataStore) -> None:
    old = StreamMetadata(kv, node_id=1)
    await old.register_node(epoch=5, wal="file:/a")
    sid = (await old.create_stream()).id
    await old.open_stream(sid, 1)
    with pytest.raises(Fenced):
        await StreamMetadata(kv, node_id=1).register_node(epoch=4)
    new = StreamMetadata(kv, node_id=1)
    node = await new.register_node()  # picks an epoch above 5
    assert node.epoch > 5 and node.wal == ""
    with pytest.raises(Fenced, match="superseded"):
        await old.create_stream()
    with pytest.raises(Fenced):
        await upload(old, 1, {sid: (0, 1)})
    await new.open_stream(sid, 1)  # same node id, same stream epoch: the new incarnation owns it
    await upload(new, 1, {sid: (0, 1)})
    assert [n.epoch for n in await new.list_nodes()] == [node.epoch]


async def test_failover_fences_a_node_before_its_wal_is_taken_over(kv: MetadataStore) -> None:
    dead = StreamMetadata(kv, node_id=1)
    await dead.register_node(epoch=10, wal="ebs:/dev/vdb")
    sid = (await dead.create_stream()).id
    await dead.open_stream(sid, 1)
    taker = StreamMetadata(kv, node_id=2)
    await taker.register_node(epoch=3)
    fenced = await taker.fence_node(1, 10)
    assert fenced.state == "fenced" and fenced.wal == "ebs:/dev/vdb"
    with pytest.raises(Fenced):
        await upload(dead, 1, {sid: (0, 5)})
    # The taker replays the WAL, opens the stream with a newer epoch, uploads.
    await taker.open_stream(sid, 2)
    await upload(taker, 2, {sid: (0, 5)})
    assert (await taker.get_stream(sid)).ranges == [(1, 1, 0, 0), (2, 2, 0, 5)]
    # Fencing an epoch that has already been superseded changes nothing.
    await StreamMetadata(kv, node_id=1).register_node(epoch=11)
    assert (await taker.fence_node(1, 10)).state == "alive"


class DroppedResponse:
    """Applies the n-th transaction, then reports a failure (the answer was lost)."""

    def __init__(self, inner: MetadataStore, drop: set[int]) -> None:
        self.inner = inner
        self.drop = drop
        self.refuse: set[int] = set()  # fail without applying
        self.calls = 0

    async def get(self, key: str):  # type: ignore[no-untyped-def]
        return await self.inner.get(key)

    async def range(self, prefix: str, *, start_after: str | None = None, limit: int = 0):  # type: ignore[no-untyped-def]
        return await self.inner.range(prefix, start_after=start_after, limit=limit)

    async def txn(self, compares: Sequence[Compare], on_success: Sequence[Put | Delete],
                  on_failure: Sequence[Put | Delete] = ()) -> TxnResult:
        self.calls += 1
        if self.calls in self.refuse:
            raise Unavailable("request lost")
        result = await self.inner.txn(compares, on_success, on_failure)
        if self.calls in self.drop:
            raise Unavailable("response lost")
        return result

    async def revision(self) -> int:
        return await self.inner.revision()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_commit_whose_answer_was_lost_is_recognised(kv: MetadataStore) -> None:
    lossy = DroppedResponse(kv, set())
    meta = StreamMetadata(lossy)  # type: ignore[arg-type]
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    obj = await meta.prepare_object("sso")
    obj.ranges = [(sid, 0, 4)]
    lossy.drop = {lossy.calls + 1}
    await meta.commit_objects([obj], {sid: (1, 4)})  # no error: it did happen
    stored = await meta.get_object(obj.id)
    assert stored is not None and stored.state == obj.state == "committed"
    assert stored.revision == obj.revision
    # A commit that did *not* happen stays an error, and the object stays prepared.
    other = await meta.prepare_object("sso")
    other.ranges = [(sid, 4, 6)]
    lossy.refuse = {lossy.calls + 1}
    with pytest.raises(Unavailable):
        await meta.commit_objects([other], {sid: (1, 6)})
    assert (await meta.get_object(other.id)).state == "prepared"  # type: ignore[union-attr]
    assert (await meta.get_stream(sid)).end == 4


async def test_conflicting_changes_are_retried_not_lost(kv: MetadataStore) -> None:
    meta = StreamMetadata(kv)
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    objs = []
    for i in range(10):
        obj = await meta.prepare_object("sso")
        obj.ranges = [(sid, i, i + 1)]
        objs.append(obj)

    async def commits() -> None:
        for i, obj in enumerate(objs):
            await meta.commit_objects([obj], {sid: (1, i + 1)})

    async def trims() -> None:
        for i in range(10):
            await meta.trim_stream(sid, 1, i)
            await asyncio.sleep(0)

    ids = await asyncio.gather(commits(), trims(), *(meta.create_stream() for _ in range(10)))
    stream = await meta.get_stream(sid)
    assert (stream.start, stream.end) == (9, 10)
    assert len({s.id for s in ids[2:]}) == 10  # type: ignore[union-attr]


async def test_retention_marks_and_forgets(kv: MetadataStore) -> None:
    now = [1000.0]
    meta = StreamMetadata(kv, clock=lambda: now[0])
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    old = await upload(meta, 1, {sid: (0, 5)})
    await upload(meta, 1, {sid: (5, 9)})
    await meta.trim_stream(sid, 1, 5)
    with pytest.raises(DataError):
        await meta.forget_object(old)
    (marked,) = await meta.mark_objects([old])
    assert marked.state == "marked" and marked.marked_at == 1000.0
    assert [(x.start, x.end) for x in await meta.objects_covering(sid, 0)] == [(5, 9)]
    assert await meta.mark_objects([old]) == []  # stale read: skipped, not re-marked
    assert await meta.forget_object(marked)
    assert await meta.get_object(old.id) is None
    # Prepared objects carry their deadline.
    prepared = await meta.prepare_object("so", ttl=30)
    assert prepared.deadline == 1030.0 and prepared.node == 1


async def test_deleted_stream_is_purged_after_its_objects(kv: MetadataStore) -> None:
    meta = StreamMetadata(kv)
    sid = (await meta.create_stream()).id
    await meta.open_stream(sid, 1)
    obj = await upload(meta, 1, {sid: (0, 5)})
    assert not await meta.purge_stream(sid)  # not deleted
    await meta.delete_stream(sid, 1)
    with pytest.raises(NotFound):
        await meta.open_stream(sid, 2)
    assert not await meta.purge_stream(sid)  # an object still holds its data
    await meta.mark_objects([obj])
    assert await meta.purge_stream(sid)
    with pytest.raises(NotFound):
        await meta.get_stream(sid)


async def test_random_uploads_and_merges_keep_the_tiling(kv: MetadataStore) -> None:
    """Locators of every stream always tile [0, end) exactly, whatever merges happen."""
    rng = random.Random(7)
    meta = StreamMetadata(kv)
    streams = [(await meta.create_stream()).id for _ in range(3)]
    for sid in streams:
        await meta.open_stream(sid, 1)
    ends = dict.fromkeys(streams, 0)
    for _ in range(40):
        if rng.random() < 0.7:
            chosen = rng.sample(streams, rng.randint(1, 3))
            ranges = {}
            for sid in chosen:
                ranges[sid] = (ends[sid], ends[sid] + rng.randint(1, 5))
                ends[sid] = ranges[sid][1]
            await upload(meta, 1, ranges)
        else:
            live = await meta.list_objects("committed")
            if len(live) < 2:
                continue
            chosen_objs = rng.sample(live, rng.randint(2, min(4, len(live))))
            news = []
            per_stream: dict[int, list[tuple[int, int]]] = {}
            for o in chosen_objs:
                for s, a, b in o.ranges:
                    per_stream.setdefault(s, []).append((a, b))
            for s, rs in sorted(per_stream.items()):
                new = await meta.prepare_object("so")
                rs.sort()
                runs = [list(rs[0])]
                for a, b in rs[1:]:
                    if a == runs[-1][1]:
                        runs[-1][1] = b
                    else:
                        runs.append([a, b])
                new.ranges = [(s, a, b) for a, b in runs]
                news.append(new)
            await meta.commit_objects(news, {}, chosen_objs)
        for sid in streams:
            tiles = await tiling(meta, sid)
            position = 0
            for a, b, _ in tiles:
                assert a == position, (sid, tiles)
                position = b
            assert position == ends[sid] == (await meta.get_stream(sid)).end
