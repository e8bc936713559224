"""Committed offsets of classic groups: OffsetCommit, OffsetFetch, OffsetDelete and their
expiry, following Kafka's ``OffsetMetadataManager``.

A commit is answered once its records are in the metadata store, in the same transaction
that checks the group record's revision (see :mod:`group_store`); offsets therefore survive any
restart and a fenced coordinator cannot overwrite newer commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from streambed.broker.domain import keys
from streambed.broker.domain.clock import Clock
from streambed.broker.domain.consumer_protocol import CONSUMER_PROTOCOL_TYPE
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.group_model import (
    CommittedOffset,
    FetchedOffset,
    Group,
    GroupConfig,
    GroupState,
    Member,
    OffsetCommitEntry,
    TopicPartition,
)
from streambed.broker.domain.group_store import GroupStore, topic_offsets_writes
from streambed.core.metadata.api import Delete

__all__ = ["GroupOffsets"]

log = logging.getLogger("streambed.broker.groups")

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    GroupState.EMPTY,
    GroupState.PREPARING_REBALANCE,
    GroupState.COMPLETING_REBALANCE,
    GroupState.STABLE,
    GroupState.DEAD,
)


class GroupOffsets:
    def __init__(
        self,
        groups: GroupStore,
        config: GroupConfig,
        clock: Clock,
        *,
        keep_alive: Callable[[Group, Member], None],
        drop: Callable[[Group], None],
    ) -> None:
        """``keep_alive`` restarts a member's session timer; ``drop`` unloads a group that
        expiry removed."""
        self._groups = groups
        self._config = config
        self._clock = clock
        self._keep_alive = keep_alive
        self._drop = drop

    async def commit(
        self,
        group_id: str,
        offsets: Sequence[OffsetCommitEntry],
        *,
        member_id: str = "",
        group_instance_id: str | None = None,
        generation_id: int = -1,
        retention_time_ms: int = -1,
        missing_group_error: ErrorCode = ErrorCode.ILLEGAL_GENERATION,
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetCommit; the answer is durable when this returns. Generation -1 on an empty or
        unknown group is a "simple" commit (admin tools, ``assign()`` consumers).
        ``missing_group_error`` is what a commit with a generation to an unknown group gets:
        ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND from v9. ``retention_time_ms`` is
        v2-v4's field (-1: broker default)."""
        tps = [TopicPartition(o.topic, o.partition) for o in offsets]

        def every(code: ErrorCode) -> dict[TopicPartition, ErrorCode]:
            return dict.fromkeys(tps, code)

        group = await self._groups.lookup(group_id)
        if group is None:
            if generation_id >= 0:
                return every(missing_group_error)
            log.info("creating simple group %s through a manual offset commit", group_id)
            group = self._groups.groups.setdefault(group_id, Group(group_id))
        async with group.lock:
            if not self._groups.holds(group):
                return every(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            try:
                self._validate_offset_commit(group, member_id, group_instance_id, generation_id)
            except KafkaError as exc:
                return every(exc.code)
            if group.is_in(STABLE, PREPARING) and member_id in group.members:
                # A commit proves liveness as much as a heartbeat does.
                self._keep_alive(group, group.members[member_id])
            now = self._clock.now_ms()
            expire = now + retention_time_ms if retention_time_ms != -1 else None
            results: dict[TopicPartition, ErrorCode] = {}
            accepted: dict[TopicPartition, CommittedOffset] = {}
            for entry, tp in zip(offsets, tps, strict=True):
                metadata = entry.metadata or ""
                if len(metadata.encode("utf-16-le")) // 2 > self._config.offset_metadata_max_bytes:
                    results[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                    continue
                accepted[tp] = CommittedOffset(
                    entry.offset, entry.leader_epoch, metadata, now, expire
                )
                results[tp] = ErrorCode.NONE
            if accepted:
                after = {**group.offsets, **accepted}
                writes = topic_offsets_writes(group_id, after, (tp.topic for tp in accepted))
                try:
                    await self._groups.txn(group, writes, with_record=group.meta_revision == 0)
                except KafkaError as exc:
                    return every(exc.code)
                group.offsets = after
            return results

    @staticmethod
    def _validate_offset_commit(
        group: Group, member_id: str, instance_id: str | None, generation_id: int
    ) -> None:
        if group.is_in(DEAD):
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if generation_id < 0 and group.is_in(EMPTY):
            return
        if generation_id >= 0 or member_id or instance_id is not None:
            group.validate_member(member_id, instance_id)
            if generation_id != group.generation:
                raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
        elif not group.is_in(EMPTY):
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(COMPLETING):
            raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS)

    async def fetch(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> list[FetchedOffset]:
        """OffsetFetch: the listed partitions (-1 where nothing is committed), or with None
        every committed partition of the group."""
        group = await self._groups.lookup(group_id)
        committed = group.offsets if group is not None and not group.is_in(DEAD) else {}
        if partitions is None:
            return [
                FetchedOffset(tp.topic, tp.partition, c.offset, c.leader_epoch, c.metadata)
                for tp, c in sorted(committed.items())
            ]
        out = []
        for tp in partitions:
            c = committed.get(TopicPartition(*tp))
            if c is None:
                out.append(FetchedOffset(tp.topic, tp.partition, -1, -1, ""))
            else:
                out.append(
                    FetchedOffset(tp.topic, tp.partition, c.offset, c.leader_epoch, c.metadata)
                )
        return out

    async def delete(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetDelete; group-level errors (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) raise."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        group = await self._groups.lookup(group_id)
        if group is None or group.is_in(DEAD):
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        async with group.lock:
            if not self._groups.holds(group):
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
            if (
                group.is_in(STABLE, PREPARING, COMPLETING)
                and group.protocol_type != CONSUMER_PROTOCOL_TYPE
            ):
                raise KafkaError(ErrorCode.NON_EMPTY_GROUP)
            results: dict[TopicPartition, ErrorCode] = {}
            doomed: list[TopicPartition] = []
            for raw in partitions:
                tp = TopicPartition(*raw)
                if group.is_subscribed_to(tp.topic):
                    results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    results[tp] = ErrorCode.NONE
                    if tp in group.offsets:
                        doomed.append(tp)
            if doomed:
                after = {tp: c for tp, c in group.offsets.items() if tp not in doomed}
                await self._groups.txn(
                    group, topic_offsets_writes(group_id, after, (tp.topic for tp in doomed))
                )
                group.offsets = after
            return results

    async def delete_topics(self, topics: Collection[str]) -> None:
        """Forget offsets of deleted topics in every group (Kafka's onPartitionsDeleted)."""
        wanted = set(topics)
        for group in list(self._groups.groups.values()):
            async with group.lock:
                doomed = [tp for tp in group.offsets if tp.topic in wanted]
                if not doomed or not self._groups.holds(group):
                    continue
                try:
                    await self._groups.txn(
                        group,
                        [
                            Delete(keys.offset_key(group.group_id, t))
                            for t in sorted({t for t, _ in doomed})
                        ],
                    )
                except KafkaError:
                    log.warning(
                        "could not delete offsets of %s in group %s", sorted(wanted), group.group_id
                    )
                    continue
                for tp in doomed:
                    group.offsets.pop(tp, None)

    async def expire(self) -> int:
        """Kafka's periodic cleanup: expire offsets past ``offsets.retention.minutes`` (counted
        from when the group became empty, or from the commit for simple groups and for topics a
        stable consumer group no longer subscribes to), then drop empty groups left without
        offsets. Returns how many offsets expired."""
        now = self._clock.now_ms()
        retention = self._config.offsets_retention_ms
        expired_total = 0
        for group in list(self._groups.groups.values()):
            async with group.lock:
                if not self._groups.holds(group):
                    continue
                base = self._expiration_base(group)
                if base is None:
                    continue
                doomed = []
                for tp, c in group.offsets.items():
                    if group.is_subscribed_to(tp.topic):
                        continue
                    expired = (
                        now >= c.expire_timestamp
                        if c.expire_timestamp is not None
                        else now - base(c) >= retention
                    )
                    if expired:
                        doomed.append(tp)
                after = {tp: c for tp, c in group.offsets.items() if tp not in doomed}
                writes = topic_offsets_writes(group.group_id, after, (tp.topic for tp in doomed))
                # A group with a member id just handed out (KIP-394) is about to be joined.
                drop_group = (
                    group.is_in(EMPTY)
                    and len(doomed) == len(group.offsets)
                    and not group.pending_members
                )
                if drop_group:
                    writes.append(Delete(keys.group_key(group.group_id)))
                if not writes:
                    continue
                try:
                    await self._groups.txn(group, writes)
                except KafkaError:
                    continue
                group.offsets = after
                expired_total += len(doomed)
                if drop_group:
                    group.transition_to(DEAD, now)
                    self._drop(group)
        return expired_total

    @staticmethod
    def _expiration_base(group: Group) -> Callable[[CommittedOffset], int] | None:
        if group.protocol_type:
            if group.is_in(EMPTY):
                state_ts = group.state_timestamp
                return lambda c: state_ts if state_ts is not None else c.commit_timestamp
            if (
                group.protocol_type == CONSUMER_PROTOCOL_TYPE
                and group.subscribed_topics is not None
                and group.is_in(STABLE)
            ):
                return lambda c: c.commit_timestamp
            return None
        return lambda c: c.commit_timestamp
