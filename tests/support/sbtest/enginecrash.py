"""SIGKILL crash loop for the stream engine on file media (WAL file, object directory, SQLite).

The writer (``python -m sbtest.enginecrash DATA_DIR EPOCH START``) appends to three streams from
many tasks, uploading often, and prints ``<stream> <offset> <record number>`` per acknowledged
append. The parent kills it at random moments, reopens the engine and checks every acknowledged
record byte for byte, dense offsets, and that no record number appears twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from streambed.core.context import NodeContext
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.file import FileWalOptions, open_file_wal

STREAMS = 3


def body_for(n: int) -> bytes:
    rng = random.Random(n)
    return b"%d|" % n + rng.randbytes(rng.randrange(0, 3000))


async def open_engine(data_dir: Path, epoch: int) -> StreamEngine:
    ctx = NodeContext(data_dir=data_dir, node_id=1, node_epoch=epoch)
    engine = StreamEngine(
        await open_file_wal(FileWalOptions(segment_bytes=256 * 1024), ctx),
        await open_file_store(FileObjectStoreOptions(), ctx),
        await open_local_metadata(LocalMetadataOptions(), ctx),
        EngineSettings(upload_threshold_bytes=200_000, upload_interval_ms=100, block_bytes=8192,
                       compaction_interval_ms=300, compaction_min_objects=3,
                       object_delete_delay_ms=0),
    )
    await engine.start()
    return engine


async def _writer(data_dir: Path, epoch: int, start: int) -> None:
    engine = await open_engine(data_dir, epoch)
    ids = list(engine.stream_ids())
    while len(ids) < STREAMS:
        ids.append(await engine.create_stream())
    streams = [await engine.open_stream(i, epoch) for i in ids]
    counter = start

    async def appender(k: int) -> None:
        nonlocal counter
        while True:
            n = counter
            counter += 1
            stream = streams[(n + k) % STREAMS]
            offset = await stream.append(body_for(n), 1 + n % 3)
            sys.stdout.write(f"{stream.id} {offset} {n}\n")
            sys.stdout.flush()

    await asyncio.gather(*(appender(k) for k in range(12)))


async def read_everything(data_dir: Path, epoch: int) -> dict[int, list[tuple[int, int, bytes]]]:
    engine = await open_engine(data_dir, epoch)
    out: dict[int, list[tuple[int, int, bytes]]] = {}
    for sid in engine.stream_ids():
        stream = await engine.open_stream(sid, epoch)
        batches: list[tuple[int, int, bytes]] = []
        position = stream.start_offset
        while position < stream.next_offset:
            got = await stream.fetch(position, max_bytes=1 << 20)
            for b in got:
                batches.append((b.base, b.count, bytes(b.payload)))
                position = b.end
        out[sid] = batches
    await engine.close()
    return out


def _drain(pipe: IO[bytes], lines: list[str], first: threading.Event) -> None:
    for raw in pipe:
        lines.append(raw.decode())
        first.set()


def crash_loop(data_dir: Path, rounds: int) -> int:
    acked: dict[tuple[int, int], int] = {}
    next_number = 0
    rng = random.Random(99)
    support = str(Path(__file__).resolve().parents[1])
    epoch = 10
    for round_ in range(rounds):
        epoch += 2
        proc = subprocess.Popen(
            [sys.executable, "-m", "sbtest.enginecrash", str(data_dir), str(epoch), str(next_number)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": support},
        )
        # Drain the pipe on a thread so the writer never blocks on it; the kill moment is
        # random *after* the first acknowledgement (start-up time varies with machine load).
        lines: list[str] = []
        first = threading.Event()
        assert proc.stdout is not None
        reader = threading.Thread(target=_drain, args=(proc.stdout, lines, first), daemon=True)
        reader.start()
        first.wait(timeout=30)
        time.sleep(rng.uniform(0.02, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        proc.stdout.close()
        if not lines:
            raise AssertionError(f"round {round_}: the writer acknowledged nothing")
        for line in lines:
            parts = line.split()
            if line.endswith("\n") and len(parts) == 3:  # the last line may be cut by the kill
                acked[(int(parts[0]), int(parts[1]))] = int(parts[2])
                next_number = max(next_number, int(parts[2]) + 1)
        next_number += 100_000
        data = asyncio.run(read_everything(data_dir, epoch + 1))
        seen_numbers: set[int] = set()
        for sid, batches in data.items():
            expected = batches[0][0] if batches else 0
            for base, count, payload in batches:
                assert base == expected, f"round {round_}: stream {sid} offsets not dense at {base}"
                expected = base + count
                number = int(payload.split(b"|", 1)[0])
                assert payload == body_for(number), f"stream {sid} offset {base}: wrong bytes"
                assert number not in seen_numbers, f"record {number} appears twice"
                seen_numbers.add(number)
        stored = {(sid, base): payload for sid, batches in data.items() for base, _, payload in batches}
        for (sid, offset), number in acked.items():
            assert stored.get((sid, offset)) == body_for(number), (
                f"round {round_}: acknowledged record {number} at {sid}/{offset} lost")
    return len(acked)


if __name__ == "__main__":
    asyncio.run(_writer(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
