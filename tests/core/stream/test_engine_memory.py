"""Under sustained load the engine's caches stay within their configured sizes (measured)."""

from __future__ import annotations

import os
import tracemalloc

from .conftest import EngineFactory


async def test_caches_stay_within_budget_under_load(engine_factory: EngineFactory) -> None:
    log_cache = 2 * 1024 * 1024
    engine = await engine_factory(log_cache_bytes=log_cache, upload_threshold_bytes=512 * 1024,
                                  block_cache_bytes=1024 * 1024, upload_interval_ms=50)
    sid = await engine.create_stream()
    stream = await engine.open_stream(sid, 1)
    payload = os.urandom(16 * 1024)
    tracemalloc.start()
    peak_cache = 0
    for i in range(1500):  # 24 MiB through a 2 MiB cache
        await stream.append(payload, 1)
        if i % 50 == 0:
            peak_cache = max(peak_cache, engine.memory()["log_cache"])
    # Cold reads go through the bounded block cache.
    position = 0
    while position < 1500:
        batches = await stream.fetch(position, max_bytes=256 * 1024)
        position = batches[-1].end
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    memory = engine.memory()
    assert peak_cache <= log_cache + len(payload)
    assert memory["block_cache"] <= 1024 * 1024
    # Everything the engine allocated stays a small multiple of the budgets, not of the data.
    assert peak_traced < 4 * (log_cache + 1024 * 1024) + 8 * 1024 * 1024, peak_traced
    await engine.close()
