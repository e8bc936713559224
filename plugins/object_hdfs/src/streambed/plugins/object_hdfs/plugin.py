"""Entry point: registers the ``hdfs`` and ``fsspec`` object stores. No SDK import at module level."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.errors import PluginError
from streambed.core.registry import KindRegistry

__all__ = ["FsspecOptions", "HdfsOptions", "open_fsspec_store", "open_hdfs_store"]


class FsspecOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Root of the objects, e.g. hdfs://namenode:9000/streambed, "
                     "file:///srv/objects, memory://test.")
    timeout_s: float = Field(30.0, gt=0, description="Upper bound of every filesystem call.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the fsspec filesystem constructor."
    )
    tmp_max_age_s: float = Field(600.0, gt=0, description="cleanup() removes older temp files.")


class HdfsOptions(FsspecOptions):
    url: str = Field(description="hdfs://namenode:port/path — the root of streambed's objects.")
    hdfs_config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Hadoop client settings for hdfs-native (e.g. dfs.nameservices).",
    )


async def open_fsspec_store(options: FsspecOptions, context: NodeContext) -> Any:
    try:
        from streambed.plugins.object_hdfs.store import open_store
    except ImportError as exc:  # pragma: no cover
        raise PluginError(f"fsspec is missing ({exc}): pip install streambed-object-hdfs") from exc
    return await open_store(options)


async def open_hdfs_store(options: HdfsOptions, context: NodeContext) -> Any:
    if not options.url.startswith(("hdfs://", "viewfs://")):
        raise ValueError(f"hdfs store url must start with hdfs:// (got {options.url!r})")
    try:
        import hdfs_native.fsspec  # noqa: F401  (registers hdfs:// with fsspec)
    except ImportError as exc:  # pragma: no cover
        raise PluginError(
            f"hdfs-native is missing ({exc}): pip install streambed-object-hdfs"
        ) from exc
    return await open_fsspec_store(options, context)


@hookimpl
def streambed_register_object_stores(registry: KindRegistry[Any]) -> None:
    registry.add("hdfs", HdfsOptions, open_hdfs_store,
                 description="HDFS through hdfs-native (no libhdfs or JVM needed)")
    registry.add("fsspec", FsspecOptions, open_fsspec_store,
                 description="any fsspec filesystem URL (file://, memory://, webhdfs://, ...)")
