"""Back-pressure shared by bounded WALs: appends wait for space, trims release it."""

from __future__ import annotations

import asyncio
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
        self._closed = False

    async def wait_until(self, fits: Callable[[], bool], describe: Callable[[], str]) -> None:
        """Wait until ``fits()``; raise WalFull after the timeout, Closed if the WAL closes."""
        deadline = time.monotonic() + self._timeout
        async with self._condition:
            while not fits():
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

    async def release(self) -> None:
        """Space was freed (a trim): wake every waiter to re-check."""
        async with self._condition:
            self._condition.notify_all()

    async def close(self) -> None:
        self._closed = True
        await self.release()
