"""streambed vs Apache Kafka 4.3.1, side by side, with Kafka's own performance tools.

Each system runs alone (one after the other, never concurrently: the machine may have only a few
cores) and gets the same client runs, with the Java tools from the kafka-tools 4.3.1 jar:

1. producer maximum throughput: ``ProducerPerformance --throughput -1`` with ``acks=all``;
2. consumer throughput: ``ConsumerPerformance`` reading what (1) produced;
3. produce latency at a fixed offered rate (default 20 MiB/s of 1 KiB records), three times (each
   a new producer with its own warm-up; the table shows the run with the median p99). Before them
   the script waits for the broker to go idle (streambed's uploads after case 1) and times small
   write + fdatasync calls in the broker's data directory for 10 s: a produce p99 with an fsync
   per acknowledgement cannot be lower than what the disk gives at that moment, and a virtual
   disk's latency comes and goes (stalls of 100-900 ms were seen on this machine's disk with
   nothing else running; the probe says how much of the slow calls' time the block device spent
   completing writes and how much flushing its cache). For streambed each run also reports the broker's own view: its
   produce latency histogram (the metrics endpoint) scraped before and after the run.

Systems: ``streambed`` (a ``streambed broker`` process on the embedded default storage: file WAL
with fdatasync before every acknowledgement, local object directory, SQLite metadata), ``kafka``
(Apache Kafka 4.3.1 in KRaft combined mode, default flushing: the page cache, no fsync before the
acknowledgement) and ``kafka-flush`` (the same with ``log.flush.interval.messages=1``: an fsync for
every append, the durability streambed gives).

    .venv/bin/python benchmarks/kafka_compare.py                 # ~17 minutes on an idle 2-core machine
    .venv/bin/python benchmarks/kafka_compare.py --quick         # smoke run, a few minutes
    .venv/bin/python benchmarks/kafka_compare.py --systems streambed,kafka --records 200000

Needs ``java`` and ``mvn`` (the jars are fetched from Maven Central into ~/.cache/streambed once,
by ``tests/support/sbtest/java.py``). Prints a Markdown table and writes every parsed number as JSON
(default ``benchmarks/.results/kafka_compare.json``, ignored by git). With ``--plot FILE.svg`` it also
draws an SVG bar chart (``benchmarks/svgplot.py``; no plotting library needed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sbtest.broker import BrokerProcess, free_port  # noqa: E402
from sbtest.java import KAFKA_VERSION, java_available, java_command, kafka_libs  # noqa: E402

SYSTEMS = ("streambed", "kafka", "kafka-flush")
CASES = ("produce", "latency", "consume")
MiB = 1024 * 1024

# Kafka's kafka-server-start.sh / kafka-run-class.sh defaults, so the broker runs as it would
# from the distribution.
KAFKA_JVM = [
    "-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
]

PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) (?P<steady>steady state )?records sent, (?P<records_per_s>[\d.]+) records/sec "
    r"\((?P<mb_per_s>[\d.]+) MB/sec\), (?P<avg_ms>[\d.]+) ms avg latency, "
    r"(?P<max_ms>[\d.]+) ms max latency, (?P<p50_ms>[\d.]+) ms 50th, (?P<p95_ms>[\d.]+) ms 95th, "
    r"(?P<p99_ms>[\d.]+) ms 99th, (?P<p999_ms>[\d.]+) ms 99\.9th"
)


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"port {port} not open after {timeout} s:\n{tail(log)}")


class KafkaServer:
    """Apache Kafka in KRaft combined mode (broker + controller, node 1) from the Maven jars."""

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.stdout_path = workdir / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **(extra or {}),
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.properties = workdir / "server.properties"
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log4j = workdir / "log4j2.properties"
        self.log4j.write_text(
            "status = error\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_path}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
        )

    def _java(self, main: str, *args: str, jvm: list[str]) -> list[str]:
        libs = kafka_libs()
        return ["java", *jvm, f"-Dlog4j2.configurationFile={self.log4j}",
                "-cp", f"{libs}/*", main, *args]

    def start(self, timeout: float = 120) -> KafkaServer:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                         f"--config={self.properties}", "--standalone", jvm=["-Xmx256m"])
        done = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{done.stdout}\n{done.stderr}")
        with self.stdout_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties), jvm=KAFKA_JVM),
                stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
            )
        # The port opens before the broker has caught up with its metadata log: the first admin
        # request (topic creation, which retries) waits for that.
        wait_for_port(self.port, self.proc, timeout, self.stdout_path)
        return self

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        # The Maven class path pairs slf4j-api 1.7 with log4j's slf4j2 binding, so the broker's
        # own logging is a no-op: only what it prints to stdout/stderr is kept.
        return (tail(self.log_path, lines) + "\n" + tail(self.stdout_path, lines)).strip()


class Streambed:
    """A ``streambed broker`` process on the embedded default storage."""

    def __init__(self, workdir: Path) -> None:
        storage = json.loads(os.environ.get("STREAMBED_BENCH_STORAGE", "{}"))
        self.metrics_port = free_port()
        self.broker = BrokerProcess(workdir, storage=storage or None,
                                    broker={"metrics_listener": f"127.0.0.1:{self.metrics_port}"})
        self.bootstrap = self.broker.bootstrap
        wal_dir = storage.get("wal", {}).get("options", {}).get("dir")
        self.data_dir = Path(wal_dir) if wal_dir else workdir / "data"  # where the WAL syncs

    def start(self) -> Streambed:
        self.broker.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.broker.stop()

    @property
    def pid(self) -> int | None:
        return self.broker.proc.pid if self.broker.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return self.broker.log_tail(lines)

    def produce_histogram(self) -> dict[float, float]:
        """The broker's own produce latency histogram: ``{upper bound s: cumulative count}``."""
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        buckets: dict[float, float] = {}
        pattern = re.compile(r'^streambed_request_seconds_bucket\{api="Produce",le="([^"]+)"\} (\S+)$')
        for line in text.splitlines():
            match = pattern.match(line)
            if match:
                buckets[float(match[1])] = float(match[2])
        return buckets


