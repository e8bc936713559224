"""The built-in file WAL: the conformance suite, and what only a file WAL can get wrong.

A "crash" here is a copy of the WAL directory taken while the WAL is open: it holds exactly what a
killed process leaves behind (the page cache). Torn writes are made by hand: a truncated file (a
torn append), or new bytes up to a point followed by the file's previous bytes (a torn overwrite of
a reused segment). Loops over many seeded positions stand in for Hypothesis: each case reopens a
WAL, and a fixed, wide spread of positions is what matters.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import Unavailable
from streambed.core.testing.wal import WalConformance, trace_sync_threads
from streambed.core.wal.api import WriteAheadLog
from streambed.core.wal.file import (
    CHECKPOINT_NAME,
    HEADER_SIZE,
    FileWal,
    FileWalOptions,
    open_file_wal,
    segment_name,
)


class TestFileWal(WalConformance):
    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[WriteAheadLog]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            # Small segments, so the suite also crosses segment rolls and reuses spares.
            options = FileWalOptions(dir=tmp_path / "wal", capacity_bytes=capacity_bytes or 2**30,
                                     full_timeout_ms=int(full_timeout_s * 1000),
                                     segment_bytes=16 * 1024)
            return await open_file_wal(options, NodeContext(data_dir=tmp_path))

        return open_wal


class TestFileWalThreaded(WalConformance):
    """The same contract with every commit on the writer thread (no inline commits)."""

    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[WriteAheadLog]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = FileWalOptions(dir=tmp_path / "wal", capacity_bytes=capacity_bytes or 2**30,
                                     full_timeout_ms=int(full_timeout_s * 1000),
                                     segment_bytes=16 * 1024, inline_max_bytes=0)
            return await open_file_wal(options, NodeContext(data_dir=tmp_path))

        return open_wal


Records = list[tuple[int, bytes]]


async def opened(directory: Path, **options: Any) -> tuple[FileWal, Records]:
    wal = await open_file_wal(FileWalOptions(dir=directory, **options), NodeContext(data_dir=directory.parent))
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.start()
    return wal, records


async def reopened(directory: Path, **options: Any) -> Records:
    wal, records = await opened(directory, **options)
    await wal.close()
    return records


def crash_copy(src: Path, dst: Path) -> Path:
    """What a SIGKILL at this moment would leave on disk (the WAL stays open)."""
    shutil.copytree(src, dst)
    (dst / "lock").unlink(missing_ok=True)
    return dst


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def bodies(n: int, seed: int, largest: int = 600) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, largest)) for _ in range(n)]


async def append_all(wal: FileWal, items: list[bytes]) -> Records:
    return [(await wal.append(body), body) for body in items]


# -- layout ----------------------------------------------------------------------------------------


async def test_offsets_are_byte_positions(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    written = await append_all(wal, [b"", b"abc", b"x" * 1000])
    assert [o for o, _ in written] == [0, HEADER_SIZE, 2 * HEADER_SIZE + 3]
    assert wal.stats().used == 3 * HEADER_SIZE + 1003
    await wal.close()
    assert (tmp_path / "w" / segment_name(0)).stat().st_size == 3 * HEADER_SIZE + 1003


async def test_second_open_of_one_directory_is_refused(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    with pytest.raises(Unavailable, match="open in another"):
        await opened(tmp_path / "w")
    await wal.close()
    await (await opened(tmp_path / "w"))[0].close()


async def test_start_without_recover_continues_the_log(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    first = await append_all(wal, [b"one", b"two"])
    await wal.close()
    wal = await open_file_wal(FileWalOptions(dir=tmp_path / "w"), NodeContext(data_dir=tmp_path))
    await wal.start()
    third = await wal.append(b"three")
    assert third > first[-1][0]
    await wal.close()
    assert await reopened(tmp_path / "w") == [*first, (third, b"three")]


# -- torn and corrupt tails ------------------------------------------------------------------------


def _cut_positions(sizes: list[int], seed: int, extra: int) -> list[int]:
    """Every record boundary and its neighbours (inside a header, just past it), plus random."""
    positions: set[int] = set()
    at = 0
    for size in sizes:
        for delta in (0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1):
            positions.add(at + delta)
        at += HEADER_SIZE + size
    rng = random.Random(seed)
    positions.update(rng.randrange(at) for _ in range(extra))
    return sorted(p for p in positions if p < at)


async def test_torn_tail_recovers_the_valid_prefix(tmp_path: Path) -> None:
    written_bodies = bodies(25, seed=1)
    wal, _ = await opened(tmp_path / "w", fsync=False)
    written = await append_all(wal, written_bodies)
    base = crash_copy(tmp_path / "w", tmp_path / "crashed")
    await wal.close()
    (segment,) = segments(base)
    for i, cut in enumerate(_cut_positions([len(b) for b in written_bodies], seed=2, extra=60)):
        case = shutil.copytree(base, tmp_path / f"cut-{i}")
        os.truncate(case / segment.name, cut)
        survivors = [(o, b) for o, b in written if o + HEADER_SIZE + len(b) <= cut]
        wal, records = await opened(case, fsync=False)
        assert records == survivors, f"cut at {cut}"
        # New appends follow the valid prefix exactly.
        after = await wal.append(b"after-the-tear")
        expected_offset = survivors[-1][0] + HEADER_SIZE + len(survivors[-1][1]) if survivors else 0
        assert after == expected_offset
        await wal.close()
        assert await reopened(case, fsync=False) == [*survivors, (after, b"after-the-tear")]
        shutil.rmtree(case)


async def test_flipped_bit_is_never_served(tmp_path: Path) -> None:
    written_bodies = bodies(25, seed=3)
    wal, _ = await opened(tmp_path / "w", fsync=False)
    written = await append_all(wal, written_bodies)
    base = crash_copy(tmp_path / "w", tmp_path / "crashed")
    await wal.close()
    (segment,) = segments(base)
    data = (base / segment.name).read_bytes()
    rng = random.Random(4)
    for case_no in range(60):
        where = rng.randrange(len(data))
        corrupt = bytearray(data)
        corrupt[where] ^= 1 << rng.randrange(8)
        case = shutil.copytree(base, tmp_path / f"flip-{case_no}")
        (case / segment.name).write_bytes(bytes(corrupt))
        # The record holding the flipped bit and everything after it are dropped; start-up works.
        hit = next(k for k, (o, b) in enumerate(written) if o <= where < o + HEADER_SIZE + len(b))
        wal, records = await opened(case, fsync=False)
        assert records == written[:hit], f"bit flipped at {where}"
        assert await wal.append(b"new") == written[hit][0]
        await wal.close()
        shutil.rmtree(case)


async def test_corrupt_middle_segment_sets_later_segments_aside(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    wal, _ = await opened(tmp_path / "w", segment_bytes=4096)
    written = await append_all(wal, bodies(60, seed=5, largest=400))
    await wal.close()
    files = segments(tmp_path / "w")
    assert len(files) >= 4
    victim = files[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    base = int(victim.stem)
    hit = next(k for k, (o, b) in enumerate(written)
               if o <= base + len(data) // 2 < o + HEADER_SIZE + len(b))
    with caplog.at_level(logging.ERROR, logger="streambed.wal.file"):
        wal, records = await opened(tmp_path / "w", segment_bytes=4096)
    assert records == written[:hit]
    assert "set aside as .corrupt" in caplog.text
    assert len(list((tmp_path / "w").glob("*.corrupt"))) == len(files) - 2
    assert await wal.append(b"continues") == written[hit][0]
    await wal.close()
    assert (await reopened(tmp_path / "w", segment_bytes=4096))[-1] == (written[hit][0], b"continues")


async def _reused_active_segment(directory: Path) -> tuple[FileWal, Records]:
    """A WAL whose active segment is a reused spare: stale records follow the valid data."""
    wal, _ = await opened(directory, segment_bytes=8192, fsync=False)
    await append_all(wal, bodies(60, seed=6, largest=500))  # several segments
    await wal.trim(wal.end_offset)
    count = len(segments(directory))
    kept: Records = []
    while len(segments(directory)) <= count or len(kept) < 3:
        kept += await append_all(wal, [b"k" * 300])
    active = segments(directory)[-1]
    assert active.stat().st_size > wal.end_offset - int(active.stem), "not a reused segment"
    return wal, [(o, b) for o, b in kept if o >= wal.trim_offset]


async def test_torn_overwrite_of_a_reused_segment(tmp_path: Path) -> None:
    wal, kept = await _reused_active_segment(tmp_path / "w")
    before = crash_copy(tmp_path / "w", tmp_path / "before")
    new = await append_all(wal, bodies(8, seed=7, largest=400))
    after = crash_copy(tmp_path / "w", tmp_path / "after")
    await wal.close()
    active = segments(after)[-1].name
    old, current = (before / active).read_bytes(), (after / active).read_bytes()
    base = int(active[:-4])
    start, end = new[0][0] - base, new[-1][0] + HEADER_SIZE + len(new[-1][1]) - base
    rng = random.Random(8)
    cuts = sorted({start, end, *range(start, end, 97), *(rng.randrange(start, end) for _ in range(40))})
    for i, cut in enumerate(cuts):
        # The write reached the disk up to `cut`; past it the file still holds its old bytes.
        case = shutil.copytree(after, tmp_path / f"torn-{i}")
        (case / active).write_bytes(current[:cut] + old[cut:])
        survivors = [(o, b) for o, b in new if o + HEADER_SIZE + len(b) - base <= cut]
        records = await reopened(case, segment_bytes=8192, fsync=False)
        assert [r for r in records if r[0] >= kept[0][0]] == kept + survivors, f"torn at {cut}"
        shutil.rmtree(case)


async def test_record_past_a_torn_one_never_reappears(tmp_path: Path) -> None:
    """Disks may persist a later record of a batch and tear an earlier one. Recovery truncates
    there, so the orphan cannot resurface behind the records written after recovery."""
    wal, _ = await opened(tmp_path / "w", fsync=False)
    written = await append_all(wal, [b"a" * 100, b"b" * 100, b"c" * 100, b"d" * 100])
    await wal.close()
    path = segments(tmp_path / "w")[0]
    data = bytearray(path.read_bytes())
    data[written[1][0] + HEADER_SIZE + 50] ^= 0xFF  # record b torn; c and d intact behind it
    path.write_bytes(bytes(data))
    wal, records = await opened(tmp_path / "w", fsync=False)
    assert records == written[:1]
    # A record of b's size ends exactly where c starts: had c survived, it would follow it.
    same_size = await wal.append(b"n" * 100)
    crashed = crash_copy(tmp_path / "w", tmp_path / "crashed")
    await wal.close()
    assert await reopened(crashed, fsync=False) == [written[0], (same_size, b"n" * 100)]


@pytest.mark.parametrize("shutdown", ["clean", "crash", "lost checkpoint"])
async def test_stale_records_of_a_reused_segment_are_never_served(tmp_path: Path, shutdown: str) -> None:
    """Same-size records put the stale records of a reused segment exactly where the next new
    record would start; only the offset in their header tells them apart."""
    directory = tmp_path / "w"
    wal, _ = await opened(directory, segment_bytes=4096, fsync=False)
    written = await append_all(wal, [b"old" * 100] * 40)
    trim = wal.end_offset
    await wal.trim(trim)
    count = len(segments(directory))
    while len(segments(directory)) <= count:
        written += await append_all(wal, [b"new" * 100])
    written += await append_all(wal, [b"new" * 100])
    end = wal.end_offset
    if shutdown == "crash":
        directory = crash_copy(directory, tmp_path / "crashed")
    await wal.close()
    if shutdown == "lost checkpoint":
        (directory / CHECKPOINT_NAME).unlink()  # recovery starts at the oldest segment, trim 0
        expected = [(o, b) for o, b in written if o >= int(segments(directory)[0].stem)]
    else:
        expected = [(o, b) for o, b in written if o >= trim]
        assert {b for _, b in expected} == {b"new" * 100}
    wal, records = await opened(directory, segment_bytes=4096, fsync=False)
    assert records == expected
    assert await wal.append(b"next") == end, "the log continues right after the last record"
    await wal.close()


async def test_clean_shutdown_mismatch_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wal, _ = await opened(tmp_path / "w")
    written = await append_all(wal, [b"x" * 100] * 5)
    await wal.close()
    os.truncate(segments(tmp_path / "w")[0], written[3][0] + 10)
    with caplog.at_level(logging.ERROR, logger="streambed.wal.file"):
        assert await reopened(tmp_path / "w") == written[:3]
    assert "closed cleanly" in caplog.text


async def test_unreadable_checkpoint_replays_from_the_oldest_segment(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    written = await append_all(wal, [b"1", b"2", b"3"])
    await wal.trim(written[2][0])
    await wal.close()
    assert await reopened(tmp_path / "w") == written[2:]
    (tmp_path / "w" / CHECKPOINT_NAME).write_bytes(b"garbage")
    assert await reopened(tmp_path / "w") == written  # replaying too much is safe; too little is not


# -- failures --------------------------------------------------------------------------------------


async def _fail_during_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                             error: OSError) -> None:
    # On the writer thread, so the test can hold the failing call while more appends queue.
    wal, _ = await opened(tmp_path / "w", inline_max_bytes=0)
    ok = await wal.append(b"ok")
    release = threading.Event()
    calls: list[int] = []
    real = getattr(os, name)

    def fails_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            # Like a second fsync after a failed one: it "succeeds", but the data may be gone.
            return real(*args)
        release.wait(5)  # hold the first batch, so more appends queue behind it
        if name == "pwritev":
            real(*args)  # the bytes reach the page cache, the call still reports an error
        raise error

    monkeypatch.setattr(os, name, fails_once)
    tasks = [asyncio.create_task(wal.append(b"lost-0"))]
    while not calls:  # wait until the writer took the first batch and is stuck in it
        await asyncio.sleep(0.001)
    tasks += [asyncio.create_task(wal.append(b"lost-%d" % i)) for i in range(1, 30)]
    await asyncio.sleep(0.02)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert len(calls) == 1, "later batches must not be written after a failure"
    with pytest.raises(Unavailable, match="refuses appends"):
        await wal.append(b"refused")
    assert wal.stats().appends == 1, "nothing may be acknowledged after the failure"
    monkeypatch.undo()
    await wal.close()
    records = await reopened(tmp_path / "w")
    # Unacknowledged records may exist (they reached the page cache) but only as written, in order.
    assert records[0] == (0, b"ok") and ok == 0
    assert [b for _, b in records[1:]] == [b"lost-%d" % i for i in range(len(records) - 1)]


async def test_failed_fsync_fails_pending_and_later_appends(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    await _fail_during_batch(tmp_path, monkeypatch, "fdatasync", OSError(errno.EIO, "Input/output error"))


async def test_failed_write_fails_pending_and_later_appends(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    await _fail_during_batch(tmp_path, monkeypatch, "pwritev", OSError(errno.ENOSPC, "No space left on device"))


async def test_fsync_false_never_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(fd: int) -> None:
        raise AssertionError("fsync=False must not sync")

    monkeypatch.setattr(os, "fdatasync", forbidden)
    monkeypatch.setattr(os, "fsync", forbidden)
    wal, _ = await opened(tmp_path / "w", fsync=False, segment_bytes=4096)
    written = await append_all(wal, [b"n" * 1000] * 10)
    await wal.trim(written[5][0])
    await wal.close()
    monkeypatch.undo()
    assert await reopened(tmp_path / "w") == written[5:]


# -- trim and segments -----------------------------------------------------------------------------


async def test_trim_persists_without_a_clean_shutdown(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w", segment_bytes=4096)
    written = await append_all(wal, [b"s" * 1000] * 40)
    files_before = len(segments(tmp_path / "w"))
    used_before = wal.stats().used
    await wal.trim(written[30][0])
    assert wal.stats().used == used_before - (written[30][0] - written[0][0])
    assert len(segments(tmp_path / "w")) < files_before - 5
    crashed = crash_copy(tmp_path / "w", tmp_path / "crashed")
    await wal.close()
    assert await reopened(crashed, segment_bytes=4096) == written[30:]


async def test_trimmed_segments_are_reused_and_disk_use_is_bounded(tmp_path: Path) -> None:
    directory = tmp_path / "w"
    # capacity 20 KiB / segments 4 KiB: at most 6 files (segments + spares) at any time.
    wal, _ = await opened(directory, segment_bytes=4096, capacity_bytes=20 * 1024)
    inodes: set[int] = set()
    expected: Records = []
    rng = random.Random(9)
    for _round in range(30):
        expected += await append_all(wal, [rng.randbytes(rng.randrange(500, 1500)) for _ in range(4)])
        files = [*segments(directory), *directory.glob("*.spare")]
        assert len(files) <= 6, files
        inodes.update(f.stat().st_ino for f in files)
        keep = expected[-3:]
        await wal.trim(keep[0][0])
        expected = keep
    # About 30 * 4 KiB went through 4 KiB segments, yet only a handful of files ever existed.
    assert len(inodes) <= 7, len(inodes)
    crashed = crash_copy(directory, tmp_path / "crashed")
    await wal.close()
    # Reused segments hold stale records of their earlier life; none is ever served.
    assert await reopened(crashed, segment_bytes=4096, capacity_bytes=20 * 1024) == expected
    assert await reopened(directory, segment_bytes=4096, capacity_bytes=20 * 1024) == expected


async def test_trim_past_the_durable_end_then_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trim may cover appends still queued; if the process dies before they are written, the
    log restarts at the trim offset and nothing below it is served."""
    wal, _ = await opened(tmp_path / "w", inline_max_bytes=0)
    await append_all(wal, [b"durable"] * 3)
    release = threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    pending = [asyncio.create_task(wal.append(b"queued" * 100)) for _ in range(5)]
    await asyncio.sleep(0.05)
    trim_to = wal.end_offset
    await wal.trim(trim_to)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    # Only the checkpoint of the crash copy matters here; its segments are from before the batch.
    shutil.copy(tmp_path / "w" / CHECKPOINT_NAME, crashed / CHECKPOINT_NAME)
    for path in segments(tmp_path / "w"):
        (crashed / path.name).write_bytes(path.read_bytes()[: 3 * (HEADER_SIZE + 7)])
    release.set()
    await asyncio.gather(*pending)
    monkeypatch.undo()
    await wal.close()
    wal, records = await opened(crashed)
    assert records == []
    assert await wal.append(b"restart") == trim_to
    await wal.close()
    assert await reopened(crashed) == [(trim_to, b"restart")]


