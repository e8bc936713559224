"""Writer process of the file WAL crash test (``test_file_wal_crash.py``); killed with SIGKILL.

    python _crash_writer.py WAL_DIR FIRST_NUMBER

Opens the WAL (recovering whatever the previous, killed writer left), then appends records from
many concurrent appenders as fast as it can. Record ``n`` has the body :func:`body_for` (n). It
reports on stdout, one ``os.write`` per line (atomic on a pipe, so a kill never cuts a line):

    S <end offset> <trim offset>       started: where the log continues
    A <offset> <n> <digest of body>    append of record n acknowledged at offset
    T <offset>                         about to trim to offset (records below may disappear)

It trims now and then, as the engine does after uploads, so the log keeps a few MiB and recovery
crosses segment rolls, spares and trims.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
from pathlib import Path

from streambed.core.context import NodeContext
from streambed.core.wal.file import FileWalOptions, open_file_wal

APPENDERS = 32
KEEP_BYTES = 1024 * 1024
OPTIONS = {"segment_bytes": 256 * 1024, "capacity_bytes": 16 * 1024 * 1024, "full_timeout_ms": 5000}


def body_for(n: int) -> bytes:
    rng = random.Random(n)
    return b"rec-%d-" % n + rng.randbytes(rng.randrange(0, 2000))


def digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def say(line: str) -> None:
    os.write(1, line.encode() + b"\n")


async def main(directory: Path, first_number: int) -> None:
    wal = await open_file_wal(FileWalOptions(dir=directory, **OPTIONS),
                              NodeContext(data_dir=directory.parent))
    async for _ in wal.recover():
        pass
    await wal.start()
    say(f"S {wal.end_offset} {wal.trim_offset}")
    counter = first_number

    async def appender() -> None:
        nonlocal counter
        while True:
            n = counter
            counter += 1
            body = body_for(n)
            offset = await wal.append(body)
            say(f"A {offset} {n} {digest(body)}")

    async def trimmer() -> None:
        while True:
            await asyncio.sleep(0.03)
            if wal.end_offset - wal.trim_offset > 2 * KEEP_BYTES:
                target = wal.end_offset - KEEP_BYTES
                say(f"T {target}")  # before trimming: the parent must never expect more than is kept
                await wal.trim(target)

    await asyncio.gather(trimmer(), *(appender() for _ in range(APPENDERS)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
