"""Daemon threads that run blocking filesystem calls for the event loop.

Why not ``asyncio.to_thread``: a call stuck on a frozen NameNode never returns (hdfs-native applies
no timeout to NameNode RPCs), so it would pin a thread of the loop's shared default executor for as
long as the NameNode is frozen, and ``ThreadPoolExecutor`` joins its threads at interpreter exit,
so the process could not even exit. These threads are daemons, owned by one store, and bounded in
number; a caller that gave up (timeout, cancellation) before its call started never runs it.
(hdfs-native's own ``AsyncClient`` would avoid threads, but 0.14.7 panics with "no reactor running"
as soon as it retries a failed NameNode connection.)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ClientPanic", "Workers"]

T = TypeVar("T")
_Job = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class ClientPanic(RuntimeError):
    """The filesystem client failed with an exception that is not an ``Exception`` (a Rust panic
    in hdfs-native surfaces as ``pyo3_runtime.PanicException``, a ``BaseException``)."""


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller timed out or was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Workers:
    def __init__(self, size: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, future, loop = job
            if future.done():
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except Exception as exc:
                error = exc
            except BaseException as exc:  # a Rust panic: see ClientPanic
                panic = ClientPanic(f"{type(exc).__name__}: {exc}")
                panic.__cause__ = exc
                error = panic
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(_settle, future, result, error)
            del fn, future, loop, result, error, job

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one of the threads; cancelling the caller skips ``fn`` if it has not begun."""
        if self._closed:
            raise RuntimeError("workers are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    def close(self) -> None:
        """Let the threads finish their current call and exit; calls still queued are cancelled."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with contextlib.suppress(RuntimeError):
                    job[2].call_soon_threadsafe(job[1].cancel)
        for _ in self._threads:
            self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in total for the threads to exit after :meth:`close`;
        True when all did. A thread still inside hdfs-native when the interpreter finalizes is
        unwound by ``pthread_exit`` through Rust frames, which aborts the process ("FATAL:
        exception not rethrown"), so a clean shutdown waits for them."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