# -- group commit ----------------------------------------------------------------------------------


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    await asyncio.gather(*(wal.append(b"g" * 100) for _ in range(2000)))
    stats = wal.stats()
    assert stats.appends == 2000
    assert stats.syncs < stats.appends / 5, stats
    await wal.close()


async def test_inline_commit_runs_on_the_loop_and_groups_one_iteration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = await opened(tmp_path / "w")
    threads = trace_sync_threads(monkeypatch)
    offsets = await asyncio.gather(*(wal.append(b"i%d" % n) for n in range(10)))
    assert offsets == sorted(offsets)
    # Ten appends made in one loop iteration: one write, one sync, on the loop's own thread.
    assert threads == [threading.current_thread().name]
    monkeypatch.undo()
    await wal.close()
    assert [b for _, b in await reopened(tmp_path / "w")] == [b"i%d" % n for n in range(10)]


async def test_big_commits_and_commits_behind_the_thread_go_to_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit over inline_max_bytes goes to the writer thread; while the thread holds it, small
    appends follow it there too, and everything completes in offset order."""
    wal, _ = await opened(tmp_path / "w", inline_max_bytes=4096)
    release = threading.Event()
    threads: list[str] = []
    real = os.fdatasync
    loop_thread = threading.current_thread().name

    def held(fd: int) -> None:
        threads.append(threading.current_thread().name)
        if threading.current_thread().name != loop_thread:
            release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", held)
    done: list[int] = []

    async def append(body: bytes) -> int:
        offset = await wal.append(body)
        done.append(offset)
        return offset

    big = asyncio.create_task(append(b"B" * 10_000))
    while not threads:
        await asyncio.sleep(0.001)
    small = [asyncio.create_task(append(b"s%d" % n)) for n in range(5)]
    await asyncio.sleep(0.02)
    assert not done, "nothing completes before the held batch"
    assert threads[0] != loop_thread
    release.set()
    await asyncio.gather(big, *small)
    assert done == sorted(done)
    assert loop_thread not in threads, "no inline commit while the thread had one outstanding"
    threads.clear()
    await wal.append(b"after")  # the thread is idle again: inline
    assert threads == [loop_thread]
    monkeypatch.undo()
    await wal.close()
    bodies = [b for _, b in await reopened(tmp_path / "w")]
    assert bodies == [b"B" * 10_000, *(b"s%d" % n for n in range(5)), b"after"]


async def test_failed_inline_fsync_fails_the_commit_and_refuses_later_appends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = await opened(tmp_path / "w")
    assert await wal.append(b"ok") == 0

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    results = await asyncio.gather(*(wal.append(b"lost") for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
    monkeypatch.undo()
    with pytest.raises(Unavailable, match="refuses appends"):
        await wal.append(b"refused")
    assert wal.stats().appends == 1
    await wal.close()
    assert (await reopened(tmp_path / "w"))[0] == (0, b"ok")


async def test_close_writes_appends_gathered_for_an_inline_commit(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    pending = [asyncio.create_task(wal.append(b"c%d" % n)) for n in range(3)]
    await asyncio.sleep(0)  # the appends ran up to their await: gathered, not yet committed
    await wal.close()
    assert [await p for p in pending] == sorted(await asyncio.gather(*pending))
    assert [b for _, b in await reopened(tmp_path / "w")] == [b"c0", b"c1", b"c2"]


async def test_max_batch_bytes_bounds_a_batch(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w", max_batch_bytes=4096, fsync=False)
    await asyncio.gather(*(wal.append(b"m" * 1000) for _ in range(100)))
    # A batch stops once it holds max_batch_bytes: at most five 1024-byte records.
    assert wal.stats().syncs >= 100 * 1024 // (4096 + 1024)
    await wal.close()


async def test_max_batch_delay_waits_for_company(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w", max_batch_delay_us=100_000)
    began = time.monotonic()
    await wal.append(b"alone")
    assert time.monotonic() - began >= 0.09, "a lone append waits for the batch delay"
    syncs = wal.stats().syncs

    async def trickle(i: int) -> int:
        await asyncio.sleep(i * 0.001)
        return await wal.append(b"t")

    await asyncio.gather(*(trickle(i) for i in range(10)))
    assert wal.stats().syncs - syncs <= 2, "appends 1 ms apart share one 100 ms batch"
    await wal.close()


async def test_one_batch_of_mixed_sizes(tmp_path: Path) -> None:
    """Small bodies are copied into the write buffer, large ones written from their own memory."""
    rng = random.Random(10)
    sizes = [0, 1, 100, 32 * 1024, 32 * 1024 + 1, 40_000, 0, 1 << 20, 7, 32 * 1024 - 1] * 3
    items = [rng.randbytes(n) for n in sizes]
    wal, _ = await opened(tmp_path / "w", fsync=False)
    offsets = await asyncio.gather(*(wal.append(memoryview(b)) for b in items))
    assert wal.stats().syncs < len(items)
    await wal.close()
    assert await reopened(tmp_path / "w") == list(zip(offsets, items, strict=True))


async def test_more_buffers_than_one_writev_takes(tmp_path: Path) -> None:
    rng = random.Random(11)
    items = [rng.randbytes(33 * 1024) for _ in range(600)]  # two iovecs each: > IOV_MAX
    wal, _ = await opened(tmp_path / "w", fsync=False, max_batch_bytes=64 << 20, segment_bytes=64 << 20)
    offsets = await asyncio.gather(*(wal.append(b) for b in items))
    assert wal.stats().syncs <= 3
    await wal.close()
    assert await reopened(tmp_path / "w") == list(zip(offsets, items, strict=True))


async def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwritev
    rng = random.Random(12)

    def short(fd: int, buffers: Any, offset: int) -> int:
        # Write a random prefix of what was asked, as a regular file may under pressure.
        data = b"".join(bytes(b) for b in buffers)
        return real(fd, [data[: rng.randrange(1, len(data) + 1)]], offset)

    monkeypatch.setattr(os, "pwritev", short)
    items = [rng.randbytes(rng.randrange(0, 50_000)) for _ in range(60)]
    wal, _ = await opened(tmp_path / "w", fsync=False)
    offsets = await asyncio.gather(*(wal.append(b) for b in items))
    await wal.close()
    monkeypatch.undo()
    assert await reopened(tmp_path / "w") == list(zip(offsets, items, strict=True))


async def test_slow_disk_is_reported_once_per_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    wal, _ = await opened(tmp_path / "w")
    real = os.fdatasync

    def slow(fd: int) -> None:
        time.sleep(0.12)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    with caplog.at_level(logging.WARNING, logger="streambed.wal.file"):
        await wal.append(b"slow-1")
        await wal.append(b"slow-2")
    monkeypatch.undo()
    reports = [r.getMessage() for r in caplog.records if "fdatasync" in r.getMessage()]
    assert len(reports) == 1, reports
    assert "took 1" in reports[0] and "event loop" in reports[0]
    await wal.close()


async def test_a_slow_inline_commit_sends_commits_to_the_thread_for_a_while(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk stall during an inline commit stalls the whole event loop: after one slow inline
    commit, commits go to the writer thread (the loop keeps serving) until the pause is over."""
    wal, _ = await opened(tmp_path / "w")
    wal._gate.pause_s = 0.3
    loop_thread = threading.current_thread().name
    threads: list[str] = []
    real = os.fdatasync

    def stalling(fd: int) -> None:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            time.sleep(0.05)  # the disk stalls once
        real(fd)

    monkeypatch.setattr(os, "fdatasync", stalling)
    await wal.append(b"first")
    await wal.append(b"second")
    await wal.append(b"third")
    assert threads[0] == loop_thread
    assert loop_thread not in threads[1:], threads  # the loop is spared while the disk is slow
    await asyncio.sleep(0.35)
    threads.clear()
    await wal.append(b"later")
    assert threads == [loop_thread]  # calm again: inline
    monkeypatch.undo()
    await wal.close()
    assert [b for _, b in await reopened(tmp_path / "w")] == [b"first", b"second", b"third",
                                                                b"later"]


def test_inline_gate() -> None:
    from streambed.core.wal.inline import InlineGate

    now = [100.0]
    gate = InlineGate(slow_s=0.02, pause_s=10, clock=lambda: now[0])
    began = gate.began()
    now[0] += 0.01
    gate.finished(began)
    assert gate.open and gate.pauses == 0
    began = gate.began()
    now[0] += 0.5
    gate.finished(began)
    assert not gate.open and gate.pauses == 1
    now[0] += 9.9
    assert not gate.open
    now[0] += 0.2
    assert gate.open
