"""The consumer group handlers, called the way the server calls them: every request is encoded
and decoded by the codec in its version, and every response is encoded in that version and
decoded back, so each test also proves the response is valid on the wire. The domain behind them
is real (GroupCoordinator, TopicManager) over the in-memory metadata store; time is a
ManualClock."""

from __future__ import annotations

import asyncio
import itertools
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from streambed.broker.domain.broker_configs import BrokerConfigs
from streambed.broker.domain.clock import ManualClock
from streambed.broker.domain.errors import ErrorCode
from streambed.broker.domain.groups import GroupConfig, GroupCoordinator
from streambed.broker.domain.topics import NewTopic, TopicManager
from streambed.broker.handlers.groups import handlers
from streambed.broker.protocol.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from streambed.broker.protocol.headers import RequestHeader
from streambed.broker.protocol.messages import SUPPORTED_VERSIONS
from streambed.broker.protocol.messages.delete_groups import DeleteGroupsRequest
from streambed.broker.protocol.messages.describe_groups import DescribeGroupsRequest
from streambed.broker.protocol.messages.find_coordinator import FindCoordinatorRequest
from streambed.broker.protocol.messages.heartbeat import HeartbeatRequest
from streambed.broker.protocol.messages.join_group import JoinGroupRequest, JoinGroupRequestProtocol
from streambed.broker.protocol.messages.leave_group import LeaveGroupRequest, MemberIdentity
from streambed.broker.protocol.messages.list_groups import ListGroupsRequest
from streambed.broker.protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from streambed.broker.protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from streambed.broker.protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from streambed.broker.protocol.messages.sync_group import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from streambed.broker.server.context import Endpoint, RequestContext, Services
from streambed.core.context import NodeContext
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata

FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
DESCRIBE, LIST, DELETE, COMMIT, FETCH, OFFSET_DELETE = 15, 16, 42, 8, 9, 47

SESSION, REBALANCE = 10_000, 30_000
ENDPOINT = Endpoint(1, "broker.example", 9092)
PEER = "10.1.2.3:50000"
_names = itertools.count()


