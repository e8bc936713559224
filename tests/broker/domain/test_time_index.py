"""The sparse time index agrees with a scan of the whole log, whatever the timestamps' order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streambed.broker.domain.time_index import TimeIndex
from streambed.core.errors import DataError

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


def index_of(log: list[tuple[int, list[int]]], start: int, end: int, interval: int) -> TimeIndex:
    index = TimeIndex(start, interval_bytes=interval)
    for base, timestamps in log:
        if start <= base < end:
            index.add(base, max(timestamps), 10 * len(timestamps))
    return index


@settings(max_examples=400, deadline=None)
@given(batches_strategy, st.data(), st.integers(1, 50), st.integers(1, 6), st.integers(-1, 55))
def test_a_saved_copy_plus_the_gap_agrees_with_a_full_scan(
    batches: Batches, data: st.DataObject, interval: int, max_entries: int, timestamp: int
) -> None:
    """What a partition does across a restart: the index saved before it (covering from
    ``covered``, entries below the high watermark ``saved_hw`` only, thinned to ``max_entries``),
    then a scan of the gap up to where the new live index starts (``reopened``), then the part
    below the copy's coverage on first need; the result answers as a full scan does."""
    log = layout(batches)
    end = sum(len(b) for b in batches)
    bases = [base for base, _ in log] + [end]
    covered = data.draw(st.sampled_from(bases))
    saved_hw = data.draw(st.sampled_from([b for b in bases if b >= covered]))
    reopened = data.draw(st.sampled_from([b for b in bases if b >= saved_hw]))
    log_start = data.draw(st.integers(0, end))
    before = index_of(log, covered, end, interval)  # the old owner's index, up to the end
    saved = before.save_below(saved_hw, 3, max_entries=max_entries)
    live = index_of(log, reopened, end, interval)
    if saved is not None:
        copy = TimeIndex.load(saved, interval_bytes=interval)
        assert len(copy) <= max_entries
        assert copy.end < saved_hw
        assert TimeIndex.saved_epoch(saved) == 3
        gap = index_of(log, copy.end, reopened, interval)
        gap.prepend(copy)
        live.prepend(gap)
    if live.covered_from > 0:
        live.prepend(index_of(log, 0, live.covered_from, interval))
    live.forget_below(log_start)
    expected = first_at_or_after(log, log_start, timestamp)
    start = live.start_for(timestamp)
    if start is None:
        assert expected == (-1, -1)
        return
    assert first_at_or_after(log, max(start, log_start), timestamp) == expected
    if batches:
        top = max(max(b) for b in batches)
        assert live.max_timestamp == top
        assert live.max_offset == next(base for base, ts in log if top in ts)


def test_a_saved_copy_is_bounded_and_checked() -> None:
    index = TimeIndex(0, interval_bytes=1)
    for n in range(100):
        index.add(n * 10, 1_000 + n, 1)
    assert index.save_below(0, 1) is None  # nothing durable yet
    data = index.save_below(505, 7, max_entries=8)
    assert data is not None
    copy = TimeIndex.load(data)
    assert len(copy) <= 8 and copy.end == 500  # the last durable entry is always kept
    assert copy.start_for(1_050) is not None and copy.start_for(1_050) <= 500
    with pytest.raises(DataError):
        TimeIndex.load(data[:-3])
    with pytest.raises(DataError):
        TimeIndex.load(b"\x09" + data[1:])
