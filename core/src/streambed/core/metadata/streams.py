"""Stream and object metadata, as transactions over the :class:`MetadataStore` KV.

Keys (JSON values)::

    sb/counters/stream            last stream id handed out
    sb/counters/object            last object id handed out
    sb/streams/<id, 20 digits>    {epoch, node, start, end, state}
    sb/objects/<id, 20 digits>    {kind, state, size, ranges: [[stream, start, end], ...], times}

``end`` is the committed end of a stream: every offset below it is in a committed object. Object
states move prepared → committed → marked → (record deleted), and every move is one transaction
that compares the revisions it read, so concurrent owners (later: several brokers on etcd) can never
interleave: a stale owner's commit fails its compare and the owner learns it was fenced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from streambed.core.errors import Fenced, NotFound, Unavailable
from streambed.core.metadata.api import Compare, Delete, MetadataStore, Put

__all__ = ["ObjectMeta", "StreamMeta", "StreamMetadata", "object_key"]

ROOT = "sb/"
ObjectState = Literal["prepared", "committed", "marked"]


def _stream_key(stream_id: int) -> str:
    return f"{ROOT}streams/{stream_id:020d}"


def _object_key(object_id: int) -> str:
    return f"{ROOT}objects/{object_id:020d}"


def object_key(object_id: int) -> str:
    """Where an object's data lives in the object store."""
    return f"data/{object_id % 1000:03d}/{object_id:020d}"


@dataclass
class StreamMeta:
    id: int
    epoch: int = 0
    node: int = -1
    start: int = 0
    end: int = 0
    state: Literal["open", "closed", "deleted"] = "closed"
    revision: int = 0

    def encode(self) -> bytes:
        data = asdict(self)
        del data["revision"]
        return json.dumps(data, separators=(",", ":")).encode()


@dataclass
class ObjectMeta:
    id: int
    kind: Literal["sso", "so"]
    state: ObjectState = "prepared"
    size: int = 0
    ranges: list[tuple[int, int, int]] = field(default_factory=list)
    prepared_at: float = 0.0
    committed_at: float = 0.0
    marked_at: float = 0.0
    revision: int = 0

    @property
    def key(self) -> str:
        return object_key(self.id)

    def encode(self) -> bytes:
        data = asdict(self)
        del data["revision"]
        return json.dumps(data, separators=(",", ":")).encode()


def _stream(raw: bytes, revision: int) -> StreamMeta:
    return StreamMeta(**json.loads(raw), revision=revision)


def _object(raw: bytes, revision: int) -> ObjectMeta:
    data: dict[str, Any] = json.loads(raw)
    data["ranges"] = [tuple(r) for r in data["ranges"]]
    return ObjectMeta(**data, revision=revision)


