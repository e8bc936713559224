"""The Java client and CLI tools of Apache Kafka 4.3.1 against a real streambed broker process:
kafka-topics, kafka-configs, the console producer and consumer (every compression codec),
kafka-consumer-groups, the producer/consumer perf tools, kafka-delete-records and
kafka-get-offsets, plus ``tests/support/kafka/ClientCheck.java`` (an idempotent producer and a
rebalancing consumer group). Every test checks what the tools print, not only their exit status.

The jars come from Maven Central once (``sbtest.java.kafka_libs``). Without java and mvn the tests
skip, except under ``CI=true`` where a missing dependency must fail rather than hide.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sbtest.broker import BrokerProcess
from sbtest.java import java_available, java_command, kafka_libs

pytestmark = [pytest.mark.external, pytest.mark.slow, pytest.mark.timeout(300)]

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CLIENT_CHECK = Path(__file__).resolve().parents[2] / "support" / "kafka" / "ClientCheck.java"

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONFIGS = "kafka.admin.ConfigCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"
DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand"
GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell"

# stderr lines every tool prints that say nothing about the broker: slf4j-api 1.7 finds no
# binding (the log4j bridge is for slf4j 2) and the consumer advertises KIP-848.
_NOISE = re.compile(r"^(SLF4J: |The consumer rebalance protocol \(KIP-848\))")
_ids = itertools.count()
# Each tool is a short-lived JVM: the C1 compiler alone and the serial collector start it faster.
_FAST_START = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def topic_name(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def kafka_jars() -> Path:
    """The Kafka 4.3.1 jars; skips without java/mvn (Java 17+), except under CI where it fails."""
    reason = java_available()
    if reason is None:
        version = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
        match = re.search(r'version "(\d+)', version)
        if match is None or int(match.group(1)) < 17:
            reason = f"the Kafka 4 tools need Java 17 or newer, found: {version.strip()!r}"
    if reason is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"the Java client tests need Java and Maven: {reason}")
        pytest.skip(f"the Java client tests need Java and Maven: {reason}")
    return kafka_libs()


class Tool:
    """Runs a Kafka CLI class (or ClientCheck.java) against one broker, each run bounded by a
    timeout; a failure message carries the tool's output and the broker's log tail."""

    def __init__(self, broker: BrokerProcess, libs: Path) -> None:
        self.broker = broker
        self.libs = libs

    def run(
        self,
        main_class: str,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        expect: int | None = 0,
        source: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        if source:  # a single-file source program: java --source 17 -cp <jars> File.java ...
            command = ["java", "-Xmx512m", "--source", "17", "-cp", f"{self.libs}/*", main_class, *args]
        else:
            command = java_command(main_class, *args)
            command[1:1] = _FAST_START
        try:
            result = subprocess.run(
                command, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{main_class} {' '.join(args)} did not finish in {timeout} s\n"
                f"--- stdout\n{_text(exc.stdout)[-5000:]}\n--- stderr\n{_text(exc.stderr)[-5000:]}\n"
                f"--- broker log\n{self.broker.log_tail()}"
            ) from None
        result.stderr = "\n".join(
            line for line in result.stderr.splitlines() if not _NOISE.match(line)
        )
        if expect is not None:
            assert result.returncode == expect, self.explain(result, f"exit status {expect}")
            if expect == 0:
                assert "Exception" not in result.stderr, self.explain(result, "no exception")
        return result

    def explain(self, result: subprocess.CompletedProcess[str], wanted: str) -> str:
        return (
            f"{' '.join(map(str, result.args))}: wanted {wanted}, "
            f"exit status {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n"
            f"--- stderr\n{result.stderr[-6000:]}\n--- broker log\n{self.broker.log_tail()}"
        )

    # -- shorthands ----------------------------------------------------------------------------

    def topics(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.run(TOPICS, "--bootstrap-server", self.broker.bootstrap, *args, expect=expect)

    def configs(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.run(CONFIGS, "--bootstrap-server", self.broker.bootstrap, *args, expect=expect)

    def groups(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.run(GROUPS, "--bootstrap-server", self.broker.bootstrap, *args, expect=expect)

    def create_topic(self, topic: str, partitions: int) -> None:
        out = self.topics("--create", "--topic", topic, "--partitions", str(partitions)).stdout
        assert f"Created topic {topic}." in out, out

    def offsets(self, topic: str, time: int) -> dict[int, int]:
        """GetOffsetShell: partition -> offset for ``time`` (-1 latest, -2 earliest)."""
        result = self.run(
            GET_OFFSETS, "--bootstrap-server", self.broker.bootstrap, "--topic", topic,
            "--time", str(time),
        )
        found: dict[int, int] = {}
        for line in result.stdout.splitlines():
            name, partition, offset = line.rsplit(":", 2)
            assert name == topic, self.explain(result, f"lines for {topic}")
            found[int(partition)] = int(offset)
        return found

    def consume(self, topic: str, n: int, *args: str) -> list[tuple[int, int, str, str]]:
        """The console consumer: n records as (partition, offset, key, value)."""
        result = self.run(
            CONSOLE_CONSUMER, "--bootstrap-server", self.broker.bootstrap, "--topic", topic,
            "--max-messages", str(n), "--timeout-ms", "20000",
            "--formatter-property", "print.key=true",
            "--formatter-property", "print.partition=true",
            "--formatter-property", "print.offset=true",
            "--formatter-property", "key.separator=\t",
            *args,
        )
        assert f"Processed a total of {n} messages" in result.stderr, self.explain(
            result, f"{n} messages"
        )
        records = []
        for line in result.stdout.splitlines():
            partition, offset, key, value = line.split("\t", 3)
            assert partition.startswith("Partition:") and offset.startswith("Offset:"), line
            records.append((int(partition[10:]), int(offset[7:]), key, value))
        assert len(records) == n, self.explain(result, f"{n} records")
        return records


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


@pytest.fixture
def tool(kafka_jars: Path, module_broker: BrokerProcess) -> Tool:
    return Tool(module_broker, kafka_jars)


def table(text: str, header: str) -> list[dict[str, str]]:
    """The rows of a whitespace-aligned table whose header line starts with ``header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            names = line.split()
            rows = []
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                rows.append(dict(zip(names, row.split(), strict=True)))
            return rows
    raise AssertionError(f"no table headed {header!r} in:\n{text}")


