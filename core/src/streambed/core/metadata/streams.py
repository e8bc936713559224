"""Streams, objects and nodes: the engine's metadata, as transactions over the :class:`MetadataStore`.

Key layout (every value is JSON; ids are zero-padded so key order is numeric order)::

    sb/counters/stream                      last stream id handed out
    sb/counters/object                      last object id handed out
    sb/nodes/<node>                         {epoch, wal, state, registered_at}
    sb/streams/<stream>                     {epoch, node, start, end, state,
                                             ranges: [[epoch, node, start, end], ...]}
    sb/objects/<object>                     {kind, state, node, size, ranges: [[stream, start, end]],
                                             prepared_at, deadline, committed_at, marked_at}
    sb/locators/<stream>/<end offset>       {object, start}: "offsets [start, end) of this stream
                                             are in that object"

``end`` in a stream record is its *committed* end: every offset in ``[start, end)`` is held by exactly
one committed object, and the locators of the stream tile that interval without gaps or overlaps (a
commit that would break this is refused). Locators are keyed by their *end* so "which objects cover
``[a, b)``" is one forward range scan starting after ``<stream>/<a>``: no full listing of objects, which
matters on etcd with many brokers.

Object states: prepared (id recorded, data maybe written) → committed (referenced by locators) →
marked (no locator references it; data deleted after a delay) → record deleted. Each move is one
transaction comparing the revisions it read, so a crash between any two steps leaves a state that
cleanup can finish, and a stale owner's transaction fails its compare.

Fencing. Streams carry an owner ``(node, epoch)``; opening with an older epoch is refused, and each new
owner appends a range ``(epoch, node, start, end)`` starting at the previous committed end. A node
registers with a *node epoch* (it grows on every start) and the identity of its WAL, so another node
can take the WAL over on failover; every transaction of a registered node compares its node record,
so a zombie incarnation (or a node whose WAL was taken over) is fenced on its next commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from streambed.core.errors import DataError, Fenced, NotFound, Unavailable
from streambed.core.metadata.api import Compare, Delete, KeyValue, MetadataStore, Put, TxnResult

__all__ = [
    "ROOT",
    "NodeMeta",
    "ObjectKind",
    "ObjectLocation",
    "ObjectMeta",
    "ObjectState",
    "StreamMeta",
    "StreamMetadata",
    "object_key",
]

ROOT = "sb/"
ObjectKind = Literal["sso", "so"]
ObjectState = Literal["prepared", "committed", "marked"]
StreamState = Literal["open", "closed", "deleted"]
NodeState = Literal["alive", "fenced"]


def _node_key(node_id: int) -> str:
    return f"{ROOT}nodes/{node_id:010d}"


def _stream_key(stream_id: int) -> str:
    return f"{ROOT}streams/{stream_id:020d}"


def _object_key(object_id: int) -> str:
    return f"{ROOT}objects/{object_id:020d}"


def _locator_prefix(stream_id: int) -> str:
    return f"{ROOT}locators/{stream_id:020d}/"


def _locator_key(stream_id: int, end: int) -> str:
    return f"{_locator_prefix(stream_id)}{end:020d}"


def object_key(object_id: int) -> str:
    """Where an object's data lives in the object store (spread over 1000 prefixes)."""
    return f"data/{object_id % 1000:03d}/{object_id:020d}"


def _encode(record: Any) -> bytes:
    data = asdict(record)
    del data["revision"], data["id"]
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass
class NodeMeta:
    id: int
    epoch: int
    wal: str = ""
    """How another node can open this node's WAL on failover (the WAL's type and options)."""
    state: NodeState = "alive"
    registered_at: float = 0.0
    revision: int = 0

    def encode(self) -> bytes:
        return _encode(self)


@dataclass
class StreamMeta:
    id: int
    epoch: int = 0
    node: int = -1
    start: int = 0
    end: int = 0
    state: StreamState = "closed"
    ranges: list[tuple[int, int, int, int]] = field(default_factory=list)
    """Ownership history: ``(epoch, node, start, end)``, one per owner, oldest first."""
    revision: int = 0

    def encode(self) -> bytes:
        return _encode(self)


