"""Types passed to lifecycle and health hooks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrokerInfo", "HealthCheck", "HealthResult", "writable_dir"]


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    listeners: list[str]
    data_dir: Path
    components: dict[str, str] = field(default_factory=dict)
    """Role → type name of the storage in use, e.g. ``{"wal": "file", "objects": "s3"}``."""


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named check run by ``streambed doctor``."""

    name: str
    check: Callable[[], Coroutine[Any, Any, HealthResult]]


def writable_dir(directory: Path) -> str:
    """For health checks: create ``directory`` if needed and write + fsync a file in it (what a
    storage medium needs there); its absolute path. Raises OSError when it cannot."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".doctor-", dir=directory)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)
    return str(directory.resolve())