def versions(api_key: int) -> range:
    lo, hi = SUPPORTED_VERSIONS[api_key]
    return range(lo, hi + 1)


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v1 (topics, no user data, no owned partitions)."""
    out = struct.pack(">hi", 1, len(topics))
    for topic in topics:
        out += struct.pack(">h", len(topic)) + topic.encode()
    return out + struct.pack(">ii", -1, 0)


SUB = subscription("t1")


class _Allocator:
    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def create_stream(self) -> int:
        return next(self._ids)

    async def delete_stream(self, stream_id: int) -> None:
        return None


@dataclass
class Env:
    table: dict[int, Any]
    clock: ManualClock
    groups: GroupCoordinator
    topics: TopicManager
    correlation: itertools.count[int]

    async def call(
        self, api_key: int, version: int, request: Any, *, client_id: str | None = "client"
    ) -> Any:
        """Through the codec both ways, as the server does."""
        corr = next(self.correlation)
        frame = b"".join(encode_request(RequestHeader(api_key, version, corr, client_id), request))
        decoded = decode_request(frame[4:])
        ctx = RequestContext(api_key, version, corr, decoded.client_id, PEER)
        response = await self.table[api_key](ctx, decoded.body)
        wire = b"".join(encode_response(api_key, version, corr, response))
        got_corr, body = decode_response(api_key, version, wire[4:])
        assert got_corr == corr
        return body

    def start(self, api_key: int, version: int, request: Any) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self.call(api_key, version, request))

    async def settle(self) -> None:
        """Let parked requests reach the coordinator and fire the timers due now (the initial
        rebalance delay is 0)."""
        for _ in range(3):
            for _ in range(20):
                await asyncio.sleep(0)
            self.clock.advance(0)

    async def done(self, task: asyncio.Task[Any]) -> Any:
        for _ in range(200):
            if task.done():
                break
            await self.settle()
        return await task


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = await open_memory_metadata(
        MemoryMetadataOptions(name=f"group-handlers-{next(_names)}"), NodeContext(data_dir=tmp_path)
    )
    configs = BrokerConfigs(store, node_id=1)
    await configs.load()
    topics = TopicManager(store, _Allocator(), configs, node_id=1)
    await topics.start()
    await topics.create_topic(NewTopic("t1", 2))
    await topics.create_topic(NewTopic("t2", 1))
    clock = ManualClock()
    groups = GroupCoordinator(store, clock=clock, config=GroupConfig(initial_rebalance_delay_ms=0))
    await groups.start()
    unused = cast(Any, None)
    services = Services(
        node_id=1,
        cluster_id="cluster",
        endpoint=ENDPOINT,
        settings=unused,
        store=store,
        engine=unused,
        topics=topics,
        broker_configs=configs,
        groups=groups,
        producer_ids=unused,
        partitions=unused,
        clock=clock,
    )
    yield Env(handlers(services), clock, groups, topics, itertools.count(1))
    await groups.close()
    await store.close()


def join_request(
    group: str = "g", member_id: str = "", *, instance: str | None = None, session: int = SESSION
) -> JoinGroupRequest:
    return JoinGroupRequest(
        group_id=group,
        session_timeout_ms=session,
        rebalance_timeout_ms=REBALANCE,
        member_id=member_id,
        group_instance_id=instance,
        protocol_type="consumer",
        protocols=[JoinGroupRequestProtocol("range", SUB)],
        reason="test",
    )


async def join_one(env: Env, group: str, version: int = 3) -> Any:
    """A single member joins an empty group in one step (v0-3: no member id round trip)."""
    result = await env.done(env.start(JOIN, version, join_request(group)))
    assert result.error_code == ErrorCode.NONE and result.generation_id >= 1
    return result


def sync_request(
    group: str, joined: Any, assignments: dict[str, bytes] | None = None
) -> SyncGroupRequest:
    return SyncGroupRequest(
        group_id=group,
        generation_id=joined.generation_id,
        member_id=joined.member_id,
        protocol_type="consumer",
        protocol_name="range",
        assignments=[SyncGroupRequestAssignment(m, a) for m, a in (assignments or {}).items()],
    )


async def rebalance_two(env: Env, version: int, group: str = "g") -> tuple[Any, Any]:
    """Two dynamic members through MEMBER_ID_REQUIRED, JoinGroup and SyncGroup at ``version``
    (v4+); returns (leader, follower) JoinGroup answers."""
    ids = []
    for _ in range(2):
        first = await env.call(JOIN, version, join_request(group))
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        assert first.member_id.startswith("client-") and first.generation_id == -1
        ids.append(first.member_id)
    tasks = [env.start(JOIN, version, join_request(group, mid)) for mid in ids]
    a, b = [await env.done(t) for t in tasks]
    assert a.error_code == b.error_code == ErrorCode.NONE
    assert a.generation_id == b.generation_id == 1
    assert a.leader == b.leader and a.leader in ids
    leader, follower = (a, b) if a.leader == a.member_id else (b, a)
    assert {m.member_id for m in leader.members} == set(ids)
    assert all(m.metadata == SUB for m in leader.members) and follower.members == []
    if version >= 7:
        assert leader.protocol_type == "consumer"
    assert leader.protocol_name == "range" and not leader.skip_assignment

    follower_sync = env.start(SYNC, 5, sync_request(group, follower))
    await env.settle()
    assert not follower_sync.done()
    plan = {leader.member_id: b"L", follower.member_id: b"F"}
    mine = await env.call(SYNC, 5, sync_request(group, leader, plan))
    theirs = await env.done(follower_sync)
    assert (mine.error_code, mine.assignment) == (ErrorCode.NONE, b"L")
    assert (theirs.error_code, theirs.assignment, theirs.protocol_name) == (0, b"F", "range")
    return leader, follower


# -- FindCoordinator --------------------------------------------------------------------------


async def test_find_coordinator_every_version(env: Env) -> None:
    for version in versions(FIND_COORDINATOR):
        request = FindCoordinatorRequest(
            key="g", key_type=0, coordinator_keys=["g1", "txn-1", "g2"]
        )
        got = await env.call(FIND_COORDINATOR, version, request)
        if version < 4:
            assert (got.error_code, got.node_id, got.host, got.port) == (0, 1, ENDPOINT.host, 9092)
            assert got.error_message is None
        else:
            assert [(c.key, c.node_id, c.host, c.port, c.error_code) for c in got.coordinators] == [
                (k, 1, ENDPOINT.host, 9092, 0) for k in ("g1", "txn-1", "g2")
            ]
        # The transaction coordinator is this broker too; an unknown key type is refused.
        txn = await env.call(FIND_COORDINATOR, version, FindCoordinatorRequest("t", 1, ["t"]))
        if version >= 1:
            odd = await env.call(FIND_COORDINATOR, version, FindCoordinatorRequest("x", 7, ["x"]))
        if version >= 4:
            assert txn.coordinators[0].node_id == 1
            bad = odd.coordinators[0]
            assert (bad.error_code, bad.node_id, bad.port) == (ErrorCode.INVALID_REQUEST, -1, -1)
            assert bad.error_message
        else:
            assert txn.node_id == 1
            if version >= 1:
                assert odd.error_code == ErrorCode.INVALID_REQUEST and odd.error_message


# -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ----------------------------------------------


@pytest.mark.parametrize("version", [5, 9])
async def test_two_member_rebalance(env: Env, version: int) -> None:
    leader, follower = await rebalance_two(env, version)
    assert env.groups.group("g").state.value == "Stable"  # type: ignore[union-attr]
    described = (await env.call(DESCRIBE, 5, DescribeGroupsRequest(["g"]))).groups[0]
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable",
        "consumer",
        "range",
    )
    assert {
        (m.member_id, m.client_id, m.client_host, m.member_assignment) for m in described.members
    } == {
        (leader.member_id, "client", "/10.1.2.3", b"L"),
        (follower.member_id, "client", "/10.1.2.3", b"F"),
    }
    # A third member: the others learn of the rebalance through their heartbeats.
    third = await env.call(JOIN, version, join_request())
    parked = env.start(JOIN, version, join_request("g", third.member_id))
    await env.settle()
    hb = HeartbeatRequest("g", 1, leader.member_id)
    assert (await env.call(HEARTBEAT, 4, hb)).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    rejoins = [env.start(JOIN, version, join_request("g", m.member_id)) for m in (leader, follower)]
    results = [await env.done(t) for t in [*rejoins, parked]]
    assert {r.generation_id for r in results} == {2}


async def test_static_member_rejoin_skips_assignment_in_v9(env: Env) -> None:
    first = await env.done(env.start(JOIN, 9, join_request("s", instance="i-1")))
    assert first.error_code == ErrorCode.NONE and first.leader == first.member_id
    await env.call(SYNC, 5, sync_request("s", first, {first.member_id: b"A"}))
    # The leader restarts and rejoins with its instance id: it keeps its assignment, and v9
    # tells it not to compute a new one.
    again = await env.done(env.start(JOIN, 9, join_request("s", instance="i-1")))
    assert again.error_code == ErrorCode.NONE and again.member_id != first.member_id
    assert again.skip_assignment and again.leader == again.member_id
    assert [(m.member_id, m.group_instance_id) for m in again.members] == [(again.member_id, "i-1")]
    # The old incarnation is fenced.
    old = HeartbeatRequest("s", 1, first.member_id, "i-1")
    assert (await env.call(HEARTBEAT, 3, old)).error_code == ErrorCode.FENCED_INSTANCE_ID


async def test_join_group_every_version(env: Env) -> None:
    for version in versions(JOIN):
        group = f"join-{version}"
        if version >= 4:
            first = await env.call(JOIN, version, join_request(group))
            assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
            assert first.protocol_name == (None if version >= 7 else "")  # nullable from v7
            joined = await env.done(env.start(JOIN, version, join_request(group, first.member_id)))
        else:
            joined = await env.done(env.start(JOIN, version, join_request(group)))
        assert (joined.error_code, joined.generation_id, joined.protocol_name) == (0, 1, "range")
        assert [m.member_id for m in joined.members] == [joined.member_id]
        bad = await env.call(JOIN, version, join_request(group, session=1))
        assert bad.error_code == ErrorCode.INVALID_SESSION_TIMEOUT


async def test_sync_group_every_version(env: Env) -> None:
    for version in versions(SYNC):
        group = f"sync-{version}"
        joined = await join_one(env, group)
        got = await env.call(SYNC, version, sync_request(group, joined, {joined.member_id: b"x"}))
        assert (got.error_code, got.assignment) == (0, b"x")
        if version >= 5:
            assert (got.protocol_type, got.protocol_name) == ("consumer", "range")
            bare = sync_request(group, joined)
            bare.protocol_type = bare.protocol_name = None
            missing = await env.call(SYNC, version, bare)
            assert missing.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        stranger = await env.call(SYNC, version, sync_request("nope", joined))
        assert stranger.error_code == ErrorCode.UNKNOWN_MEMBER_ID


async def test_heartbeat_every_version(env: Env) -> None:
    joined = await join_one(env, "hb")
    await env.call(SYNC, 0, sync_request("hb", joined, {}))
    for version in versions(HEARTBEAT):
        ok = HeartbeatRequest("hb", joined.generation_id, joined.member_id)
        assert (await env.call(HEARTBEAT, version, ok)).error_code == ErrorCode.NONE
        stale = HeartbeatRequest("hb", joined.generation_id + 1, joined.member_id)
        assert (await env.call(HEARTBEAT, version, stale)).error_code == 22  # ILLEGAL_GENERATION
        who = HeartbeatRequest("hb", joined.generation_id, "who")
        assert (await env.call(HEARTBEAT, version, who)).error_code == ErrorCode.UNKNOWN_MEMBER_ID
        empty = HeartbeatRequest("", 1, "who")
        assert (await env.call(HEARTBEAT, version, empty)).error_code == ErrorCode.INVALID_GROUP_ID


async def test_leave_group_v0_and_v3_batch(env: Env) -> None:
    leader, follower = await rebalance_two(env, 5)
    left = await env.call(LEAVE, 0, LeaveGroupRequest("g", member_id=follower.member_id))
    assert left.error_code == ErrorCode.NONE
    again = await env.call(LEAVE, 0, LeaveGroupRequest("g", member_id=follower.member_id))
    assert again.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    hb = HeartbeatRequest("g", 1, leader.member_id)
    assert (await env.call(HEARTBEAT, 1, hb)).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    batch = LeaveGroupRequest(
        "g", members=[MemberIdentity(leader.member_id), MemberIdentity("ghost", "i-9")]
    )
    got = await env.call(LEAVE, 3, batch)
    assert got.error_code == ErrorCode.NONE
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in got.members] == [
        (leader.member_id, None, ErrorCode.NONE),
        ("ghost", "i-9", ErrorCode.UNKNOWN_MEMBER_ID),
    ]
    await env.settle()
    assert env.groups.group("g").state.value == "Empty"  # type: ignore[union-attr]


async def test_leave_group_every_version(env: Env) -> None:
    for version in versions(LEAVE):
        group = f"leave-{version}"
        joined = await join_one(env, group)
        request = LeaveGroupRequest(
            group,
            members=[MemberIdentity(joined.member_id, reason="bye")],
            member_id=joined.member_id,
        )
        got = await env.call(LEAVE, version, request)
        assert got.error_code == ErrorCode.NONE
        if version >= 3:
            assert [(m.member_id, m.error_code) for m in got.members] == [(joined.member_id, 0)]
        # A group-level error: top level in every version.
        request.group_id = ""
        assert (await env.call(LEAVE, version, request)).error_code == ErrorCode.INVALID_GROUP_ID


# -- DescribeGroups, ListGroups, DeleteGroups -------------------------------------------------


async def test_describe_groups_every_version(env: Env) -> None:
    joined = await join_one(env, "d")
    await env.call(SYNC, 0, sync_request("d", joined, {joined.member_id: b"a"}))
    for version in versions(DESCRIBE):
        request = DescribeGroupsRequest(["d", "missing"], include_authorized_operations=True)
        found, missing = (await env.call(DESCRIBE, version, request)).groups
        assert (found.error_code, found.group_id, found.group_state) == (0, "d", "Stable")
        assert [(m.member_id, m.member_metadata, m.member_assignment) for m in found.members] == [
            (joined.member_id, SUB, b"a")
        ]
        assert (missing.group_id, missing.group_state, missing.members) == ("missing", "Dead", [])
        if version >= 3:
            assert found.authorized_operations == 3400  # READ, DELETE, DESCRIBE, *_CONFIGS
        if version >= 6:
            assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
            assert missing.error_message == "Group missing not found."
        else:
            assert missing.error_code == ErrorCode.NONE
    plain = await env.call(DESCRIBE, 3, DescribeGroupsRequest(["d"]))
    assert plain.groups[0].authorized_operations == -(2**31)


async def test_list_groups_every_version(env: Env) -> None:
    joined = await join_one(env, "stable")
    await env.call(SYNC, 0, sync_request("stable", joined, {}))
    await commit(env, 2, "simple", [("t1", 0, 5)])
    for version in versions(LIST):
        got = await env.call(LIST, version, ListGroupsRequest())
        assert got.error_code == ErrorCode.NONE
        assert [(g.group_id, g.protocol_type) for g in got.groups] == [
            ("simple", ""),
            ("stable", "consumer"),
        ]
        if version >= 4:
            assert [g.group_state for g in got.groups] == ["Empty", "Stable"]
            only = await env.call(LIST, version, ListGroupsRequest(states_filter=["stable"]))
            assert [g.group_id for g in only.groups] == ["stable"]
        if version >= 5:
            assert {g.group_type for g in got.groups} == {"classic"}
            typed = await env.call(LIST, version, ListGroupsRequest(types_filter=["consumer"]))
            assert typed.groups == []


async def test_delete_groups_every_version(env: Env) -> None:
    joined = await join_one(env, "busy")
    await env.call(SYNC, 0, sync_request("busy", joined, {}))
    for version in versions(DELETE):
        group = f"gone-{version}"
        await commit(env, 2, group, [("t1", 0, 1)])
        got = await env.call(DELETE, version, DeleteGroupsRequest([group, "busy", "never"]))
        assert [(r.group_id, r.error_code) for r in got.results] == [
            (group, ErrorCode.NONE),
            ("busy", ErrorCode.NON_EMPTY_GROUP),
            ("never", ErrorCode.GROUP_ID_NOT_FOUND),
        ]
        fetched = await fetch(env, 1, group, [("t1", [0])])
        assert fetched == {("t1", 0): (-1, 0)}


# -- OffsetCommit, OffsetFetch, OffsetDelete --------------------------------------------------


def commit_request(
    env: Env,
    group: str,
    offsets: list[tuple[str, int, int]],
    *,
    generation: int = -1,
    member_id: str = "",
    epoch: int = -1,
) -> OffsetCommitRequest:
    topics: dict[str, list[OffsetCommitRequestPartition]] = {}
    for topic, partition, offset in offsets:
        topics.setdefault(topic, []).append(
            OffsetCommitRequestPartition(partition, offset, epoch, f"m{offset}")
        )
    return OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        topics=[
            OffsetCommitRequestTopic(topic_id(env, name), name, parts)
            for name, parts in topics.items()
        ],
    )


def topic_id(env: Env, name: str) -> uuid.UUID:
    info = env.topics.get(name)
    return info.topic_id if info is not None else uuid.UUID(int=12345)


async def commit(
    env: Env, version: int, group: str, offsets: list[tuple[str, int, int]], **kw: Any
) -> dict[tuple[str, int], int]:
    got = await env.call(COMMIT, version, commit_request(env, group, offsets, **kw))
    by_id = {topic_id(env, name): name for name, _, _ in offsets}
    return {
        (t.name if version < 10 else by_id[t.topic_id], p.partition_index): p.error_code
        for t in got.topics
        for p in t.partitions
    }


def fetch_request(
    env: Env, groups: dict[str, list[tuple[str, list[int]]] | None]
) -> OffsetFetchRequest:
    """One request object that encodes in every version: v1-7 read the first group, v8+ all."""
    first, wanted = next(iter(groups.items()))
    return OffsetFetchRequest(
        groups=[
            OffsetFetchRequestGroup(
                group,
                topics=None
                if topics is None
                else [OffsetFetchRequestTopics(topic_id(env, t), t, ps) for t, ps in topics],
            )
            for group, topics in groups.items()
        ],
        group_id=first,
        topics=None if wanted is None else [OffsetFetchRequestTopic(t, ps) for t, ps in wanted],
    )


async def fetch(
    env: Env, version: int, group: str, topics: list[tuple[str, list[int]]] | None
) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (offset, error) of one group, in any version."""
    got = await env.call(FETCH, version, fetch_request(env, {group: topics}))
    if version >= 8:
        assert [g.group_id for g in got.groups] == [group]
        assert got.groups[0].error_code == ErrorCode.NONE
        names = {t.topic_id: t.name for t in env.topics.topics()}
        return {
            (t.name if version < 10 else names.get(t.topic_id, "?"), p.partition_index): (
                p.committed_offset,
                p.error_code,
            )
            for t in got.groups[0].topics
            for p in t.partitions
        }
    return {
        (t.name, p.partition_index): (p.committed_offset, p.error_code)
        for t in got.topics
        for p in t.partitions
    }


