"""Engine settings: the ``storage.engine`` section of the YAML configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineSettings"]

MiB = 1024 * 1024


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_cache_bytes: int = Field(256 * MiB, gt=0, description="Memory for recent appends (log cache).")
    block_cache_bytes: int = Field(128 * MiB, gt=0, description="Memory for blocks read from objects.")
    upload_threshold_bytes: int = Field(
        64 * MiB, gt=0, description="Upload when this much not-yet-uploaded data is cached."
    )
    upload_interval_ms: int = Field(
        5_000, gt=0, description="Upload at least this often when anything is pending."
    )
