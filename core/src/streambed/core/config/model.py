"""The YAML configuration model: one file, four sections, every value has a default.

An empty or missing file means the embedded default: a local WAL file, a local object directory and
a local metadata file, all under ``broker.data_dir``. See ``docs/configuration.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streambed.core.stream.settings import EngineSettings

__all__ = ["BrokerSection", "ComponentConfig", "Settings", "StorageSection"]

MiB = 1024 * 1024
_LISTENER = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)://(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]*):(?P<port>\d{1,5})$"
)


class ComponentConfig(BaseModel):
    """Selects an implementation by ``type`` and passes it ``options`` (validated by its plugin)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Registered type name; `streambed plugins` lists them.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of that type.")


class BrokerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: int = Field(1, ge=0, le=2**31 - 1, description="Unique id of this broker.")
    listeners: list[str] = Field(
        default_factory=lambda: ["PLAINTEXT://127.0.0.1:9092"],
        min_length=1,
        description="Where the broker accepts Kafka connections, NAME://host:port.",
    )
    advertised_listeners: list[str] | None = Field(
        None, description="Addresses given to clients in Metadata; defaults to `listeners`."
    )
    data_dir: Path = Field(
        Path("./streambed-data"),
        description="Where local state lives when a local medium is used. A running broker "
        "holds `<data_dir>/.lock`: a second broker on the same directory exits at once.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_request_bytes: int = Field(
        100 * MiB, ge=1024, description="Largest request frame accepted from a client."
    )
    auto_create_topics: bool = Field(True, description="Create unknown topics on Metadata/Produce.")
    num_partitions: int = Field(1, ge=1, description="Partitions of auto-created topics.")
    verify_records: bool = Field(
        True,
        description="Parse every record of a produced batch (decompressing it, up to a cap) "
        "before accepting it, as Kafka does; off, only the batch header and CRC-32C are checked.",
    )
    kafka_configs: dict[str, str] = Field(
        default_factory=dict,
        description="Kafka broker configs by their server.properties names (log.retention.hours, "
        "group.initial.rebalance.delay.ms, ...): the static layer of DescribeConfigs, and the "
        "defaults of topic configs.",
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="How long a graceful shutdown waits for in-flight work."
    )
    metrics_listener: str | None = Field(
        None,
        description="host:port where GET /metrics serves Prometheus metrics (requests and their "
        "latency per API, partitions, WAL, engine); off when null. Example: 0.0.0.0:9464.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("kafka_configs", mode="before")
    @classmethod
    def _kafka_config_values_as_text(cls, value: object) -> object:
        """``log.retention.hours: 72`` and ``auto.create.topics.enable: true`` as written in
        YAML: Kafka configs are text (as in server.properties), so numbers and booleans are
        taken as their Kafka spelling rather than refused."""
        if not isinstance(value, dict):
            return value
        return {
            key: (str(item).lower() if isinstance(item, bool)
                  else str(item) if isinstance(item, int | float) else item)
            for key, item in value.items()
        }

    @field_validator("metrics_listener")
    @classmethod
    def _check_metrics_listener(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"metrics_listener {value!r} must look like 0.0.0.0:9464 (host:port)")
        return value

    @field_validator("listeners", "advertised_listeners")
    @classmethod
    def _check_listeners(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            match = _LISTENER.match(item)
            if match is None:
                raise ValueError(
                    f"listener {item!r} must look like PLAINTEXT://127.0.0.1:9092 (NAME://host:port)"
                )
            if not 0 <= int(match["port"]) <= 65535:
                raise ValueError(f"listener {item!r}: port must be 0..65535")
        return value


class StorageSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wal: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(type="file"),
        description="Write-ahead log: file (built-in) | ebs | s3.",
    )
    objects: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(type="file"),
        description="Object store: file, memory (built-in) | s3 | hdfs.",
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker: BrokerSection = Field(default_factory=BrokerSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    metadata: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(type="local"),
        description="Metadata store: local (built-in SQLite). A shared store for several "
        "brokers (etcd) is planned with the cluster work.",
    )
    controllers: list[ComponentConfig] = Field(
        default_factory=list,
        description="Controllers to run (plugins; none ships yet: auto-balance and auto-scale "
        "are planned).",
    )
