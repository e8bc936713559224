"""Hypothesis state machine: the engine under I/O errors and crashes at any I/O point.

Media are the in-memory references (their state survives a "crash"), wrapped twice: the fault layer
of ``streambed.core.testing.faults`` fails calls with ``Unavailable`` before or after the operation
happened, and a crash layer kills the engine at a chosen I/O call (before or after it reached the
medium) -- from then on every call of that engine incarnation dies too, as in a killed process.
The machine then builds a new engine on the same media and recovers, possibly under faults and
crashes again.

Invariants: every acknowledged record is readable byte for byte at its offset; offsets are dense;
no record appears twice (every payload is unique); and after a final upload, compaction and cleanup
the object store holds exactly the committed objects, which tile every stream without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streambed.core.context import NodeContext
from streambed.core.errors import StreambedError
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.stream.clock import ManualClock
from streambed.core.stream.engine import Stream, StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.testing.faults import (
    FaultPlan,
    FaultyMetadataStore,
    FaultyObjectStore,
    FaultyWal,
)
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

_runs = itertools.count()
POINTS = ["objects.put", "objects.get", "objects.get_range", "objects.delete", "objects.cleanup",
          "metadata.txn", "metadata.get", "metadata.range", "wal.append", "wal.trim"]


class SimulatedCrash(BaseException):
    """The process died. A BaseException, so no ``except Exception`` in the engine swallows it."""


class Incarnation:
    """One engine process: a crash is armed at the n-th I/O call; once dead, every call dies."""

    def __init__(self, crash_at: int | None, after: bool) -> None:
        self.calls = 0
        self.crash_at = crash_at
        self.after = after
        self.dead = False
        self.paused = False

    def before(self) -> bool:
        """Called before an I/O call; returns whether to die right after it."""
        if self.dead:
            raise SimulatedCrash("dead process")
        if self.paused or self.crash_at is None:
            return False
        self.calls += 1
        if self.calls < self.crash_at:
            return False
        self.crash_at = None
        if not self.after:
            self.dead = True
            raise SimulatedCrash("crash before an I/O call")
        return True

    def die(self) -> None:
        self.dead = True
        raise SimulatedCrash("crash after an I/O call (it happened)")


class Crashing:
    """Wraps every coroutine method (and async iterator) of a medium with the incarnation's fate."""

    def __init__(self, inner: Any, life: Incarnation) -> None:
        self._inner = inner
        self._life = life

    @property
    def capabilities(self) -> Any:
        return self._inner.capabilities

    def stats(self) -> Any:
        return self._inner.stats()

    def recover(self) -> Any:
        life = self._life
        inner = self._inner

        async def records() -> Any:
            async for record in inner.recover():
                if life.before():
                    yield record
                    life.die()
                yield record

        return records()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            die_after = self._life.before() if name != "close" else False
            result = await method(*args, **kwargs)
            if die_after:
                self._life.die()
            return result

        return call


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.name = f"sm-{next(_runs)}"
        self.clock = ManualClock()
        self.epoch = 0
        self.plan = FaultPlan(seed=0)
        self.life = Incarnation(None, False)
        self.acked: dict[tuple[int, int], bytes] = {}
        self.attempted: set[bytes] = set()
        self.streams: list[int] = []
        self.handles: dict[int, Stream] = {}
        self.counter = 0
        self.engine: StreamEngine | None = None
        self.crashes = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        # The fault plan's randomness comes from Hypothesis, so a failing run replays exactly.
        self.plan = FaultPlan(seed=seed)
        self.restart(faults=0.0)
        for _ in range(2):
            self.streams.append(self.run(self.engine.create_stream()))  # type: ignore[union-attr]
        self.open_handles()

    # -- engine lifecycle ------------------------------------------------------------------------

    def _build(self) -> StreamEngine:
        ctx = NodeContext(data_dir=Path("/nonexistent"), node_id=1)

        async def build() -> StreamEngine:
            wal = await open_memory_wal(MemoryWalOptions(name=self.name), ctx)
            objects = await open_memory_store(MemoryObjectStoreOptions(name=self.name), ctx)
            metadata = await open_memory_metadata(MemoryMetadataOptions(name=self.name), ctx)
            return StreamEngine(
                Crashing(FaultyWal(wal, self.plan), self.life),  # type: ignore[arg-type]
                Crashing(FaultyObjectStore(objects, self.plan), self.life),  # type: ignore[arg-type]
                Crashing(FaultyMetadataStore(metadata, self.plan), self.life),  # type: ignore[arg-type]
                EngineSettings(log_cache_bytes=64 * 1024, upload_threshold_bytes=1 << 30,
                               upload_interval_ms=3_600_000, compaction_interval_ms=3_600_000,
                               block_bytes=4096, compaction_min_objects=2,
                               object_delete_delay_ms=0, prepared_timeout_ms=1,
                               stream_object_threshold_bytes=6000),
                clock=self.clock,
            )

        return self.run(build())

    def restart(self, faults: float) -> None:
        """Start a new engine incarnation on the same media; a start that fails is retried
        (a broker restarting), like recovery after a crash during recovery."""
        self.plan.probability = dict.fromkeys(POINTS, min(faults, 0.1))
        for _attempt in range(50):
            self.epoch += 1
            self.engine = self._build()
            try:
                self.run(self.engine.start())
                break
            except (StreambedError, SimulatedCrash):
                self.kill()
        else:
            raise AssertionError("the engine never recovered")
        self.plan.probability = {}
        self.handles = {}

    def kill(self) -> None:
        """The process dies: no more I/O from this incarnation, its tasks stop."""
        assert self.engine is not None
        self.life.dead = True
        for task in self.engine._tasks:
            task.cancel()
        tasks = list(self.engine._tasks)

        async def settle() -> None:
            # gather() is awaited inside a coroutine so that, with no tasks, it does not
            # create its future on a different (default) event loop.
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)

        self.run(settle())
        self.life = Incarnation(self.life.crash_at, self.life.after)

    def open_handles(self) -> None:
        assert self.engine is not None
        self.life.paused = True
        try:
            for sid in self.streams:
                self.handles[sid] = self.run(self.engine.open_stream(sid, self.epoch))
        finally:
            self.life.paused = False

    def guarded(self, faults: float, coro_factory: Any) -> Any:
        """Run an operation under faults; a crash kills and recovers the engine."""
        self.plan.probability = dict.fromkeys(POINTS, faults)
        try:
            if not self.handles:
                self.open_handles()
            return self.run(coro_factory())
        except SimulatedCrash:
            self.crashes += 1
            self.kill()
            self.restart(faults)
            self.open_handles()
            return None
        finally:
            self.plan.probability = {}

    # -- rules -----------------------------------------------------------------------------------

    @rule(crash_at=st.integers(1, 40), after=st.booleans())
    def arm_crash(self, crash_at: int, after: bool) -> None:
        self.life.crash_at, self.life.after = crash_at, after
        self.life.calls = 0

    @rule(appends=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3000), st.integers(1, 4)),
                           min_size=1, max_size=6),
          faults=st.sampled_from([0.0, 0.0, 0.1, 0.3]))
    def append(self, appends: list[tuple[int, int, int]], faults: float) -> None:
        bodies = []
        for _, size, _ in appends:
            body = (b"%d:" % self.counter) + bytes([self.counter % 251]) * size
            self.counter += 1
            self.attempted.add(body)
            bodies.append(body)

        async def go() -> list[Any]:
            calls = [self.handles[self.streams[s]].append(body, count)
                     for (s, _, count), body in zip(appends, bodies, strict=True)]
            # Concurrent appends: a failing one must not let a later one be acknowledged.
            return await asyncio.gather(*calls, return_exceptions=True)

        results = self.guarded(faults, go)
        if results is None:
            return
        for (s, _, _), body, result in zip(appends, bodies, results, strict=True):
            if isinstance(result, int):
                self.acked[(self.streams[s], result)] = body
            else:
                assert isinstance(result, (StreambedError, SimulatedCrash)), result
        self.after_gather(results, faults)

    def after_gather(self, results: list[Any], faults: float) -> None:
        if any(isinstance(r, SimulatedCrash) for r in results):
            self.crashes += 1
            self.kill()
            self.restart(faults)
            self.open_handles()

    @rule(appends=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3000)), min_size=1, max_size=6),
          compact=st.booleans(), faults=st.sampled_from([0.0, 0.0, 0.2]))
    def append_while_uploading(self, appends: list[tuple[int, int]], compact: bool, faults: float) -> None:
        """Uploads (and compactions) overlap with appends: the WAL trim must keep what the
        upload did not take."""
        bodies = []
        for _, size in appends:
            body = (b"%d:concurrent" % self.counter) * (size // 20 + 1)
            self.counter += 1
            self.attempted.add(body)
            bodies.append(body)

        async def go() -> list[Any]:
            engine = self.engine
            assert engine is not None
            background = [engine.upload()] + ([engine.compact()] if compact else [])
            calls = [self.handles[self.streams[s]].append(body, 1)
                     for (s, _), body in zip(appends, bodies, strict=True)]
            return await asyncio.gather(*background, *calls, return_exceptions=True)

        results = self.guarded(faults, go)
        if results is None:
            return
        for (s, _), body, result in zip(appends, bodies, results[-len(appends):], strict=True):
            if isinstance(result, int):
                self.acked[(self.streams[s], result)] = body
        self.after_gather(results, faults)

    @rule(faults=st.sampled_from([0.0, 0.2, 0.5]))
    def upload(self, faults: float) -> None:
        async def go() -> None:
            with contextlib.suppress(StreambedError):
                await self.engine.upload()  # type: ignore[union-attr]

        self.guarded(faults, go)

    @rule(faults=st.sampled_from([0.0, 0.2, 0.5]), far=st.booleans())
    def compact(self, faults: float, far: bool) -> None:
        async def go() -> None:
            with contextlib.suppress(StreambedError):
                await self.engine.compact(now=self.clock.time() + (1e6 if far else 0))  # type: ignore[union-attr]

        self.guarded(faults, go)

    @rule(stream=st.integers(0, 1))
    def trim_to_middle(self, stream: int) -> None:
        sid = self.streams[stream]
        offsets = sorted(o for s, o in self.acked if s == sid)
        if len(offsets) < 4:
            return
        cut = offsets[len(offsets) // 2]

        async def go() -> bool:
            await self.handles[sid].trim(cut)
            return True

        before = self.handles[sid].start_offset if self.handles else None
        if not self.guarded(0.0, go):
            # Crashed: the trim may or may not have been committed, nothing in between.
            start = self.handles[sid].start_offset
            assert start in (cut, before), (before, start, cut)
            if start != cut:
                return
        self.acked = {k: v for k, v in self.acked.items() if not (k[0] == sid and k[1] < cut)}

    @rule()
    def crash_now(self) -> None:
        self.crashes += 1
        self.kill()
        self.restart(0.0)
        self.open_handles()

    @precondition(lambda self: self.life.crash_at is None)
    @rule(faults=st.sampled_from([0.0, 0.2]))
    def recover_under_faults(self, faults: float) -> None:
        self.kill()
        self.restart(faults)
        self.open_handles()

    @rule()
    def graceful_restart(self) -> None:
        self.life.paused = True
        try:
            self.run(self.engine.close())  # type: ignore[union-attr]
        finally:
            self.life.paused = False
        self.restart(0.0)
        self.open_handles()

    # -- invariants ------------------------------------------------------------------------------

    def read_all(self) -> dict[int, list[tuple[int, int, bytes]]]:
        assert self.engine is not None
        out: dict[int, list[tuple[int, int, bytes]]] = {}

        async def read() -> None:
            for sid in self.streams:
                handle = self.handles[sid]
                position = handle.start_offset
                batches: list[tuple[int, int, bytes]] = []
                while position < handle.next_offset:
                    got = await handle.fetch(position, max_bytes=1 << 14)
                    assert got, f"stream {sid}: no progress at {position}"
                    for b in got:
                        batches.append((b.base, b.count, bytes(b.payload)))
                        position = b.end
                # A read from inside a batch (a consumer's committed offset often is) gets the
                # whole batch that holds it, from the log cache or from objects alike.
                for base, count, payload in batches:
                    if count > 1 and base + count // 2 >= handle.start_offset:
                        got = await handle.fetch(base + count // 2, max_bytes=1)
                        assert got and (got[0].base, bytes(got[0].payload)) == (base, payload)
                out[sid] = batches

        self.life.paused = True
        try:
            if not self.handles:
                self.open_handles()
            self.run(read())
        finally:
            self.life.paused = False
        return out

    @invariant()
    def acknowledged_readable_dense_and_unique(self) -> None:
        if self.engine is None:
            return
        data = self.read_all()
        seen: set[bytes] = set()
        for sid, batches in data.items():
            handle = self.handles[sid]
            expected = batches[0][0] if batches else handle.start_offset
            assert expected <= handle.start_offset, (sid, expected, handle.start_offset)
            for base, count, payload in batches:
                assert base == expected, f"stream {sid}: offsets not dense at {base}"
                expected = base + count
                assert payload in self.attempted, f"stream {sid}/{base}: bytes nobody appended"
                assert payload not in seen, f"stream {sid}/{base}: a record appears twice"
                seen.add(payload)
            stored = {base: payload for base, _, payload in batches}
            for (s, offset), body in self.acked.items():
                if s == sid:
                    assert stored.get(offset) == body, f"acknowledged {sid}/{offset} lost"

    def teardown(self) -> None:
        if self.engine is None:
            self.loop.close()
            return
        engine = self.engine
        self.life.paused = True
        self.plan.probability = {}

        async def finish() -> None:
            await engine.upload()
            await engine.compact(now=self.clock.time() + 1e7)
            await engine.compact(now=self.clock.time() + 1e7)
            objects = await engine.meta.list_objects()
            assert {m.state for m in objects} <= {"committed"}, [(m.id, m.state) for m in objects]
            committed = {m.key for m in objects}
            stored: set[str] = set()
            token = None
            while True:
                page = await engine.objects.list("data/", token=token)
                stored |= {o.key for o in page.objects}
                token = page.next_token
                if token is None:
                    break
            assert stored == committed, f"leaked {stored - committed}, missing {committed - stored}"
            referenced: set[int] = set()
            for sid in self.streams:
                stream = await engine.meta.get_stream(sid)
                located = await engine.meta.objects_covering(sid, 0)
                referenced |= {x.object_id for x in located}
                # Ranges wholly below the start are trimmed data an object may still hold (a merge
                # keeps a block that was partly live); only the live part must be contiguous.
                live = [x for x in located if x.end > stream.start]
                if stream.end > stream.start:
                    assert live and live[0].start <= stream.start, (sid, located)
                    for left, right in itertools.pairwise(live):
                        assert left.end == right.start, f"stream {sid}: missing range {left}..{right}"
                    assert live[-1].end == stream.end
            assert referenced == {m.id for m in objects}, "objects no locator references"
            await engine.close()

        try:
            self.run(finish())
        finally:
            self.loop.close()


EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("STREAMBED_STATEFUL_EXAMPLES", "60")),
    stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineStateMachine = EngineMachine.TestCase
