"""Entry point: registers the ``s3`` WAL. Imports no SDK at module level."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.lifecycle import HealthCheck, HealthResult
from streambed.core.registry import KindRegistry
from streambed.plugins.object_minio.options import S3Options

if TYPE_CHECKING:
    from streambed.core.config import ResolvedConfig

__all__ = ["S3WalOptions", "open_s3_wal"]

MiB = 1024 * 1024


LOCAL_WINDOW_MS = 10.0
AWS_WINDOW_MS = 250.0


class S3WalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def resolved_window_ms(self) -> float:
        if self.window_ms is not None:
            return self.window_ms
        on_aws = self.s3.profile == "aws" or (self.s3.profile is None and not self.s3.endpoint_url)
        return AWS_WINDOW_MS if on_aws else LOCAL_WINDOW_MS

    s3: S3Options = Field(description="Connection: the same options as the `s3` object store.")
    prefix: str = Field("wal/", description="Key prefix of WAL objects inside s3.prefix.")
    window_ms: float | None = Field(
        None,
        gt=0,
        description="Batching window: the latency floor, and PUTs per second = 1000 / window. "
        "Default 10 on a local S3-compatible store (p99 produce ~120 ms at 10 MB/s on SeaweedFS) "
        "and 250 on AWS S3 (profile aws, or no endpoint_url), where every PUT is billed.",
    )
    window_bytes: int = Field(4 * MiB, gt=0, description="Upload early once this much is pending.")
    max_inflight: int = Field(4, ge=1, description="WAL objects uploading at once.")
    capacity_bytes: int = Field(
        2 * 1024 * MiB, gt=0, description="Bytes not yet trimmed before appends wait."
    )
    full_timeout_ms: int = Field(10_000, ge=0, description="Wait for space before WalFull.")
    wal_node_id: int | None = Field(
        None, description="Whose WAL to open; default this node. Set to take over a dead node's."
    )


async def open_s3_wal(options: S3WalOptions, context: NodeContext) -> Any:
    from streambed.plugins.object_minio.plugin import open_s3_store
    from streambed.plugins.wal_s3.wal import ObjectWal

    store = await open_s3_store(options.s3, context)
    return ObjectWal(
        store,
        wal_node_id=context.node_id if options.wal_node_id is None else options.wal_node_id,
        holder_node_id=context.node_id,
        epoch=context.node_epoch,
        prefix=options.prefix,
        window_ms=options.resolved_window_ms(),
        window_bytes=options.window_bytes,
        max_inflight=options.max_inflight,
        capacity_bytes=options.capacity_bytes,
        full_timeout_s=options.full_timeout_ms / 1000.0,
    )


@hookimpl
def streambed_register_wals(registry: KindRegistry[Any]) -> None:
    registry.add(
        "s3",
        S3WalOptions,
        open_s3_wal,
        description="direct-S3 WAL: appends batched into objects, no local disk",
    )


@hookimpl
def streambed_health_checks(config: ResolvedConfig) -> list[HealthCheck]:
    """``streambed doctor``: the S3 WAL's store passes the same start-up probe as the s3 object
    store (write, read, range read, delete). The WAL itself is not opened: that would claim it."""
    options = config.wal.options
    if not isinstance(options, S3WalOptions):
        return []
    ctx = NodeContext(data_dir=config.settings.broker.data_dir,
                      node_id=config.settings.broker.node_id)

    async def reachable() -> HealthResult:
        from streambed.plugins.object_minio.plugin import open_s3_store

        store = await open_s3_store(options.s3, ctx)
        await store.close()
        return HealthResult(True, f"{options.s3.endpoint_url or 'AWS S3'} bucket {options.s3.bucket}")

    return [HealthCheck("wal store (s3) reachable", reachable)]
