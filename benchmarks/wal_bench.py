"""WAL microbenchmark: throughput and append latency, closed loop and at a fixed offered rate.

Each WAL is opened through the plugin host exactly as the broker opens it, in a fresh temporary
directory (``--dir``, on the disk you care about), and trimmed every ``--trim-every-mb`` as the
engine trims after uploads. Latency is measured from the ``append`` call to its return (durable).

Closed loop (default): ``--appenders`` concurrent appenders append ``--sizes`` bodies back to back
for ``--seconds``; prints MB/s, appends/s, p50/p99/max latency and appends per sync (group commit).

Fixed rate (``--rate-mbps R ...``): appends of ``--record`` bytes are started on a fixed schedule
(open loop: a slow append does not slow the schedule), so p99 shows what a producer at that rate sees.

``--warmup-mb`` first writes and trims that much at full speed: the file WAL then runs on reused
segments, as it does in a broker that has been up for a while. ``--warmup-mb 0`` measures a cold WAL.

    .venv/bin/python benchmarks/wal_bench.py --dir .work
    .venv/bin/python benchmarks/wal_bench.py --dir .work --rate-mbps 10 50 --record 65536
    .venv/bin/python benchmarks/wal_bench.py --types file ebs --option max_batch_delay_us=200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from streambed.core.context import NodeContext
from streambed.core.plugins import PluginHost

MB = 1e6


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


class Trimmer:
    """Trims the WAL to the newest acknowledged offset every `every` bytes, off the append path."""

    def __init__(self, wal: Any, every: int) -> None:
        self.wal = wal
        self.every = every
        self.since = 0
        self.last = -1
        self.tasks: set[asyncio.Task[None]] = set()

    def acked(self, offset: int, size: int) -> None:
        self.last = max(self.last, offset)
        self.since += size
        if self.since >= self.every:
            self.since = 0
            task = asyncio.create_task(self.wal.trim(self.last + 1))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks)


async def open_wal(wal_type: str, root: Path, options: dict[str, Any]) -> Any:
    impl = PluginHost.load().registries.wal.get(wal_type)
    if impl is None:
        raise SystemExit(f"WAL type {wal_type!r} is not installed (see `streambed plugins`)")
    wal = await impl.factory(impl.options_model.model_validate(options),
                             NodeContext(data_dir=root, node_id=1, node_epoch=1))
    async for _ in wal.recover():
        pass
    await wal.start()
    return wal


async def closed_loop(wal: Any, size: int, appenders: int, seconds: float, trim_every: int) -> dict[str, float]:
    body = os.urandom(size)
    latencies: list[float] = []
    trimmer = Trimmer(wal, trim_every)
    before = wal.stats()
    deadline = time.perf_counter() + seconds

    async def appender() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            offset = await wal.append(body)
            latencies.append(time.perf_counter() - began)
            trimmer.acked(offset, size)

    began = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - began
    await trimmer.drain()
    after = wal.stats()
    syncs = max(1, after.syncs - before.syncs)
    return {"mbps": len(latencies) * size / elapsed / MB, "rate": len(latencies) / elapsed,
            "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "max": pct(latencies, 1.0),
            "per_sync": (after.appends - before.appends) / syncs}


async def fixed_rate(wal: Any, size: int, rate_mbps: float, seconds: float, trim_every: int) -> dict[str, float]:
    body = os.urandom(size)
    interval = size / (rate_mbps * MB)
    latencies: list[float] = []
    trimmer = Trimmer(wal, trim_every)
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        began = time.perf_counter()
        offset = await wal.append(body)
        latencies.append(time.perf_counter() - began)
        trimmer.acked(offset, size)

    began = time.perf_counter()
    for i in range(max(1, int(seconds / interval))):
        delay = began + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    await trimmer.drain()
    return {"mbps": len(latencies) * size / elapsed / MB, "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99), "max": pct(latencies, 1.0)}


async def with_wal(args: argparse.Namespace, wal_type: str,
                   run: Callable[[Any], Awaitable[None]]) -> None:
    options = dict(args.option)
    if wal_type in ("file", "ebs", "memory"):
        options.setdefault("capacity_bytes", args.capacity_mb * 1024 * 1024)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        wal = await open_wal(wal_type, Path(tmp), options)
        try:
            if args.warmup_mb:
                await warm_up(wal, args.warmup_mb, args.trim_every_mb)
            await run(wal)
        finally:
            await wal.close()


async def warm_up(wal: Any, megabytes: int, trim_every_mb: int) -> None:
    body = os.urandom(256 * 1024)
    trimmer = Trimmer(wal, trim_every_mb * 1024 * 1024)
    remaining = megabytes * 1024 * 1024 // len(body)

    async def appender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            trimmer.acked(await wal.append(body), len(body))

    await asyncio.gather(*(appender() for _ in range(16)))
    await trimmer.drain()


async def main(args: argparse.Namespace) -> None:
    opts = f", options {json.dumps(dict(args.option))}" if args.option else ""
    print(f"# WAL benchmark: {platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, "
          f"warm-up {args.warmup_mb} MB, trim every {args.trim_every_mb} MiB{opts}")
    print()
    trim_every = args.trim_every_mb * 1024 * 1024
    if args.rate_mbps:
        print(f"Fixed rate, {args.record // 1024} KiB appends, {args.seconds:g} s each:")
        print()
        print("| WAL | offered MB/s | achieved MB/s | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        for wal_type in args.types:
            async def rates(wal: Any, wal_type: str = wal_type) -> None:
                for rate in args.rate_mbps:
                    r = await fixed_rate(wal, args.record, rate, args.seconds, trim_every)
                    print(f"| {wal_type} | {rate:g} | {r['mbps']:.1f} | {r['p50']:.2f} | "
                          f"{r['p99']:.2f} | {r['max']:.2f} |", flush=True)
            await with_wal(args, wal_type, rates)
        return
    print(f"Closed loop, {args.appenders} concurrent appenders, {args.seconds:g} s each:")
    print()
    print("| WAL | body | MB/s | appends/s | p50 ms | p99 ms | max ms | appends per sync |")
    print("|---|---|---|---|---|---|---|---|")
    for wal_type in args.types:
        async def sizes(wal: Any, wal_type: str = wal_type) -> None:
            for size in args.sizes:
                r = await closed_loop(wal, size, args.appenders, args.seconds, trim_every)
                label = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
                print(f"| {wal_type} | {label} | {r['mbps']:.1f} | {r['rate']:,.0f} | {r['p50']:.2f} | "
                      f"{r['p99']:.2f} | {r['max']:.2f} | {r['per_sync']:.1f} |", flush=True)
        await with_wal(args, wal_type, sizes)


def option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["file"], help="WAL types (default: file)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024, 256 * 1024],
                        help="body sizes of the closed-loop runs (default: 1 KiB and 256 KiB)")
    parser.add_argument("--appenders", type=int, default=32, help="concurrent appenders (closed loop)")
    parser.add_argument("--rate-mbps", nargs="+", type=float, default=[],
                        help="fixed offered rates in MB/s (switches to fixed-rate mode)")
    parser.add_argument("--record", type=int, default=64 * 1024, help="body size at a fixed rate")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each case")
    parser.add_argument("--warmup-mb", type=int, default=256,
                        help="MB written and trimmed before measuring (0: a cold WAL)")
    parser.add_argument("--trim-every-mb", type=int, default=16, help="trim after this many MiB")
    parser.add_argument("--capacity-mb", type=int, default=1024, help="WAL capacity in MiB")
    parser.add_argument("--option", type=option, action="append", default=[],
                        help="a WAL option KEY=VALUE (JSON value), e.g. max_batch_delay_us=200")
    parser.add_argument("--dir", default=None, help="where the WALs live (default: system tmp)")
    asyncio.run(main(parser.parse_args()))
