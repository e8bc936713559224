"""Fetch: long polling (max wait, min bytes), size limits (KIP-74) and fetch sessions (KIP-227).

Records go out as the stored batches themselves (views on the engine's cache or on blocks read from
object storage), never re-encoded or joined: the codec writes them as separate buffers.

Sessions: a full fetch with epoch 0 (v7+) creates a session holding the partitions and their fetch
positions; incremental fetches then name only the partitions whose position changed and forget the
ones listed in ``forgotten_topics_data``, and the answer holds only partitions with records or a
changed high watermark, log start or error. The cache is bounded (least recently used sessions are
evicted; their clients get FETCH_SESSION_ID_NOT_FOUND and start a new one, as with Kafka).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streambed.broker.protocol.errors import ErrorCode
from streambed.broker.protocol.messages import fetch as m
from streambed.broker.server.context import Handler, RequestContext, Services
from streambed.broker.server.partitions import Partition, storage_error_code
from streambed.core.errors import StreambedError

__all__ = ["FetchSessions", "handlers"]

_INITIAL_EPOCH, _FINAL_EPOCH = 0, -1
_MAX_SESSIONS = 1000


@dataclass(slots=True)
class _SessionPartition:
    topic_id: uuid.UUID
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int
    last_hw: int = -1
    last_start: int = -1
    last_error: int = 0


@dataclass(slots=True)
class _Session:
    id: int
    epoch: int
    partitions: dict[tuple[str, int], _SessionPartition] = field(default_factory=dict)


class FetchSessions:
    """The fetch session cache of one broker."""

    def __init__(self, capacity: int = _MAX_SESSIONS) -> None:
        self.capacity = capacity
        self._sessions: collections.OrderedDict[int, _Session] = collections.OrderedDict()
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> _Session:
        while len(self._sessions) >= self.capacity:
            self._sessions.popitem(last=False)
        session = _Session(next(self._ids) & 0x7FFFFFFF or 1, 1)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: int) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
        return session

    def remove(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)


def handlers(services: Services) -> dict[int, Handler]:
    return {m.SPEC.api_key: _FetchHandler(services).fetch}


class _FetchHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.sessions = FetchSessions()
        services.extra["fetch_sessions"] = self.sessions

    def _name_of(self, topic: m.FetchTopic) -> str:
        if topic.topic:
            return topic.topic
        info = self.s.topics.get_by_id(topic.topic_id)
        return info.name if info is not None else ""

    async def fetch(self, ctx: RequestContext, request: m.FetchRequest) -> m.FetchResponse:
        session: _Session | None = None
        session_id = 0
        incremental = False
        if ctx.api_version >= 7:
            if request.session_id == 0:
                if request.session_epoch == _INITIAL_EPOCH:
                    session = self.sessions.create()
                    session_id = session.id
            elif request.session_epoch == _FINAL_EPOCH:
                self.sessions.remove(request.session_id)
            else:
                session = self.sessions.get(request.session_id)
                if session is None:
                    return m.FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
                if session.epoch != request.session_epoch:
                    return m.FetchResponse(error_code=ErrorCode.INVALID_FETCH_SESSION_EPOCH)
                session.epoch += 1
                session_id = session.id
                incremental = True
        wanted: dict[tuple[str, int], _SessionPartition] = (
            session.partitions if session is not None else {}
        )
        if not incremental:
            wanted.clear()
        for forgotten in request.forgotten_topics_data:
            name = forgotten.topic or (
                info.name
                if (info := self.s.topics.get_by_id(forgotten.topic_id)) is not None
                else ""
            )
            for index in forgotten.partitions:
                wanted.pop((name, index), None)
        for topic in request.topics:
            name = self._name_of(topic)
            for p in topic.partitions:
                key = (name, p.partition)
                known = wanted.get(key)
                if known is None:
                    wanted[key] = _SessionPartition(
                        topic.topic_id, p.fetch_offset, p.partition_max_bytes,
                        p.current_leader_epoch,
                    )
                else:
                    known.fetch_offset = p.fetch_offset
                    known.max_bytes = p.partition_max_bytes
                    known.current_leader_epoch = p.current_leader_epoch
        deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
        # Kafka's broker-side fetch.max.bytes bounds what one response holds in memory.
        max_bytes = min(request.max_bytes, self.s.broker_configs.int_value("fetch.max.bytes"))
        while True:
            answers, total, waitable = await self._read(wanted, max_bytes)
            remaining = deadline - time.monotonic()
            if total >= max(request.min_bytes, 1) or remaining <= 0 or not waitable:
                break
            if any(a[2].error_code for a in answers):
                break
            await _wait_any(waitable, remaining)
        return self._respond(answers, session_id, incremental, ctx.api_version)

    async def _read(
        self, wanted: dict[tuple[str, int], _SessionPartition], max_bytes: int
    ) -> tuple[list[tuple[tuple[str, int], _SessionPartition, m.PartitionData]], int,
               list[tuple[Partition, int]]]:
        answers = []
        total = 0
        waitable: list[tuple[Partition, int]] = []
        for key, state in wanted.items():
            name, index = key
            # Empty, not null: librdkafka 2.0 (Debian kcat) rejects a null record set.
            out = m.PartitionData(partition_index=index, records=b"")
            answers.append((key, state, out))
            partition = self.s.partitions.lookup(
                name,
                index,
                by_id=not name and state.topic_id.int != 0,
                current_leader_epoch=state.current_leader_epoch,
            )
            if isinstance(partition, int):
                out.error_code = partition
                continue
            out.high_watermark = partition.high_watermark
            out.last_stable_offset = out.high_watermark
            out.log_start_offset = partition.log_start_offset
            offset = state.fetch_offset
            if offset < out.log_start_offset or offset > out.high_watermark:
                out.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
                continue
            if offset == out.high_watermark:
                waitable.append((partition, offset))
                continue
            budget = min(state.max_bytes, max_bytes - total)
            if budget <= 0 and total > 0:
                continue
            try:
                batches = await partition.stream.fetch(offset, None, max(budget, 1))
            except StreambedError as exc:
                out.error_code = storage_error_code(exc)
                continue
            if batches:
                out.records = [b.payload for b in batches]
                total += sum(len(b.payload) for b in batches)
            if not batches or batches[-1].end >= out.high_watermark:
                # Read to the end: new data here can still make up min_bytes.
                waitable.append((partition, out.high_watermark))
        out_total = total
        return answers, out_total, waitable

    @staticmethod
    def _respond(
        answers: list[tuple[tuple[str, int], _SessionPartition, m.PartitionData]],
        session_id: int,
        incremental: bool,
        version: int,
    ) -> m.FetchResponse:
        topics: dict[str, m.FetchableTopicResponse] = {}
        for (name, _index), state, out in answers:
            changed = (
                bool(out.records)
                or out.error_code != state.last_error
                or out.high_watermark != state.last_hw
                or out.log_start_offset != state.last_start
            )
            state.last_error = out.error_code
            state.last_hw = out.high_watermark
            state.last_start = out.log_start_offset
            if incremental and not changed:
                continue
            topic = topics.get(name)
            if topic is None:
                topic = topics[name] = m.FetchableTopicResponse(
                    topic_id=state.topic_id, topic=name
                )
            topic.partitions.append(out)
        return m.FetchResponse(session_id=session_id, responses=list(topics.values()))


async def _wait_any(waitable: list[tuple[Partition, int]], timeout: float) -> None:
    """Until one of the partitions gets data past its fetch offset, or ``timeout``."""
    if len(waitable) == 1:
        partition, offset = waitable[0]
        await partition.stream.wait_for(offset, timeout)
        return
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(partition.stream.wait_for(offset, timeout))
        for partition, offset in waitable
    ]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
