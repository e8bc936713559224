"""The EBS WAL on a preallocated file (and a loop device where the machine allows one)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.errors import Fenced
from streambed.core.testing.wal import WalConformance, trace_sync_threads
from streambed.plugins.wal_ebs.plugin import EbsWalOptions, open_ebs_wal
from streambed.plugins.wal_ebs.ring import BLOCK, BlockWal

_epochs = itertools.count(1)


async def opened(path: Path, node: int = 1, epoch: int | None = None, **kwargs: Any) -> tuple[BlockWal, list[tuple[int, bytes]]]:
    options = EbsWalOptions(path=path, **{"capacity_bytes": 256 * 1024, **kwargs})
    ctx = NodeContext(data_dir=path.parent, node_id=node, node_epoch=next(_epochs) if epoch is None else epoch)
    wal = await open_ebs_wal(options, ctx)
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.start()
    return wal, records


class TestEbsWalConformance(WalConformance):
    capacity_bytes = 64 * 1024

    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[Any]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = EbsWalOptions(path=tmp_path / "wal.ebs", capacity_bytes=capacity_bytes or 8 * 1024 * 1024,
                                    full_timeout_ms=int(full_timeout_s * 1000))
            return await open_ebs_wal(options, NodeContext(data_dir=tmp_path, node_epoch=next(_epochs)))

        return open_wal


class TestEbsWalThreadedConformance(WalConformance):
    """The same contract with every commit on the writer thread (no inline commits)."""

    capacity_bytes = 64 * 1024

    @pytest.fixture
    def wal_factory(self, tmp_path: Path) -> Callable[..., Awaitable[Any]]:
        async def open_wal(capacity_bytes: int | None = None, full_timeout_s: float = 10) -> Any:
            options = EbsWalOptions(path=tmp_path / "wal.ebs", capacity_bytes=capacity_bytes or 8 * 1024 * 1024,
                                    full_timeout_ms=int(full_timeout_s * 1000), inline_max_bytes=0)
            return await open_ebs_wal(options, NodeContext(data_dir=tmp_path, node_epoch=next(_epochs)))

        return open_wal


async def test_small_commits_are_inline_and_big_ones_threaded_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = await opened(tmp_path / "w", capacity_bytes=4 * 1024 * 1024, inline_max_bytes=64 * 1024)
    threads = trace_sync_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    small = await asyncio.gather(*(wal.append(b"s%d" % i) for i in range(10)))
    assert threads == [loop_thread], threads  # one inline commit for one loop iteration
    threads.clear()
    mixed = await asyncio.gather(wal.append(b"B" * 100_000), *(wal.append(b"t%d" % i) for i in range(5)))
    assert loop_thread not in threads, threads  # over inline_max_bytes: the thread, and what follows
    offsets = [*small, *mixed]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    monkeypatch.undo()
    await wal.close()
    reopened, records = await opened(tmp_path / "w", capacity_bytes=4 * 1024 * 1024)
    assert [body for _, body in records] == [
        *(b"s%d" % i for i in range(10)), b"B" * 100_000, *(b"t%d" % i for i in range(5))]
    await reopened.close()


async def test_parallel_io_depth_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "w"
    wal, _ = await opened(path, capacity_bytes=16 * 1024 * 1024, io_depth=4)
    bodies = [os.urandom(200 * 1024) for _ in range(40)]
    offsets = await asyncio.gather(*(wal.append(b) for b in bodies))
    await wal.close()
    wal, records = await opened(path, capacity_bytes=16 * 1024 * 1024, io_depth=4)
    assert records == list(zip(offsets, bodies, strict=True))
    await wal.close()


async def test_uses_direct_io_on_this_filesystem(tmp_path: Path) -> None:
    wal, _ = await opened(tmp_path / "w")
    assert wal.direct_io
    await wal.close()


async def test_ring_wraps_many_times(tmp_path: Path) -> None:
    path = tmp_path / "w"
    rng = random.Random(7)
    expected: dict[int, bytes] = {}
    trimmed = 0
    for round_ in range(12):
        wal, records = await opened(path)
        assert records == sorted(expected.items()), f"round {round_}"
        for _ in range(40):
            body = rng.randbytes(rng.randrange(1, 3000))
            expected[await wal.append(body)] = body
        # Keep only the newest records, as the engine does after uploading.
        keep = sorted(expected)[-10:]
        trimmed = keep[0]
        await wal.trim(trimmed)
        expected = {o: b for o, b in expected.items() if o >= trimmed}
        await wal.close()
    assert trimmed > 3 * 256 * 1024, "the ring did not wrap"


async def test_corrupt_tail_block_is_never_served(tmp_path: Path) -> None:
    path = tmp_path / "w"
    wal, _ = await opened(path)
    offsets = [await wal.append(b"x" * 500) for _ in range(20)]
    await wal.close()
    victim = offsets[12]
    with open(path, "r+b") as fh:
        fh.seek(2 * BLOCK + victim % (256 * 1024) + 30)
        fh.write(b"\xff\xfe")
    wal, records = await opened(path)
    assert [o for o, _ in records] == offsets[:12]
    assert all(body == b"x" * 500 for _, body in records)
    await wal.close()


async def test_one_corrupt_header_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    path = tmp_path / "w"
    wal, _ = await opened(path)
    offsets = [await wal.append(b"h%d" % i) for i in range(5)]
    await wal.trim(offsets[2])
    await wal.close()
    # Destroy whichever slot was written last.
    from streambed.plugins.wal_ebs.ring import Header

    data = path.read_bytes()[: 2 * BLOCK]

    headers = [Header.decode(data[i * BLOCK:(i + 1) * BLOCK]) for i in (0, 1)]
    newest = max((h.sequence, i) for i, h in enumerate(headers) if h is not None)[1]
    with open(path, "r+b") as fh:
        fh.seek(newest * BLOCK + 10)
        fh.write(b"garbage")
    wal, records = await opened(path)
    # The older slot may hold an older trim point: records at or above it are all still valid.
    assert [o for o, _ in records][-3:] == offsets[2:]
    await wal.close()


async def test_stale_owner_refused_and_takeover_fences(tmp_path: Path) -> None:
    path = tmp_path / "w"
    old, _ = await opened(path, node=1, epoch=100, owner_check_interval_ms=50)
    acked = [await old.append(b"a%d" % i) for i in range(5)]
    with pytest.raises(Fenced, match="takeover"):
        await opened(path, node=2, epoch=200)
    new, records = await opened(path, node=2, epoch=200, takeover=True)
    assert [o for o, _ in records] == acked
    await asyncio.sleep(0.1)
    with pytest.raises(Fenced):
        await old.append(b"stale")
    assert await new.append(b"new") > acked[-1]
    await new.close()
    await old.close()
    with pytest.raises(Fenced, match="newer"):
        await opened(path, node=2, epoch=150, takeover=True)


def _loop_device_available() -> str | None:
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        return "needs root and losetup"
    probe = subprocess.run(["losetup", "-f"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"no free loop device: {probe.stderr.strip()}"
    return None


async def test_loop_block_device(tmp_path: Path) -> None:
    reason = _loop_device_available()
    if reason:
        pytest.skip(f"loop device unavailable here ({reason})")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as fh:
        fh.truncate(4 * 1024 * 1024)
    attach = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=False)
    if attach.returncode != 0:
        pytest.skip(f"losetup failed in this sandbox: {attach.stderr.strip()}")
    device = Path(attach.stdout.strip())
    try:
        wal, _ = await opened(device, capacity_bytes=1024 * 1024)
        offsets = [await wal.append(b"dev%d" % i) for i in range(50)]
        await wal.close()
        wal, records = await opened(device, capacity_bytes=1024 * 1024)
        assert [o for o, _ in records] == offsets
        await wal.close()
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=False)


@pytest.mark.slow
def test_ebs_wal_survives_sigkill_loop(tmp_path: Path) -> None:
    from sbtest.walcrash import crash_loop

    # A large ring: nothing is trimmed in this test, and every acknowledged record must remain.
    verified = crash_loop("ebs", {"path": str(tmp_path / "wal.ebs"), "capacity_bytes": 256 * 1024 * 1024},
                          tmp_path, rounds=15)
    # How many get acknowledged in the short rounds depends on this disk's mood (O_DIRECT writes
    # stall here); what matters is that every one of them survived, checked above in each round.
    assert verified > 200


def test_direct_io_takes_yaml_booleans(tmp_path: Path) -> None:
    """`direct_io: true` in YAML is a boolean; it means "true", as the word does."""
    for given, expected in ((True, "true"), (False, "false"), ("auto", "auto")):
        assert EbsWalOptions(path=tmp_path / "w", direct_io=given).direct_io == expected
