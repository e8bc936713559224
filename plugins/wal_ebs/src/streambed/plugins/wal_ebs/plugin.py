"""Entry point: registers the ``ebs`` WAL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.lifecycle import HealthCheck, HealthResult, writable_dir
from streambed.core.registry import KindRegistry

if TYPE_CHECKING:
    from streambed.core.config import ResolvedConfig

__all__ = ["EbsWalOptions", "open_ebs_wal"]

MiB = 1024 * 1024


class EbsWalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(
        None, description="Block device (/dev/nvme1n1) or file; default <data_dir>/wal.ebs."
    )
    capacity_bytes: int = Field(
        2 * 1024 * MiB, ge=16 * 1024, multiple_of=4096, description="Size of the data ring."
    )
    direct_io: Literal["auto", "true", "false"] = Field(
        "auto", description="O_DIRECT: auto falls back to buffered I/O where unsupported."
    )
    max_batch_bytes: int = Field(8 * MiB, gt=0, description="Most bytes one write carries.")
    full_timeout_ms: int = Field(10_000, ge=0, description="Wait for space before WalFull.")
    takeover: bool = Field(
        False, description="Open a volume another (dead) node owned; its epoch must be older."
    )
    io_depth: int = Field(
        1, ge=1, le=32, description="Parallel writes a large group commit is split into."
    )
    owner_check_interval_ms: int = Field(
        1000, gt=0, description="How often the writer re-reads the header to detect a takeover."
    )
    inline_max_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Group commits up to this size are written on the event loop while the "
        "writer thread is idle (two thread hand-offs fewer); larger ones go to the thread. 0: "
        "always the thread.",
    )

    @field_validator("direct_io", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML reads `direct_io: true` as a boolean: take it as the word.
        return str(value).lower() if isinstance(value, bool) else value


async def open_ebs_wal(options: EbsWalOptions, context: NodeContext) -> Any:
    from streambed.plugins.wal_ebs.ring import BlockWal

    path = options.path if options.path is not None else context.local_path("wal.ebs")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    direct = {"auto": None, "true": True, "false": False}[options.direct_io]
    return BlockWal(
        Path(path),
        capacity=options.capacity_bytes,
        node_id=context.node_id,
        epoch=context.node_epoch,
        direct_io=direct,
        takeover=options.takeover,
        max_batch_bytes=options.max_batch_bytes,
        full_timeout_s=options.full_timeout_ms / 1000.0,
        owner_check_interval_s=options.owner_check_interval_ms / 1000.0,
        io_depth=options.io_depth,
        inline_max_bytes=options.inline_max_bytes,
    )


@hookimpl
def streambed_register_wals(registry: KindRegistry[Any]) -> None:
    registry.add(
        "ebs",
        EbsWalOptions,
        open_ebs_wal,
        description="O_DIRECT ring buffer on a block device or preallocated file",
    )


@hookimpl
def streambed_health_checks(config: ResolvedConfig) -> list[HealthCheck]:
    """``streambed doctor``: the EBS WAL's device or file can be read and written (or created).
    The WAL itself is not opened: opening claims the volume for this node's epoch."""
    options = config.wal.options
    if not isinstance(options, EbsWalOptions):
        return []
    ctx = NodeContext(data_dir=config.settings.broker.data_dir,
                      node_id=config.settings.broker.node_id)
    path = Path(options.path if options.path is not None else ctx.local_path("wal.ebs"))

    async def usable() -> HealthResult:
        return _path_usable(path)

    return [HealthCheck("wal device (ebs) usable", usable)]


def _path_usable(path: Path) -> HealthResult:
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return HealthResult(False, f"{path} is not readable and writable by this user")
        return HealthResult(True, f"{path} ({'block device' if path.is_block_device() else 'file'})")
    # Missing: the broker creates it (and its directory) at start-up; try what that needs.
    try:
        writable_dir(path.parent)
    except OSError as exc:
        return HealthResult(False, f"{path} does not exist and cannot be created: "
                                   f"{exc.strerror or exc}")
    return HealthResult(True, f"{path} (created at start-up)")
