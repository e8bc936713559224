"""Engine settings: the ``storage.engine`` section of the YAML configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineSettings"]

KiB = 1024
MiB = 1024 * KiB


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_cache_bytes: int = Field(
        256 * MiB, gt=0,
        description="Memory for recent appends; appends wait when this much is not yet uploaded.",
    )
    block_cache_bytes: int = Field(128 * MiB, ge=0, description="Memory for blocks read from objects.")
    upload_threshold_bytes: int = Field(
        64 * MiB, gt=0, description="Upload when this much not-yet-uploaded data is cached."
    )
    upload_interval_ms: int = Field(
        5_000, gt=0, description="Upload at least this often when anything is pending."
    )
    block_bytes: int = Field(
        512 * KiB, ge=4 * KiB, description="Target size of one data block inside an object."
    )
    stream_object_threshold_bytes: int = Field(
        8 * MiB, gt=0,
        description="A stream with this much pending data gets its own stream object at upload.",
    )
    compaction_interval_ms: int = Field(
        60_000, gt=0, description="How often compaction, retention and cleanup run."
    )
    compaction_min_objects: int = Field(
        4, ge=2, description="Merge stream-set objects once at least this many are committed."
    )
    compaction_small_object_bytes: int = Field(
        32 * MiB, gt=0, description="Stream objects smaller than this are merged with their neighbours."
    )
    compaction_max_bytes: int = Field(
        256 * MiB, gt=0, description="Most bytes of small objects one compaction run rewrites."
    )
    object_delete_delay_ms: int = Field(
        60_000, ge=0, description="Replaced objects stay readable this long before deletion."
    )
    prepared_timeout_ms: int = Field(
        600_000, gt=0, description="A prepared object never committed within this is abandoned."
    )
    cold_read_concurrency: int = Field(
        4, ge=1, description="Object-store reads in flight for catch-up reads (tail reads bypass)."
    )
    readahead_max_bytes: int = Field(
        8 * MiB, ge=0, description="Most extra bytes read ahead on sequential cold reads."
    )
