"""When a WAL may write and sync on the event loop (its "inline" group commits).

Inline commits save two thread hand-offs per group commit, which is most of the produce latency
on a calm disk (RFC 0007). But while a commit syncs on the loop, nothing else runs: a disk that
stalls for 100-500 ms (this project's benchmark VM does, several times a minute) then stalls
every fetch, heartbeat and Metadata request with it. Disk stalls come in spells, so after one slow
inline commit the WAL sends its commits to its writer thread for a while (the loop keeps serving;
only acknowledgements wait for the disk), then tries inline again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["InlineGate"]

SLOW_S = 0.02
"""An inline write + sync this slow closes the gate."""
PAUSE_S = 10.0
"""How long commits go to the writer thread after a slow one."""


class InlineGate:
    def __init__(
        self,
        *,
        slow_s: float = SLOW_S,
        pause_s: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slow_s = slow_s
        self.pause_s = pause_s
        self._clock = clock
        self._closed_until = 0.0
        self.pauses = 0

    @property
    def open(self) -> bool:
        """Whether the next commit may run on the loop."""
        return self._clock() >= self._closed_until

    def began(self) -> float:
        return self._clock()

    def finished(self, began: float) -> None:
        """Report an inline commit that started at ``began`` (from :meth:`began`)."""
        now = self._clock()
        if now - began >= self.slow_s:
            self._closed_until = now + self.pause_s
            self.pauses += 1
