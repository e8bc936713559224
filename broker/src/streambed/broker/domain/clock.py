"""Time for the domain logic: read the time and schedule callbacks, both replaceable in tests.

The group coordinator's waits (rebalance timeouts, session timeouts, the initial rebalance delay)
are timers on a :class:`Clock`. :class:`SystemClock` runs them on the asyncio loop;
:class:`ManualClock` runs them when a test calls :meth:`ManualClock.advance`, so a test of a
30-second session timeout takes microseconds and never depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in milliseconds (commit timestamps, state timestamps)."""
        ...

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once after ``delay_ms``; it must not block or raise."""
        ...


class SystemClock:
    """Real time; timers run on the running event loop."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(delay_ms, 0) / 1000, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: int, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time stands still until :meth:`advance`; due timers then fire in deadline order (ties in
    scheduling order), each seeing ``now_ms()`` equal to its own deadline."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._seq = itertools.count()
        self._heap: list[tuple[int, int, _ManualTimer]] = []

    def now_ms(self) -> int:
        return self._now

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(self._now + max(delay_ms, 0), callback)
        heapq.heappush(self._heap, (timer.deadline, next(self._seq), timer))
        return timer

    def advance(self, delta_ms: int) -> int:
        """Move time forward by ``delta_ms`` firing every timer that falls due (including timers
        scheduled by those callbacks); returns how many fired."""
        target = self._now + delta_ms
        fired = 0
        while self._heap and self._heap[0][0] <= target:
            deadline, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, deadline)
            timer.callback()
            fired += 1
        self._now = target
        return fired

    def pending(self) -> int:
        """Timers scheduled and not cancelled (for tests)."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_deadline(self) -> int | None:
        live = [d for d, _, t in self._heap if not t.cancelled]
        return min(live) if live else None
