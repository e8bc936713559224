"""The classic consumer group as data: its members, states and the records it is stored as.

The rules live in :mod:`groups` (the coordinator); this module holds what one group *is*, the
transitions Kafka allows (``ClassicGroupState``), protocol selection, and the bookkeeping the
coordinator's rules are written against, so those read like Kafka's ``GroupMetadataManager``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from streambed.broker.domain.clock import TimerHandle
from streambed.broker.domain.consumer_protocol import CONSUMER_PROTOCOL_TYPE, subscription_topics
from streambed.broker.domain.errors import ErrorCode, KafkaError

__all__ = [
    "CommittedOffset",
    "DescribedMember",
    "FetchedOffset",
    "Group",
    "GroupConfig",
    "GroupDescription",
    "GroupState",
    "JoinGroupMember",
    "JoinResult",
    "LeaveResult",
    "ListedGroup",
    "Member",
    "MemberIdentity",
    "OffsetCommitEntry",
    "SyncResult",
    "TopicPartition",
]


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Kafka's broker settings for classic groups, with Kafka's defaults."""

    min_session_timeout_ms: int = 6_000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3_000
    max_size: int = 2**31 - 1
    new_member_join_timeout_ms: int = 300_000
    offset_metadata_max_bytes: int = 4_096
    offsets_retention_ms: int = 7 * 24 * 3_600_000
    offsets_retention_check_interval_ms: int = 600_000


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class JoinGroupMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A JoinGroup answer. ``members`` is filled for the leader only."""

    error: ErrorCode
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[JoinGroupMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: ErrorCode
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    """A LeaveGroup entry (v3+ carries several; v0-2 one, without an instance id)."""

    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveResult:
    member_id: str
    group_instance_id: str | None
    error: ErrorCode


@dataclass(frozen=True, slots=True)
class DescribedMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol_data: str
    members: tuple[DescribedMember, ...]


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


@dataclass(frozen=True, slots=True)
class OffsetCommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "o": self.offset,
            "e": self.leader_epoch,
            "m": self.metadata,
            "t": self.commit_timestamp,
            "x": self.expire_timestamp,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CommittedOffset:
        return cls(raw["o"], raw["e"], raw["m"], raw["t"], raw["x"])


@dataclass(frozen=True, slots=True)
class FetchedOffset:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.NONE


Protocols = list[tuple[str, bytes]]


@dataclass(eq=False, slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    assignment: bytes = b""
    join_future: asyncio.Future[JoinResult] | None = None
    sync_future: asyncio.Future[SyncResult] | None = None
    is_new: bool = False
    heartbeat: TimerHandle | None = None

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None

    @property
    def protocol_names(self) -> set[str]:
        return {name for name, _ in self.protocols}

    def matches(self, protocols: Sequence[tuple[str, bytes]]) -> bool:
        return list(protocols) == self.protocols

    def metadata(self, protocol: str | None) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def has_satisfied_heartbeat(self) -> bool:
        # New members can expire while still waiting to join (5-minute new-member timeout);
        # everyone else is excused from heartbeating while parked in a rebalance.
        if self.is_new:
            return False
        return self.awaiting_join or self.awaiting_sync

    def cancel_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None


@dataclass(eq=False)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    state_timestamp: int | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_members: set[str] = field(default_factory=set)
    pending_sync: set[str] = field(default_factory=set)
    supported: collections.Counter[str] = field(default_factory=collections.Counter)
    new_member_added: bool = False
    subscribed_topics: frozenset[str] | None = None
    offsets: dict[TopicPartition, CommittedOffset] = field(default_factory=dict)
    meta_revision: int = 0
    """``mod_revision`` of the group's record as this coordinator last wrote or read it."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Orders this group's store writes: each one encodes the state current when it runs."""
    join_timer: TimerHandle | None = None
    sync_timer: TimerHandle | None = None
    rebalance_on_load: bool = False
    """Loaded from a record written mid-rebalance: members must rejoin before anyone is
    assigned anything."""

    # -- state ------------------------------------------------------------------------------

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[state]:
            raise AssertionError(
                f"group {self.group_id}: illegal transition {self.state} -> {state}"
            )
        self.previous_state = self.state
        self.state = state
        self.state_timestamp = now_ms

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # -- membership -------------------------------------------------------------------------

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return self.num_awaiting_join() == len(self.members) and not self.pending_members

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def add(self, member: Member, future: asyncio.Future[JoinResult] | None) -> None:
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported.update(member.protocol_names)
        member.join_future = future
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported.subtract(member.protocol_names)
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync.discard(member_id)
        return member

    def update_member(
        self,
        member: Member,
        protocols: Sequence[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        future: asyncio.Future[JoinResult] | None,
    ) -> asyncio.Future[JoinResult] | None:
        """Returns the join future this call replaced, if any, for the caller to answer."""
        self.supported.subtract(member.protocol_names)
        member.protocols = list(protocols)
        self.supported.update(member.protocol_names)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        replaced = member.join_future
        member.join_future = future
        return replaced if replaced is not future else None

    def replace_static_member(
        self, instance_id: str, old_id: str, new_id: str
    ) -> tuple[Member, Member]:
        """Give the static member ``instance_id`` a new member id; returns (old, new). The old
        member object keeps its futures for the caller to fence."""
        old = self.members.pop(old_id)
        new = Member(
            new_id,
            old.group_instance_id,
            old.client_id,
            old.client_host,
            old.rebalance_timeout_ms,
            old.session_timeout_ms,
            old.protocol_type,
            list(old.protocols),
            old.assignment,
        )
        self.members[new_id] = new
        if self.is_leader(old_id):
            self.leader_id = new_id
        self.static_members[instance_id] = new_id
        # The new incarnation owes the SyncGroup the old one owed (Kafka keeps waiting for the
        # old id, which can never sync, and rebalances when the sync timeout passes).
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return old, new

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else promote a member that did. False when nobody
        joined (or the group has no leader)."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def validate_member(self, member_id: str, instance_id: str | None) -> None:
        """Kafka's ``ClassicGroup.validateMember``: FENCED_INSTANCE_ID or UNKNOWN_MEMBER_ID."""
        if instance_id is not None:
            existing = self.static_members.get(instance_id)
            if existing is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
            if existing != member_id:
                raise KafkaError(ErrorCode.FENCED_INSTANCE_ID)
        if member_id not in self.members:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)

    # -- protocols --------------------------------------------------------------------------

    def candidate_protocols(self) -> set[str]:
        return {name for name, count in self.supported.items() if count == len(self.members)}

    def supports_protocols(self, protocol_type: str, names: Iterable[str]) -> bool:
        wanted = set(names)
        if self.state == GroupState.EMPTY:
            return bool(protocol_type) and bool(wanted)
        return self.protocol_type == protocol_type and any(
            self.supported[name] == len(self.members) for name in wanted
        )

    def select_protocol(self) -> str:
        """Each member votes for its most preferred protocol among those all members support;
        most votes wins (a tie goes to the protocol voted for first, in member join order)."""
        candidates = self.candidate_protocols()
        votes: collections.Counter[str] = collections.Counter(
            m.vote(candidates) for m in self.members.values()
        )
        return max(votes, key=lambda name: votes[name])

    def init_next_generation(self, now_ms: int) -> None:
        self.generation += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync.clear()

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = subscription_topics(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics.update(parsed)
        return frozenset(topics)

    def is_subscribed_to(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            return self.protocol_type == CONSUMER_PROTOCOL_TYPE
        return topic in self.subscribed_topics

    def current_members(self) -> tuple[JoinGroupMember, ...]:
        return tuple(
            JoinGroupMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )

    def generate_member_id(self, client_id: str, instance_id: str | None) -> str:
        return f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"

    # -- the stored record ------------------------------------------------------------------

    def to_record(self, assignment: dict[str, bytes] | None = None) -> dict[str, Any]:
        """What survives a restart (Kafka's GroupMetadataValue): generation, protocol, leader,
        and each member with its subscription and assignment. ``assignment`` overrides the
        members' current assignments (the leader's, before it is applied). Unlike Kafka the
        record is also written when a rebalance hands out a new generation, so a generation
        number is never handed out twice, even across a coordinator restart."""
        members = []
        if self.state != GroupState.EMPTY:
            for m in self.members.values():
                given = m.assignment if assignment is None else assignment.get(m.member_id, b"")
                members.append(
                    {
                        "id": m.member_id,
                        "instance": m.group_instance_id,
                        "client": m.client_id,
                        "host": m.client_host,
                        "rebalance": m.rebalance_timeout_ms,
                        "session": m.session_timeout_ms,
                        "subscription": _b64(m.metadata(self.protocol_name)),
                        "assignment": _b64(given),
                    }
                )
        return {
            "v": 1,
            # With an assignment the record describes the group as it becomes Stable.
            "state": GroupState.STABLE.value if assignment is not None else self.state.value,
            "protocol_type": self.protocol_type,
            "protocol": self.protocol_name,
            "generation": self.generation,
            "leader": self.leader_id,
            "state_ts": self.state_timestamp,
            "members": members,
        }

    @classmethod
    def from_record(cls, group_id: str, record: dict[str, Any], revision: int) -> Group:
        group = cls(
            group_id,
            generation=record["generation"],
            protocol_type=record["protocol_type"],
            protocol_name=record["protocol"],
            state_timestamp=record["state_ts"],
            meta_revision=revision,
        )
        for raw in record["members"]:
            protocols = [(record["protocol"] or "", _unb64(raw["subscription"]))]
            member = Member(
                raw["id"],
                raw["instance"],
                raw["client"],
                raw["host"],
                raw["rebalance"],
                raw["session"],
                record["protocol_type"] or "",
                protocols,
                _unb64(raw["assignment"]),
            )
            group.add(member, None)
        group.leader_id = record["leader"] if group.members else None
        group.state = GroupState.STABLE if group.members else GroupState.EMPTY
        group.rebalance_on_load = (
            bool(group.members) and record.get("state") != GroupState.STABLE.value
        )
        group.subscribed_topics = group.compute_subscribed_topics()
        return group


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