# -- kafka-topics ------------------------------------------------------------------------------


def test_kafka_topics(tool: Tool) -> None:
    topic = topic_name("topics")
    created = tool.topics(
        "--create", "--topic", topic, "--partitions", "3", "--config", "retention.ms=3600000"
    )
    assert f"Created topic {topic}." in created.stdout, tool.explain(created, "Created topic")

    again = tool.topics("--create", "--topic", topic, "--partitions", "3", expect=1)
    assert f"Topic '{topic}' already exists." in again.stdout + again.stderr, tool.explain(
        again, "already exists"
    )
    tool.topics("--create", "--if-not-exists", "--topic", topic, "--partitions", "5")

    listed = tool.topics("--list").stdout.split()
    assert topic in listed, listed

    def describe() -> tuple[dict[str, str], list[dict[str, str]]]:
        result = tool.topics("--describe", "--topic", topic)
        head, *rows = [line.strip() for line in result.stdout.splitlines() if line.strip()]

        def fields(line: str) -> dict[str, str]:
            return dict(
                (part.split(":", 1)[0].strip(), part.split(":", 1)[1].strip())
                for part in line.split("\t")
                if ":" in part
            )

        return fields(head), [fields(row) for row in rows]

    summary, partitions = describe()
    assert summary["Topic"] == topic
    assert summary["PartitionCount"] == "3", summary
    assert summary["ReplicationFactor"] == "1", summary
    assert "retention.ms=3600000" in summary["Configs"], summary
    assert [p["Partition"] for p in partitions] == ["0", "1", "2"], partitions
    leaders = {p["Leader"] for p in partitions}
    assert len(leaders) == 1 and leaders.pop().isdigit(), partitions  # one broker leads all
    assert all(p["Replicas"] == p["Leader"] == p["Isr"] for p in partitions), partitions

    tool.topics("--alter", "--topic", topic, "--partitions", "4")
    summary, partitions = describe()
    assert summary["PartitionCount"] == "4", summary
    assert [p["Partition"] for p in partitions] == ["0", "1", "2", "3"], partitions
    assert all(p["Leader"].isdigit() for p in partitions), partitions
    shrink = tool.topics("--alter", "--topic", topic, "--partitions", "2", expect=1)
    assert "would not be an increase" in shrink.stdout + shrink.stderr, tool.explain(
        shrink, "a refusal to shrink"
    )

    tool.topics("--delete", "--topic", topic)
    assert topic not in tool.topics("--list").stdout.split()
    gone = tool.topics("--describe", "--topic", topic, expect=1)
    assert f"Topic '{topic}' does not exist" in gone.stdout + gone.stderr, tool.explain(
        gone, "does not exist"
    )


