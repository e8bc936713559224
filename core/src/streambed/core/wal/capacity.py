"""Back-pressure shared by bounded WALs: appends wait for space, trims release it.

Waiters are served in arrival order. Appends must complete in the order they were made, so a small
append that arrives while a large one waits for space must not slip past it: WALs call
:meth:`SpaceGate.reserve`, which waits whenever anybody is already waiting, even if the newcomer
would fit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable

from streambed.core.errors import Closed, WalFull

__all__ = ["SpaceGate"]


class SpaceGate:
    def __init__(self, timeout_s: float, name: str) -> None:
        self._timeout = timeout_s
        self._name = name
        self._condition = asyncio.Condition()
        self._waiters: collections.deque[object] = collections.deque()
        self._closed = False

    @property
    def waiting(self) -> bool:
        """Whether some append is waiting for space (a newcomer must queue behind it)."""
        return bool(self._waiters)

    async def reserve(self, fits: Callable[[], bool], describe: Callable[[], str]) -> None:
        """Return at once when nobody waits and ``fits()``; otherwise :meth:`wait_until`.

        The caller must take the space before its next ``await``, or another append may take it.
        """
        if self._closed:
            raise Closed(f"WAL {self._name} is closed")
        if not self._waiters and fits():
            return
        await self.wait_until(fits, describe)

    async def wait_until(self, fits: Callable[[], bool], describe: Callable[[], str]) -> None:
        """Wait, behind earlier waiters, until ``fits()``; WalFull after the timeout, Closed if
        the WAL closes."""
        deadline = time.monotonic() + self._timeout
        ticket = object()
        async with self._condition:
            self._waiters.append(ticket)
            try:
                while self._waiters[0] is not ticket or not fits():
                    if self._closed:
                        raise Closed(f"WAL {self._name} is closed")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise WalFull(
                            f"WAL {self._name} is full ({describe()}): data must be uploaded to "
                            "object storage and trimmed before more is appended"
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._condition.wait(), remaining)
            finally:
                # Condition.wait re-acquires the lock even when cancelled, so it is held here.
                self._waiters.remove(ticket)
                # The next waiter may fit now that this one left (or gave up).
                self._condition.notify_all()

    async def release(self) -> None:
        """Space was freed (a trim): wake every waiter to re-check."""
        async with self._condition:
            self._condition.notify_all()

    async def close(self) -> None:
        self._closed = True
        await self.release()
