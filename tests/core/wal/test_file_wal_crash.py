"""SIGKILL a real writer process at random moments; every acknowledged record must survive.

The writer (``_crash_writer.py``) appends from 32 concurrent appenders and reports each
acknowledgement on a pipe as soon as ``append`` returned; this process reads the pipe while the
writer runs, so it knows every acknowledgement made before the kill. After each kill it recovers a
copy of the WAL directory (so the next writer still recovers the crash itself) and checks:

- every acknowledged record at or above the newest announced trim point is there, byte for byte;
- every record served is one the writer appended (its body matches its number), offsets increase;
- the next writer continues exactly where the recovered log ends, after every earlier ack.

A SIGKILL loses nothing that reached the page cache, so this tests the ordering of writes, acks,
segment rolls, trims and recovery -- not power loss (the torn-write tests in test_file_wal.py
cover what a power loss leaves).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streambed.core.context import NodeContext
from streambed.core.wal.file import FileWalOptions, open_file_wal

HERE = Path(__file__).resolve().parent
WRITER = HERE / "_crash_writer.py"
_spec = importlib.util.spec_from_file_location("_crash_writer", WRITER)
assert _spec is not None and _spec.loader is not None
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)

ROUNDS = 24


class Round:
    def __init__(self) -> None:
        self.started: tuple[int, int] | None = None
        self.acks: list[tuple[int, int, str]] = []
        self.trims: list[int] = []

    def feed(self, line: bytes) -> None:
        kind, *fields = line.decode().split()
        if kind == "S":
            self.started = (int(fields[0]), int(fields[1]))
        elif kind == "A":
            self.acks.append((int(fields[0]), int(fields[1]), fields[2]))
        elif kind == "T":
            self.trims.append(int(fields[0]))
        else:
            raise AssertionError(f"unexpected line from the writer: {line!r}")


def run_writer(directory: Path, first_number: int, kill_after: float, log: Path) -> Round:
    """Run the writer, reading its pipe as it goes; SIGKILL it after ``kill_after`` seconds."""
    result = Round()
    with log.open("ab") as stderr:
        proc = subprocess.Popen([sys.executable, str(WRITER), str(directory), str(first_number)],
                                stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    pending = b""
    deadline = time.monotonic() + kill_after
    killed = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            timeout = deadline - time.monotonic()
            if not killed and timeout <= 0:
                proc.send_signal(signal.SIGKILL)
                killed = True
            if selector.select(timeout=None if killed else max(timeout, 0)):
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break  # EOF: the writer is gone and the pipe is drained
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    result.feed(line)
    proc.stdout.close()
    code = proc.wait()
    assert code == -signal.SIGKILL, f"the writer exited on its own ({code}): {log.read_text()[-3000:]}"
    return result


async def recover(directory: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The records a restarted writer would see, and the offset it would continue at."""
    wal = await open_file_wal(FileWalOptions(dir=directory, **writer.OPTIONS),
                              NodeContext(data_dir=directory.parent))
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.close()
    return records, wal.end_offset


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    log = tmp_path / "writer.log"
    rng = random.Random(20261124)
    acked: dict[int, tuple[int, str]] = {}  # offset -> (record number, digest)
    trim = 0  # the newest trim point any writer announced
    end: int | None = None  # where the recovered log ended after the previous kill
    next_number = 0
    rounds_with_acks = 0
    began = time.monotonic()
    for round_no in range(ROUNDS):
        # Most kills land while appends run; some during start-up and recovery.
        kill_after = rng.uniform(0.05, 0.4) if round_no % 5 == 4 else rng.uniform(0.5, 0.9)
        result = run_writer(directory, next_number, kill_after, log)
        if result.started is not None and end is not None:
            assert result.started[0] == end, f"round {round_no}: the log did not continue at {end}"
        new_offsets = [offset for offset, _, _ in result.acks]
        assert new_offsets == sorted(new_offsets), f"round {round_no}: acks out of offset order"
        if acked and new_offsets:
            assert new_offsets[0] > max(acked), f"round {round_no}: an offset was handed out again"
        for offset, number, hexdigest in result.acks:
            acked[offset] = (number, hexdigest)
            next_number = max(next_number, number + 1)
        rounds_with_acks += bool(result.acks)
        trim = max([trim, *result.trims])
        next_number += 1_000_000  # numbers of unacknowledged records are never reused

        copy = tmp_path / f"recovered-{round_no}"
        shutil.copytree(directory, copy)
        records, end = asyncio.run(recover(copy))
        shutil.rmtree(copy)
        offsets = [offset for offset, _ in records]
        assert all(a < b for a, b in itertools.pairwise(offsets)), "offsets not increasing"
        for offset, body in records:
            number = int(body.split(b"-", 2)[1])
            assert body == writer.body_for(number), f"round {round_no}: offset {offset} holds garbage"
            if offset in acked:
                assert acked[offset] == (number, writer.digest(body)), f"round {round_no}: offset {offset} differs"
        served = dict(records)
        missing = [offset for offset in acked if offset >= trim and offset not in served]
        assert not missing, f"round {round_no}: acknowledged offsets lost: {missing[:10]}"
        assert not acked or end > max(acked)

    print(f"{len(acked)} acknowledged records over {ROUNDS} kills, {rounds_with_acks} rounds with "
          f"acks, final trim {trim}, end {end}, {time.monotonic() - began:.1f} s")
    assert rounds_with_acks >= ROUNDS * 0.6, f"only {rounds_with_acks} rounds acknowledged anything"
    assert len(acked) > 2000, f"only {len(acked)} acknowledgements: the test proves little"
    assert time.monotonic() - began < 60
