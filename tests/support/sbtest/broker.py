"""A real streambed broker process for client tests: started with ``streambed broker -c <yaml>``
on a free port, stopped with SIGTERM (graceful) or SIGKILL (crash), restartable on the same data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BrokerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerProcess:
    """One broker: ``start()``, ``kill()`` / ``stop()``, ``start()`` again on the same data."""

    def __init__(
        self,
        workdir: Path,
        *,
        storage: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        kafka_configs: Mapping[str, str] | None = None,
        broker: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "broker.log"
        self.config_path = workdir / "streambed.yaml"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        config: dict[str, Any] = {
            "broker": {
                "listeners": [f"PLAINTEXT://127.0.0.1:{self.port}"],
                "data_dir": str(workdir / "data"),
                "kafka_configs": {
                    "group.initial.rebalance.delay.ms": "0",
                    **(kafka_configs or {}),
                },
                **(broker or {}),
            },
        }
        if storage:
            config["storage"] = dict(storage)
        if metadata:
            config["metadata"] = dict(metadata)
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 60) -> BrokerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streambed.broker.cli", "broker", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"broker exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if "started" in self.log_path.read_text(errors="replace").rsplit(
                "starting node", 1
            )[-1]:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"broker did not start in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the graceful shutdown; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return int(self.proc.returncode)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