def broker_side(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Produce requests the broker answered during a run (from two scrapes of its histogram):
    how many, the bucket that holds their p99, and how many took over 10 ms."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(math.inf, 0.0)
    if total <= 0:
        return {}
    p99 = next(le for le in sorted(delta) if delta[le] >= 0.99 * total)
    within_10ms = delta.get(0.01, 0.0)
    return {"requests": int(total), "p99_at_most_ms": p99 * 1000,
            "over_10ms": int(total - within_10ms),
            "summary": f"broker side: {int(total)} produce requests, p99 <= {p99 * 1000:g} ms, "
                       f"{int(total - within_10ms)} over 10 ms"}


@contextlib.contextmanager
def running(system: str, workdir: Path) -> Iterator[KafkaServer | Streambed]:
    server: KafkaServer | Streambed
    if system == "streambed":
        server = Streambed(workdir)
    elif system == "kafka":
        server = KafkaServer(workdir)
    else:
        server = KafkaServer(workdir, {"log.flush.interval.messages": "1"})
    started = time.monotonic()
    try:
        server.start()
        print(f"[{system}] started on {server.bootstrap} in {time.monotonic() - started:.1f} s",
              flush=True)
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- tools


def run_tool(cmd: list[str], timeout: float) -> tuple[int, str]:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    return done.returncode, done.stdout


def create_topic(bootstrap: str, topic: str, partitions: int, attempts: int = 3) -> str | None:
    """Create the topic with TopicCommand; returns None, or the tool's output when it failed."""
    out = ""
    for _ in range(attempts):
        code, out = run_tool(java_command(
            "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create",
            "--if-not-exists", "--topic", topic, "--partitions", str(partitions),
            "--replication-factor", "1", heap="256m"), timeout=120)
        if code == 0:
            return None
        time.sleep(1)
    return out.strip()


def describe_topic(bootstrap: str, topic: str) -> str:
    _, out = run_tool(java_command(
        "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--describe",
        "--topic", topic, heap="256m"), timeout=120)
    return "\n".join(line for line in out.strip().splitlines() if not line.startswith("SLF4J"))


def produce(bootstrap: str, topic: str, records: int, size: int, rate: int,
            extra_props: list[str], timeout: float, warmup: int = 0) -> dict[str, Any]:
    """One ProducerPerformance run of ``warmup + records`` records; the numbers are those of the
    last ``records`` (its steady-state summary) when ``warmup`` is set, so the client's JIT and
    the broker's first requests are not counted."""
    cmd = java_command(
        "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
        "--num-records", str(records + warmup), "--record-size", str(size),
        "--throughput", str(rate),
        *(["--warmup-records", str(warmup)] if warmup else []),
        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", *extra_props,
        heap="1g")
    started = time.monotonic()
    code, out = run_tool(cmd, timeout)
    result: dict[str, Any] = {"command": cmd[cmd.index("org.apache.kafka.tools.ProducerPerformance"):],
                              "exit_code": code, "wall_s": round(time.monotonic() - started, 2)}
    matches = list(PRODUCER_SUMMARY.finditer(out))
    if code != 0 or not matches:
        result["error"] = "\n".join(out.strip().splitlines()[-30:])
        return result
    final = matches[-1]
    result.update({k: (int(v) if k == "records" else float(v))
                   for k, v in final.groupdict().items() if k != "steady"})
    result["summary"] = final.group(0)
    if warmup:
        result["whole_run_summary"] = next(
            (m.group(0) for m in reversed(matches) if m.group("steady") is None), None)
    result["windows"] = [line for line in out.splitlines()
                         if re.match(r"\d+ records sent, [\d.]+ records/sec", line)
                         and "50th" not in line]
    errors = [line for line in out.splitlines() if "Exception" in line or "ERROR" in line]
    if errors:
        result["client_errors"] = errors[:10]
    return result


def consume(bootstrap: str, topic: str, records: int, timeout: float) -> dict[str, Any]:
    cmd = java_command(
        "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap,
        "--topic", topic, "--num-records", str(records), "--timeout", "60000",
        "--group", f"perf-{uuid.uuid4().hex[:8]}", heap="1g")
    started = time.monotonic()
    code, out = run_tool(cmd, timeout)
    result: dict[str, Any] = {"command": cmd[cmd.index("org.apache.kafka.tools.ConsumerPerformance"):],
                              "exit_code": code, "wall_s": round(time.monotonic() - started, 2)}
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if line.startswith("start.time")), None)
    if code != 0 or header_at is None or header_at + 1 >= len(lines):
        result["error"] = "\n".join(lines[-30:])
        return result
    names = [n.strip() for n in lines[header_at].split(",")]
    values = [v.strip() for v in lines[header_at + 1].split(",")]
    parsed = dict(zip(names, values, strict=False))
    for key, value in parsed.items():
        with contextlib.suppress(ValueError):
            parsed[key] = float(value)  # type: ignore[assignment]
    result["raw"] = parsed
    result["mb_consumed"] = parsed.get("data.consumed.in.MB")
    result["records"] = parsed.get("data.consumed.in.nMsg")
    result["mb_per_s"] = parsed.get("MB.sec")
    result["records_per_s"] = parsed.get("nMsg.sec")
    result["fetch_mb_per_s"] = parsed.get("fetch.MB.sec")
    result["fetch_records_per_s"] = parsed.get("fetch.nMsg.sec")
    result["rebalance_ms"] = parsed.get("rebalance.time.ms")
    if result["records"] is not None and result["records"] < records:
        result["error"] = f"consumed {result['records']:.0f} of {records} records"
    return result


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks, sum(fields[:8]) / ticks


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy(seconds: float = 2.0) -> float:
    """Cores busy over the next ``seconds`` (all processes)."""
    busy0, _ = machine_cpu()
    time.sleep(seconds)
    busy1, _ = machine_cpu()
    return (busy1 - busy0) / seconds


