"""Engine settings: the ``storage.engine`` section of the YAML configuration.

Every setting has a default that suits one broker on a local disk; docs/engine.md explains how the
settings interact (the log cache bounds what may wait for upload, the upload threshold decides how
often objects are written, compaction keeps the object count bounded).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineSettings"]

KiB = 1024
MiB = 1024 * KiB


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- memory --------------------------------------------------------------------------------
    log_cache_bytes: int = Field(
        256 * MiB,
        gt=0,
        description="Memory for recent appends (tail reads are served from it). Data not yet "
        "uploaded is never evicted: when this much is waiting for upload, an upload is forced "
        "and appends wait (back-pressure).",
    )
    block_cache_bytes: int = Field(
        128 * MiB,
        ge=0,
        description="Memory for blocks read from objects (LRU by bytes; 0 disables it).",
    )

    # -- upload --------------------------------------------------------------------------------
    upload_threshold_bytes: int = Field(
        64 * MiB,
        gt=0,
        description="Upload as soon as this much acknowledged data waits for upload (at most "
        "log_cache_bytes is used when larger).",
    )
    upload_interval_ms: int = Field(
        5_000,
        gt=0,
        description="Upload at least this often while anything waits for upload (bounds how much "
        "WAL a crash has to replay).",
    )
    stream_object_threshold_bytes: int = Field(
        8 * MiB,
        gt=0,
        description="A stream with at least this much data in one upload gets its own stream "
        "object; smaller ones share one stream-set object (AutoMQ uses 8 MiB).",
    )
    object_max_bytes: int = Field(
        512 * MiB,
        ge=1 * MiB,
        description="Object split size: an upload that would write a larger object writes "
        "several (bounds retry cost per object; merges are bounded by compaction_max_bytes).",
    )
    block_bytes: int = Field(
        512 * KiB,
        ge=4 * KiB,
        description="Target size of one data block inside an object: the unit of range reads, "
        "checksums and the block cache. A batch is never split, so a block may be larger.",
    )
    prepared_timeout_ms: int = Field(
        600_000,
        gt=0,
        description="An object prepared (id recorded) but not committed within this is "
        "abandoned (its writer crashed) and deleted by cleanup.",
    )

    # -- reads ---------------------------------------------------------------------------------
    cold_read_concurrency: int = Field(
        4,
        ge=1,
        description="Object-store reads in flight for catch-up reads. Tail reads never wait for "
        "them (they are served from the log cache).",
    )
    readahead_min_bytes: int = Field(
        512 * KiB,
        ge=0,
        description="Readahead after the second sequential cold read of a stream; it doubles "
        "on every further sequential read (capped by readahead_max_bytes).",
    )
    readahead_max_bytes: int = Field(
        8 * MiB,
        ge=0,
        description="Largest readahead on sequential cold reads (0 disables readahead).",
    )

    # -- compaction, retention, cleanup --------------------------------------------------------
    compaction_interval_ms: int = Field(
        60_000,
        gt=0,
        description="How often compaction, retention and cleanup run.",
    )
    compaction_min_objects: int = Field(
        4,
        ge=2,
        description="Merge stream-set objects (and small stream objects of one stream) once at "
        "least this many exist.",
    )
    compaction_small_object_bytes: int = Field(
        32 * MiB,
        gt=0,
        description="Stream objects smaller than this are merged with their neighbours.",
    )
    compaction_max_bytes: int = Field(
        256 * MiB,
        gt=0,
        description="Most bytes of objects one merge rewrites (it holds them in memory).",
    )
    object_delete_delay_ms: int = Field(
        60_000,
        ge=0,
        description="Objects replaced by compaction or expired by retention stay readable this "
        "long before deletion, so reads already under way finish.",
    )
