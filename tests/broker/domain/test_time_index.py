"""The sparse time index agrees with a scan of the whole log, whatever the timestamps' order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streambed.broker.domain.time_index import TimeIndex

# A batch: the timestamps of its records (offsets are consecutive across batches).
Batches = list[list[int]]

batches_strategy = st.lists(
    st.lists(st.integers(0, 50), min_size=1, max_size=4), min_size=0, max_size=40
)


def layout(batches: Batches) -> list[tuple[int, list[int]]]:
    out, base = [], 0
    for timestamps in batches:
        out.append((base, timestamps))
        base += len(timestamps)
    return out


def first_at_or_after(log: list[tuple[int, list[int]]], start: int, timestamp: int) -> tuple[int, int]:
    for base, timestamps in log:
        for i, ts in enumerate(timestamps):
            if base + i >= start and ts >= timestamp:
                return base + i, ts
    return -1, -1


def build(log: list[tuple[int, list[int]]], split: int, interval: int) -> TimeIndex:
    """Batches below offset ``split`` are indexed later (as after a restart) and prepended."""
    newer = TimeIndex(split, interval_bytes=interval)
    older = TimeIndex(0, interval_bytes=interval)
    for base, timestamps in log:
        (older if base < split else newer).add(base, max(timestamps), 10 * len(timestamps))
    if split > 0:
        newer.prepend(older)
    return newer


@settings(max_examples=400, deadline=None)
@given(batches_strategy, st.integers(0, 60), st.integers(1, 50), st.integers(0, 200),
       st.integers(-1, 55))
def test_scan_from_the_index_finds_what_a_full_scan_finds(
    batches: Batches, split_at: int, interval: int, log_start: int, timestamp: int
) -> None:
    log = layout(batches)
    end = sum(len(b) for b in batches)
    split = min((base for base, _ in log if base >= split_at), default=end)
    log_start = min(log_start, end)
    index = build(log, split, interval)
    index.forget_below(log_start)
    expected = first_at_or_after(log, log_start, timestamp)
    start = index.start_for(timestamp)
    if start is None:
        assert expected == (-1, -1)
        return
    assert start >= 0
    found = first_at_or_after(log, max(start, log_start), timestamp)
    assert found == expected


@settings(max_examples=200, deadline=None)
@given(batches_strategy.filter(bool), st.integers(0, 60), st.integers(1, 50))
def test_the_maximum_and_its_batch(batches: Batches, split_at: int, interval: int) -> None:
    log = layout(batches)
    end = sum(len(b) for b in batches)
    split = min((base for base, _ in log if base >= split_at), default=end)
    index = build(log, split, interval)
    top = max(max(b) for b in batches)
    first_base = next(base for base, timestamps in log if top in timestamps)
    assert (index.max_timestamp, index.max_offset) == (top, first_base)
    assert index.covered_from == 0


def test_monotonic_timestamps_give_one_entry_per_interval() -> None:
    index = TimeIndex(0, interval_bytes=1000)
    for n in range(100):
        index.add(n * 10, 1_000 + n, 100)  # 100 batches of 100 bytes, 10 records each
    assert len(index) == 10  # the first batch, then every 1000 bytes
    # A lookup starts at most one interval (10 batches) before the batch it needs.
    assert index.start_for(1_055) == 500
    assert index.start_for(1_000) == 0
    assert index.start_for(2_000) is None
    index.forget_below(600)
    assert index.start_for(1_075) == 700
    assert len(index) == 4
