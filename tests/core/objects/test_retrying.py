"""RetryingObjectStore over the memory store with injected faults (503 storms, dropped responses)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import ConditionFailed, NotFound, Unavailable
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.objects.retrying import RetryingObjectStore
from streambed.core.testing.faults import FaultPlan, FaultyObjectStore


async def _no_sleep(_: float) -> None:
    return None


async def make(tmp_path: Path, name: str, probability: float, attempts: int = 30) -> tuple[RetryingObjectStore, FaultPlan]:
    inner = await open_memory_store(MemoryObjectStoreOptions(name=name), NodeContext(data_dir=tmp_path))
    plan = FaultPlan(seed=7, probability=dict.fromkeys(
        ["objects.put", "objects.get", "objects.get_range", "objects.delete", "objects.list", "objects.head"],
        probability))
    store = RetryingObjectStore(FaultyObjectStore(inner, plan), attempts=attempts, sleep=_no_sleep,
                                rng=random.Random(1))
    return store, plan


async def test_503_storm_is_ridden_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, plan = await make(tmp_path, "storm", probability=0.4)
    with caplog.at_level(logging.DEBUG, logger="streambed.objects.retry"):
        for i in range(200):
            await store.put(f"k/{i}", b"v%d" % i)
        for i in range(200):
            assert await store.get(f"k/{i}") == b"v%d" % i
    assert store.retries > 50 and sum(plan.injected.values()) == store.retries
    # Requests failing again are reported, but one warning stands for the whole storm.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "attempt 2/30" in warnings[0].getMessage()


async def test_gives_up_after_attempts(tmp_path: Path) -> None:
    store, _ = await make(tmp_path, "down", probability=1.0, attempts=3)
    with pytest.raises(Unavailable):
        await store.put("k", b"v")
    assert store.retries == 2


async def test_answers_are_not_retried(tmp_path: Path) -> None:
    store, plan = await make(tmp_path, "answers", probability=0.0)
    with pytest.raises(NotFound):
        await store.get("missing")
    await store.put("c", b"1", if_none_match=True)
    with pytest.raises(ConditionFailed):
        await store.put("c", b"2", if_none_match=True)
    assert store.retries == 0 and plan.counts["objects.get"] == 1


async def test_conditional_put_with_dropped_response_is_recognised(tmp_path: Path) -> None:
    inner = await open_memory_store(MemoryObjectStoreOptions(name="dropped"), NodeContext(data_dir=tmp_path))
    plan = FaultPlan(schedule={"objects.put": {1}}, after_share=1.0)  # the write lands, the answer is lost
    store = RetryingObjectStore(FaultyObjectStore(inner, plan), sleep=_no_sleep)
    try:
        await store.put("owner", b"me", if_none_match=True)
    except ConditionFailed:
        pytest.fail("our own earlier attempt was mistaken for a competitor")
    assert await inner.get("owner") == b"me"
    assert plan.injected["objects.put"] == 1
