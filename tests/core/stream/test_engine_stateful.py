"""Hypothesis state machine: the engine under injected faults and crashes at any I/O point.

Media are the in-memory references (their state survives a "crash": dropping the engine without
closing it), wrapped in the fault layer. Invariants: every acknowledged record stays readable byte
for byte at its offset, offsets are dense, and after a final cleanup the object store holds exactly
the objects that committed metadata references.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from streambed.core.context import NodeContext
from streambed.core.errors import StreambedError
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.testing.faults import (
    FaultPlan,
    FaultyMetadataStore,
    FaultyObjectStore,
    FaultyWal,
)
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

_runs = itertools.count()
POINTS = ["objects.put", "objects.get", "objects.get_range", "objects.delete", "metadata.txn",
          "metadata.get", "wal.append"]


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.name = f"sm-{next(_runs)}"
        self.epoch = 0
        self.plan = FaultPlan(seed=0)
        self.acked: dict[tuple[int, int], bytes] = {}
        self.streams: list[int] = []
        self.counter = 0
        self.engine: StreamEngine | None = None

    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        # The fault plan's randomness comes from Hypothesis, so failing runs replay exactly.
        self.plan = FaultPlan(seed=seed)
        self.engine = self._open()
        for _ in range(2):
            self.streams.append(self.run(self.engine.create_stream()))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _open(self) -> StreamEngine:
        self.epoch += 1
        ctx = NodeContext(data_dir=Path("/nonexistent"), node_id=1, node_epoch=self.epoch)

        async def build() -> StreamEngine:
            wal = await open_memory_wal(MemoryWalOptions(name=self.name), ctx)
            objects = await open_memory_store(MemoryObjectStoreOptions(name=self.name), ctx)
            metadata = await open_memory_metadata(MemoryMetadataOptions(name=self.name), ctx)
            engine = StreamEngine(
                FaultyWal(wal, self.plan), FaultyObjectStore(objects, self.plan),
                FaultyMetadataStore(metadata, self.plan),
                EngineSettings(upload_threshold_bytes=1 << 30, upload_interval_ms=3_600_000,
                               compaction_interval_ms=3_600_000, block_bytes=4096,
                               compaction_min_objects=2, object_delete_delay_ms=0,
                               prepared_timeout_ms=1),
            )
            self.plan.enabled = False  # recovery itself is exercised by the crash test
            try:
                await engine.start()
            finally:
                self.plan.enabled = True
            return engine

        return self.run(build())

    @rule(stream=st.integers(0, 1), size=st.integers(0, 3000), count=st.integers(1, 4),
          faults=st.sampled_from([0.0, 0.0, 0.2]))
    def append(self, stream: int, size: int, count: int, faults: float) -> None:
        self.plan.probability = dict.fromkeys(POINTS, faults)
        sid = self.streams[stream]
        body = (b"%d:" % self.counter) + bytes([self.counter % 251]) * size
        self.counter += 1

        async def go() -> int | None:
            handle = await self.engine.open_stream(sid, self.epoch)
            try:
                return await handle.append(body, count)
            except StreambedError:
                return None

        self.plan.enabled = False
        try:
            handle_offset = None
            self.plan.enabled = faults > 0
            handle_offset = self.run(go())
        except StreambedError:
            handle_offset = None
        finally:
            self.plan.enabled = True
        if handle_offset is not None:
            self.acked[(sid, handle_offset)] = body

    @rule(faults=st.sampled_from([0.0, 0.3]))
    def upload(self, faults: float) -> None:
        self.plan.probability = dict.fromkeys(POINTS, faults)
        with contextlib.suppress(StreambedError):
            self.run(self.engine.upload())

    @rule(faults=st.sampled_from([0.0, 0.3]))
    def compact(self, faults: float) -> None:
        self.plan.probability = dict.fromkeys(POINTS, faults)
        with contextlib.suppress(StreambedError):
            self.run(self.engine.compact())

    @rule(stream=st.integers(0, 1))
    def trim_to_middle(self, stream: int) -> None:
        sid = self.streams[stream]
        offsets = sorted(o for s, o in self.acked if s == sid)
        if len(offsets) < 4:
            return
        cut = offsets[len(offsets) // 2]
        self.plan.probability = {}

        async def go() -> None:
            handle = await self.engine.open_stream(sid, self.epoch)
            await handle.trim(cut)

        self.run(go())
        self.acked = {k: v for k, v in self.acked.items() if not (k[0] == sid and k[1] < cut)}

    @rule()
    def crash_and_recover(self) -> None:
        # Drop the engine without closing it: background tasks die, memory media keep their state.
        for task in self.engine._tasks:
            task.cancel()
        self.run(asyncio.sleep(0))
        self.engine = self._open()

    @invariant()
    def acknowledged_records_readable_and_dense(self) -> None:
        self.plan.probability = {}

        async def check() -> None:
            for sid in self.streams:
                handle = await self.engine.open_stream(sid, self.epoch)
                position = handle.start_offset
                got: dict[int, bytes] = {}
                while position < handle.next_offset:
                    batches = await handle.fetch(position, max_bytes=1 << 16)
                    assert batches, f"stream {sid}: no progress at {position}"
                    for b in batches:
                        assert b.base <= position < b.end or b.base == position, (b.base, position)
                        got[b.base] = bytes(b.payload)
                        position = b.end
                for (s, offset), body in self.acked.items():
                    if s == sid:
                        assert got.get(offset) == body, f"acknowledged {sid}/{offset} lost"

        self.run(check())

    def teardown(self) -> None:
        self.plan.probability = {}
        if self.engine is None:
            self.loop.close()
            return

        async def finish() -> None:
            await self.engine.upload()
            # A far-future cleanup: marked objects deleted, abandoned prepared objects removed.
            await self.engine.compact(now=1e12)
            committed = {m.key for m in await self.engine.meta.list_objects() if m.state == "committed"}
            assert {m.state for m in await self.engine.meta.list_objects()} <= {"committed"}
            stored: set[str] = set()
            token = None
            while True:
                page = await self.engine.objects.list("data/", token=token)
                stored |= {o.key for o in page.objects}
                token = page.next_token
                if token is None:
                    break
            assert stored == committed, f"leaked {stored - committed}, missing {committed - stored}"
            await self.engine.close()

        try:
            self.run(finish())
        finally:
            self.loop.close()


EngineMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineStateMachine = EngineMachine.TestCase
