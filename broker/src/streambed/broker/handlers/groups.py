"""Handlers of the classic consumer group APIs: FindCoordinator, JoinGroup, Heartbeat,
LeaveGroup, SyncGroup, DescribeGroups, ListGroups, DeleteGroups, OffsetCommit, OffsetFetch and
OffsetDelete, in every version the codec supports.

They are thin: read the request's fields for its version, call the
:class:`~streambed.broker.domain.groups.GroupCoordinator`, and shape its answer for the version.
This broker is the coordinator of every group (and every transactional id) for now.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streambed.broker.domain import group_model as gm
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.operations import GROUP_OPERATIONS, UNKNOWN_AUTHORIZED_OPERATIONS
from streambed.broker.protocol.messages.delete_groups import (
    DeletableGroupResult,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
)
from streambed.broker.protocol.messages.describe_groups import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
)
from streambed.broker.protocol.messages.find_coordinator import (
    Coordinator,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from streambed.broker.protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from streambed.broker.protocol.messages.join_group import (
    JoinGroupRequest,
    JoinGroupResponse,
    JoinGroupResponseMember,
)
from streambed.broker.protocol.messages.leave_group import (
    LeaveGroupRequest,
    LeaveGroupResponse,
    MemberResponse,
)
from streambed.broker.protocol.messages.list_groups import (
    ListedGroup,
    ListGroupsRequest,
    ListGroupsResponse,
)
from streambed.broker.protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from streambed.broker.protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from streambed.broker.protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopics,
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from streambed.broker.protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

if TYPE_CHECKING:
    from streambed.broker.domain.topics import TopicInfo
    from streambed.broker.server.context import Handler, RequestContext, Services

__all__ = ["handlers"]

FIND_COORDINATOR, OFFSET_COMMIT, OFFSET_FETCH = 10, 8, 9
JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 11, 12, 13, 14
DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS, OFFSET_DELETE = 15, 16, 42, 47

_GROUP_KEY, _TRANSACTION_KEY = 0, 1
_ZERO_UUID = uuid.UUID(int=0)


def handlers(services: Services) -> dict[int, Handler]:
    h = _GroupHandlers(services)
    return {
        FIND_COORDINATOR: h.find_coordinator,
        JOIN_GROUP: h.join_group,
        HEARTBEAT: h.heartbeat,
        LEAVE_GROUP: h.leave_group,
        SYNC_GROUP: h.sync_group,
        DESCRIBE_GROUPS: h.describe_groups,
        LIST_GROUPS: h.list_groups,
        DELETE_GROUPS: h.delete_groups,
        OFFSET_COMMIT: h.offset_commit,
        OFFSET_FETCH: h.offset_fetch,
        OFFSET_DELETE: h.offset_delete,
    }


@dataclass(slots=True)
class _TopicRequest:
    """One topic of an offsets request, resolved against the topic metadata: ``info`` is None
    when the topic (name or id) is unknown."""

    name: str
    topic_id: uuid.UUID
    partitions: list[int]
    info: TopicInfo | None


@dataclass(slots=True)
class _TopicOffsets:
    """One topic of an OffsetFetch answer, in a form both response layouts are built from."""

    name: str
    topic_id: uuid.UUID
    offsets: list[gm.FetchedOffset]


class _GroupHandlers:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._groups = services.groups
        self._topics = services.topics

    # -- FindCoordinator ----------------------------------------------------------------------

    async def find_coordinator(
        self, ctx: RequestContext, request: FindCoordinatorRequest
    ) -> FindCoordinatorResponse:
        if ctx.api_version >= 4:
            return FindCoordinatorResponse(
                coordinators=[
                    self._coordinator(key, request.key_type) for key in request.coordinator_keys
                ]
            )
        one = self._coordinator(request.key, request.key_type)
        return FindCoordinatorResponse(
            error_code=one.error_code,
            error_message=one.error_message,
            node_id=one.node_id,
            host=one.host,
            port=one.port,
        )

    def _coordinator(self, key: str, key_type: int) -> Coordinator:
        if key_type not in (_GROUP_KEY, _TRANSACTION_KEY):
            return Coordinator(
                key,
                -1,
                "",
                -1,
                ErrorCode.INVALID_REQUEST,
                f"Unsupported coordinator key type {key_type}.",
            )
        endpoint = self._services.endpoint
        return Coordinator(key, endpoint.node_id, endpoint.host, endpoint.port)

    # -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ------------------------------------------

    async def join_group(self, ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse:
        version = ctx.api_version
        result = await self._groups.join_group(
            request.group_id,
            request.member_id,
            protocol_type=request.protocol_type,
            protocols=[(p.name, p.metadata) for p in request.protocols],
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            group_instance_id=request.group_instance_id,
            client_id=ctx.client_id or "",
            client_host=_client_host(ctx.peer),
            require_known_member_id=version >= 4,
            supports_skip_assignment=version >= 9,
            reason=request.reason,
        )
        protocol_name = result.protocol_name
        if version < 7 and protocol_name is None:
            protocol_name = ""  # not nullable before v7
        return JoinGroupResponse(
            error_code=result.error,
            generation_id=result.generation_id,
            protocol_type=result.protocol_type,
            protocol_name=protocol_name,
            leader=result.leader,
            skip_assignment=result.skip_assignment,
            member_id=result.member_id,
            members=[
                JoinGroupResponseMember(m.member_id, m.group_instance_id, m.metadata)
                for m in result.members
            ],
        )

    async def sync_group(self, ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse:
        if ctx.api_version >= 5 and (
            request.protocol_type is None or request.protocol_name is None
        ):
            # Mandatory from v5 on (Kafka's areMandatoryProtocolTypeAndNamePresent).
            return SyncGroupResponse(error_code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        result = await self._groups.sync_group(
            request.group_id,
            request.member_id,
            request.generation_id,
            group_instance_id=request.group_instance_id,
            protocol_type=request.protocol_type,
            protocol_name=request.protocol_name,
            assignments={a.member_id: a.assignment for a in request.assignments},
        )
        return SyncGroupResponse(
            error_code=result.error,
            protocol_type=result.protocol_type,
            protocol_name=result.protocol_name,
            assignment=result.assignment,
        )

    async def heartbeat(self, ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
        error = await self._groups.heartbeat(
            request.group_id,
            request.member_id,
            request.generation_id,
            group_instance_id=request.group_instance_id,
        )
        return HeartbeatResponse(error_code=error)

    async def leave_group(
        self, ctx: RequestContext, request: LeaveGroupRequest
    ) -> LeaveGroupResponse:
        batched = ctx.api_version >= 3
        if batched:
            members = [gm.MemberIdentity(m.member_id, m.group_instance_id) for m in request.members]
        else:
            members = [gm.MemberIdentity(request.member_id)]
        try:
            results = await self._groups.leave_group(request.group_id, members)
        except KafkaError as exc:
            return LeaveGroupResponse(error_code=exc.code)
        if not batched:
            # v0-2 carry the one member's error as the response's.
            return LeaveGroupResponse(error_code=results[0].error if results else ErrorCode.NONE)
        return LeaveGroupResponse(
            members=[MemberResponse(r.member_id, r.group_instance_id, r.error) for r in results]
        )

    # -- DescribeGroups, ListGroups, DeleteGroups ---------------------------------------------

    async def describe_groups(
        self, ctx: RequestContext, request: DescribeGroupsRequest
    ) -> DescribeGroupsResponse:
        operations = (
            GROUP_OPERATIONS
            if ctx.api_version >= 3 and request.include_authorized_operations
            else UNKNOWN_AUTHORIZED_OPERATIONS
        )
        out: list[DescribedGroup] = []
        for group_id in request.groups:
            described = await self._groups.describe_group(group_id)
            if described is None:
                out.append(_missing_group(group_id, ctx.api_version))
                continue
            out.append(
                DescribedGroup(
                    group_id=described.group_id,
                    group_state=described.state,
                    protocol_type=described.protocol_type,
                    protocol_data=described.protocol_data,
                    members=[
                        DescribedGroupMember(
                            m.member_id,
                            m.group_instance_id,
                            m.client_id,
                            m.client_host,
                            m.metadata,
                            m.assignment,
                        )
                        for m in described.members
                    ],
                    authorized_operations=operations,
                )
            )
        return DescribeGroupsResponse(groups=out)

    async def list_groups(
        self, ctx: RequestContext, request: ListGroupsRequest
    ) -> ListGroupsResponse:
        # Before v4 (states) and v5 (types) the filters decode as empty lists: no filter.
        listed = self._groups.list_groups(request.states_filter, request.types_filter)
        return ListGroupsResponse(
            groups=[ListedGroup(g.group_id, g.protocol_type, g.state, g.group_type) for g in listed]
        )

    async def delete_groups(
        self, ctx: RequestContext, request: DeleteGroupsRequest
    ) -> DeleteGroupsResponse:
        errors = await self._groups.delete_groups(request.groups_names)
        return DeleteGroupsResponse(
            results=[DeletableGroupResult(g, errors[g]) for g in request.groups_names]
        )

    # -- OffsetCommit, OffsetFetch, OffsetDelete ----------------------------------------------

    async def offset_commit(
        self, ctx: RequestContext, request: OffsetCommitRequest
    ) -> OffsetCommitResponse:
        version = ctx.api_version
        by_id = version >= 10
        topics = [
            self._resolve(t.name, t.topic_id, [p.partition_index for p in t.partitions], by_id)
            for t in request.topics
        ]
        entries = [
            gm.OffsetCommitEntry(
                resolved.name,
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata,
            )
            for resolved, t in zip(topics, request.topics, strict=True)
            for p in t.partitions
            if _partition_error(resolved, p.partition_index, by_id) is None
        ]
        results: dict[gm.TopicPartition, ErrorCode] = {}
        if entries:  # as in Kafka, a request left with nothing to commit skips the coordinator
            results = await self._groups.commit_offsets(
                request.group_id,
                entries,
                member_id=request.member_id,
                group_instance_id=request.group_instance_id,
                generation_id=request.generation_id_or_member_epoch,
                retention_time_ms=request.retention_time_ms,
                missing_group_error=(
                    ErrorCode.GROUP_ID_NOT_FOUND if version >= 9 else ErrorCode.ILLEGAL_GENERATION
                ),
            )
        return OffsetCommitResponse(
            topics=[
                OffsetCommitResponseTopic(
                    resolved.topic_id,
                    resolved.name,
                    [
                        OffsetCommitResponsePartition(index, error)
                        for index, error in _partition_results(resolved, results, by_id)
                    ],
                )
                for resolved in topics
            ]
        )

    async def offset_delete(
        self, ctx: RequestContext, request: OffsetDeleteRequest
    ) -> OffsetDeleteResponse:
        topics = [
            self._resolve(t.name, _ZERO_UUID, [p.partition_index for p in t.partitions], False)
            for t in request.topics
        ]
        wanted = [
            gm.TopicPartition(t.name, index)
            for t in topics
            for index in t.partitions
            if _partition_error(t, index, False) is None
        ]
        try:
            results = await self._groups.delete_offsets(request.group_id, wanted)
        except KafkaError as exc:
            return OffsetDeleteResponse(error_code=exc.code)
        return OffsetDeleteResponse(
            topics=[
                OffsetDeleteResponseTopic(
                    t.name,
                    [
                        OffsetDeleteResponsePartition(index, error)
                        for index, error in _partition_results(t, results, False)
                    ],
                )
                for t in topics
            ]
        )

    async def offset_fetch(
        self, ctx: RequestContext, request: OffsetFetchRequest
    ) -> OffsetFetchResponse:
        version = ctx.api_version
        if version >= 8:
            return OffsetFetchResponse(
                groups=[await self._fetch_group(g, by_id=version >= 10) for g in request.groups]
            )
        requested = (
            None
            if request.topics is None
            else [(t.name, _ZERO_UUID, t.partition_indexes) for t in request.topics]
        )
        fetched = await self._fetch(request.group_id, requested, by_id=False)
        return OffsetFetchResponse(
            topics=[
                OffsetFetchResponseTopic(
                    t.name,
                    [
                        OffsetFetchResponsePartition(
                            o.partition, o.offset, o.leader_epoch, o.metadata, o.error
                        )
                        for o in t.offsets
                    ],
                )
                for t in fetched
            ]
        )

    async def _fetch_group(
        self, group: OffsetFetchRequestGroup, *, by_id: bool
    ) -> OffsetFetchResponseGroup:
        topics: Sequence[OffsetFetchRequestTopics] | None = group.topics
        requested = (
            None if topics is None else [(t.name, t.topic_id, t.partition_indexes) for t in topics]
        )
        fetched = await self._fetch(group.group_id, requested, by_id=by_id)
        return OffsetFetchResponseGroup(
            group.group_id,
            [
                OffsetFetchResponseTopics(
                    t.topic_id,
                    t.name,
                    [
                        OffsetFetchResponsePartitions(
                            o.partition, o.offset, o.leader_epoch, o.metadata, o.error
                        )
                        for o in t.offsets
                    ],
                )
                for t in fetched
            ],
        )

    async def _fetch(
        self,
        group_id: str,
        requested: Iterable[tuple[str, uuid.UUID, list[int]]] | None,
        *,
        by_id: bool,
    ) -> list[_TopicOffsets]:
        """One group's committed offsets, per topic: the requested ones in request order, or
        with ``requested`` None every committed one (v10 leaves out topics without an id,
        i.e. deleted ones, which it could not name)."""
        if requested is None:
            per_topic: dict[str, list[gm.FetchedOffset]] = {}
            for fetched in await self._groups.fetch_offsets(group_id, None):
                per_topic.setdefault(fetched.topic, []).append(fetched)
            out = []
            for name, offsets in per_topic.items():
                info = self._topics.get(name)
                topic_id = info.topic_id if info is not None else _ZERO_UUID
                if by_id and topic_id == _ZERO_UUID:
                    continue
                out.append(_TopicOffsets(name, topic_id, offsets))
            return out
        topics = [self._resolve(n, tid, parts, by_id) for n, tid, parts in requested]
        known = [t for t in topics if not by_id or t.info is not None]
        fetched_all = iter(
            await self._groups.fetch_offsets(
                group_id,
                [gm.TopicPartition(t.name, index) for t in known for index in t.partitions],
            )
        )
        out = []
        for t in topics:
            if by_id and t.info is None:
                offsets = [
                    gm.FetchedOffset("", i, -1, -1, "", ErrorCode.UNKNOWN_TOPIC_ID)
                    for i in t.partitions
                ]
            else:
                offsets = [next(fetched_all) for _ in t.partitions]
            out.append(_TopicOffsets(t.name, t.topic_id, offsets))
        return out

    def _resolve(
        self, name: str, topic_id: uuid.UUID, partitions: list[int], by_id: bool
    ) -> _TopicRequest:
        """Look a request's topic up by id (v10 of the offsets APIs) or else by name."""
        info = self._topics.get_by_id(topic_id) if by_id else self._topics.get(name)
        if info is None:
            return _TopicRequest("" if by_id else name, topic_id, partitions, None)
        return _TopicRequest(info.name, info.topic_id if by_id else topic_id, partitions, info)


