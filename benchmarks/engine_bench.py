"""Stream engine benchmark: append throughput/latency, fixed-rate latency, cold and tail reads.

Runs the engine in-process on the embedded default media (file WAL with fsync, local object
directory, SQLite metadata) in a temporary directory, and prints a Markdown table.

    .venv/bin/python benchmarks/engine_bench.py            # full run (~1 minute)
    .venv/bin/python benchmarks/engine_bench.py --quick    # a few seconds per case
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

from streambed.core.context import NodeContext
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.file import FileWalOptions, open_file_wal

MiB = 1024 * 1024


async def open_engine(root: Path, epoch: int, **settings: int) -> StreamEngine:
    ctx = NodeContext(data_dir=root, node_id=1, node_epoch=epoch)
    engine = StreamEngine(
        await open_file_wal(FileWalOptions(), ctx),
        await open_file_store(FileObjectStoreOptions(), ctx),
        await open_local_metadata(LocalMetadataOptions(), ctx),
        EngineSettings(**settings),  # type: ignore[arg-type]
    )
    await engine.start()
    return engine


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def append_case(root: Path, size: int, appenders: int, seconds: float) -> dict[str, float]:
    engine = await open_engine(root, 1)
    streams = [await engine.open_stream(await engine.create_stream(), 1) for _ in range(4)]
    payload = os.urandom(size)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    total = 0

    async def appender(k: int) -> None:
        nonlocal total
        stream = streams[k % len(streams)]
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await stream.append(payload, 1)
            latencies.append(time.perf_counter() - start)
            total += size

    began = time.perf_counter()
    await asyncio.gather(*(appender(k) for k in range(appenders)))
    elapsed = time.perf_counter() - began
    await engine.close()
    return {"mb_s": total / elapsed / 1e6, "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
            "n": len(latencies)}


async def fixed_rate_case(root: Path, size: int, rate_mb_s: float, seconds: float) -> dict[str, float]:
    engine = await open_engine(root, 2)
    stream = await engine.open_stream(await engine.create_stream(), 2)
    payload = os.urandom(size)
    interval = size / (rate_mb_s * 1e6)
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        start = time.perf_counter()
        await stream.append(payload, 1)
        latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    n = int(seconds / interval)
    for i in range(n):
        target = began + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    achieved = n * size / (time.perf_counter() - began) / 1e6
    await engine.close()
    return {"mb_s": achieved, "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "n": n}


async def read_cases(root: Path, total_mb: int) -> dict[str, float]:
    engine = await open_engine(root, 3, upload_threshold_bytes=64 * MiB)
    sid = await engine.create_stream()
    stream = await engine.open_stream(sid, 3)
    payload = os.urandom(256 * 1024)
    sem = asyncio.Semaphore(16)

    async def put() -> None:
        async with sem:
            await stream.append(payload, 1)

    await asyncio.gather(*(put() for _ in range(total_mb * 4)))
    await engine.upload()
    # Tail reads: the newest batch, from the log cache.
    tail: list[float] = []
    for _ in range(2000):
        start = time.perf_counter()
        await stream.fetch(stream.next_offset - 1, max_bytes=1)
        tail.append(time.perf_counter() - start)
    await engine.close()
    # Cold reads: a fresh engine (empty caches) reads the whole stream from objects.
    engine = await open_engine(root, 4)
    stream = await engine.open_stream(sid, 4)
    began = time.perf_counter()
    position, read = 0, 0
    while position < stream.next_offset:
        batches = await stream.fetch(position, max_bytes=8 * MiB)
        read += sum(len(b.payload) for b in batches)
        position = batches[-1].end
    cold = read / (time.perf_counter() - began) / 1e6
    await engine.close()
    return {"cold_mb_s": cold, "tail_p50_us": pct(tail, 0.5) * 1000, "tail_p99_us": pct(tail, 0.99) * 1000}


async def main(args: argparse.Namespace) -> None:
    seconds = 2.0 if args.quick else args.seconds
    print(f"# streambed engine benchmark — {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print()
    print("| case | MB/s | p50 ms | p99 ms | appends |")
    print("|---|---|---|---|---|")
    for size, appenders in [(1024, 64), (256 * 1024, 16)]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            r = await append_case(Path(tmp), size, appenders, seconds)
        print(f"| append {size // 1024} KiB x{appenders} concurrent | {r['mb_s']:.1f} | "
              f"{r['p50']:.2f} | {r['p99']:.2f} | {r['n']:.0f} |")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        r = await fixed_rate_case(Path(tmp), 64 * 1024, args.rate, seconds)
    print(f"| append 64 KiB at {args.rate:.0f} MB/s offered | {r['mb_s']:.1f} | {r['p50']:.2f} | "
          f"{r['p99']:.2f} | {r['n']:.0f} |")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        r = await read_cases(Path(tmp), 64 if args.quick else args.read_mb)
    print()
    print("| read | result |")
    print("|---|---|")
    print(f"| cold sequential read from the local object store | {r['cold_mb_s']:.0f} MB/s |")
    print(f"| tail read (newest batch, log cache) p50 / p99 | {r['tail_p50_us']:.0f} / "
          f"{r['tail_p99_us']:.0f} µs |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each append case")
    parser.add_argument("--rate", type=float, default=50.0, help="offered MB/s of the fixed-rate case")
    parser.add_argument("--read-mb", type=int, default=256, help="MiB written then read cold")
    parser.add_argument("--dir", default=None, help="where temporary data goes (default: system tmp)")
    parser.add_argument("--quick", action="store_true", help="short run for a smoke test")
    asyncio.run(main(parser.parse_args()))