class StreamMetadata:
    def __init__(
        self, kv: MetadataStore, clock: Callable[[], float] = time.time, attempts: int = 50
    ) -> None:
        self.kv = kv
        self._clock = clock
        self._attempts = attempts

    async def _next_id(self, counter: str) -> int:
        key = f"{ROOT}counters/{counter}"
        for _ in range(self._attempts):
            current = await self.kv.get(key)
            value = int(current.value) + 1 if current else 1
            revision = current.mod_revision if current else 0
            result = await self.kv.txn([Compare(key, "==", revision)], [Put(key, b"%d" % value)])
            if result.succeeded:
                return value
        raise Unavailable(f"could not allocate a {counter} id: too much contention")

    # -- streams ---------------------------------------------------------------------------------

    async def create_stream(self) -> StreamMeta:
        stream = StreamMeta(await self._next_id("stream"))
        key = _stream_key(stream.id)
        result = await self.kv.txn([Compare(key, "==", 0)], [Put(key, stream.encode())])
        if not result.succeeded:
            raise Unavailable(f"stream id {stream.id} already exists")
        stream.revision = result.revision
        return stream

    async def get_stream(self, stream_id: int) -> StreamMeta:
        kv = await self.kv.get(_stream_key(stream_id))
        if kv is None:
            raise NotFound(f"stream {stream_id} does not exist")
        return _stream(kv.value, kv.mod_revision)

    async def list_streams(self) -> list[StreamMeta]:
        return [_stream(kv.value, kv.mod_revision) for kv in await self.kv.range(f"{ROOT}streams/")]

    async def _update_stream(
        self, stream_id: int, change: Callable[[StreamMeta], None]
    ) -> StreamMeta:
        for _ in range(self._attempts):
            stream = await self.get_stream(stream_id)
            change(stream)
            key = _stream_key(stream_id)
            result = await self.kv.txn(
                [Compare(key, "==", stream.revision)], [Put(key, stream.encode())]
            )
            if result.succeeded:
                stream.revision = result.revision
                return stream
        raise Unavailable(f"stream {stream_id}: too much contention")

    async def open_stream(self, stream_id: int, epoch: int, node: int) -> StreamMeta:
        """Take ownership with ``epoch``; an epoch older than the stored one is fenced."""

        def change(stream: StreamMeta) -> None:
            if stream.state == "deleted":
                raise NotFound(f"stream {stream_id} was deleted")
            if epoch < stream.epoch:
                raise Fenced(f"stream {stream_id}: epoch {epoch} is older than {stream.epoch}")
            stream.epoch, stream.node, stream.state = epoch, node, "open"

        return await self._update_stream(stream_id, change)

    def _check_owner(self, stream: StreamMeta, epoch: int) -> None:
        if stream.epoch != epoch or stream.state == "deleted":
            raise Fenced(
                f"stream {stream.id} is owned by epoch {stream.epoch} ({stream.state}); "
                f"ours is {epoch}"
            )

    async def close_stream(self, stream_id: int, epoch: int) -> StreamMeta:
        def change(stream: StreamMeta) -> None:
            self._check_owner(stream, epoch)
            stream.state = "closed"

        return await self._update_stream(stream_id, change)

    async def trim_stream(self, stream_id: int, epoch: int, new_start: int) -> StreamMeta:
        def change(stream: StreamMeta) -> None:
            self._check_owner(stream, epoch)
            stream.start = max(stream.start, new_start)

        return await self._update_stream(stream_id, change)

    async def delete_stream(self, stream_id: int, epoch: int) -> StreamMeta:
        def change(stream: StreamMeta) -> None:
            self._check_owner(stream, epoch)
            stream.state = "deleted"

        return await self._update_stream(stream_id, change)

    # -- objects ---------------------------------------------------------------------------------

    async def prepare_object(self, kind: Literal["sso", "so"]) -> ObjectMeta:
        """Record an object id *before* its data is written, so a crash never leaks it."""
        meta = ObjectMeta(await self._next_id("object"), kind, prepared_at=self._clock())
        key = _object_key(meta.id)
        result = await self.kv.txn([Compare(key, "==", 0)], [Put(key, meta.encode())])
        if not result.succeeded:
            raise Unavailable(f"object id {meta.id} already exists")
        meta.revision = result.revision
        return meta

    async def list_objects(self) -> list[ObjectMeta]:
        return [_object(kv.value, kv.mod_revision) for kv in await self.kv.range(f"{ROOT}objects/")]

    async def commit_objects(
        self,
        new: Sequence[ObjectMeta],
        advance: dict[int, tuple[int, int]],
        replaced: Sequence[ObjectMeta] = (),
    ) -> None:
        """Atomically: commit ``new`` objects, advance stream ends (``{stream: (epoch, end)}``),
        and mark ``replaced`` objects (compaction) for deletion.

        Fails with :class:`Fenced` if a stream changed owner; an end never moves backwards.
        """
        for _ in range(self._attempts):
            compares: list[Compare] = []
            ops: list[Put | Delete] = []
            for stream_id, (epoch, end) in sorted(advance.items()):
                stream = await self.get_stream(stream_id)
                if epoch >= 0:
                    self._check_owner(stream, epoch)
                stream.end = max(stream.end, end)
                compares.append(Compare(_stream_key(stream_id), "==", stream.revision))
                ops.append(Put(_stream_key(stream_id), stream.encode()))
            now = self._clock()
            for meta in new:
                meta.state, meta.committed_at = "committed", now
                compares.append(Compare(_object_key(meta.id), "==", meta.revision))
                ops.append(Put(_object_key(meta.id), meta.encode()))
            for old in replaced:
                marked = ObjectMeta(**{**asdict(old), "state": "marked", "marked_at": now})
                compares.append(Compare(_object_key(old.id), "==", old.revision))
                ops.append(Put(_object_key(old.id), marked.encode()))
            result = await self.kv.txn(compares, ops)
            if result.succeeded:
                for meta in new:
                    meta.revision = result.revision
                return
            # A stream record changed under us (trim, reopen): re-read and retry; an object record
            # changing means someone else touched our objects, which only a newer owner does.
            for meta in [*new, *replaced]:
                current = await self.kv.get(_object_key(meta.id))
                if current is None or current.mod_revision != meta.revision:
                    raise Fenced(f"object {meta.id} changed under this node; stopping")
        raise Unavailable("object commit: too much contention")

    async def mark_objects(self, objects: Sequence[ObjectMeta]) -> None:
        now = self._clock()
        for old in objects:
            marked = ObjectMeta(**{**asdict(old), "state": "marked", "marked_at": now})
            await self.kv.txn(
                [Compare(_object_key(old.id), "==", old.revision)],
                [Put(_object_key(old.id), marked.encode())],
            )

    async def forget_object(self, meta: ObjectMeta) -> None:
        """Delete an object's record (its data must already be gone)."""
        await self.kv.txn(
            [Compare(_object_key(meta.id), "==", meta.revision)], [Delete(_object_key(meta.id))]
        )
