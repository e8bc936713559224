"""The loop watchdog names stalls and long collections in the log."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from streambed.broker.watchdog import LoopWatchdog


async def test_a_blocked_loop_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    watchdog = LoopWatchdog(interval_s=0.01, stall_s=0.05, gc_s=10)
    watchdog.start()
    try:
        await asyncio.sleep(0.05)
        with caplog.at_level(logging.WARNING, "streambed.broker.watchdog"):
            time.sleep(0.2)  # holds the loop, as CPU work on it would
            await asyncio.sleep(0.05)
    finally:
        await watchdog.close()
    assert watchdog.stalls >= 1
    assert watchdog.worst_stall_s >= 0.1
    assert any("event loop was blocked" in r.message for r in caplog.records)


async def test_long_collections_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    watchdog = LoopWatchdog(gc_s=0.0)
    watchdog.start()
    try:
        with caplog.at_level(logging.WARNING, "streambed.broker.watchdog"):
            gc.collect()
    finally:
        await watchdog.close()
    assert any("garbage collection of generation 2" in r.message for r in caplog.records)
    assert watchdog._on_gc not in gc.callbacks
