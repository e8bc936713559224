"""The classic group coordinator, scenario by scenario, against Kafka's behaviour. Time is a
ManualClock: rebalance and session timeouts pass in microseconds, deterministically."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from domain_fakes import subscription

from streambed.broker.domain import keys
from streambed.broker.domain.clock import ManualClock
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.group_model import (
    GroupState,
    JoinResult,
    MemberIdentity,
    OffsetCommitEntry,
    TopicPartition,
)
from streambed.broker.domain.groups import GroupConfig, GroupCoordinator
from streambed.core.metadata.api import MetadataStore

SESSION = 10_000
REBALANCE = 30_000
RANGE = [("range", subscription("t1", "t2"))]


async def settle(clock: ManualClock | None = None) -> None:
    """Let parked requests reach the coordinator; with ``clock``, also fire timers due now
    (the initial rebalance delay is 0 in most tests)."""
    for _ in range(20):
        await asyncio.sleep(0)
    if clock is not None:
        clock.advance(0)
        for _ in range(20):
            await asyncio.sleep(0)


async def coordinator(store: MetadataStore, clock: ManualClock, **config: int) -> GroupCoordinator:
    gc = GroupCoordinator(
        store, clock=clock, config=GroupConfig(**{"initial_rebalance_delay_ms": 0, **config})
    )
    await gc.start()
    return gc


def join(
    gc: GroupCoordinator,
    member_id: str = "",
    *,
    group: str = "g",
    protocols: Sequence[tuple[str, bytes]] = RANGE,
    instance: str | None = None,
    protocol_type: str = "consumer",
    session: int = SESSION,
    rebalance: int = REBALANCE,
    skip: bool = False,
) -> asyncio.Task[JoinResult]:
    return asyncio.ensure_future(
        gc.join_group(
            group,
            member_id,
            protocol_type=protocol_type,
            protocols=protocols,
            session_timeout_ms=session,
            rebalance_timeout_ms=rebalance,
            group_instance_id=instance,
            client_id="client",
            client_host="/127.0.0.1",
            supports_skip_assignment=skip,
        )
    )


async def done(task: asyncio.Future[JoinResult], clock: ManualClock) -> JoinResult:
    """Await a JoinGroup that needs the (zero) initial rebalance delay to pass. The request may
    first read the store (on a thread for SQLite), so keep firing due timers until it is done;
    the clock itself never moves."""
    for _ in range(5000):
        if task.done():
            break
        clock.advance(0)
        await asyncio.sleep(0.001)
    return await task


async def new_member(gc: GroupCoordinator, group: str = "g", **kw: object) -> str:
    """KIP-394: the first JoinGroup only hands out the member id."""
    first = await join(gc, group=group, **kw)  # type: ignore[arg-type]
    assert first.error == ErrorCode.MEMBER_ID_REQUIRED and first.member_id.startswith("client-")
    return first.member_id


async def stable_group(
    gc: GroupCoordinator, clock: ManualClock, n: int, group: str = "g"
) -> list[JoinResult]:
    """n dynamic members through one complete rebalance; the leader assigns b"<member id>"."""
    ids = [await new_member(gc, group) for _ in range(n)]
    tasks = [join(gc, mid, group=group) for mid in ids]
    await settle(clock)
    results = [await t for t in tasks]
    await sync_all(gc, results, group)
    return results


async def sync_all(gc: GroupCoordinator, results: Sequence[JoinResult], group: str = "g") -> None:
    leader = next(r for r in results if r.leader == r.member_id)
    followers = [
        asyncio.ensure_future(gc.sync_group(group, r.member_id, r.generation_id))
        for r in results
        if r is not leader
    ]
    await settle()
    mine = await gc.sync_group(
        group,
        leader.member_id,
        leader.generation_id,
        assignments={m.member_id: m.member_id.encode() for m in leader.members},
    )
    for result, task in zip([r for r in results if r is not leader], followers, strict=True):
        got = await task
        assert got.error == ErrorCode.NONE and got.assignment == result.member_id.encode()
    assert mine.assignment == leader.member_id.encode()


async def test_two_members_rebalance(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    a, b = await stable_group(gc, clock, 2)
    assert a.generation_id == b.generation_id == 1
    assert a.leader == b.leader and a.protocol_name == "range" and a.protocol_type == "consumer"
    leader = a if a.leader == a.member_id else b
    assert {m.member_id for m in leader.members} == {a.member_id, b.member_id}
    assert all(m.metadata == RANGE[0][1] for m in leader.members)
    assert gc.group("g").state == GroupState.STABLE  # type: ignore[union-attr]
    assert await gc.heartbeat("g", a.member_id, 1) == ErrorCode.NONE
    # A third member: the others learn through REBALANCE_IN_PROGRESS on their heartbeat.
    c_id = await new_member(gc)
    c = join(gc, c_id)
    await settle()
    assert gc.group("g").state == GroupState.PREPARING_REBALANCE  # type: ignore[union-attr]
    assert await gc.heartbeat("g", a.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    sync_old = await gc.sync_group("g", a.member_id, 1)
    assert sync_old.error == ErrorCode.REBALANCE_IN_PROGRESS
    ra, rb = join(gc, a.member_id), join(gc, b.member_id)
    results = [await ra, await rb, await c]
    assert {r.generation_id for r in results} == {2}
    assert len({r.leader for r in results}) == 1
    await sync_all(gc, results)
    await gc.close()


async def test_protocol_vote_and_consistency(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    prefs = [
        [("roundrobin", b"1"), ("range", b"1")],
        [("roundrobin", b"2"), ("range", b"2")],
        [("range", b"3"), ("roundrobin", b"3"), ("sticky", b"3")],
    ]
    ids = [await new_member(gc, protocols=p) for p in prefs]
    tasks = [join(gc, mid, protocols=p) for mid, p in zip(ids, prefs, strict=True)]
    await settle(clock)
    results = [await t for t in tasks]
    assert {r.protocol_name for r in results} == {"roundrobin"}  # two votes to one
    leader = next(r for r in results if r.members)
    assert {m.metadata for m in leader.members} == {
        b"1",
        b"2",
        b"3",
    }  # each member's roundrobin metadata
    # Nothing in common, or another protocol type: refused.
    assert (
        await join(gc, protocols=[("sticky", b"")])
    ).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert (await join(gc, protocol_type="connect")).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert (await join(gc, group="e", protocols=[])).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    await gc.close()


async def test_join_validation(memory_store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(memory_store, clock)
    assert (await join(gc, group="")).error == ErrorCode.INVALID_GROUP_ID
    assert (await join(gc, session=5999)).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert (await join(gc, session=1_800_001)).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert (await join(gc, "someone", group="nope")).error == ErrorCode.UNKNOWN_MEMBER_ID
    # v0-3 clients (no KIP-394) join in one step.
    old = await done(
        asyncio.ensure_future(
            gc.join_group(
                "old",
                "",
                protocol_type="consumer",
                protocols=RANGE,
                session_timeout_ms=SESSION,
                require_known_member_id=False,
            )
        ),
        clock,
    )
    assert old.error == ErrorCode.NONE and old.generation_id == 1 and old.leader == old.member_id
    await gc.close()


async def test_max_group_size(memory_store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(memory_store, clock, max_size=2)
    await stable_group(gc, clock, 2)
    # Checked before anything else, so a newcomer does not even get a member id.
    refused = await join(gc)
    assert (refused.error, refused.member_id) == (ErrorCode.GROUP_MAX_SIZE_REACHED, "")
    assert len(gc.group("g").members) == 2  # type: ignore[union-attr]
    await gc.close()


async def test_initial_rebalance_delay_waits_for_more_members(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock, initial_rebalance_delay_ms=3000)
    a = join(gc, await new_member(gc))
    await settle()
    clock.advance(2000)
    b = join(gc, await new_member(gc))  # arrives within the delay: the delay is extended
    await settle()
    clock.advance(1000)
    await settle()
    assert not a.done()
    clock.advance(3000)
    await settle()
    assert a.done() and b.done()
    assert (await a).generation_id == (await b).generation_id == 1
    await gc.close()


async def test_session_timeout_removes_silent_members(
    store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(store, clock)
    a, b = await stable_group(gc, clock, 2)
    clock.advance(SESSION - 1)
    assert await gc.heartbeat("g", a.member_id, 1) == ErrorCode.NONE
    clock.advance(1)
    # b never heartbeated: it was removed and a rebalance started for a.
    assert b.member_id not in gc.group("g").members  # type: ignore[union-attr]
    assert await gc.heartbeat("g", b.member_id, 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert await gc.heartbeat("g", a.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    again = await join(gc, a.member_id)
    assert (again.error, again.generation_id, again.leader) == (ErrorCode.NONE, 2, a.member_id)
    assert await gc.heartbeat("g", a.member_id, 1) == ErrorCode.ILLEGAL_GENERATION
    # Then a goes silent too: the group empties and its generation moves on.
    clock.advance(REBALANCE + SESSION)
    await settle()
    group = gc.group("g")
    assert group is not None and group.state == GroupState.EMPTY and group.generation == 3
    await gc.idle()
    await gc.close()


async def test_sync_group_errors_and_waiting(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    ids = [await new_member(gc) for _ in range(2)]
    tasks = [join(gc, mid) for mid in ids]
    await settle(clock)
    a, b = [await t for t in tasks]
    leader, follower = (a, b) if a.leader == a.member_id else (b, a)
    assert (await gc.sync_group("g", follower.member_id, 0)).error == ErrorCode.ILLEGAL_GENERATION
    assert (await gc.sync_group("g", "stranger", 1)).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert (await gc.sync_group("nope", "x", 1)).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert (
        await gc.sync_group("g", follower.member_id, 1, protocol_name="sticky")
    ).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    waiting = asyncio.ensure_future(
        gc.sync_group("g", follower.member_id, 1, protocol_type="consumer", protocol_name="range")
    )
    await settle()
    assert not waiting.done()
    # The leader forgot the follower: it gets an empty assignment, never nothing.
    done = await gc.sync_group(
        "g", leader.member_id, 1, assignments={leader.member_id: b"L", "ghost": b"G"}
    )
    assert (done.error, done.assignment) == (ErrorCode.NONE, b"L")
    got = await waiting
    assert (got.error, got.assignment, got.protocol_name) == (ErrorCode.NONE, b"", "range")
    # Stable: a repeated SyncGroup gets the current assignment at once.
    assert (await gc.sync_group("g", leader.member_id, 1)).assignment == b"L"
    await gc.close()


async def test_members_that_never_sync_are_removed(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    ids = [await new_member(gc) for _ in range(2)]
    tasks = [join(gc, mid) for mid in ids]
    await settle(clock)
    a, b = [await t for t in tasks]
    leader = a if a.leader == a.member_id else b
    other = b if leader is a else a
    await gc.sync_group("g", leader.member_id, 1, assignments={})
    # `other` keeps heartbeating but never sends SyncGroup.
    for _ in range(4):
        clock.advance(SESSION - 1)
        await gc.heartbeat("g", leader.member_id, 1)
        await gc.heartbeat("g", other.member_id, 1)
    assert other.member_id not in gc.group("g").members  # type: ignore[union-attr]
    await gc.close()


async def test_follower_that_rejoins_during_completing_rebalance(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    ids = [await new_member(gc) for _ in range(2)]
    tasks = [join(gc, mid) for mid in ids]
    await settle(clock)
    a, b = [await t for t in tasks]
    follower = b if a.leader == a.member_id else a
    # Lost its JoinGroup answer and asks again with the same protocols: same answer, no rebalance.
    again = await join(gc, follower.member_id)
    assert (again.generation_id, again.leader) == (1, follower.leader)
    assert gc.group("g").state == GroupState.COMPLETING_REBALANCE  # type: ignore[union-attr]
    await gc.close()


async def test_static_member_rejoins_without_rebalance(
    store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(store, clock)
    first = await done(join(gc, instance="pod-1"), clock)
    assert first.error == ErrorCode.NONE and first.member_id.startswith("pod-1-")
    await sync_all(gc, [first])
    second = join(gc, await new_member(gc))
    await settle()
    results = [await join(gc, first.member_id, instance="pod-1"), await second]
    assert {r.generation_id for r in results} == {2}
    await sync_all(gc, results)
    static = results[0]
    # The process restarts: unknown member id, same instance id, same protocols.
    rejoined = await join(gc, instance="pod-1")
    await gc.idle()
    assert rejoined.error == ErrorCode.NONE and rejoined.member_id != static.member_id
    assert rejoined.generation_id == 2  # no rebalance
    assert gc.group("g").state == GroupState.STABLE  # type: ignore[union-attr]
    # The old incarnation is fenced everywhere.
    assert (
        await gc.heartbeat("g", static.member_id, 2, group_instance_id="pod-1")
        == ErrorCode.FENCED_INSTANCE_ID
    )
    assert (
        await gc.sync_group("g", static.member_id, 2, group_instance_id="pod-1")
    ).error == ErrorCode.FENCED_INSTANCE_ID
    fenced = await gc.commit_offsets(
        "g",
        [OffsetCommitEntry("t1", 0, 5)],
        member_id=static.member_id,
        group_instance_id="pod-1",
        generation_id=2,
    )
    assert fenced == {TopicPartition("t1", 0): ErrorCode.FENCED_INSTANCE_ID}
    # The new one takes over the old assignment.
    synced = await gc.sync_group("g", rejoined.member_id, 2, group_instance_id="pod-1")
    assert synced.assignment == static.member_id.encode()
    assert (
        await gc.heartbeat("g", rejoined.member_id, 2, group_instance_id="pod-1") == ErrorCode.NONE
    )
    # Restart the coordinator: the static mapping is durable.
    gc2 = await coordinator(store, clock)
    assert (
        await gc2.heartbeat("g", static.member_id, 2, group_instance_id="pod-1")
        == ErrorCode.FENCED_INSTANCE_ID
    )
    assert (
        await gc2.heartbeat("g", rejoined.member_id, 2, group_instance_id="pod-1") == ErrorCode.NONE
    )
    await gc.close()
    await gc2.close()


async def test_static_leader_rejoin_and_protocol_change(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    leader = await done(join(gc, instance="a"), clock)
    await sync_all(gc, [leader])
    # KIP-814: a static leader that rejoins a stable group gets the members but skips assigning.
    back = await join(gc, instance="a", skip=True)
    await gc.idle()
    assert back.leader == back.member_id and back.skip_assignment and back.generation_id == 1
    assert [m.member_id for m in back.members] == [back.member_id]
    # Older clients get the old leader id, so they do not think they must assign.
    older = await join(gc, instance="a")
    await gc.idle()
    assert older.leader == back.member_id and not older.members and not older.skip_assignment
    # New protocols change what the group would select: that is a rebalance.
    changed = await join(gc, instance="a", protocols=[("sticky", b"x"), *RANGE])
    assert changed.generation_id == 2 and changed.protocol_name == "sticky"
    # Protocols the group cannot support at all are refused before anything changes.
    assert (
        await join(gc, instance="a", protocols=[("zzz", b"")])
    ).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    await gc.close()


async def test_leave_group(memory_store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(memory_store, clock)
    s = await done(join(gc, instance="s1"), clock)
    await sync_all(gc, [s])
    d_id = await new_member(gc)
    t2 = join(gc, d_id)
    await settle()
    results = [await join(gc, s.member_id, instance="s1"), await t2]
    await sync_all(gc, results)
    pending = await new_member(gc)
    got = await gc.leave_group(
        "g",
        [
            MemberIdentity("", "s1"),  # admin removal of a static member by instance id
            MemberIdentity(d_id),
            MemberIdentity(pending),
            MemberIdentity("ghost"),
            MemberIdentity("", "nobody"),
        ],
    )
    assert [r.error for r in got] == [
        ErrorCode.NONE,
        ErrorCode.NONE,
        ErrorCode.NONE,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.UNKNOWN_MEMBER_ID,
    ]
    await settle()
    group = gc.group("g")
    assert group is not None and not group.members and group.state == GroupState.EMPTY
    assert [r.error for r in await gc.leave_group("nope", [MemberIdentity("x")])] == [
        ErrorCode.UNKNOWN_MEMBER_ID
    ]
    with pytest.raises(KafkaError) as err:
        await gc.leave_group("", [])
    assert err.value.code == ErrorCode.INVALID_GROUP_ID
    await gc.close()


async def test_leave_completes_a_pending_rebalance(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    a, b = await stable_group(gc, clock, 2)
    ra = join(gc, a.member_id)  # a rejoins; the group waits for b ...
    await settle()
    assert not ra.done()
    await gc.leave_group("g", [MemberIdentity(b.member_id)])  # ... which leaves instead
    result = await ra
    assert (result.generation_id, result.leader, len(result.members)) == (2, a.member_id, 1)
    await gc.close()


async def test_describe_list_delete(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    await stable_group(gc, clock, 2, group="busy")
    await gc.commit_offsets("simple", [OffsetCommitEntry("t", 0, 1)])
    desc = await gc.describe_group("busy")
    assert desc is not None and (desc.state, desc.protocol_type, desc.protocol_data) == (
        "Stable",
        "consumer",
        "range",
    )
    assert {m.assignment for m in desc.members} == {m.member_id.encode() for m in desc.members}
    assert all(m.metadata == RANGE[0][1] and m.client_host == "/127.0.0.1" for m in desc.members)
    assert await gc.describe_group("nope") is None
    simple = await gc.describe_group("simple")
    assert simple is not None and (simple.state, simple.protocol_type, simple.members) == (
        "Empty",
        "",
        (),
    )
    assert [(g.group_id, g.state) for g in gc.list_groups()] == [
        ("busy", "Stable"),
        ("simple", "Empty"),
    ]
    assert [g.group_id for g in gc.list_groups(states=["empty"])] == ["simple"]
    assert [g.group_id for g in gc.list_groups(states=["STABLE"], types=["Classic"])] == ["busy"]
    assert gc.list_groups(types=["consumer"]) == []
    assert await gc.delete_groups(["busy", "simple", "nope", ""]) == {
        "busy": ErrorCode.NON_EMPTY_GROUP,
        "simple": ErrorCode.NONE,
        "nope": ErrorCode.GROUP_ID_NOT_FOUND,
        "": ErrorCode.INVALID_GROUP_ID,
    }
    assert await gc.fetch_offsets("simple") == []
    assert await store.get(keys.group_key("simple")) is None
    assert await store.range(keys.offsets_prefix("simple")) == []
    assert [g.group_id for g in gc.list_groups()] == ["busy"]
    await gc.close()


async def test_offset_commit_rules(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    tp = TopicPartition("t1", 0)
    entry = [OffsetCommitEntry("t1", 0, 10, 3, "meta")]
    assert await gc.commit_offsets("g", entry, member_id="m", generation_id=1) == {
        tp: ErrorCode.ILLEGAL_GENERATION
    }
    assert await gc.commit_offsets(
        "g", entry, member_id="m", generation_id=1, missing_group_error=ErrorCode.GROUP_ID_NOT_FOUND
    ) == {tp: ErrorCode.GROUP_ID_NOT_FOUND}
    ids = [await new_member(gc) for _ in range(2)]
    tasks = [join(gc, mid) for mid in ids]
    await settle(clock)
    a, b = [await t for t in tasks]
    # Joined but not synced: REBALANCE_IN_PROGRESS, so the consumer rejoins gracefully.
    assert await gc.commit_offsets("g", entry, member_id=a.member_id, generation_id=1) == {
        tp: ErrorCode.REBALANCE_IN_PROGRESS
    }
    await sync_all(gc, [a, b])
    assert await gc.commit_offsets("g", entry, member_id=a.member_id, generation_id=1) == {
        tp: ErrorCode.NONE
    }
    assert await gc.commit_offsets("g", entry, member_id=a.member_id, generation_id=0) == {
        tp: ErrorCode.ILLEGAL_GENERATION
    }
    assert await gc.commit_offsets("g", entry, member_id="stranger", generation_id=1) == {
        tp: ErrorCode.UNKNOWN_MEMBER_ID
    }
    # A simple commit (generation -1) is refused while the group has members.
    assert await gc.commit_offsets("g", entry) == {tp: ErrorCode.UNKNOWN_MEMBER_ID}
    big = OffsetCommitEntry("t1", 1, 5, -1, "x" * 4097)
    ok = OffsetCommitEntry("t2", 0, 7)
    assert await gc.commit_offsets("g", [big, ok], member_id=a.member_id, generation_id=1) == {
        TopicPartition("t1", 1): ErrorCode.OFFSET_METADATA_TOO_LARGE,
        TopicPartition("t2", 0): ErrorCode.NONE,
    }
    fetched = await gc.fetch_offsets("g")
    assert [(f.topic, f.partition, f.offset, f.leader_epoch, f.metadata) for f in fetched] == [
        ("t1", 0, 10, 3, "meta"),
        ("t2", 0, 7, -1, ""),
    ]
    listed = await gc.fetch_offsets("g", [TopicPartition("t2", 0), TopicPartition("t9", 4)])
    assert [(f.offset, f.leader_epoch, f.metadata) for f in listed] == [(7, -1, ""), (-1, -1, "")]
    assert [f.offset for f in await gc.fetch_offsets("unknown", [tp])] == [-1]
    assert await gc.fetch_offsets("unknown") == []
    # Committed offsets are in the store before the commit is answered.
    gc2 = await coordinator(store, clock)
    assert await gc2.fetch_offsets("g") == fetched
    await gc.close()
    await gc2.close()


async def test_offset_delete(memory_store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(memory_store, clock)
    a, _b = await stable_group(gc, clock, 2)
    commits = [OffsetCommitEntry("t1", 0, 1), OffsetCommitEntry("other", 0, 2)]
    await gc.commit_offsets("g", commits, member_id=a.member_id, generation_id=1)
    got = await gc.delete_offsets(
        "g", [TopicPartition("t1", 0), TopicPartition("other", 0), TopicPartition("other", 9)]
    )
    assert got == {
        TopicPartition("t1", 0): ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC,  # the members subscribe to t1
        TopicPartition("other", 0): ErrorCode.NONE,
        TopicPartition("other", 9): ErrorCode.NONE,
    }
    assert [f.topic for f in await gc.fetch_offsets("g")] == ["t1"]
    with pytest.raises(KafkaError) as err:
        await gc.delete_offsets("nope", [])
    assert err.value.code == ErrorCode.GROUP_ID_NOT_FOUND
    # A non-consumer group with members: NON_EMPTY_GROUP.
    only = await done(
        asyncio.ensure_future(
            gc.join_group(
                "connect",
                "",
                protocol_type="connect",
                protocols=[("v1", b"")],
                session_timeout_ms=SESSION,
                require_known_member_id=False,
            )
        ),
        clock,
    )
    assert only.error == ErrorCode.NONE
    with pytest.raises(KafkaError) as err:
        await gc.delete_offsets("connect", [TopicPartition("x", 0)])
    assert err.value.code == ErrorCode.NON_EMPTY_GROUP
    await gc.close()


async def test_offsets_expire_and_empty_groups_go(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock, offsets_retention_ms=1000)
    await gc.commit_offsets("simple", [OffsetCommitEntry("t", 0, 1)])
    clock.advance(500)
    await gc.commit_offsets("simple", [OffsetCommitEntry("t", 1, 1)])
    clock.advance(500)
    assert await gc.expire_offsets() == 1
    assert [f.partition for f in await gc.fetch_offsets("simple")] == [1]
    clock.advance(500)
    assert await gc.expire_offsets() == 1
    assert gc.group("simple") is None and await memory_store.range(keys.ROOT) == []
    # v2-v4's explicit retention wins over the broker's.
    await gc.commit_offsets("kept", [OffsetCommitEntry("t", 0, 1)], retention_time_ms=10_000)
    clock.advance(5000)
    assert await gc.expire_offsets() == 0
    await gc.close()


async def test_restart_resumes_a_stable_group(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    a, b = await stable_group(gc, clock, 2)
    await gc.commit_offsets(
        "g", [OffsetCommitEntry("t1", 0, 42)], member_id=a.member_id, generation_id=1
    )
    before = await gc.describe_group("g")
    await gc.close()
    gc2 = await coordinator(store, clock)
    assert await gc2.describe_group("g") == before
    # Members carry on in the same generation, with no rebalance.
    assert await gc2.heartbeat("g", a.member_id, 1) == ErrorCode.NONE
    assert (await gc2.sync_group("g", b.member_id, 1)).assignment == b.member_id.encode()
    assert [f.offset for f in await gc2.fetch_offsets("g")] == [42]
    # b did not come back: its session expires and the group rebalances without it.
    clock.advance(SESSION - 1)
    assert await gc2.heartbeat("g", a.member_id, 1) == ErrorCode.NONE
    clock.advance(2)
    assert await gc2.heartbeat("g", a.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    await gc2.close()


async def test_a_second_coordinator_fences_the_first(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    first = await coordinator(memory_store, clock)
    a, _b = await stable_group(first, clock, 2)
    # Failover: another broker takes the group over and claims it.
    second = GroupCoordinator(
        memory_store, clock=clock, config=GroupConfig(initial_rebalance_delay_ms=0)
    )
    await second.start(claim=True)
    assert await second.commit_offsets(
        "g", [OffsetCommitEntry("t1", 0, 5)], member_id=a.member_id, generation_id=1
    ) == {TopicPartition("t1", 0): ErrorCode.NONE}
    stale = await first.commit_offsets(
        "g", [OffsetCommitEntry("t1", 0, 1)], member_id=a.member_id, generation_id=1
    )
    assert stale == {TopicPartition("t1", 0): ErrorCode.NOT_COORDINATOR}
    # The fenced coordinator re-reads the store on the next request instead of using its copy.
    assert [f.offset for f in await first.fetch_offsets("g")] == [5]
    await first.close()
    await second.close()


async def test_cancelled_join_does_not_wedge_the_group(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    a, b = await stable_group(gc, clock, 2)
    ra = join(gc, a.member_id)
    await settle()
    ra.cancel()  # the client's connection closed while parked in JoinGroup
    rb = join(gc, b.member_id)
    result = await rb
    assert result.error == ErrorCode.NONE and result.generation_id == 2
    await gc.close()


async def test_close_answers_parked_requests(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    a, _b = await stable_group(gc, clock, 2)
    parked = join(gc, a.member_id)
    await settle()
    await gc.close()
    assert (await parked).error == ErrorCode.NOT_COORDINATOR
    assert clock.pending() == 0


async def test_restart_mid_rebalance_never_reuses_a_generation(
    store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(store, clock)
    a, b = await stable_group(gc, clock, 2)
    ra, rb = join(gc, a.member_id), join(gc, b.member_id)
    await settle(clock)
    second = [await ra, await rb]
    assert {r.generation_id for r in second} == {2}
    await gc.close()  # before the leader sent its assignment
    gc2 = await coordinator(store, clock)
    group = gc2.group("g")
    assert (
        group is not None
        and group.state == GroupState.PREPARING_REBALANCE
        and group.generation == 2
    )
    # Nobody gets an assignment of generation 2 from the new coordinator: they must rejoin.
    assert await gc2.heartbeat("g", a.member_id, 2) == ErrorCode.REBALANCE_IN_PROGRESS
    assert (await gc2.sync_group("g", a.member_id, 2)).error == ErrorCode.REBALANCE_IN_PROGRESS
    ra, rb = join(gc2, a.member_id), join(gc2, b.member_id)
    third = [await ra, await rb]
    assert {r.generation_id for r in third} == {3}
    await sync_all(gc2, third)
    await gc2.close()


async def test_static_member_replaced_before_it_synced(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    l_id = await new_member(gc)
    t_leader, t_static = join(gc, l_id), join(gc, instance="pod")
    await settle(clock)
    lead, static = await t_leader, await t_static
    await gc.sync_group(
        "g", lead.member_id, 1, assignments={lead.member_id: b"L", static.member_id: b"S"}
    )
    # The static member restarts before it sent SyncGroup: its new incarnation owes the sync.
    again = await join(gc, instance="pod")
    await gc.idle()
    group = gc.group("g")
    assert group is not None and group.pending_sync == {again.member_id}
    assert (
        await gc.sync_group("g", again.member_id, 1, group_instance_id="pod")
    ).assignment == b"S"
    assert not group.pending_sync
    # Nobody is left owing a sync, so the sync timeout does not start a rebalance.
    for _ in range(4):  # well past the rebalance timeout
        clock.advance(SESSION - 1)
        assert await gc.heartbeat("g", lead.member_id, 1) == ErrorCode.NONE
        assert (
            await gc.heartbeat("g", again.member_id, 1, group_instance_id="pod") == ErrorCode.NONE
        )
    await gc.close()


async def test_pending_and_new_member_timeouts(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    a, b = await stable_group(gc, clock, 2)
    # A member id handed out but never used expires with the session timeout.
    ghost = await new_member(gc)
    assert ghost in gc.group("g").pending_members  # type: ignore[union-attr]
    clock.advance(SESSION - 1)
    for m in (a, b):
        assert await gc.heartbeat("g", m.member_id, 1) == ErrorCode.NONE
    clock.advance(1)
    assert ghost not in gc.group("g").pending_members  # type: ignore[union-attr]
    # A new member cannot heartbeat while parked in JoinGroup; with a 10-minute rebalance it is
    # dropped after the 5-minute new-member timeout and told to rejoin.
    c_id = await new_member(gc)
    c = join(gc, c_id, rebalance=600_000)
    await settle()
    for _ in range(61):
        clock.advance(SESSION // 2)
        for m in (a, b):
            assert await gc.heartbeat("g", m.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    await settle()
    assert c.done() and (await c).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert c_id not in gc.group("g").members  # type: ignore[union-attr]
    await gc.close()


async def test_describe_while_rebalancing_and_lazy_load(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock)
    ids = [await new_member(gc) for _ in range(2)]
    tasks = [join(gc, mid) for mid in ids]
    await settle(clock)
    [await t for t in tasks]
    desc = await gc.describe_group("g")
    assert desc is not None and desc.state == "CompletingRebalance" and desc.protocol_data == ""
    assert all(m.metadata == b"" for m in desc.members)
    await gc.idle()
    # Another coordinator on the same store finds the group it never loaded.
    other = GroupCoordinator(memory_store, clock=clock)
    described = await other.describe_group("g")
    assert described is not None and {m.member_id for m in described.members} == set(ids)
    await gc.close()
    await other.close()


async def test_deleted_topics_lose_their_offsets(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    await gc.commit_offsets("a", [OffsetCommitEntry("gone", 0, 1), OffsetCommitEntry("kept", 0, 2)])
    await gc.commit_offsets("b", [OffsetCommitEntry("gone", 3, 1)])
    await gc.delete_topic_offsets(["gone"])
    assert [(f.topic, f.offset) for f in await gc.fetch_offsets("a")] == [("kept", 2)]
    assert await gc.fetch_offsets("b") == []
    gc2 = await coordinator(store, clock)
    assert [(f.topic, f.offset) for f in await gc2.fetch_offsets("a")] == [("kept", 2)]
    await gc.close()
    await gc2.close()


async def test_stable_group_expires_only_unsubscribed_topics(
    memory_store: MetadataStore, clock: ManualClock
) -> None:
    gc = await coordinator(memory_store, clock, offsets_retention_ms=1000)
    a, b = await stable_group(gc, clock, 2)
    await gc.commit_offsets(
        "g",
        [OffsetCommitEntry("t1", 0, 1), OffsetCommitEntry("old", 0, 1)],
        member_id=a.member_id,
        generation_id=1,
    )
    clock.advance(1000)
    for m in (a, b):
        await gc.heartbeat("g", m.member_id, 1)
    assert await gc.expire_offsets() == 1
    assert [f.topic for f in await gc.fetch_offsets("g")] == ["t1"]
    await gc.close()


async def test_offsets_are_one_record_per_topic(store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(store, clock)
    many = [OffsetCommitEntry(topic, p, p * 10) for topic in ("a", "b") for p in range(300)]
    revision = await store.revision()
    assert set((await gc.commit_offsets("wide", many)).values()) == {ErrorCode.NONE}
    assert await store.revision() == revision + 1  # one transaction ...
    assert [kv.key for kv in await store.range(keys.offsets_prefix("wide"))] == [
        keys.offset_key("wide", "a"),
        keys.offset_key("wide", "b"),
    ]  # ... of a few operations, however many partitions
    await gc.commit_offsets("wide", [OffsetCommitEntry("a", 7, 1)])
    gc2 = await coordinator(store, clock)
    fetched = {(f.topic, f.partition): f.offset for f in await gc2.fetch_offsets("wide")}
    assert len(fetched) == 600 and fetched[("a", 7)] == 1 and fetched[("b", 299)] == 2990
    await gc.close()
    await gc2.close()


async def test_expiry_runs_by_itself(memory_store: MetadataStore, clock: ManualClock) -> None:
    gc = await coordinator(
        memory_store, clock, offsets_retention_ms=1000, offsets_retention_check_interval_ms=5000
    )
    await gc.commit_offsets("simple", [OffsetCommitEntry("t", 0, 1)])
    clock.advance(4999)
    await gc.idle()
    assert gc.group("simple") is not None
    clock.advance(1)
    await gc.idle()
    assert gc.group("simple") is None and await gc.fetch_offsets("simple") == []
    await gc.close()
    assert clock.pending() == 0
