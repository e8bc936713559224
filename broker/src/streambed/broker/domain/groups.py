"""The classic consumer group coordinator, following Kafka's ``GroupMetadataManager`` (4.x).

Every request method returns what the handler answers. JoinGroup and a follower's SyncGroup wait
on an asyncio future that the state machine completes; rebalance, session and sync timeouts are
timers on the injected :class:`~streambed.broker.domain.clock.Clock`, so tests drive time with a
:class:`~streambed.broker.domain.clock.ManualClock` and never sleep.

What is durable, in the metadata store (RFC 0004): each group's record (generation, protocol,
leader, members with subscription and assignment: Kafka's GroupMetadataValue), written when a
rebalance completes, when the group empties, and when a static member rejoins; and one record
per committed offset, written before the commit is answered. Every write compares the group
record's revision, so a second coordinator for the same group (after a failover) fences this
one: its writes fail and it answers NOT_COORDINATOR.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streambed.broker.domain import keys
from streambed.broker.domain.clock import Clock, SystemClock, TimerHandle
from streambed.broker.domain.errors import ErrorCode, KafkaError
from streambed.broker.domain.group_model import (
    DescribedMember,
    FetchedOffset,
    Group,
    GroupConfig,
    GroupDescription,
    GroupState,
    JoinResult,
    LeaveResult,
    ListedGroup,
    Member,
    MemberIdentity,
    OffsetCommitEntry,
    SyncResult,
    TopicPartition,
)
from streambed.broker.domain.group_offsets import GroupOffsets
from streambed.broker.domain.group_store import GroupStore
from streambed.core.metadata.api import Delete, MetadataStore

__all__ = ["GroupConfig", "GroupCoordinator"]

log = logging.getLogger("streambed.broker.groups")

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    GroupState.EMPTY,
    GroupState.PREPARING_REBALANCE,
    GroupState.COMPLETING_REBALANCE,
    GroupState.STABLE,
    GroupState.DEAD,
)


@dataclass(frozen=True, slots=True)
class _Join:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool
    supports_skip_assignment: bool
    reason: str


class GroupCoordinator:
    def __init__(
        self,
        store: MetadataStore,
        *,
        config: GroupConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config = config or GroupConfig()
        self._clock = clock or SystemClock()
        self._registry = GroupStore(
            store,
            on_loaded=self._install,
            on_fenced=lambda g: self._unload(g, ErrorCode.NOT_COORDINATOR),
        )
        self._offsets = GroupOffsets(
            self._registry,
            self._config,
            self._clock,
            keep_alive=self._reschedule_heartbeat,
            drop=lambda group: self._unload(group, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        )
        self._pending_timers: dict[tuple[str, str], Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry_timer: TimerHandle | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, claim: bool = False) -> None:
        """Load every group and its offsets: members of a stable group resume without a
        rebalance if they heartbeat within their session timeout.

        ``claim`` rewrites each group record on load, which fences a previous coordinator of
        these groups at once (its next write fails); a broker taking groups over from another
        one sets it, a single broker restarting need not."""
        # Timers may fire outside a coroutine (a test's manual clock): their store writes are
        # scheduled on the loop the coordinator runs on.
        self._loop = asyncio.get_running_loop()
        await self._registry.load_all(claim=claim)
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        def due() -> None:
            self._spawn(self._expire_periodically())

        self._expiry_timer = self._clock.call_later(
            self._config.offsets_retention_check_interval_ms, due
        )

    async def _expire_periodically(self) -> None:
        try:
            expired = await self._offsets.expire()
            if expired:
                log.info("expired %d committed offsets", expired)
        finally:
            if not self._closed:
                self._schedule_expiry()

    async def close(self) -> None:
        """Finish pending store writes, stop timers and answer every parked JoinGroup and
        SyncGroup with NOT_COORDINATOR."""
        self._closed = True
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        await self.idle()
        for group in list(self._registry.groups.values()):
            self._unload(group, ErrorCode.NOT_COORDINATOR)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until background store writes finish (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def group(self, group_id: str) -> Group | None:
        """The in-memory group (introspection and tests)."""
        return self._registry.get(group_id)

    def _install(self, group: Group) -> None:
        for member in group.members.values():
            self._reschedule_heartbeat(group, member)
        if group.rebalance_on_load:
            group.rebalance_on_load = False
            self._prepare_rebalance(group, "loaded in the middle of a rebalance")

    def _unload(self, group: Group, error: ErrorCode) -> None:
        for timer in (group.join_timer, group.sync_timer):
            if timer is not None:
                timer.cancel()
        for member in list(group.members.values()):
            member.cancel_heartbeat()
            self._complete_join(member, JoinResult(error, member.member_id))
            self._complete_sync(member, SyncResult(error))
        for member_id in list(group.pending_members):
            self._cancel_pending_timer(group.group_id, member_id)
        self._registry.forget(group)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("group coordinator background task failed", exc_info=task.exception())

    # -- JoinGroup ---------------------------------------------------------------------------

    async def join_group(
        self,
        group_id: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int = -1,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        require_known_member_id: bool = True,
        supports_skip_assignment: bool = False,
        reason: str | None = None,
    ) -> JoinResult:
        """JoinGroup. ``rebalance_timeout_ms`` -1 (v0) means the session timeout;
        ``require_known_member_id`` is true for v4+ (KIP-394), ``supports_skip_assignment``
        for v9+ (KIP-814)."""
        if not group_id:
            return JoinResult(ErrorCode.INVALID_GROUP_ID, member_id)
        if (
            not self._config.min_session_timeout_ms
            <= session_timeout_ms
            <= self._config.max_session_timeout_ms
        ):
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id)
        request = _Join(
            group_id,
            member_id,
            group_instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms if rebalance_timeout_ms >= 0 else session_timeout_ms,
            protocol_type,
            list(protocols),
            require_known_member_id,
            supports_skip_assignment,
            reason or "not provided",
        )
        group = await self._registry.lookup(group_id)
        if group is None:
            if member_id:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            group = self._registry.groups.setdefault(group_id, Group(group_id))
        future: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        if not self._accept_joining_member(group, member_id):
            removed = group.remove(member_id)
            if removed is not None:
                removed.cancel_heartbeat()
            return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, "")
        if not member_id:
            self._join_new_member(group, request, future)
        else:
            self._join_existing_member(group, request, future)
        return await future

    def _accept_joining_member(self, group: Group, member_id: str) -> bool:
        if group.is_in(EMPTY, DEAD):
            return True
        if group.is_in(PREPARING):
            member = group.members.get(member_id)
            return (
                member is not None and member.awaiting_join
            ) or group.num_awaiting_join() < self._config.max_size
        return member_id in group.members or len(group.members) < self._config.max_size

    def _join_new_member(
        self, group: Group, req: _Join, future: asyncio.Future[JoinResult]
    ) -> None:
        if group.is_in(DEAD):
            future.set_result(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, ""))
            return
        if not group.supports_protocols(req.protocol_type, (name for name, _ in req.protocols)):
            future.set_result(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, ""))
            return
        new_id = group.generate_member_id(req.client_id, req.group_instance_id)
        if req.group_instance_id is not None:
            existing = group.static_members.get(req.group_instance_id)
            if existing is not None:
                log.info(
                    "static member %s of group %s rejoins with a new member id; replacing %s",
                    req.group_instance_id,
                    group.group_id,
                    existing,
                )
                self._update_static_member(group, req, existing, new_id, future)
            else:
                self._add_member(group, req, new_id, future)
        elif req.require_known_member_id:
            # KIP-394: hand out the id and make the client come back with it, so a client that
            # times out and retries cannot leave a trail of phantom members.
            group.pending_members.add(new_id)
            key = (group.group_id, new_id)
            self._pending_timers[key] = self._clock.call_later(
                req.session_timeout_ms, lambda: self._expire_heartbeat(group.group_id, new_id)
            )
            future.set_result(JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member(group, req, new_id, future)

    def _join_existing_member(
        self, group: Group, req: _Join, future: asyncio.Future[JoinResult]
    ) -> None:
        member_id = req.member_id
        if group.is_in(DEAD):
            future.set_result(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(req.protocol_type, (name for name, _ in req.protocols)):
            future.set_result(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if member_id in group.pending_members:
            if req.group_instance_id is not None:
                future.set_result(JoinResult(ErrorCode.INVALID_REQUEST, member_id))
                return
            self._cancel_pending_timer(group.group_id, member_id)
            self._add_member(group, req, member_id, future)
            return
        try:
            group.validate_member(member_id, req.group_instance_id)
        except KafkaError as exc:
            future.set_result(JoinResult(exc.code, member_id))
            return
        member = group.members[member_id]
        if group.is_in(PREPARING):
            self._update_member(group, member, req, future)
        elif group.is_in(COMPLETING):
            if member.matches(req.protocols):
                # The member lost the answer to its first JoinGroup: give it again.
                future.set_result(
                    self._current_join_result(
                        group, member_id, with_members=group.is_leader(member_id)
                    )
                )
            else:
                self._update_member(group, member, req, future)
        elif group.is_in(STABLE):
            if group.is_leader(member_id) or not member.matches(req.protocols):
                # A leader rejoining asks for a new assignment (e.g. topic metadata changed).
                self._update_member(group, member, req, future)
            else:
                future.set_result(self._current_join_result(group, member_id, with_members=False))
        else:
            future.set_result(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _current_join_result(
        self, group: Group, member_id: str, *, with_members: bool
    ) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE,
            member_id,
            group.generation,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            group.current_members() if with_members else (),
        )

    def _add_member(
        self, group: Group, req: _Join, member_id: str, future: asyncio.Future[JoinResult]
    ) -> None:
        member = Member(
            member_id,
            req.group_instance_id,
            req.client_id,
            req.client_host,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            req.protocol_type,
            list(req.protocols),
            is_new=True,
        )
        if group.is_in(PREPARING) and group.previous_state == EMPTY:
            group.new_member_added = True
        group.add(member, future)
        # A new member cannot heartbeat while parked in JoinGroup, so it gets a generous
        # deadline instead; a client that gave up and retried is dropped when it passes.
        self._reschedule_heartbeat(group, member, self._config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(
            group, f"adding member {member_id} ({req.reason})"
        )

    def _update_member(
        self, group: Group, member: Member, req: _Join, future: asyncio.Future[JoinResult]
    ) -> None:
        replaced = group.update_member(
            member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, future
        )
        if replaced is not None and not replaced.done():
            # Kafka silently drops the older JoinGroup; answering it keeps its connection's
            # in-order responses flowing.
            replaced.set_result(JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        self._maybe_prepare_rebalance_or_complete_join(
            group, f"member {member.member_id} rejoined ({req.reason})"
        )

    def _update_static_member(
        self, group: Group, req: _Join, old_id: str, new_id: str, future: asyncio.Future[JoinResult]
    ) -> None:
        assert req.group_instance_id is not None
        current_leader = group.leader_id
        old, new = group.replace_static_member(req.group_instance_id, old_id, new_id)
        old.cancel_heartbeat()
        self._complete_join(old, JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_id))
        self._complete_sync(old, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        self._reschedule_heartbeat(group, new)
        previous = (list(new.protocols), new.rebalance_timeout_ms, new.session_timeout_ms)
        group.update_member(
            new, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, future
        )
        if group.is_in(STABLE):
            if group.protocol_name == group.select_protocol():
                # Same protocol in force: no rebalance, the member keeps its old assignment.
                self._spawn(
                    self._persist_static_rejoin(
                        group, req, old_id, new, future, current_leader, previous
                    )
                )
            else:
                self._maybe_prepare_rebalance_or_complete_join(
                    group, f"static member {new_id} changed protocols"
                )
        elif group.is_in(COMPLETING):
            # The leader may be assigning to the old member id; only a new round is consistent.
            self._prepare_rebalance(
                group, f"static member {new_id} rejoined during CompletingRebalance"
            )
        elif group.is_in(PREPARING):
            self._maybe_complete_join_phase(group)
        else:
            raise AssertionError(f"static member in group {group.group_id} in state {group.state}")

    async def _persist_static_rejoin(
        self,
        group: Group,
        req: _Join,
        old_id: str,
        new: Member,
        future: asyncio.Future[JoinResult],
        current_leader: str | None,
        previous: tuple[list[tuple[str, bytes]], int, int],
    ) -> None:
        try:
            await self._registry.write_group(group)
        except KafkaError as exc:
            assert req.group_instance_id is not None
            if group.static_members.get(req.group_instance_id) == new.member_id:
                protocols, rebalance, session = previous
                group.update_member(new, protocols, rebalance, session, None)
                _, back = group.replace_static_member(req.group_instance_id, new.member_id, old_id)
                new.cancel_heartbeat()
                self._reschedule_heartbeat(group, back)
            if not future.done():
                future.set_result(
                    JoinResult(
                        exc.code,
                        "",
                        group.generation,
                        group.protocol_type,
                        group.protocol_name,
                        current_leader or "",
                    )
                )
            return
        if req.supports_skip_assignment:
            is_leader = group.is_leader(new.member_id)
            self._complete_join(
                new,
                JoinResult(
                    ErrorCode.NONE,
                    new.member_id,
                    group.generation,
                    group.protocol_type,
                    group.protocol_name,
                    group.leader_id or "",
                    group.current_members() if is_leader else (),
                    skip_assignment=is_leader,
                ),
            )
        else:
            # The old leader id keeps a rejoining leader from computing an assignment that a
            # stable group would never distribute.
            self._complete_join(
                new,
                JoinResult(
                    ErrorCode.NONE,
                    new.member_id,
                    group.generation,
                    group.protocol_type,
                    group.protocol_name,
                    current_leader or "",
                ),
            )

    # -- rebalance machinery -----------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: Group, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join_phase(group)

    def _maybe_complete_join_phase(self, group: Group) -> None:
        # The first rebalance of an empty group always waits out the initial delay.
        if (
            group.is_in(PREPARING)
            and group.previous_state != EMPTY
            and group.has_all_members_joined()
        ):
            self._complete_join_phase(group)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_in(COMPLETING):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        initial = group.is_in(EMPTY)
        if initial:
            delay = self._config.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            self._schedule_join(
                group, delay, lambda: self._initial_rebalance_due(group.group_id, delay, remaining)
            )
        log.info(
            "preparing to rebalance group %s in state %s with old generation %d (%s)",
            group.group_id,
            group.state.value,
            group.generation,
            reason,
        )
        group.transition_to(PREPARING, self._clock.now_ms())
        if not initial:
            if group.has_all_members_joined():
                self._complete_join_phase(group)
            else:
                self._schedule_join(
                    group, group.rebalance_timeout_ms(), lambda: self._join_due(group.group_id)
                )

    def _schedule_join(self, group: Group, delay_ms: int, callback: Any) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = self._clock.call_later(delay_ms, callback)

    def _join_due(self, group_id: str) -> None:
        group = self._registry.get(group_id)
        if group is not None:
            group.join_timer = None
            self._complete_join_phase(group)

    def _initial_rebalance_due(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        group = self._registry.get(group_id)
        if group is None:
            return
        group.join_timer = None
        if group.new_member_added and remaining_ms != 0:
            group.new_member_added = False
            new_delay = min(self._config.initial_rebalance_delay_ms, remaining_ms)
            new_remaining = max(remaining_ms - delay_ms, 0)
            self._schedule_join(
                group,
                new_delay,
                lambda: self._initial_rebalance_due(group_id, new_delay, new_remaining),
            )
        else:
            self._complete_join_phase(group)

    def _complete_join_phase(self, group: Group) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        if not group.is_in(PREPARING):
            return
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                member.cancel_heartbeat()
                self._complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
                group.remove(member.member_id)
        if group.members and not group.maybe_elect_new_joined_leader():
            log.error(
                "group %s could not complete rebalance because no members rejoined", group.group_id
            )
            self._schedule_join(
                group, group.rebalance_timeout_ms(), lambda: self._join_due(group.group_id)
            )
            return
        group.init_next_generation(self._clock.now_ms())
        if group.is_in(EMPTY):
            log.info("group %s with generation %d is now empty", group.group_id, group.generation)
            self._spawn(self._write_group_quietly(group))
            return
        log.info(
            "stabilized group %s generation %d with %d members",
            group.group_id,
            group.generation,
            len(group.members),
        )
        everyone = group.current_members()
        for member in list(group.members.values()):
            self._complete_join(
                member,
                JoinResult(
                    ErrorCode.NONE,
                    member.member_id,
                    group.generation,
                    group.protocol_type,
                    group.protocol_name,
                    group.leader_id or "",
                    everyone if group.is_leader(member.member_id) else (),
                ),
            )
            self._reschedule_heartbeat(group, member)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        self._schedule_pending_sync(group)
        # Record the new generation, so a restarted coordinator never hands it out again.
        self._spawn(self._write_group_quietly(group))

    def _schedule_pending_sync(self, group: Group) -> None:
        if group.sync_timer is not None:
            group.sync_timer.cancel()
        generation = group.generation
        group.sync_timer = self._clock.call_later(
            group.rebalance_timeout_ms(), lambda: self._sync_due(group.group_id, generation)
        )

    def _sync_due(self, group_id: str, generation: int) -> None:
        group = self._registry.get(group_id)
        if group is None or group.generation != generation:
            return
        group.sync_timer = None
        if group.is_in(COMPLETING, STABLE) and group.pending_sync:
            late = sorted(group.pending_sync)
            for member_id in late:
                member = group.remove(member_id)
                if member is not None:
                    member.cancel_heartbeat()
                    self._complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
            self._prepare_rebalance(group, f"removing {late} on pending sync request expiration")

    def _remove_sync_expiration(self, group: Group) -> None:
        group.pending_sync.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _remove_pending_sync_member(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if group.sync_timer is not None and (
            not group.is_in(COMPLETING, STABLE) or not group.pending_sync
        ):
            group.sync_timer.cancel()
            group.sync_timer = None

    def _reset_and_propagate_assignment_error(self, group: Group, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _set_and_propagate_assignment(self, group: Group, assignment: Mapping[str, bytes]) -> None:
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)

    def _propagate_assignment(self, group: Group, error: ErrorCode) -> None:
        ok = error == ErrorCode.NONE
        for member in list(group.members.values()):
            result = SyncResult(
                error,
                member.assignment,
                group.protocol_type if ok else None,
                group.protocol_name if ok else None,
            )
            if self._complete_sync(member, result):
                self._reschedule_heartbeat(group, member)

    # -- heartbeats --------------------------------------------------------------------------

    def _reschedule_heartbeat(
        self, group: Group, member: Member, timeout_ms: int | None = None
    ) -> None:
        member.cancel_heartbeat()
        group_id, member_id = group.group_id, member.member_id
        member.heartbeat = self._clock.call_later(
            member.session_timeout_ms if timeout_ms is None else timeout_ms,
            lambda: self._expire_heartbeat(group_id, member_id),
        )

    def _cancel_pending_timer(self, group_id: str, member_id: str) -> None:
        timer = self._pending_timers.pop((group_id, member_id), None)
        if timer is not None:
            timer.cancel()

    def _expire_heartbeat(self, group_id: str, member_id: str) -> None:
        group = self._registry.get(group_id)
        if group is None or group.is_in(DEAD):
            return
        if member_id in group.pending_members:
            log.info(
                "pending member %s of group %s removed after session timeout", member_id, group_id
            )
            self._pending_timers.pop((group_id, member_id), None)
            group.remove(member_id)
            if group.is_in(PREPARING) and group.has_all_members_joined():
                self._complete_join_phase(group)
            return
        member = group.members.get(member_id)
        if member is None:
            return
        member.heartbeat = None
        if not member.has_satisfied_heartbeat():
            log.info(
                "member %s of group %s has failed, removing it from the group", member_id, group_id
            )
            self._remove_member_and_update(
                group, member, f"removing member {member_id} on heartbeat expiration"
            )

    def _remove_member_and_update(self, group: Group, member: Member, reason: str) -> None:
        # A new member parked in JoinGroup is told to rejoin rather than left hanging.
        self._complete_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        self._complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        member.cancel_heartbeat()
        group.remove(member.member_id)
        if group.is_in(STABLE, COMPLETING):
            self._maybe_prepare_rebalance_or_complete_join(group, reason)
        elif group.is_in(PREPARING) and group.has_all_members_joined():
            self._complete_join_phase(group)

    @staticmethod
    def _complete_join(member: Member, result: JoinResult) -> bool:
        future = member.join_future
        if future is None:
            return False
        member.join_future = None
        if not future.done():
            future.set_result(result)
        return True

    @staticmethod
    def _complete_sync(member: Member, result: SyncResult) -> bool:
        future = member.sync_future
        if future is None:
            return False
        member.sync_future = None
        if not future.done():
            future.set_result(result)
        return True

    # -- SyncGroup ---------------------------------------------------------------------------

    async def sync_group(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        *,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        assignments: Mapping[str, bytes] | None = None,
    ) -> SyncResult:
        """SyncGroup. The leader's ``assignments`` are stored, then handed to every member; a
        follower waits for them."""
        if not group_id:
            return SyncResult(ErrorCode.INVALID_GROUP_ID)
        group = await self._registry.lookup(group_id)
        if group is None or group.is_in(EMPTY):
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(DEAD):
            return SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        try:
            group.validate_member(member_id, group_instance_id)
        except KafkaError as exc:
            return SyncResult(exc.code)
        if generation_id != group.generation:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        if _inconsistent(protocol_type, group.protocol_type) or _inconsistent(
            protocol_name, group.protocol_name
        ):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if group.is_in(PREPARING):
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        member = group.members[member_id]
        if group.is_in(STABLE):
            self._remove_pending_sync_member(group, member_id)
            return SyncResult(
                ErrorCode.NONE, member.assignment, group.protocol_type, group.protocol_name
            )
        future: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        self._complete_sync(member, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_future = future
        self._remove_pending_sync_member(group, member_id)
        if group.is_leader(member_id):
            log.info(
                "assignment received from leader %s for group %s for generation %d",
                member_id,
                group_id,
                group.generation,
            )
            given = assignments or {}
            full = {mid: given.get(mid, b"") for mid in group.members}
            # A task, not this coroutine: the other members' answers must not depend on the
            # leader's connection staying open.
            self._spawn(self._store_assignment(group, generation_id, full))
        return await future

    async def _store_assignment(
        self, group: Group, generation: int, assignment: dict[str, bytes]
    ) -> None:
        error: ErrorCode | None = None
        try:
            await self._registry.write_group(group, assignment)
        except KafkaError as exc:
            error = exc.code
        if not self._registry.holds(group):
            return
        if group.is_in(COMPLETING) and group.generation == generation:
            if error is not None:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance_or_complete_join(
                    group, f"error {error.name} storing the assignment"
                )
            else:
                self._set_and_propagate_assignment(group, assignment)
                group.transition_to(STABLE, self._clock.now_ms())

    # -- Heartbeat and LeaveGroup ------------------------------------------------------------

    async def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        *,
        group_instance_id: str | None = None,
    ) -> ErrorCode:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = await self._registry.lookup(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            group.validate_member(member_id, group_instance_id)
        except KafkaError as exc:
            return exc.code
        if generation_id != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._reschedule_heartbeat(group, group.members[member_id])
        return ErrorCode.REBALANCE_IN_PROGRESS if group.is_in(PREPARING) else ErrorCode.NONE

    async def leave_group(
        self, group_id: str, members: Sequence[MemberIdentity]
    ) -> list[LeaveResult]:
        """LeaveGroup; a group-level error (INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE) raises
        :class:`KafkaError`. Static members can be removed by instance id alone (member id "")."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        group = await self._registry.lookup(group_id)
        if group is None:
            return [
                LeaveResult(m.member_id, m.group_instance_id, ErrorCode.UNKNOWN_MEMBER_ID)
                for m in members
            ]
        if group.is_in(DEAD):
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        results: list[LeaveResult] = []
        for ident in members:
            error = ErrorCode.NONE
            if not ident.member_id:
                current = (
                    group.static_members.get(ident.group_instance_id or "")
                    if ident.group_instance_id
                    else None
                )
                if current is not None:
                    self._remove_current_member(group, current)
                else:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
            elif ident.member_id in group.pending_members:
                self._cancel_pending_timer(group_id, ident.member_id)
                group.remove(ident.member_id)
            else:
                try:
                    group.validate_member(ident.member_id, ident.group_instance_id)
                    self._remove_current_member(group, ident.member_id)
                except KafkaError as exc:
                    error = exc.code
            results.append(LeaveResult(ident.member_id, ident.group_instance_id, error))
        if any(r.error == ErrorCode.NONE for r in results):
            if group.is_in(STABLE, COMPLETING):
                self._maybe_prepare_rebalance_or_complete_join(group, "explicit LeaveGroup")
            elif group.is_in(PREPARING):
                self._maybe_complete_join_phase(group)
        return results

    def _remove_current_member(self, group: Group, member_id: str) -> None:
        member = group.members[member_id]
        member.cancel_heartbeat()
        log.info(
            "member %s has left group %s through explicit LeaveGroup", member_id, group.group_id
        )
        self._complete_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        self._complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member_id)

    # -- DescribeGroups, ListGroups, DeleteGroups --------------------------------------------

    async def describe_group(self, group_id: str) -> GroupDescription | None:
        """None when the group does not exist: DescribeGroups v0-5 then answer state "Dead" with
        no error, v6+ GROUP_ID_NOT_FOUND."""
        group = await self._registry.lookup(group_id)
        if group is None or group.is_in(DEAD):
            return None
        stable = group.is_in(STABLE)
        members = tuple(
            DescribedMember(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(group.protocol_name) if stable else b"",
                m.assignment,
            )
            for m in group.members.values()
        )
        return GroupDescription(
            group_id,
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
        )

    def list_groups(
        self, states: Collection[str] = (), types: Collection[str] = ()
    ) -> list[ListedGroup]:
        """ListGroups; the filters compare case-insensitively, as in Kafka (KIP-518, KIP-848)."""
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        if wanted_types and "classic" not in wanted_types:
            return []
        return [
            ListedGroup(group.group_id, group.protocol_type or "", group.state.value)
            for group in sorted(self._registry.groups.values(), key=lambda g: g.group_id)
            if not group.is_in(DEAD)
            and (not wanted_states or group.state.value.lower() in wanted_states)
        ]

    async def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode]:
        out: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            out[group_id] = await self._delete_group(group_id)
        return out

    async def _delete_group(self, group_id: str) -> ErrorCode:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = await self._registry.lookup(group_id)
        if group is None or group.is_in(DEAD):
            return ErrorCode.GROUP_ID_NOT_FOUND
        async with group.lock:
            if not self._registry.holds(group):
                return ErrorCode.GROUP_ID_NOT_FOUND
            if not group.is_in(EMPTY):
                return ErrorCode.NON_EMPTY_GROUP
            try:
                await self._registry.txn(
                    group,
                    [
                        Delete(keys.group_key(group_id)),
                        Delete(keys.offsets_prefix(group_id), prefix=True),
                    ],
                )
            except KafkaError as exc:
                return exc.code
            group.transition_to(DEAD, self._clock.now_ms())
            self._unload(group, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        log.info("deleted group %s", group_id)
        return ErrorCode.NONE

    # -- offsets (GroupOffsets does the work) ------------------------------------------------

    async def commit_offsets(
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
        """OffsetCommit, durable when this returns (see :meth:`GroupOffsets.commit`)."""
        return await self._offsets.commit(
            group_id,
            offsets,
            member_id=member_id,
            group_instance_id=group_instance_id,
            generation_id=generation_id,
            retention_time_ms=retention_time_ms,
            missing_group_error=missing_group_error,
        )

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> list[FetchedOffset]:
        """OffsetFetch: the listed partitions (-1 where nothing is committed), or with None
        every committed partition of the group."""
        return await self._offsets.fetch(group_id, partitions)

    async def delete_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetDelete; group-level errors (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) raise."""
        return await self._offsets.delete(group_id, partitions)

    async def delete_topic_offsets(self, topics: Collection[str]) -> None:
        """Forget offsets of deleted topics in every group (Kafka's onPartitionsDeleted)."""
        await self._offsets.delete_topics(topics)

    async def expire_offsets(self) -> int:
        """Expire offsets past ``offsets.retention.minutes`` and drop empty groups left without
        any; returns how many offsets expired. The coordinator runs it every
        ``offsets_retention_check_interval_ms`` by itself."""
        return await self._offsets.expire()

    async def _write_group_quietly(self, group: Group) -> None:
        try:
            await self._registry.write_group(group)
        except KafkaError as exc:
            # Losing this write costs at most a repeated generation number after a restart,
            # as in Kafka, which never writes it at this point.
            log.warning("could not store group %s: %s", group.group_id, exc.code.name)


def _inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current
