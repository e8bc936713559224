"""Options of the ``hdfs`` and ``fsspec`` object stores (validated from the YAML ``options:``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["HDFS_CLIENT_DEFAULTS", "FsspecOptions", "HdfsOptions", "StoreOptions"]

HDFS_CLIENT_DEFAULTS: dict[str, str] = {
    # hdfs-native retries an unreachable NameNode for minutes by default. Fail fast instead: the
    # engine's retry wrapper decides how long to keep trying, and start-up reports a clear error.
    "dfs.client.failover.max.attempts": "3",
    "dfs.client.failover.sleep.base.millis": "100",
    "dfs.client.failover.sleep.max.millis": "2000",
}
"""hdfs-native settings applied unless ``hdfs_config`` sets them."""


class StoreOptions(BaseModel):
    """What both stores share: bounds on time and threads, and the temp-file sweep."""

    model_config = ConfigDict(extra="forbid")

    url: str
    timeout_s: float = Field(
        10.0, gt=0, le=3600,
        description="Upper bound of every metadata call (head, list, delete, rename) and the base "
        "of the data-transfer bound.",
    )
    timeout_per_mib_s: float = Field(
        1.0, ge=0,
        description="Extra time allowed per MiB moved by a put or a read, on top of timeout_s.",
    )
    io_threads: int = Field(
        8, ge=1, le=256,
        description="Threads running the blocking filesystem calls (the bound on calls in flight).",
    )
    tmp_max_age_s: float = Field(
        3600.0, gt=0,
        description="cleanup() removes temporary files older than this. Keep it well above the "
        "longest put, since other brokers may share the root.",
    )


class FsspecOptions(StoreOptions):
    """Any fsspec URL (``file://``, ``memory://``, ``webhdfs://``, ...)."""

    url: str = Field(
        description="Root of the objects, e.g. file:///srv/objects or webhdfs://nn:9870/streambed."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the fsspec filesystem's constructor."
    )

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, url: str) -> str:
        if "://" not in url:
            raise ValueError(f"url must name a filesystem, e.g. file:///srv/objects (got {url!r})")
        if url.startswith(("hdfs://", "viewfs://")):
            # Through plain fsspec the client would keep its minutes-long retry defaults.
            raise ValueError(f"{url!r} is HDFS: use type: hdfs")
        return url.rstrip("/")


class HdfsOptions(StoreOptions):
    """HDFS through hdfs-native (``hdfs://`` or ``viewfs://``)."""

    url: str = Field(
        description="hdfs://namenode:8020/streambed (or hdfs://<nameservice>/path, viewfs://...): "
        "the directory holding streambed's objects."
    )
    hdfs_config: dict[str, str] = Field(
        default_factory=dict,
        description="Hadoop client settings for hdfs-native (HA nameservices, retries, ...); they "
        "override HDFS_CLIENT_DEFAULTS. core-site.xml/hdfs-site.xml under $HADOOP_CONF_DIR are read "
        "too.",
    )
    replication: int | None = Field(
        None, ge=1, le=32, description="Replication of object files; None: the cluster default."
    )
    block_size_mib: int | None = Field(
        None, ge=1, le=2048, description="HDFS block size of object files; None: the cluster default."
    )

    @field_validator("url")
    @classmethod
    def _is_hdfs(cls, url: str) -> str:
        if not url.startswith(("hdfs://", "viewfs://")):
            raise ValueError(
                f"the hdfs store needs an hdfs:// or viewfs:// url (got {url!r}); "
                "other filesystems use type: fsspec"
            )
        return url.rstrip("/")

    def client_config(self) -> dict[str, str]:
        """The configuration handed to hdfs-native: the defaults, then the user's settings."""
        return {**HDFS_CLIENT_DEFAULTS, **self.hdfs_config}
