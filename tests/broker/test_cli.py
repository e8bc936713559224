"""The ``streambed`` command as a user runs it: a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

STREAMBED = [sys.executable, "-m", "streambed.broker.cli"]


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STREAMBED, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version() -> None:
    from streambed.core import __version__

    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["broker"],
        ["plugins"],
        ["config"],
        ["config", "check"],
        ["config", "default"],
        ["doctor"],
    ],
)
def test_help_explains_with_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert "Example" in result.stdout or "Quick start" in result.stdout


def test_plugins_lists_builtin_with_registrations() -> None:
    result = run("plugins")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("builtin") and "wal:file" in first and "metadata:local" in first
    assert "objects:file" in result.stdout


def test_plugins_json() -> None:
    import json

    result = run("plugins", "--json")
    rows = json.loads(result.stdout)
    assert rows[0]["name"] == "builtin"


def test_config_check_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "broker:\n  node_id: 5\nstorage:\n  objects: {type: memory, options: {name: \"${SB_TEST_NAME}\"}}\n"
    )
    result = run("config", "check", str(path), env={"SB_TEST_NAME": "s3cr3t"})
    assert result.returncode == 0, result.stderr
    assert f"# {path} is valid" in result.stdout
    assert "node_id: 5" in result.stdout
    assert "s3cr3t" not in result.stdout and "********" in result.stdout


def test_config_check_invalid_is_precise(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("storage:\n  objects: {type: hdfs}\n")
    result = run("config", "check", str(path), env={"STREAMBED_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 2
    assert f"{path}:2: storage.objects.type: unknown object store type 'hdfs'" in result.stderr
    assert "install streambed-object-hdfs" in result.stderr
    assert result.stdout == ""


def test_config_default_round_trips(tmp_path: Path) -> None:
    result = run("config", "default")
    assert result.returncode == 0
    path = tmp_path / "default.yaml"
    path.write_text(result.stdout)
    check = run("config", "check", str(path))
    assert check.returncode == 0, check.stderr


def test_broker_bad_config_exits_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"broker:\n  data_dir: {tmp_path / 'data'}\n  listeners: [nope]\n")
    result = run("broker", "--config", str(path))
    assert result.returncode == 2
    assert "broker.listeners" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("which", ["kafka", "metrics"])
def test_a_taken_port_is_a_clear_error(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        kafka = busy if which == "kafka" else free_port()
        metrics = busy if which == "metrics" else free_port()
        path = tmp_path / "s.yaml"
        path.write_text(
            f"broker:\n  data_dir: {tmp_path / 'data'}\n"
            f"  listeners: [PLAINTEXT://127.0.0.1:{kafka}]\n"
            f"  metrics_listener: 127.0.0.1:{metrics}\n"
        )
        result = run("broker", "--config", str(path))
    assert result.returncode == 1
    expected = "cannot listen for Kafka clients" if which == "kafka" else "cannot serve metrics"
    assert f"streambed: error: {expected} on 127.0.0.1:{busy}" in result.stderr, result.stderr
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "stopped cleanly" in result.stderr


def test_an_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "s.yaml"
    path.write_text(f"broker:\n  data_dir: {tmp_path / 'file' / 'data'}\n"
                    f"  listeners: [PLAINTEXT://127.0.0.1:{free_port()}]\n")
    result = run("broker", "--config", str(path))
    assert result.returncode == 1
    assert "streambed: error: cannot create the data directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("section", "expected"), [
    ("storage:\n  wal: {{type: file, options: {{dir: {bad}}}}}\n", "WAL directory {bad} is not usable"),
    ("storage:\n  wal: {{type: ebs, options: {{path: {bad}}}}}\n", "cannot open wal (type ebs)"),
    ("storage:\n  objects: {{type: file, options: {{root: {bad}}}}}\n",
     "object directory {bad} is not usable"),
    ("metadata: {{type: local, options: {{path: {bad}}}}}\n", "metadata store {bad} cannot be opened"),
])
def test_unusable_storage_paths_are_clear_errors(tmp_path: Path, section: str, expected: str) -> None:
    (tmp_path / "file").write_text("not a directory")
    bad = tmp_path / "file" / "below"
    path = tmp_path / "s.yaml"
    path.write_text(f"broker:\n  data_dir: {tmp_path / 'data'}\n"
                    f"  listeners: [PLAINTEXT://127.0.0.1:{free_port()}]\n"
                    + section.format(bad=bad))
    result = run("broker", "--config", str(path))
    assert result.returncode == 1, result.stderr
    assert f"streambed: error: {expected.format(bad=bad)}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_doctor(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"broker:\n  data_dir: {tmp_path / 'data'}\n")
    result = run("doctor", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data_dir writable: ok" in result.stdout
    assert "metadata store opens: ok" in result.stdout
    assert f"wal directory writable: ok {tmp_path / 'data' / 'wal'}" in result.stdout


@pytest.mark.parametrize(("wal", "expected"), [
    ("{type: s3, options: {s3: {endpoint_url: 'http://127.0.0.1:1', bucket: b, "
     "access_key_id: a, secret_access_key: s, retry_attempts: 1}}}",
     "wal store (s3) reachable: FAILED"),
    ("{type: ebs, options: {path: {bad}/wal.img}}", "wal device (ebs) usable: FAILED"),
])
def test_doctor_checks_the_wal(tmp_path: Path, wal: str, expected: str) -> None:
    """The WAL's storage is checked like the others (it was not: doctor said ok to WALs the
    broker then could not open)."""
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "c.yaml"
    path.write_text(f"broker:\n  data_dir: {tmp_path / 'data'}\nstorage:\n  wal: "
                    + wal.replace("{bad}", str(tmp_path / "file" / "below")) + "\n")
    result = run("doctor", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited early: {proc.communicate()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("broker did not listen in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_broker_embedded_default_starts_and_stops_cleanly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    # The embedded default lives under ./streambed-data: run in an empty directory. The port is the
    # only thing changed (tests run in parallel with other brokers), through a one-line config.
    default = subprocess.Popen(
        [*STREAMBED, "broker"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Wait until it has started on its data (imports take a while on a loaded machine).
        deadline = time.monotonic() + 60
        while not (tmp_path / "streambed-data").is_dir() and time.monotonic() < deadline:
            if default.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        default.send_signal(signal.SIGTERM)
        out, _ = default.communicate(timeout=30)
    # Port 9092 may be taken on a developer machine; the default run must at least say so clearly.
    assert "embedded default" in out, out
    assert (tmp_path / "streambed-data").is_dir()

    path = tmp_path / "c.yaml"
    path.write_text(f"broker:\n  listeners: ['PLAINTEXT://127.0.0.1:{port}']\n")
    proc = subprocess.Popen(
        [*STREAMBED, "broker", "-c", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, proc)
    finally:
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "started" in out and "stopped cleanly" in out, out


def _produce_one(bootstrap: str, topic: str) -> str | None:
    """Produce one record with librdkafka; None when acknowledged, else the error."""
    from confluent_kafka import Producer

    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10_000})
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: err and errors.append(str(err)))
    left = producer.flush(15)
    return errors[0] if errors else ("not delivered" if left else None)


def test_a_second_broker_on_the_same_data_dir_leaves_the_first_alone(tmp_path: Path) -> None:
    """The second process stops at the data directory's lock, before it registers in metadata
    (it used to fence the running broker, which then answered NOT_LEADER forever)."""
    from sbtest.broker import BrokerProcess

    first = BrokerProcess(tmp_path / "a").start()
    try:
        assert first.proc is not None
        path = tmp_path / "second.yaml"
        path.write_text(f"broker:\n  data_dir: {tmp_path / 'a' / 'data'}\n"
                        f"  listeners: [PLAINTEXT://127.0.0.1:{free_port()}]\n")
        result = run("broker", "--config", str(path))
        assert result.returncode == 1, result.stderr
        assert (f"is in use by another broker process (pid {first.proc.pid})"
                in result.stderr), result.stderr
        assert "Traceback" not in result.stderr
        time.sleep(4)  # the fenced broker used to stop serving about 3 s later
        assert first.running
        assert _produce_one(first.bootstrap, "still-mine") is None
    finally:
        assert first.stop() == 0, first.log_tail()


def test_a_fenced_broker_exits(tmp_path: Path) -> None:
    """Another process registering as the same node (here: same node id, same metadata store,
    another data directory) fences this broker: it says so and exits with status 1 instead of
    answering NOT_LEADER_OR_FOLLOWER forever."""
    from sbtest.broker import BrokerProcess

    shared = {"type": "local", "options": {"path": str(tmp_path / "shared-metadata.db")}}
    objects = {"objects": {"type": "file", "options": {"root": str(tmp_path / "objects")}}}
    old = BrokerProcess(tmp_path / "old", metadata=shared, storage=objects).start()
    new = BrokerProcess(tmp_path / "new", metadata=shared, storage=objects)
    try:
        assert _produce_one(old.bootstrap, "t") is None
        new.start()
        assert old.proc is not None
        old.proc.wait(30)
        assert old.proc.returncode == 1, old.log_tail()
        log = old.log_path.read_text()
        assert "taken over by another process" in log, log
        assert "stopped cleanly" in log
        assert "Traceback" not in log
        assert _produce_one(new.bootstrap, "t") is None
    finally:
        old.kill()
        new.stop()


def test_ctrl_c_during_a_hung_start_up_stops_the_broker(tmp_path: Path) -> None:
    """Storage that never answers (an S3 endpoint that accepts and stays silent, with long
    timeouts): SIGINT during start-up stops the broker at once, with a log line."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    path = tmp_path / "s.yaml"
    path.write_text(
        f"broker:\n  data_dir: {tmp_path / 'data'}\n"
        f"  listeners: [PLAINTEXT://127.0.0.1:{free_port()}]\n"
        "storage:\n  objects:\n    type: s3\n    options:\n"
        f"      endpoint_url: http://127.0.0.1:{port}\n      bucket: b\n"
        "      profile: seaweedfs\n      access_key_id: a\n      secret_access_key: s\n"
        "      read_timeout_s: 300\n"
    )
    proc = subprocess.Popen([*STREAMBED, "broker", "-c", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        silent.settimeout(60)
        conn, _ = silent.accept()  # the broker is now waiting on the silent endpoint
        time.sleep(0.5)
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - began < 10
        conn.close()
    finally:
        proc.kill()
        silent.close()
    assert proc.returncode == 0, out
    assert "signal received during start-up" in out, out
    assert "Traceback" not in out, out