# -- kafka-configs -----------------------------------------------------------------------------


def _dynamic(text: str) -> dict[str, str]:
    """``name=value`` of each config line of a kafka-configs --describe."""
    found = {}
    for line in text.splitlines():
        if line.startswith("  ") and "=" in line:
            name, value = line.strip().split(" ", 1)[0].split("=", 1)
            found[name] = value
    return found


def test_kafka_configs(tool: Tool) -> None:
    topic = topic_name("configs")
    tool.run(
        TOPICS, "--bootstrap-server", tool.broker.bootstrap, "--create", "--topic", topic,
        "--partitions", "1", "--config", "retention.ms=3600000",
    )
    entity = ("--entity-type", "topics", "--entity-name", topic)

    described = tool.configs("--describe", *entity)
    assert f"Dynamic configs for topic {topic} are:" in described.stdout, described.stdout
    assert _dynamic(described.stdout) == {"retention.ms": "3600000"}, described.stdout

    every = tool.configs("--describe", *entity, "--all")
    all_configs = _dynamic(every.stdout)
    assert all_configs["retention.ms"] == "3600000", every.stdout
    assert all_configs["cleanup.policy"] == "delete", every.stdout
    assert all_configs["compression.type"] == "producer", every.stdout
    assert {"segment.bytes", "max.message.bytes", "min.insync.replicas"} <= set(all_configs)

    tool.configs(
        "--alter", *entity, "--add-config", "retention.ms=123456,cleanup.policy=compact,max.message.bytes=200000"
    )
    after = tool.configs("--describe", *entity)
    assert _dynamic(after.stdout) == {
        "retention.ms": "123456",
        "cleanup.policy": "compact",
        "max.message.bytes": "200000",
    }, after.stdout
    assert "DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact" in after.stdout, after.stdout

    tool.configs("--alter", *entity, "--delete-config", "retention.ms,max.message.bytes")
    after = tool.configs("--describe", *entity)
    assert _dynamic(after.stdout) == {"cleanup.policy": "compact"}, after.stdout
    every = _dynamic(tool.configs("--describe", *entity, "--all").stdout)
    assert every["retention.ms"] == "604800000", every  # back to the broker default (7 days)

    bad = tool.configs("--alter", *entity, "--add-config", "no.such.config=1", expect=1)
    assert "InvalidConfigurationException" in bad.stdout + bad.stderr, tool.explain(
        bad, "InvalidConfigurationException"
    )
    bad = tool.configs("--alter", *entity, "--add-config", "retention.ms=soon", expect=1)
    assert "InvalidConfigurationException" in bad.stdout + bad.stderr, tool.explain(
        bad, "InvalidConfigurationException"
    )
    assert _dynamic(tool.configs("--describe", *entity).stdout) == {"cleanup.policy": "compact"}

    brokers = tool.configs("--describe", "--entity-type", "brokers")
    ids = re.findall(r"^Dynamic configs for broker (\d+) are:$", brokers.stdout, re.MULTILINE)
    assert len(ids) == 1, brokers.stdout
    static = tool.configs("--describe", "--entity-type", "brokers", "--entity-name", ids[0], "--all")
    assert f"All configs for broker {ids[0]} are:" in static.stdout, static.stdout
    broker_configs = _dynamic(static.stdout)
    assert broker_configs["broker.id"] == ids[0], static.stdout
    assert {"auto.create.topics.enable", "num.partitions", "log.retention.hours"} <= set(
        broker_configs
    ), static.stdout
    default = tool.configs("--describe", "--entity-type", "brokers", "--entity-default")
    assert "Default configs for brokers in the cluster are:" in default.stdout, default.stdout


