"""Retries as a wrapper over any object store (not code inside each store).

``Unavailable`` (throttling, 5xx, timeouts, dropped connections) is retried with exponential backoff
and full jitter; ``NotFound``, ``ConditionFailed``, ``PermissionDenied`` and ``DataError`` are answers,
not failures, and are returned at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from streambed.core.errors import ConditionFailed, Unavailable
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo, ObjectStore

__all__ = ["RetryingObjectStore"]

T = TypeVar("T")
log = logging.getLogger("streambed.objects.retry")
_WARN_EVERY_S = 10.0


class RetryingObjectStore:
    def __init__(
        self,
        inner: ObjectStore,
        *,
        attempts: int = 8,
        base_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self._attempts = attempts
        self._base = base_delay_s
        self._max = max_delay_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0
        self._warned_at = -_WARN_EVERY_S

    def _level(self, attempt: int) -> int:
        """A first failure is routine (DEBUG); a request failing again is worth a WARNING, at
        most one per ``_WARN_EVERY_S`` so that a 503 storm does not flood the log."""
        if attempt < 2:
            return logging.DEBUG
        now = time.monotonic()
        if now - self._warned_at < _WARN_EVERY_S:
            return logging.DEBUG
        self._warned_at = now
        return logging.WARNING

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self._attempts + 1):
            try:
                return await op()
            except Unavailable as exc:
                if attempt == self._attempts:
                    raise
                self.retries += 1
                delay = self._rng.uniform(0, min(self._max, self._base * 2 ** (attempt - 1)))
                log.log(self._level(attempt), "%s failed (attempt %d/%d), retrying in %.3fs: %s",
                        what, attempt, self._attempts, delay, exc)
                await self._sleep(delay)
        raise AssertionError("unreachable")

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        if not if_none_match:
            return await self._call(f"put {key}", lambda: self.inner.put(key, data))
        attempted = False

        async def conditional() -> ObjectInfo:
            nonlocal attempted
            try:
                return await self.inner.put(key, data, if_none_match=True)
            except ConditionFailed:
                # A retry after a dropped response may find our own first attempt in place.
                if attempted and await self._same_content(key, data):
                    return await self.inner.head(key)
                raise
            finally:
                attempted = True

        return await self._call(f"conditional put {key}", conditional)

    async def _same_content(self, key: str, data: Buffers) -> bool:
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        expected = b"".join(bytes(p) for p in parts)
        return await self.inner.get(key) == expected

    async def get(self, key: str) -> bytes:
        return await self._call(f"get {key}", lambda: self.inner.get(key))

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        return await self._call(f"get {key}", lambda: self.inner.get_range(key, start, end))

    async def head(self, key: str) -> ObjectInfo:
        return await self._call(f"head {key}", lambda: self.inner.head(key))

    async def delete(self, keys: Sequence[str]) -> None:
        await self._call("delete", lambda: self.inner.delete(keys))

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        return await self._call(
            f"list {prefix}", lambda: self.inner.list(prefix, token=token, limit=limit)
        )

    async def cleanup(self) -> int:
        return await self._call("cleanup", self.inner.cleanup)

    async def close(self) -> None:
        await self.inner.close()