async def test_offset_commit_and_fetch_every_version(env: Env) -> None:
    for version in versions(COMMIT):
        group = f"offsets-{version}"
        offsets = [("t1", 0, 10 + version), ("t1", 1, 20), ("t1", 5, 1), ("nope", 0, 1)]
        errors = await commit(env, version, group, offsets, epoch=7)
        assert errors == {
            ("t1", 0): ErrorCode.NONE,
            ("t1", 1): ErrorCode.NONE,
            ("t1", 5): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ("nope", 0): ErrorCode.UNKNOWN_TOPIC_ID
            if version >= 10
            else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        }
        # A commit with a generation to a group that does not exist.
        missing = await commit(env, version, f"x-{version}", [("t2", 0, 1)], generation=3)
        expected = ErrorCode.GROUP_ID_NOT_FOUND if version >= 9 else ErrorCode.ILLEGAL_GENERATION
        assert missing == {("t2", 0): expected}

    for version in versions(FETCH):
        group = f"offsets-{version if version >= 2 else 2}"
        base = 10 + (version if version >= 2 else 2)
        got = await fetch(env, version, group, [("t1", [0, 1]), ("t2", [0])])
        assert got == {("t1", 0): (base, 0), ("t1", 1): (20, 0), ("t2", 0): (-1, 0)}
        if version >= 2:  # topics null: every committed partition
            everything = await fetch(env, version, group, None)
            assert everything == {("t1", 0): (base, 0), ("t1", 1): (20, 0)}


