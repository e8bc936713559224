"""Event-loop stall and garbage-collection pause reporting.

A broker on one event loop is only as fast as its slowest callback: anything that holds the loop
(a long GC pass, CPU work that belongs on a thread) delays every client at once. The watchdog
wakes every ``interval`` and logs a warning when it woke much later than asked, and the GC hook
logs collections that took long, so tail latency has a name in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

__all__ = ["LoopWatchdog"]

log = logging.getLogger("streambed.broker.watchdog")


class LoopWatchdog:
    def __init__(self, *, interval_s: float = 0.05, stall_s: float = 0.1, gc_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.gc_s = gc_s
        self.stalls = 0
        self.worst_stall_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-watchdog")
        gc.callbacks.append(self._on_gc)

    async def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            late = time.monotonic() - asked - self.interval_s
            if late >= self.stall_s:
                self.stalls += 1
                self.worst_stall_s = max(self.worst_stall_s, late)
                log.warning("event loop was blocked for %.0f ms", late * 1000)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        if took >= self.gc_s:
            log.warning(
                "garbage collection of generation %d took %.0f ms (%d objects collected)",
                info.get("generation", -1),
                took * 1000,
                info.get("collected", 0),
            )