def wait_until_idle(limit_s: float, threshold: float) -> dict[str, Any]:
    """Wait (at most ``limit_s``) until the machine is nearly idle: other sessions' work on a
    shared machine changes every number here."""
    started = time.monotonic()
    busy = machine_busy()
    while busy > threshold and time.monotonic() - started < limit_s:
        busy = machine_busy(5.0)
    return {"busy_cores_before": round(busy, 2), "waited_s": round(time.monotonic() - started, 1)}


def settle(pid: int | None, limit_s: float, quiet_cores: float = 0.05) -> dict[str, Any]:
    """Wait (at most ``limit_s``) until the broker has used under ``quiet_cores`` for two
    seconds in a row: its background work after the maximum-rate case (streambed's uploads and
    compaction, Kafka's page-cache writeback is the kernel's) is done before latency is timed."""
    started = time.monotonic()
    quiet = 0
    cores = None
    while pid is not None and time.monotonic() - started < limit_s and quiet < 2:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        after = cpu_seconds(pid)
        if before is None or after is None:
            break
        cores = after - before
        quiet = quiet + 1 if cores < quiet_cores else 0
    return {"waited_s": round(time.monotonic() - started, 1),
            "cpu_cores": None if cores is None else round(cores, 2)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median p99 (failed runs count as the slowest)."""
    ranked = sorted(runs, key=lambda r: r.get("p99_ms", float("inf")) if "error" not in r
                    else float("inf"))
    return ranked[(len(ranked) - 1) // 2]


def block_device(directory: Path) -> str | None:
    """The name of the block device holding ``directory`` (``vda``), for /proc/diskstats, or
    None where that cannot be told (not Linux, a partition-less overlay, tmpfs)."""
    try:
        dev = os.stat(directory).st_dev
        link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        name = link.resolve().name
        return name if Path("/proc/diskstats").exists() else None
    except OSError:
        return None


def diskstats(device: str) -> tuple[int, int] | None:
    """Milliseconds the block layer has spent on writes and on flushes of ``device`` so far."""
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == device and len(fields) >= 20:
                return int(fields[10]), int(fields[19])
    return None


def disk_probe(directory: Path, seconds: float, rate: float, size: int = 16 * 1024) -> dict[str, Any]:
    """Write + fdatasync ``size`` bytes ``rate`` times a second for ``seconds`` in ``directory``
    (overwriting a preallocated file, as the WAL does), with nothing else running: how long the
    disk itself takes to make a small write durable right now. A produce p99 with an fsync per
    acknowledgement cannot be below what the disk gives at that moment.

    For every call over 10 ms it also reads the block layer's counters (/proc/diskstats) before
    and after, so the summary says where the time went: in the device's write completions, in its
    cache flushes, or in neither (the kernel or the CPU)."""
    if seconds <= 0:
        return {}
    path = directory / "disk-probe.tmp"
    lat: list[float] = []
    device = block_device(directory)
    slow_ms = write_ms = flush_ms = 0.0
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            span = 16 * MiB
            for at in range(0, span, MiB):
                os.pwrite(fd, bytes(MiB), at)
            os.fsync(fd)
            data = os.urandom(size)
            start = time.monotonic()
            count = int(seconds * rate)
            for i in range(count):
                before = diskstats(device) if device else None
                began = time.perf_counter()
                os.pwrite(fd, data, (i * size) % span)
                os.fdatasync(fd)
                took = (time.perf_counter() - began) * 1000
                lat.append(took)
                if took > 10 and before is not None:
                    after = diskstats(device) if device else None
                    if after is not None:
                        slow_ms += took
                        # the call's own I/O, capped at its duration (other writers add to the sums)
                        write_ms += min(took, after[0] - before[0])
                        flush_ms += min(took, after[1] - before[1])
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
    except OSError as exc:
        return {"error": f"disk probe failed: {exc}"}
    lat.sort()
    n = len(lat)
    result: dict[str, Any] = {"fdatasyncs": n, "p50_ms": round(lat[n // 2], 2), "p99_ms": round(lat[int(n * 0.99)], 2),
              "max_ms": round(lat[-1], 1), "over_10ms": sum(x > 10 for x in lat)}
    result["summary"] = (f"{n} x 16 KiB write + fdatasync: p50 {result['p50_ms']} ms, p99 "
                         f"{result['p99_ms']} ms, max {result['max_ms']} ms, "
                         f"{result['over_10ms']} over 10 ms")
    if device and slow_ms:
        result["slow_calls_ms"] = round(slow_ms)
        result["slow_device_write_ms"] = round(write_ms)
        result["slow_device_flush_ms"] = round(flush_ms)
        result["summary"] += (f"; of their {slow_ms:.0f} ms the block device ({device}) spent "
                              f"{write_ms:.0f} ms completing writes and {flush_ms:.0f} ms "
                              f"flushing its cache")
    return result


def measured(server: KafkaServer | Streambed, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one client tool, adding the CPU used over the run: by the broker, by the client tool
    and by everything else on the machine (a sign of a noisy neighbour)."""
    pid = server.pid
    before = cpu_seconds(pid) if pid else None
    client0 = children_cpu()
    busy0, _ = machine_cpu()
    result: dict[str, Any] = fn(*args, **kwargs)
    busy1, _ = machine_cpu()
    client = children_cpu() - client0
    after = cpu_seconds(pid) if pid else None
    wall = result.get("wall_s") or 0
    if before is not None and after is not None and wall:
        broker = after - before
        result["broker_cpu_cores"] = round(broker / wall, 2)
        result["client_cpu_cores"] = round(client / wall, 2)
        result["other_cpu_cores"] = round(max(0.0, (busy1 - busy0 - broker - client) / wall), 2)
    return result


# --------------------------------------------------------------------------- the run


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "kafka_version": KAFKA_VERSION,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["java"] = subprocess.run(["java", "-version"], capture_output=True, text=True,
                                      check=False).stderr.splitlines()[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, check=False).stdout.strip()
    return info


def filesystem(path: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True,
                             check=False).stdout.splitlines()
        if len(out) > 1:
            fields = out[1].split()
            return f"{fields[1]} ({fields[0]})"
    return "unknown"


def run_system(system: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system}
    cases = set(args.cases)
    if system == "kafka-flush":
        cases.discard("consume")  # the same log format and page cache as "kafka"
    rate = int(args.rate_mib * MiB / args.record_size)
    props = list(args.producer_prop)
    if args.wait_idle:
        out["idle"] = wait_until_idle(args.wait_idle, args.idle_threshold)
        print(f"[{system}] machine busy {out['idle']['busy_cores_before']} cores "
              f"(waited {out['idle']['waited_s']} s)", flush=True)

    def report(case: str, server: KafkaServer | Streambed, line: str) -> None:
        r = out[case]
        print(f"[{system}]   {line if 'error' not in r else 'FAILED: ' + r['error']}", flush=True)
        cpu = {k: r[k] for k in ("broker_cpu_cores", "client_cpu_cores", "other_cpu_cores") if k in r}
        if cpu:
            print(f"[{system}]   cpu cores: {cpu}", flush=True)
        if "error" in r:
            r["broker_log_tail"] = server.log_tail()

    try:
        with running(system, workdir / system) as server:
            out["bootstrap"] = server.bootstrap
            for topic in ("bench-max", "bench-rate"):
                failure = create_topic(server.bootstrap, topic, args.partitions)
                if failure is not None:
                    out.setdefault("topic_errors", {})[topic] = failure
                    print(f"[{system}] creating {topic} failed (produce auto-creates it):\n"
                          f"{failure}", flush=True)
            out["topic"] = describe_topic(server.bootstrap, "bench-max")
            produced = 0
            if "produce" in cases or "consume" in cases:
                print(f"[{system}] produce: {args.warmup} warm-up + {args.records} records, "
                      "max rate", flush=True)
                out["produce"] = measured(server, produce, server.bootstrap, "bench-max",
                                          args.records, args.record_size, -1, props, args.timeout,
                                          warmup=args.warmup)
                produced = args.records + args.warmup
                report("produce", server, out["produce"].get("summary", ""))
            if "consume" in cases:
                print(f"[{system}] consume: {produced} records", flush=True)
                out["consume"] = measured(server, consume, server.bootstrap, "bench-max",
                                          produced, args.timeout)
                c = out["consume"]
                report("consume", server, f"{c.get('fetch_mb_per_s')} MB/s while fetching, "
                       f"{c.get('mb_per_s')} MB/s including the group join")
            if "latency" in cases:
                n = args.rate_records or int(rate * args.rate_seconds)
                warm = int(rate * args.rate_warmup_seconds)
                out["settle"] = settle(server.pid, args.settle_seconds)
                print(f"[{system}] broker idle after {out['settle']['waited_s']} s "
                      f"({out['settle']['cpu_cores']} cores at the end)", flush=True)
                probe = disk_probe(server.data_dir, args.disk_probe_seconds, rate // 15)
                out["disk_probe"] = probe
                print(f"[{system}] disk: {probe.get('summary', probe.get('error'))}", flush=True)
                repeats = []
                for i in range(args.rate_repeats):
                    print(f"[{system}] latency {i + 1}/{args.rate_repeats}: {warm} warm-up + {n} "
                          f"records at {rate} records/s", flush=True)
                    before = (server.produce_histogram() if isinstance(server, Streambed)
                              else None)
                    r = measured(server, produce, server.bootstrap, "bench-rate", n,
                                 args.record_size, rate, props, args.timeout, warmup=warm)
                    r["offered_records_per_s"] = rate
                    if isinstance(server, Streambed) and before is not None:
                        # Includes the warm-up: the histogram cannot tell the two apart.
                        r["broker_side"] = broker_side(before, server.produce_histogram())
                    repeats.append(r)
                    out["latency"] = r
                    report("latency", server, r.get("summary", ""))
                    if r.get("broker_side"):
                        print(f"[{system}]   {r['broker_side']['summary']} (warm-up included)",
                              flush=True)
                out["latency"] = median_run(repeats)
                out["latency_p99s_ms"] = [r.get("p99_ms") for r in repeats]
                if len(repeats) > 1:
                    print(f"[{system}]   p99 of each repeat (ms): {out['latency_p99s_ms']}; "
                          "the table shows the median one", flush=True)
            out["data_bytes"] = sum(p.stat().st_size for p in (workdir / system).rglob("*")
                                    if p.is_file())
            out["broker_log_tail"] = server.log_tail(15)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        print(f"[{system}] FAILED: {out['error']}", flush=True)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def get(results: dict[str, Any], system: str, case: str, key: str) -> float | None:
    value = results.get(system, {}).get(case, {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def evaluate(results: dict[str, Any], rate_mib: float) -> dict[str, Any]:
    sb_rps = get(results, "streambed", "produce", "records_per_s")
    ratios = {
        "produce_vs_kafka": ratio(sb_rps, get(results, "kafka", "produce", "records_per_s")),
        "produce_vs_kafka_flush": ratio(sb_rps,
                                        get(results, "kafka-flush", "produce", "records_per_s")),
        "p99_at_rate_vs_kafka": ratio(get(results, "streambed", "latency", "p99_ms"),
                                      get(results, "kafka", "latency", "p99_ms")),
        "consume_vs_kafka": ratio(get(results, "streambed", "consume", "fetch_mb_per_s"),
                                  get(results, "kafka", "consume", "fetch_mb_per_s")),
        "consume_overall_vs_kafka": ratio(get(results, "streambed", "consume", "mb_per_s"),
                                          get(results, "kafka", "consume", "mb_per_s")),
    }

    def status(value: float | None, ok: bool | None) -> dict[str, Any]:
        return {"measured": value, "met": None if value is None else ok}

    p99 = get(results, "streambed", "latency", "p99_ms")
    achieved = get(results, "streambed", "latency", "mb_per_s")
    p99_ok = p99 is not None and p99 <= 10 and achieved is not None and achieved >= 0.95 * rate_mib
    targets = {
        "produce >= 0.5x Kafka default": status(ratios["produce_vs_kafka"],
                                                (ratios["produce_vs_kafka"] or 0) >= 0.5),
        "produce >= 1x Kafka flush-per-message": status(
            ratios["produce_vs_kafka_flush"], (ratios["produce_vs_kafka_flush"] or 0) >= 1.0),
        f"p99 <= 10 ms at {rate_mib:g} MB/s": status(p99, p99_ok),
        "consumer >= 0.5x Kafka": status(ratios["consume_vs_kafka"],
                                         (ratios["consume_vs_kafka"] or 0) >= 0.5),
    }
    return {"ratios": ratios, "targets": targets}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def cpu(r: dict[str, Any]) -> str:
    keys = ("broker_cpu_cores", "client_cpu_cores", "other_cpu_cores")
    return " / ".join(fmt(r.get(k), 2) for k in keys)


def markdown(results: dict[str, Any], summary: dict[str, Any], rate_mib: float) -> str:
    rows = ["| system | case | records/s | MB/s | avg ms | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | CPU cores: broker / client / others |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system in SYSTEMS:
        res = results.get(system)
        if not res:
            continue
        for case, label in (("produce", "produce, max rate"),
                            ("latency", f"produce at {rate_mib:g} MB/s")):
            r = res.get(case)
            if not r:
                continue
            if "error" in r:
                rows.append(f"| {system} | {label} | failed | | | | | | | | |")
                continue
            rows.append(
                f"| {system} | {label} | {fmt(r['records_per_s'])} | {fmt(r['mb_per_s'])} | "
                f"{fmt(r['avg_ms'])} | {fmt(r['p50_ms'], 0)} | {fmt(r['p95_ms'], 0)} | "
                f"{fmt(r['p99_ms'], 0)} | {fmt(r['p999_ms'], 0)} | {fmt(r['max_ms'], 0)} | "
                f"{cpu(r)} |")
    rows += ["", "| system | p99 ms of each latency run | disk before them: 16 KiB write + fdatasync p50 / p99 / max ms, calls over 10 ms (where their time went) |",
             "|---|---|---|"]
    for system in SYSTEMS:
        res = results.get(system, {})
        if "latency_p99s_ms" not in res:
            continue
        d = res.get("disk_probe") or {}
        disk = (f"{fmt(d.get('p50_ms'), 2)} / {fmt(d.get('p99_ms'), 2)} / {fmt(d.get('max_ms'), 0)}, "
                f"{d.get('over_10ms')} of {d.get('fdatasyncs')}" if "p50_ms" in d else "—")
        if d.get("slow_calls_ms"):
            disk += (f"; slow calls {fmt(d['slow_calls_ms'], 0)} ms: device writes "
                     f"{fmt(d['slow_device_write_ms'], 0)}, flushes {fmt(d['slow_device_flush_ms'], 0)}")
        runs = " / ".join(fmt(v, 0) for v in res["latency_p99s_ms"])
        rows.append(f"| {system} | {runs} | {disk} |")
    rows += ["", "| system | consumer MB/s (fetch) | MB/s (incl. group join) | records/s (fetch) | group join ms | CPU cores: broker / client / others |",
             "|---|---|---|---|---|---|"]
    for system in SYSTEMS:
        c = results.get(system, {}).get("consume")
        if not c:
            continue
        if "error" in c and c.get("fetch_mb_per_s") is None:
            rows.append(f"| {system} | failed | | | | |")
            continue
        rows.append(f"| {system} | {fmt(c['fetch_mb_per_s'])} | {fmt(c['mb_per_s'])} | "
                    f"{fmt(c['fetch_records_per_s'])} | {fmt(c['rebalance_ms'], 0)} | "
                    f"{cpu(c)} |")
    rows += ["", "| target | measured | status |", "|---|---|---|"]
    for name, t in summary["targets"].items():
        met = {True: "met", False: "not met", None: "not measured"}[t["met"]]
        unit = " ms" if name.startswith("p99") else "x"
        rows.append(f"| {name} | {fmt(t['measured'], 2)}{unit if t['measured'] is not None else ''} | {met} |")
    return "\n".join(rows)


def plot(results: dict[str, Any], path: Path, rate_mib: float) -> str:
    """An SVG bar chart of the run (no plotting library needed)."""
    from svgplot import Panel, bar_chart

    systems = [s for s in SYSTEMS if s in results]

    def values(case: str, key: str) -> dict[str, float]:
        return {s: float(v) for s in systems if (v := get(results, s, case, key)) is not None}

    svg = bar_chart(
        [
            Panel("produce MB/s (max)", values("produce", "mb_per_s")),
            Panel(f"p99 ms at {rate_mib:g} MB/s", values("latency", "p99_ms"), lower_is_better=True),
            Panel("consume MB/s", values("consume", "fetch_mb_per_s")),
        ],
        title="streambed vs Apache Kafka (ProducerPerformance / ConsumerPerformance, 1 KiB, acks=all)",
        width=300,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return f"plot written to {path} ({len(svg)} bytes)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400_000,
                        help="records per max-throughput produce run and consumer run (default 400000)")
    parser.add_argument("--record-size", type=int, default=1024, help="bytes per record (default 1024)")
    parser.add_argument("--rate-mib", type=float, default=20.0,
                        help="offered rate of the latency run, MiB/s (default 20 = 20480 1 KiB records/s)")
    parser.add_argument("--rate-seconds", type=float, default=20.0,
                        help="length of the latency run at the offered rate (default 20 s)")
    parser.add_argument("--rate-repeats", type=int, default=3,
                        help="latency runs per system (each with its own warm-up); the table shows "
                        "the run with the median p99, the JSON all of them (default 3)")
    parser.add_argument("--settle-seconds", type=float, default=90.0,
                        help="before the latency runs, wait up to this long for the broker to go "
                        "idle (its background work after the maximum-rate case; default 90)")
    parser.add_argument("--disk-probe-seconds", type=float, default=10.0,
                        help="before the latency runs, time small write + fdatasync calls in the "
                        "broker's data directory for this long (0: skip; default 10)")
    parser.add_argument("--rate-records", type=int, default=0,
                        help="records in the latency run (overrides --rate-seconds)")
    parser.add_argument("--warmup", type=int, default=50_000,
                        help="warm-up records before the max-rate produce run, not counted "
                        "(ProducerPerformance --warmup-records; default 50000)")
    parser.add_argument("--rate-warmup-seconds", type=float, default=10.0,
                        help="warm-up at the offered rate before the latency run, not counted "
                        "(default 10 s: Kafka's first seconds at the rate include JIT stalls)")
    parser.add_argument("--wait-idle", type=float, default=120.0,
                        help="before each system, wait up to this many seconds for the machine to "
                        "be idle (0: do not wait; default 120)")
    parser.add_argument("--idle-threshold", type=float, default=0.3,
                        help="cores busy (all processes) below which the machine counts as idle")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic (default 1)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, run in this order (default {','.join(SYSTEMS)})")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)} (kafka-flush never consumes)")
    parser.add_argument("--producer-prop", action="append", default=[], metavar="KEY=VALUE",
                        help="extra producer property for every produce run (repeatable)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the brokers keep their data (default: a temporary directory, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / ".results" / "kafka_compare.json",
                        help="JSON results path (default benchmarks/.results/kafka_compare.json)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="write an SVG bar chart here")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per tool run")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 30000 records (+10000 warm-up), 3 s (+1 s) at the offered rate")
    args = parser.parse_args()
    if args.quick:
        args.records, args.rate_seconds, args.warmup = 30_000, 3.0, 10_000
        args.rate_warmup_seconds, args.wait_idle = 1.0, min(args.wait_idle, 10.0)
        args.rate_repeats, args.disk_probe_seconds = 1, min(args.disk_probe_seconds, 2.0)
        args.settle_seconds = min(args.settle_seconds, 10.0)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for s in args.systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r} (choose from {', '.join(SYSTEMS)})")
    for c in args.cases:
        if c not in CASES:
            parser.error(f"unknown case {c!r} (choose from {', '.join(CASES)})")
    reason = java_available()
    if reason is not None:
        parser.error(f"needs Java and Maven: {reason}")
    kafka_libs()  # download before anything is timed

    base = args.dir or Path(tempfile.mkdtemp(prefix="kafka-compare-"))
    base.mkdir(parents=True, exist_ok=True)
    info = machine()
    info["filesystem"] = filesystem(base)
    argv = " ".join(sys.argv[1:])
    results: dict[str, Any] = {}
    try:
        for system in args.systems:
            results[system] = run_system(system, args, base)
            if not args.keep:
                shutil.rmtree(base / system, ignore_errors=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    summary = evaluate(results, args.rate_mib)
    report = {"machine": info, "argv": argv,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "results": results, **summary}
    if args.plot is not None:
        report["plot"] = plot(results, args.plot, args.rate_mib)
        print(report["plot"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print()
    print(f"{info.get('cpu', '?')}, {info['cores']} cores, {info.get('memory_gib')} GiB, "
          f"{info['filesystem']}, {info.get('java')}, Python {info['python']}, {info['date']}")
    print(markdown(results, summary, args.rate_mib))
    print(json.dumps(summary["ratios"]))
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