def _partition_error(topic: _TopicRequest, index: int, by_id: bool) -> ErrorCode | None:
    """Kafka answers partitions of unknown topics itself, without asking the coordinator."""
    if topic.info is None:
        return ErrorCode.UNKNOWN_TOPIC_ID if by_id else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if topic.info.partition(index) is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return None


def _partition_results(
    topic: _TopicRequest, results: dict[gm.TopicPartition, ErrorCode], by_id: bool
) -> list[tuple[int, ErrorCode]]:
    """Each requested partition's error: ours for an unknown one, else the coordinator's."""
    out = []
    for index in topic.partitions:
        error = _partition_error(topic, index, by_id)
        out.append(
            (index, results[gm.TopicPartition(topic.name, index)] if error is None else error)
        )
    return out


def _missing_group(group_id: str, version: int) -> DescribedGroup:
    """DescribeGroups of a group that does not exist: state Dead, and from v6 an error."""
    if version >= 6:
        return DescribedGroup(
            error_code=ErrorCode.GROUP_ID_NOT_FOUND,
            error_message=f"Group {group_id} not found.",
            group_id=group_id,
            group_state=gm.GroupState.DEAD.value,
        )
    return DescribedGroup(group_id=group_id, group_state=gm.GroupState.DEAD.value)


def _client_host(peer: str) -> str:
    """Kafka's client host: the peer's IP as Java prints an address, after a ``/``."""
    host, sep, _port = peer.rpartition(":")
    return "/" + (host if sep else peer).strip("[]")
