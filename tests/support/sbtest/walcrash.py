"""A SIGKILL crash loop for any WAL type (used by the core and plugin WAL tests).

The writer (``python -m sbtest.walcrash TYPE OPTIONS_JSON DATA_DIR EPOCH``) opens the WAL through
the plugin host, appends recognisable records from many concurrent appenders, and prints
``<offset> <body hex digest>`` for each acknowledged record as soon as the append returns. The parent
reads those lines through a pipe, kills the writer with SIGKILL at a random moment, reopens the WAL
itself, and checks that every acknowledged record is recovered byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from streambed.core.context import NodeContext
from streambed.core.plugins import PluginHost


def body_for(n: int) -> bytes:
    rng = random.Random(n)
    return b"rec-%d-" % n + rng.randbytes(rng.randrange(0, 2000))


async def open_wal(wal_type: str, options: dict[str, Any], data_dir: Path, epoch: int) -> Any:
    impl = PluginHost.load().registries.wal.get(wal_type)
    assert impl is not None, wal_type
    ctx = NodeContext(data_dir=data_dir, node_id=1, node_epoch=epoch)
    return await impl.factory(impl.options_model.model_validate(options), ctx)


async def _writer(wal_type: str, options: dict[str, Any], data_dir: Path, epoch: int, start: int) -> None:
    wal = await open_wal(wal_type, options, data_dir, epoch)
    async for _ in wal.recover():
        pass
    await wal.start()
    counter = start
    out = sys.stdout

    async def appender() -> None:
        nonlocal counter
        while True:
            n = counter
            counter += 1
            body = body_for(n)
            offset = await wal.append(body)
            out.write(f"{offset} {n}\n")
            out.flush()

    await asyncio.gather(*(appender() for _ in range(16)))


def crash_loop(wal_type: str, options: dict[str, Any], data_dir: Path, rounds: int,
               max_round_s: float = 0.6) -> int:
    """Run the loop; returns the number of acknowledged records verified."""
    acked: dict[int, int] = {}  # offset -> record number
    next_number = 0
    rng = random.Random(1234)
    support = str(Path(__file__).resolve().parents[1])
    for round_ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-m", "sbtest.walcrash", wal_type, json.dumps(options),
             str(data_dir), str(10 + 2 * round_), str(next_number)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": support},
        )
        time.sleep(rng.uniform(0.15, max_round_s))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        lines = out.decode().splitlines()
        if not lines and proc.returncode not in (-9, None):
            raise AssertionError(f"writer failed: {err.decode()[-2000:]}")
        for line in lines:
            parts = line.split()
            if len(parts) == 2:  # a line cut by the kill is not an acknowledgement
                acked[int(parts[0])] = int(parts[1])
                next_number = max(next_number, int(parts[1]) + 1)
        next_number += 10_000  # numbers of unacknowledged records are never reused

        recovered = asyncio.run(_recover(wal_type, options, data_dir, 11 + 2 * round_))
        offsets = [o for o, _ in recovered]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offsets not increasing"
        by_offset = dict(recovered)
        for offset, number in acked.items():
            assert offset in by_offset, f"round {round_}: acknowledged offset {offset} lost"
            assert by_offset[offset] == body_for(number), f"round {round_}: offset {offset} differs"
    return len(acked)


async def _recover(wal_type: str, options: dict[str, Any], data_dir: Path, epoch: int) -> list[tuple[int, bytes]]:
    wal = await open_wal(wal_type, options, data_dir, epoch)
    records = [(r.offset, r.body) async for r in wal.recover()]
    await wal.close()
    return records


if __name__ == "__main__":
    wal_type_, options_, data_dir_, epoch_, start_ = sys.argv[1:6]
    asyncio.run(_writer(wal_type_, json.loads(options_), Path(data_dir_), int(epoch_), int(start_)))