# -- console producer -> console consumer, every codec ----------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_console_round_trip(tool: Tool, codec: str) -> None:
    n = 500
    topic = topic_name(f"console-{codec}")
    tool.create_topic(topic, 3)
    sent = {f"key-{i}": f"value-{i}-{codec}-" + "x" * (i % 97) for i in range(n)}
    tool.run(
        CONSOLE_PRODUCER, "--bootstrap-server", tool.broker.bootstrap, "--topic", topic,
        "--command-property", f"compression.type={codec}",
        "--command-property", "acks=all",
        "--command-property", "linger.ms=20",
        "--reader-property", "parse.key=true",
        "--reader-property", "key.separator=\t",
        input="".join(f"{k}\t{v}\n" for k, v in sent.items()),
    )
    records = tool.consume(topic, n, "--from-beginning")
    got = {key: value for _, _, key, value in records}
    assert len(got) == n, Counter(key for _, _, key, _ in records).most_common(3)
    assert got == sent
    by_partition: dict[int, list[int]] = {}
    for partition, offset, _, _ in records:
        by_partition.setdefault(partition, []).append(offset)
    assert set(by_partition) <= {0, 1, 2} and len(by_partition) > 1, by_partition.keys()
    for partition, offsets in by_partition.items():  # each partition read in order, no gaps
        assert offsets == list(range(len(offsets))), (partition, offsets[:20])
    assert tool.offsets(topic, -1) == {p: len(o) for p, o in by_partition.items()} | {
        p: 0 for p in {0, 1, 2} - set(by_partition)
    }


# -- idempotent producer + a rebalancing consumer group; kafka-consumer-groups ----------------