@dataclass
class ObjectMeta:
    id: int
    kind: ObjectKind
    state: ObjectState = "prepared"
    node: int = -1
    size: int = 0
    ranges: list[tuple[int, int, int]] = field(default_factory=list)
    """``(stream, start, end)``: the offsets this object holds, ascending within a stream."""
    prepared_at: float = 0.0
    deadline: float = 0.0
    """A prepared object still uncommitted after this (seconds since the epoch) is abandoned."""
    committed_at: float = 0.0
    marked_at: float = 0.0
    revision: int = 0

    @property
    def key(self) -> str:
        return object_key(self.id)

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True, slots=True)
class ObjectLocation:
    """Offsets ``[start, end)`` of ``stream_id`` are in ``object_id``."""

    stream_id: int
    start: int
    end: int
    object_id: int


def _node(kv: KeyValue) -> NodeMeta:
    return NodeMeta(int(kv.key.rsplit("/", 1)[1]), **json.loads(kv.value), revision=kv.mod_revision)


def _stream(kv: KeyValue) -> StreamMeta:
    data: dict[str, Any] = json.loads(kv.value)
    data["ranges"] = [tuple(r) for r in data.get("ranges", [])]
    return StreamMeta(int(kv.key.rsplit("/", 1)[1]), **data, revision=kv.mod_revision)


def _object(kv: KeyValue) -> ObjectMeta:
    data: dict[str, Any] = json.loads(kv.value)
    data["ranges"] = [tuple(r) for r in data["ranges"]]
    return ObjectMeta(int(kv.key.rsplit("/", 1)[1]), **data, revision=kv.mod_revision)


def _by_stream(objects: Iterable[ObjectMeta]) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for meta in objects:
        for stream_id, start, end in meta.ranges:
            out.setdefault(stream_id, []).append((start, end))
    for ranges in out.values():
        ranges.sort()
    return out


def _covered(ranges: Sequence[tuple[int, int]], by: Sequence[tuple[int, int]]) -> bool:
    """Whether every range lies inside the union of ``by`` (both sorted)."""
    merged: list[list[int]] = []
    for start, end in by:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return all(any(s >= a and e <= b for a, b in merged) for s, e in ranges)


