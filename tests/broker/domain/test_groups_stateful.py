"""The group coordinator under random clients, timeouts and coordinator restarts (Hypothesis).

Clients behave like Kafka consumers (KIP-394 joins, leaders assign, followers sync, heartbeats,
commits, leaves, static members restarting); time jumps across session and rebalance timeouts;
the coordinator is restarted on the same store. After every step:

* a generation has at most one leader, and generations never go back, restarts included;
* in Stable every member holds an assignment made for the current generation, and every
  successful SyncGroup answer carries an assignment of the generation the client synced with;
* committed offsets are exactly the last accepted commits and never go backwards, except by
  an explicit reset (a generation -1 commit to the empty group).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain_fakes import subscription
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from streambed.broker.domain.clock import ManualClock
from streambed.broker.domain.errors import ErrorCode
from streambed.broker.domain.group_model import (
    GroupState,
    JoinResult,
    MemberIdentity,
    OffsetCommitEntry,
    SyncResult,
    TopicPartition,
)
from streambed.broker.domain.groups import GroupConfig, GroupCoordinator
from streambed.core.context import NodeContext
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata

SESSION = 10_000
REBALANCE = 20_000
GROUP = "g"
PARTITIONS = [TopicPartition("t", 0), TopicPartition("t", 1)]
_stores = itertools.count()


@dataclass
class Client:
    name: str
    instance: str | None
    member_id: str = ""
    generation: int = -1
    leader: bool = False
    members: list[str] = field(default_factory=list)
    join: asyncio.Task[JoinResult] | None = None
    sync: asyncio.Task[SyncResult] | None = None
    sync_generation: int = -1
    needs_join: bool = True
    synced: bool = False

    def reset(self) -> None:
        self.member_id, self.generation, self.leader, self.members = "", -1, False, []
        self.needs_join, self.synced = True, False


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        ctx = NodeContext(data_dir=Path(tempfile.gettempdir()))
        self.store = self.run(
            open_memory_metadata(MemoryMetadataOptions(name=f"groups-sm-{next(_stores)}"), ctx)
        )
        self.gc = self.new_coordinator()
        self.clients = [
            Client("c0", None),
            Client("c1", None),
            Client("s0", "s0"),
            Client("s1", "s1"),
        ]
        self.leaders: dict[int, str] = {}
        self.generation = 0
        self.committed: dict[TopicPartition, int] = {}
        self.next_offset = itertools.count(100)

    # -- plumbing --------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def new_coordinator(self) -> GroupCoordinator:
        gc = GroupCoordinator(
            self.store,
            clock=self.clock,
            config=GroupConfig(initial_rebalance_delay_ms=3_000, offsets_retention_ms=10**12),
        )
        self.run(gc.start())
        return gc

    def pump(self) -> None:
        async def drain() -> None:
            for _ in range(30):
                await asyncio.sleep(0)

        self.run(drain())
        self.collect()

    def collect(self) -> None:
        for c in self.clients:
            if c.join is not None and c.join.done():
                joined, c.join = c.join.result(), None
                self.on_join(c, joined)
            if c.sync is not None and c.sync.done():
                result, c.sync = c.sync.result(), None
                if result.error == ErrorCode.NONE:
                    assert result.assignment.startswith(f"{c.sync_generation}:".encode()), (
                        c,
                        result,
                    )
                    event("sync delivered an assignment")
                    c.synced = c.sync_generation == c.generation
                elif result.error in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
                    c.reset()
                else:
                    c.needs_join = True

    def on_join(self, c: Client, r: JoinResult) -> None:
        if r.error == ErrorCode.MEMBER_ID_REQUIRED:
            c.member_id = r.member_id
        elif r.error == ErrorCode.NONE:
            c.needs_join, c.synced = False, False
            assert r.generation_id >= 1
            if not r.skip_assignment:
                # A static member keeps leading under a new member id when it is replaced.
                leader = next((s for s in ("s0", "s1") if r.leader.startswith(s + "-")), r.leader)
                assert self.leaders.setdefault(r.generation_id, leader) == leader, "two leaders"
            c.member_id, c.generation = r.member_id, r.generation_id
            c.leader = r.leader == r.member_id and not r.skip_assignment
            c.members = [m.member_id for m in r.members]
            if r.skip_assignment:
                event("static leader rejoined without rebalance")
        elif r.error in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
            c.reset()

    def client(self, index: int) -> Client:
        return self.clients[index]

    # -- client behaviour --------------------------------------------------------------------

    @initialize(members=st.sampled_from([(), (0,), (0, 2), (0, 1, 2, 3)]))
    def start_group(self, members: tuple[int, ...]) -> None:
        """Most runs start from a group that already works, to spend their steps on trouble."""
        for _ in range(3):
            for i in members:
                self.poll(i)
        if members:
            self.time_passes(3_000)
        for _ in range(3):
            for i in members:
                self.poll(i)

    @rule(i=st.integers(0, 3))
    def poll(self, i: int) -> None:
        """What a well-behaved consumer does next."""
        c = self.client(i)
        if c.join is not None or c.sync is not None:
            self.pump()
        elif c.needs_join or not c.member_id:
            self.join(i)
        elif not c.synced:
            self.sync(i)
        else:
            self.heartbeat(i)

    @rule(i=st.integers(0, 3))
    def join(self, i: int) -> None:
        c = self.client(i)
        if c.join is None:
            c.join = self.loop.create_task(
                self.gc.join_group(
                    GROUP,
                    c.member_id,
                    protocol_type="consumer",
                    protocols=[("range", subscription("t"))],
                    session_timeout_ms=SESSION,
                    rebalance_timeout_ms=REBALANCE,
                    group_instance_id=c.instance,
                    client_id=c.name,
                    supports_skip_assignment=True,
                )
            )
        self.pump()

    @rule(i=st.integers(0, 3))
    def sync(self, i: int) -> None:
        c = self.client(i)
        if c.sync is None and c.join is None and c.generation > 0:
            assignments = (
                {m: f"{c.generation}:{m}".encode() for m in c.members} if c.leader else None
            )
            c.sync_generation = c.generation
            c.sync = self.loop.create_task(
                self.gc.sync_group(
                    GROUP,
                    c.member_id,
                    c.generation,
                    group_instance_id=c.instance,
                    assignments=assignments,
                )
            )
        self.pump()

    @rule(i=st.integers(0, 3))
    def heartbeat(self, i: int) -> None:
        c = self.client(i)
        if c.member_id and c.join is None:
            code = self.run(
                self.gc.heartbeat(GROUP, c.member_id, c.generation, group_instance_id=c.instance)
            )
            assert code in (
                ErrorCode.NONE,
                ErrorCode.REBALANCE_IN_PROGRESS,
                ErrorCode.ILLEGAL_GENERATION,
                ErrorCode.UNKNOWN_MEMBER_ID,
                ErrorCode.FENCED_INSTANCE_ID,
            ), code
            if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
                c.reset()
            elif code != ErrorCode.NONE:
                c.needs_join = True
        self.pump()

    @rule(i=st.integers(0, 3))
    def leave(self, i: int) -> None:
        c = self.client(i)
        if c.member_id:
            self.run(self.gc.leave_group(GROUP, [MemberIdentity(c.member_id, c.instance)]))
            c.reset()
        self.pump()

    @rule(i=st.sampled_from([2, 3]))
    def static_process_restarts(self, i: int) -> None:
        # Same instance id, no member id: the coordinator replaces (and fences) the old one.
        self.client(i).reset()
        self.pump()

    @rule(i=st.integers(0, 3), p=st.sampled_from(PARTITIONS), stale=st.sampled_from([0, 0, 0, 1]))
    def commit(self, i: int, p: TopicPartition, stale: int) -> None:
        """A commit with the client's generation, or (stale=1) with the one before it, as a
        consumer that missed a rebalance would send."""
        c = self.client(i)
        if c.member_id and c.generation - stale > 0:
            offset = next(self.next_offset)
            got = self.run(
                self.gc.commit_offsets(
                    GROUP,
                    [OffsetCommitEntry(p.topic, p.partition, offset)],
                    member_id=c.member_id,
                    group_instance_id=c.instance,
                    generation_id=c.generation - stale,
                )
            )
            if got[p] == ErrorCode.NONE:
                group = self.gc.group(GROUP)
                assert group is not None and c.generation - stale == group.generation
                assert offset > self.committed.get(p, -1)
                self.committed[p] = offset
                event("member commit accepted")
        self.pump()

    @rule(p=st.sampled_from(PARTITIONS), offset=st.integers(0, 50))
    def admin_reset(self, p: TopicPartition, offset: int) -> None:
        got = self.run(
            self.gc.commit_offsets(GROUP, [OffsetCommitEntry(p.topic, p.partition, offset)])
        )
        group = self.gc.group(GROUP)
        if got[p] == ErrorCode.NONE:
            assert group is not None and group.state == GroupState.EMPTY
            self.committed[p] = offset  # an explicit reset may go backwards
        else:
            assert group is not None and group.state != GroupState.EMPTY
        self.pump()

    @rule(ms=st.sampled_from([0, 1_000, 3_000, 3_000, 3_000, SESSION + 1, REBALANCE + 1]))
    def time_passes(self, ms: int) -> None:
        async def advance() -> None:
            self.clock.advance(ms)

        self.run(advance())
        self.pump()

    @rule()
    def coordinator_restarts(self) -> None:
        self.run(self.gc.close())
        self.pump()  # parked requests were answered with NOT_COORDINATOR
        for c in self.clients:
            c.needs_join = c.needs_join or not c.synced
        self.gc = self.new_coordinator()
        self.pump()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def generations_never_go_back(self) -> None:
        group = self.gc.group(GROUP)
        if group is not None:
            assert group.generation >= self.generation
            self.generation = group.generation

    @invariant()
    def group_is_consistent(self) -> None:
        group = self.gc.group(GROUP)
        if group is None:
            return
        if group.state == GroupState.EMPTY:
            assert not group.members
        elif group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            assert group.leader_id in group.members
            assert group.pending_sync <= group.members.keys()
        if group.state == GroupState.STABLE:
            event(f"stable with {len(group.members)} members")
            prefix = f"{group.generation}:".encode()
            for member in group.members.values():
                assert member.assignment.startswith(prefix), (group.generation, member)
        assert set(group.static_members.values()) <= group.members.keys()

    @invariant()
    def offsets_are_the_last_accepted_commits(self) -> None:
        fetched = self.run(self.gc.fetch_offsets(GROUP, PARTITIONS))
        assert {
            TopicPartition(f.topic, f.partition): f.offset for f in fetched if f.offset >= 0
        } == self.committed

    def teardown(self) -> None:
        self.run(self.gc.close())
        pending = [t for c in self.clients for t in (c.join, c.sync) if t is not None]
        for task in pending:
            task.cancel()
        if pending:
            self.run(asyncio.wait(pending))
        self.run(self.store.close())
        self.loop.close()


TestGroupMachine = GroupMachine.TestCase
TestGroupMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