async def test_offset_fetch_details(env: Env) -> None:
    await commit(env, 6, "a", [("t1", 0, 42)], epoch=9)
    await commit(env, 6, "b", [("t2", 0, 7)])
    # v5+ carry the leader epoch and the metadata.
    old = await env.call(FETCH, 5, fetch_request(env, {"a": [("t1", [0])]}))
    part = old.topics[0].partitions[0]
    assert (part.committed_offset, part.committed_leader_epoch, part.metadata) == (42, 9, "m42")
    # v8 batches groups, each with its own topics (or all of them).
    batched = await env.call(FETCH, 8, fetch_request(env, {"a": [("t1", [0, 1])], "b": None}))
    assert [
        (
            g.group_id,
            [
                (t.name, [(p.partition_index, p.committed_offset) for p in t.partitions])
                for t in g.topics
            ],
        )
        for g in batched.groups
    ] == [("a", [("t1", [(0, 42), (1, -1)])]), ("b", [("t2", [(0, 7)])])]
    # v10 names topics by id; an unknown id is answered per partition.
    ghost = uuid.UUID(int=999)
    request = OffsetFetchRequest(
        groups=[
            OffsetFetchRequestGroup(
                "a",
                topics=[
                    OffsetFetchRequestTopics(topic_id(env, "t1"), "", [0]),
                    OffsetFetchRequestTopics(ghost, "", [3]),
                ],
            )
        ]
    )
    v10 = (await env.call(FETCH, 10, request)).groups[0].topics
    assert [
        (t.topic_id, [(p.partition_index, p.committed_offset, p.error_code) for p in t.partitions])
        for t in v10
    ] == [
        (topic_id(env, "t1"), [(0, 42, 0)]),
        (ghost, [(3, -1, ErrorCode.UNKNOWN_TOPIC_ID)]),
    ]
    # Fetch-all in v10 leaves out topics that no longer exist (no id to name them by).
    await commit(env, 2, "a", [("t2", 0, 3)])
    await env.topics.delete_topic("t2")
    everything = await env.call(FETCH, 10, fetch_request(env, {"a": None}))
    assert [t.topic_id for t in everything.groups[0].topics] == [topic_id(env, "t1")]
    assert {
        t.name for t in (await env.call(FETCH, 9, fetch_request(env, {"a": None}))).groups[0].topics
    } == {"t1", "t2"}