class StreamMetadata:
    """The domain operations. Each is one atomic transaction, retried when a compare it made
    failed because of an unrelated concurrent change, and failing with :class:`Fenced` when the
    change means a newer owner took over."""

    def __init__(
        self,
        kv: MetadataStore,
        *,
        node_id: int = 1,
        clock: Callable[[], float] = time.time,
        attempts: int = 50,
    ) -> None:
        self.kv = kv
        self.node_id = node_id
        self.node: NodeMeta | None = None
        """Set by :meth:`register_node`; from then on every transaction is fenced by it."""
        self._clock = clock
        self._attempts = attempts

    # -- transactions ----------------------------------------------------------------------------

    async def _txn(self, compares: list[Compare], ops: list[Put | Delete]) -> TxnResult:
        node = self.node
        if node is not None:
            compares = [Compare(_node_key(node.id), "==", node.revision), *compares]
        result = await self.kv.txn(compares, ops)
        if not result.succeeded and node is not None:
            await self._check_node(node)
        return result

    async def check_node(self) -> None:
        """Raise :class:`Fenced` if this node incarnation was superseded or fenced."""
        if self.node is not None:
            await self._check_node(self.node)

    async def _check_node(self, node: NodeMeta) -> None:
        current = await self.kv.get(_node_key(node.id))
        if current is not None and current.mod_revision == node.revision:
            return
        stored = _node(current) if current is not None else None
        if stored is None or stored.epoch != node.epoch or stored.state != "alive":
            raise Fenced(
                f"node {node.id} epoch {node.epoch} was superseded "
                f"({'gone' if stored is None else f'epoch {stored.epoch}, {stored.state}'})"
            )
        node.revision = stored.revision

    async def _next_ids(self, counter: str, count: int = 1) -> list[int]:
        key = f"{ROOT}counters/{counter}"
        for _ in range(self._attempts):
            current = await self.kv.get(key)
            last = int(current.value) if current else 0
            revision = current.mod_revision if current else 0
            result = await self.kv.txn(
                [Compare(key, "==", revision)], [Put(key, b"%d" % (last + count))]
            )
            if result.succeeded:
                return list(range(last + 1, last + count + 1))
        raise Unavailable(f"could not allocate a {counter} id: too much contention")

    # -- nodes -----------------------------------------------------------------------------------

    async def register_node(self, epoch: int | None = None, wal: str = "") -> NodeMeta:
        """Start an incarnation of this node. ``epoch=None`` picks one above every earlier one
        (the clock in ms, or the stored epoch + 1); an explicit epoch older than the stored one is
        :class:`Fenced`. The previous incarnation's next transaction fails."""
        key = _node_key(self.node_id)
        for _ in range(self._attempts):
            current = await self.kv.get(key)
            stored = _node(current) if current is not None else None
            if epoch is None:
                chosen = max(int(self._clock() * 1000), stored.epoch + 1 if stored else 0)
            elif stored is not None and epoch < stored.epoch:
                raise Fenced(f"node {self.node_id}: epoch {epoch} is older than {stored.epoch}")
            else:
                chosen = epoch
            node = NodeMeta(self.node_id, chosen, wal, "alive", self._clock())
            revision = current.mod_revision if current else 0
            result = await self.kv.txn([Compare(key, "==", revision)], [Put(key, node.encode())])
            if result.succeeded:
                node.revision = result.revision
                self.node = node
                return node
        raise Unavailable(f"node {self.node_id}: registration contended")

    async def get_node(self, node_id: int) -> NodeMeta | None:
        current = await self.kv.get(_node_key(node_id))
        return None if current is None else _node(current)

    async def list_nodes(self) -> list[NodeMeta]:
        return [_node(kv) for kv in await self.kv.range(f"{ROOT}nodes/")]

    async def fence_node(self, node_id: int, epoch: int) -> NodeMeta:
        """Failover: stop incarnation ``epoch`` of ``node_id`` from committing anything more
        (before its WAL is taken over). A newer incarnation is left alone."""
        key = _node_key(node_id)
        for _ in range(self._attempts):
            current = await self.kv.get(key)
            if current is None:
                raise NotFound(f"node {node_id} never registered")
            node = _node(current)
            if node.epoch != epoch or node.state == "fenced":
                return node
            node.state = "fenced"
            result = await self.kv.txn(
                [Compare(key, "==", current.mod_revision)], [Put(key, node.encode())]
            )
            if result.succeeded:
                node.revision = result.revision
                return node
        raise Unavailable(f"node {node_id}: fencing contended")

    # -- streams ---------------------------------------------------------------------------------

    async def create_stream(self) -> StreamMeta:
        (stream_id,) = await self._next_ids("stream")
        stream = StreamMeta(stream_id)
        key = _stream_key(stream_id)
        result = await self._txn([Compare(key, "==", 0)], [Put(key, stream.encode())])
        if not result.succeeded:
            raise Unavailable(f"stream id {stream_id} already exists")
        stream.revision = result.revision
        return stream

    async def get_stream(self, stream_id: int) -> StreamMeta:
        kv = await self.kv.get(_stream_key(stream_id))
        if kv is None:
            raise NotFound(f"stream {stream_id} does not exist")
        return _stream(kv)

    async def list_streams(self) -> list[StreamMeta]:
        return [_stream(kv) for kv in await self.kv.range(f"{ROOT}streams/")]

    async def _update_stream(
        self, stream_id: int, change: Callable[[StreamMeta], bool]
    ) -> StreamMeta:
        for _ in range(self._attempts):
            stream = await self.get_stream(stream_id)
            if not change(stream):
                return stream
            key = _stream_key(stream_id)
            result = await self._txn(
                [Compare(key, "==", stream.revision)], [Put(key, stream.encode())]
            )
            if result.succeeded:
                stream.revision = result.revision
                return stream
        raise Unavailable(f"stream {stream_id}: too much contention")

    async def open_stream(self, stream_id: int, epoch: int) -> StreamMeta:
        """Take ownership with ``epoch`` for this node.

        An older epoch, or the same epoch held by another node, is :class:`Fenced`. A new owner
        starts a new range at the committed end: whatever an earlier owner acknowledged but did
        not upload must have been uploaded (graceful move) or replayed from its WAL (failover)
        before this call."""
        node = self.node_id

        def change(stream: StreamMeta) -> bool:
            if stream.state == "deleted":
                raise NotFound(f"stream {stream_id} was deleted")
            if epoch < stream.epoch or (
                epoch == stream.epoch and stream.node not in (-1, node)
            ):
                raise Fenced(
                    f"stream {stream_id}: epoch {epoch} on node {node} is not newer than "
                    f"epoch {stream.epoch} on node {stream.node}"
                )
            if (stream.epoch, stream.node, stream.state) == (epoch, node, "open"):
                return False
            if not stream.ranges or stream.ranges[-1][:2] != (epoch, node):
                stream.ranges.append((epoch, node, stream.end, stream.end))
            stream.epoch, stream.node, stream.state = epoch, node, "open"
            return True

        return await self._update_stream(stream_id, change)

    def _check_owner(self, stream: StreamMeta, epoch: int) -> None:
        if stream.epoch != epoch or stream.node != self.node_id or stream.state == "deleted":
            raise Fenced(
                f"stream {stream.id} is owned by epoch {stream.epoch} on node {stream.node} "
                f"({stream.state}); ours is epoch {epoch} on node {self.node_id}"
            )

    async def close_stream(self, stream_id: int, epoch: int) -> StreamMeta:
        def change(stream: StreamMeta) -> bool:
            self._check_owner(stream, epoch)
            stream.state = "closed"
            return True

        return await self._update_stream(stream_id, change)

    async def trim_stream(self, stream_id: int, epoch: int, new_start: int) -> StreamMeta:
        """Move the start offset forward (retention, DeleteRecords); never backwards."""

        def change(stream: StreamMeta) -> bool:
            self._check_owner(stream, epoch)
            if new_start <= stream.start:
                return False
            stream.start = new_start
            # Ownership ranges wholly below the start are history nobody can read any more.
            while len(stream.ranges) > 1 and stream.ranges[0][3] <= new_start:
                stream.ranges.pop(0)
            return True

        return await self._update_stream(stream_id, change)

    async def delete_stream(self, stream_id: int, epoch: int) -> StreamMeta:
        """Mark deleted; compaction then drops its objects and :meth:`purge_stream` the record."""

        def change(stream: StreamMeta) -> bool:
            self._check_owner(stream, epoch)
            stream.state = "deleted"
            return True

        return await self._update_stream(stream_id, change)

    async def purge_stream(self, stream_id: int) -> bool:
        """Remove a deleted stream's record once no object holds any of its offsets."""
        kv = await self.kv.get(_stream_key(stream_id))
        if kv is None:
            return True
        stream = _stream(kv)
        if stream.state != "deleted" or await self.kv.range(_locator_prefix(stream_id), limit=1):
            return False
        result = await self._txn(
            [Compare(kv.key, "==", kv.mod_revision)], [Delete(kv.key)]
        )
        return result.succeeded

    # -- objects ---------------------------------------------------------------------------------

    async def allocate_object_ids(self, count: int) -> list[int]:
        return await self._next_ids("object", count)

    async def prepare_objects(self, kinds: Sequence[ObjectKind], ttl: float) -> list[ObjectMeta]:
        """Record object ids *before* their data is written, so a crash never leaks an object:
        one still prepared after ``ttl`` seconds is deleted by cleanup."""
        if not kinds:
            return []
        now = self._clock()
        ids = await self.allocate_object_ids(len(kinds))
        metas = [
            ObjectMeta(i, kind, node=self.node_id, prepared_at=now, deadline=now + ttl)
            for i, kind in zip(ids, kinds, strict=True)
        ]
        result = await self._txn(
            [Compare(_object_key(m.id), "==", 0) for m in metas],
            [Put(_object_key(m.id), m.encode()) for m in metas],
        )
        if not result.succeeded:
            raise Unavailable(f"object ids {ids} already exist")
        for meta in metas:
            meta.revision = result.revision
        return metas

    async def prepare_object(self, kind: ObjectKind, ttl: float = 600.0) -> ObjectMeta:
        (meta,) = await self.prepare_objects([kind], ttl)
        return meta

    async def get_object(self, object_id: int) -> ObjectMeta | None:
        kv = await self.kv.get(_object_key(object_id))
        return None if kv is None else _object(kv)

    async def list_objects(self, state: ObjectState | None = None) -> list[ObjectMeta]:
        objects = [_object(kv) for kv in await self.kv.range(f"{ROOT}objects/")]
        return objects if state is None else [o for o in objects if o.state == state]

    async def objects_covering(
        self, stream_id: int, start: int, end: int | None = None
    ) -> list[ObjectLocation]:
        """The committed objects holding offsets of ``[start, end)`` of a stream, in offset
        order (``end=None``: up to the committed end)."""
        prefix = _locator_prefix(stream_id)
        after = _locator_key(stream_id, start)
        out: list[ObjectLocation] = []
        while True:
            page = await self.kv.range(prefix, start_after=after, limit=256)
            for kv in page:
                value = json.loads(kv.value)
                located = ObjectLocation(
                    stream_id, value["start"], int(kv.key.rsplit("/", 1)[1]), value["object"]
                )
                if end is not None and located.start >= end:
                    return out
                out.append(located)
            if len(page) < 256:
                return out
            after = page[-1].key

    async def commit_objects(
        self,
        new: Sequence[ObjectMeta],
        advance: dict[int, tuple[int, int]],
        replaced: Sequence[ObjectMeta] = (),
    ) -> None:
        """Atomically commit ``new`` objects, advance stream ends (``{stream: (epoch, end)}``)
        and mark ``replaced`` objects (compaction) for deletion.

        Upload: each advanced stream's new ranges must continue its committed end exactly and
        reach ``end``. Compaction: ranges of streams not advanced must lie inside ranges of the
        replaced objects. Anything else is a :class:`DataError` (a bug, never written). A stream
        with another owner, or an object changed by someone else, is :class:`Fenced`.

        If the store fails ambiguously (the commit may have happened), the objects' records are
        re-read: a commit that did happen is reported as success."""
        new_ranges = _by_stream(new)
        old_ranges = _by_stream(replaced)
        for stream_id, ranges in new_ranges.items():
            if stream_id not in advance and not _covered(ranges, old_ranges.get(stream_id, [])):
                raise DataError(f"stream {stream_id}: {ranges} are in no replaced object")
        for _ in range(self._attempts):
            compares: list[Compare] = []
            puts: list[Put] = []
            deletes: list[str] = []
            for stream_id, (epoch, end) in sorted(advance.items()):
                stream = await self.get_stream(stream_id)
                if epoch >= 0:
                    self._check_owner(stream, epoch)
                position = stream.end
                for start, stop in new_ranges.get(stream_id, []):
                    if start < position:
                        raise Fenced(
                            f"stream {stream_id}: [{start}, {stop}) is already committed "
                            f"(committed end {stream.end})"
                        )
                    if start > position:
                        raise DataError(
                            f"stream {stream_id}: commit would leave a gap at {position}"
                        )
                    position = stop
                if position != end:
                    raise DataError(f"stream {stream_id}: objects end at {position}, not {end}")
                stream.end = end
                if stream.ranges and stream.ranges[-1][:2] == (stream.epoch, stream.node):
                    stream.ranges[-1] = (*stream.ranges[-1][:3], end)
                compares.append(Compare(_stream_key(stream_id), "==", stream.revision))
                puts.append(Put(_stream_key(stream_id), stream.encode()))
            now = self._clock()
            committed = [
                ObjectMeta(**{**asdict(m), "state": "committed", "committed_at": now}) for m in new
            ]
            for meta in committed:
                compares.append(Compare(_object_key(meta.id), "==", meta.revision))
                puts.append(Put(_object_key(meta.id), meta.encode()))
                for stream_id, start, end in meta.ranges:
                    key = _locator_key(stream_id, end)
                    value = json.dumps({"object": meta.id, "start": start}).encode()
                    puts.append(Put(key, value))
            for old in replaced:
                marked = ObjectMeta(**{**asdict(old), "state": "marked", "marked_at": now})
                compares.append(Compare(_object_key(old.id), "==", old.revision))
                puts.append(Put(_object_key(old.id), marked.encode()))
                deletes += [_locator_key(s, e) for s, _, e in old.ranges]
            # A new locator must not exist unless a replaced object's locator is overwritten: this
            # is what makes overlapping ranges impossible. (etcd refuses a key twice in one txn,
            # hence overwriting rather than delete + put.)
            written = {p.key for p in puts}
            compares += [
                Compare(p.key, "==", 0)
                for p in puts
                if p.key.startswith(f"{ROOT}locators/") and p.key not in deletes
            ]
            ops: list[Put | Delete] = [Delete(k) for k in deletes if k not in written]
            ops += puts
            try:
                result = await self._txn(compares, ops)
            except Unavailable:
                revision = await self._committed_revision(new[0]) if new else 0
                if revision:
                    self._adopt(new, committed, replaced, revision)
                    return
                raise
            if result.succeeded:
                self._adopt(new, committed, replaced, result.revision)
                return
            for meta in [*new, *replaced]:
                current = await self.kv.get(_object_key(meta.id))
                if current is None or current.mod_revision != meta.revision:
                    raise Fenced(f"object {meta.id} changed under node {self.node_id}")
            for meta in committed:
                for stream_id, _, end in meta.ranges:
                    key = _locator_key(stream_id, end)
                    if key not in deletes and await self.kv.get(key) is not None:
                        raise Fenced(f"stream {stream_id}: a committed object already ends at {end}")
            # Otherwise a stream record changed (a trim, say): read it again and retry.
        raise Unavailable("object commit: too much contention")

    async def _committed_revision(self, meta: ObjectMeta) -> int:
        """The revision of the transaction that committed ``meta``, or 0 if it is not committed
        (or cannot be told now)."""
        try:
            current = await self.get_object(meta.id)
        except Unavailable:
            return 0
        return current.revision if current is not None and current.state == "committed" else 0

    @staticmethod
    def _adopt(
        new: Sequence[ObjectMeta],
        committed: Sequence[ObjectMeta],
        replaced: Sequence[ObjectMeta],
        revision: int,
    ) -> None:
        for meta, done in zip(new, committed, strict=True):
            meta.state, meta.committed_at, meta.revision = "committed", done.committed_at, revision
        for meta in replaced:
            meta.state = "marked"

    async def mark_objects(self, objects: Sequence[ObjectMeta]) -> list[ObjectMeta]:
        """Retention: mark committed objects for deletion and drop their locators. Objects that
        changed since they were read are skipped. Returns the objects marked."""
        marked: list[ObjectMeta] = []
        now = self._clock()
        for old in objects:
            if old.state != "committed":
                continue
            new = ObjectMeta(**{**asdict(old), "state": "marked", "marked_at": now})
            ops: list[Put | Delete] = [Put(_object_key(old.id), new.encode())]
            ops += [Delete(_locator_key(s, e)) for s, _, e in old.ranges]
            result = await self._txn([Compare(_object_key(old.id), "==", old.revision)], ops)
            if result.succeeded:
                new.revision = result.revision
                marked.append(new)
        return marked

    async def forget_object(self, meta: ObjectMeta) -> bool:
        """Delete the record of a marked or abandoned prepared object (its data must be gone)."""
        if meta.state == "committed":
            raise DataError(f"object {meta.id} is committed; mark it first")
        key = _object_key(meta.id)
        result = await self._txn([Compare(key, "==", meta.revision)], [Delete(key)])
        return result.succeeded
