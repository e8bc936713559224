"""WAL benchmark: append latency at fixed rates and maximum throughput, WAL types side by side.

Every WAL is opened through the plugin host exactly as the broker opens it, in a temporary directory
on the same disk, one after the other in the same run.

    .venv/bin/python benchmarks/wal_bench.py                    # file and ebs WALs
    .venv/bin/python benchmarks/wal_bench.py --types file ebs --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from streambed.core.context import NodeContext
from streambed.core.plugins import PluginHost

args_capacity = 1024**3


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def open_wal(wal_type: str, root: Path) -> Any:
    impl = PluginHost.load().registries.wal.get(wal_type)
    if impl is None:
        raise SystemExit(f"WAL type {wal_type!r} is not installed (see `streambed plugins`)")
    options: dict[str, Any] = {"capacity_bytes": args_capacity} if wal_type in ("file", "ebs") else {}
    wal = await impl.factory(impl.options_model.model_validate(options),
                             NodeContext(data_dir=root, node_id=1, node_epoch=1))
    async for _ in wal.recover():
        pass
    await wal.start()
    return wal


async def fixed_rate(wal: Any, record: int, rate_mb_s: float, seconds: float) -> tuple[float, float]:
    body = os.urandom(record)
    interval = record / (rate_mb_s * 1e6)
    latencies: list[float] = []
    tasks = []

    async def one() -> None:
        start = time.perf_counter()
        offset = await wal.append(body)
        latencies.append(time.perf_counter() - start)
        if len(latencies) % 256 == 0:  # the engine trims after each upload; keep usage bounded
            await wal.trim(offset + 1)

    began = time.perf_counter()
    for i in range(int(seconds / interval)):
        delay = began + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return pct(latencies, 0.5), pct(latencies, 0.99)


async def max_throughput(wal: Any, record: int, appenders: int, seconds: float) -> float:
    body = os.urandom(record)
    deadline = time.perf_counter() + seconds
    total = 0

    async def appender() -> None:
        nonlocal total
        while time.perf_counter() < deadline:
            offset = await wal.append(body)
            total += record
            if total % (256 * record) == 0:
                await wal.trim(offset + 1)

    began = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    return total / (time.perf_counter() - began) / 1e6


async def main(args: argparse.Namespace) -> None:
    print(f"# WAL benchmark — {platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, "
          f"{args.record // 1024} KiB records")
    print()
    header = " | ".join(f"p50 / p99 ms at {r:g} MB/s" for r in args.rates)
    print(f"| WAL | {header} | max MB/s (64 KiB x{args.appenders}) |")
    print("|---|" + "---|" * (len(args.rates) + 1))
    for wal_type in args.types:
        cells = []
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            wal = await open_wal(wal_type, Path(tmp))
            try:
                for rate in args.rates:
                    p50, p99 = await fixed_rate(wal, args.record, rate, args.seconds)
                    cells.append(f"{p50:.2f} / {p99:.2f}")
                best = await max_throughput(wal, 64 * 1024, args.appenders, args.seconds)
            finally:
                await wal.close()
        print(f"| {wal_type} | " + " | ".join(cells) + f" | {best:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["file", "ebs"], help="WAL types to compare")
    parser.add_argument("--rates", nargs="+", type=float, default=[1, 10, 50], help="MB/s offered")
    parser.add_argument("--record", type=int, default=16 * 1024, help="record size in bytes")
    parser.add_argument("--appenders", type=int, default=32, help="concurrent appenders (max case)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each case")
    parser.add_argument("--dir", default=None, help="where the WALs live (default: system tmp)")
    asyncio.run(main(parser.parse_args()))