def test_consumer_group_rebalance_and_offsets(tool: Tool) -> None:
    n = 3000
    topic = topic_name("group")
    group = f"group-{topic}"
    tool.create_topic(topic, 6)

    check = tool.run(
        str(CLIENT_CHECK), "group", tool.broker.bootstrap, topic, group, str(n),
        source=True, timeout=150, expect=None,
    )
    assert check.returncode == 0, tool.explain(check, "every ClientCheck check to pass")
    summary = dict(
        line.split(" ", 1) for line in check.stdout.splitlines()
        if line.split(" ", 1)[0] in {"PRODUCED", "CONSUMED", "DISTINCT", "DUPLICATES", "MISSING"}
    )
    assert summary == {
        "PRODUCED": str(n), "CONSUMED": str(n), "DISTINCT": str(n), "DUPLICATES": "0", "MISSING": "0"
    }, check.stdout
    # c1, c2, c3 join one by one, c1 leaves, c4 joins: a Stable group after each step.
    stable = re.findall(r"^STABLE Stable members=(\d)", check.stdout, re.MULTILINE)
    assert stable == list("12323"), check.stdout

    assert group in tool.groups("--list").stdout.split()
    state = table(tool.groups("--describe", "--group", group, "--state").stdout, "GROUP")
    assert [(r["STATE"], r["#MEMBERS"]) for r in state] == [("Empty", "0")], state

    described = tool.groups("--describe", "--group", group)
    rows = table(described.stdout, "GROUP")
    assert sorted(int(r["PARTITION"]) for r in rows) == list(range(6)), described.stdout
    assert all(r["TOPIC"] == topic and r["LAG"] == "0" for r in rows), described.stdout
    assert all(r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"] for r in rows), described.stdout
    assert sum(int(r["CURRENT-OFFSET"]) for r in rows) == n, described.stdout

    reset = tool.groups(
        "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute"
    )
    rows = table(reset.stdout, "GROUP")
    assert sorted((int(r["PARTITION"]), r["NEW-OFFSET"]) for r in rows) == [
        (p, "0") for p in range(6)
    ], reset.stdout
    rows = table(tool.groups("--describe", "--group", group).stdout, "GROUP")
    assert all(r["CURRENT-OFFSET"] == "0" and r["LAG"] == r["LOG-END-OFFSET"] for r in rows), rows
    assert sum(int(r["LAG"]) for r in rows) == n, rows
    ends = {int(r["PARTITION"]): r["LOG-END-OFFSET"] for r in rows}

    # --to-datetime looks offsets up by timestamp (ListOffsets): before every record -> the
    # first offset; after every record -> the log end (no record that new). Dry runs.
    for when, expected in (("2000-01-01T00:00:00.000", {p: "0" for p in range(6)}),
                           ("2100-01-01T00:00:00.000", ends)):
        planned = tool.groups(
            "--reset-offsets", "--group", group, "--topic", topic, "--to-datetime", when,
            "--dry-run",
        )
        rows = table(planned.stdout, "GROUP")
        assert {int(r["PARTITION"]): r["NEW-OFFSET"] for r in rows} == expected, planned.stdout

    # A group member resumes from the reset offsets: everything once more, then lag 0 again.
    again = tool.consume(topic, n, "--group", group)
    assert len({(p, o) for p, o, _, _ in again}) == n
    assert {v for _, _, _, v in again} == {f"value-{i}" for i in range(n)}
    rows = table(tool.groups("--describe", "--group", group).stdout, "GROUP")
    assert all(r["LAG"] == "0" for r in rows), rows

    deleted = tool.groups("--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in deleted.stdout
    assert group not in tool.groups("--list").stdout.split()


# -- producer / consumer perf tools -----------------------------------------------------------


def test_perf_tools(tool: Tool) -> None:
    n = 20000
    topic = topic_name("perf")
    tool.create_topic(topic, 3)
    produced = tool.run(
        PRODUCER_PERF, "--bootstrap-server", tool.broker.bootstrap, "--topic", topic,
        "--num-records", str(n), "--record-size", "1024", "--throughput", "-1",
        "--command-property", "acks=all", timeout=120,
    )
    summary = re.search(
        rf"^{n} records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency",
        produced.stdout, re.MULTILINE,
    )
    assert summary is not None, tool.explain(produced, "a summary line")
    assert float(summary.group(1)) > 0
    assert sum(tool.offsets(topic, -1).values()) == n

    consumed = tool.run(
        CONSUMER_PERF, "--bootstrap-server", tool.broker.bootstrap, "--topic", topic,
        "--num-records", str(n), "--timeout", "30000", timeout=120,
    )
    lines = [line for line in consumed.stdout.splitlines() if line.strip()]
    header = [name.strip() for name in lines[0].split(",")]
    stats = dict(zip(header, (value.strip() for value in lines[-1].split(",")), strict=True))
    assert int(stats["data.consumed.in.nMsg"]) == n, tool.explain(consumed, f"{n} records")
    assert float(stats["data.consumed.in.MB"]) == pytest.approx(n * 1024 / 2**20, abs=0.001)


# -- kafka-delete-records ---------------------------------------------------------------------


def test_delete_records(tool: Tool, tmp_path: Path) -> None:
    topic = topic_name("delete")
    tool.create_topic(topic, 2)
    tool.run(
        PRODUCER_PERF, "--bootstrap-server", tool.broker.bootstrap, "--topic", topic,
        "--num-records", "2000", "--record-size", "100", "--throughput", "-1",
        "--command-property", "acks=all", "linger.ms=0", "batch.size=2000",
    )
    latest = tool.offsets(topic, -1)
    assert sum(latest.values()) == 2000 and latest[0] > 100 and latest[1] > 0, latest
    assert tool.offsets(topic, -2) == {0: 0, 1: 0}

    def delete(offsets: dict[int, int]) -> str:
        spec = tmp_path / f"delete-{len(list(tmp_path.iterdir()))}.json"
        spec.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()
        ]}))
        result = tool.run(
            DELETE_RECORDS, "--bootstrap-server", tool.broker.bootstrap,
            "--offset-json-file", str(spec),
        )
        return result.stdout

    out = delete({0: 100, 1: -1})  # -1: everything up to the high watermark
    assert f"partition: {topic}-0\tlow_watermark: 100" in out, out
    assert f"partition: {topic}-1\tlow_watermark: {latest[1]}" in out, out
    assert tool.offsets(topic, -2) == {0: 100, 1: latest[1]}
    assert tool.offsets(topic, -1) == latest  # the end does not move

    first = tool.consume(topic, 1, "--partition", "0", "--offset", "earliest")
    assert first[0][:2] == (0, 100), first

    out = delete({0: latest[0] + 1})  # beyond the high watermark: refused, nothing moves
    assert "OffsetOutOfRangeException" in out, out
    assert tool.offsets(topic, -2) == {0: 100, 1: latest[1]}