async def test_offset_commit_by_members(env: Env) -> None:
    leader, _ = await rebalance_two(env, 5)
    ok = await commit(env, 8, "g", [("t1", 0, 5)], generation=1, member_id=leader.member_id)
    assert ok == {("t1", 0): ErrorCode.NONE}
    stale = await commit(env, 8, "g", [("t1", 0, 6)], generation=0, member_id=leader.member_id)
    assert stale == {("t1", 0): ErrorCode.ILLEGAL_GENERATION}
    simple = await commit(env, 8, "g", [("t1", 0, 6)])  # generation -1 on a live group
    assert simple == {("t1", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    assert await fetch(env, 3, "g", [("t1", [0])]) == {("t1", 0): (5, 0)}
    # Nothing valid to commit: answered without the coordinator.
    only_unknown = await commit(env, 8, "nobody", [("nope", 0, 1)], generation=5)
    assert only_unknown == {("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert env.groups.group("nobody") is None


async def test_offset_delete(env: Env) -> None:
    await commit(env, 2, "simple", [("t1", 0, 5), ("t1", 1, 6), ("t2", 0, 7)])
    request = OffsetDeleteRequest(
        "simple",
        [
            OffsetDeleteRequestTopic("t1", [OffsetDeleteRequestPartition(0)]),
            OffsetDeleteRequestTopic("nope", [OffsetDeleteRequestPartition(0)]),
            OffsetDeleteRequestTopic("t2", [OffsetDeleteRequestPartition(4)]),
        ],
    )
    for version in versions(OFFSET_DELETE):
        request.group_id = "simple"
        got = await env.call(OFFSET_DELETE, version, request)
        assert got.error_code == ErrorCode.NONE
        assert [
            (t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in got.topics
        ] == [
            ("t1", [(0, ErrorCode.NONE)]),
            ("nope", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]),
            ("t2", [(4, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]),
        ]
        assert await fetch(env, 6, "simple", None) == {("t1", 1): (6, 0), ("t2", 0): (7, 0)}
        request.group_id = "missing"
        missing = await env.call(OFFSET_DELETE, version, request)
        assert (missing.error_code, missing.topics) == (ErrorCode.GROUP_ID_NOT_FOUND, [])
    # A consumer group keeps the offsets of topics it subscribes to.
    leader, _ = await rebalance_two(env, 5)
    await commit(
        env, 2, "g", [("t1", 0, 1), ("t2", 0, 1)], generation=1, member_id=leader.member_id
    )
    subscribed = OffsetDeleteRequest(
        "g",
        [
            OffsetDeleteRequestTopic("t1", [OffsetDeleteRequestPartition(0)]),
            OffsetDeleteRequestTopic("t2", [OffsetDeleteRequestPartition(0)]),
        ],
    )
    got = await env.call(OFFSET_DELETE, 0, subscribed)
    assert [(t.name, t.partitions[0].error_code) for t in got.topics] == [
        ("t1", ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC),
        ("t2", ErrorCode.NONE),
    ]


async def test_handler_table_covers_every_group_api(env: Env) -> None:
    assert set(env.table) == {
        FIND_COORDINATOR,
        JOIN,
        HEARTBEAT,
        LEAVE,
        SYNC,
        DESCRIBE,
        LIST,
        DELETE,
        COMMIT,
        FETCH,
        OFFSET_DELETE,
    }
    assert all(key in SUPPORTED_VERSIONS for key in env.table)
