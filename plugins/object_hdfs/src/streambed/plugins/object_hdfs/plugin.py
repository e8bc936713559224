"""Entry point: registers the ``hdfs`` and ``fsspec`` object stores. Imports no SDK at module level
(fsspec and hdfs-native are imported by the factories)."""

from __future__ import annotations

from typing import Any

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.errors import PluginError
from streambed.core.registry import KindRegistry
from streambed.plugins.object_hdfs.options import FsspecOptions, HdfsOptions

__all__ = ["open_fsspec_store", "open_hdfs_store"]


def _missing(what: str, exc: ImportError) -> PluginError:
    return PluginError(f"the {what} object store needs {exc.name or exc}: "
                       "pip install streambed-object-hdfs")


async def open_hdfs_store(options: HdfsOptions, context: NodeContext) -> Any:
    try:
        import hdfs_native.fsspec  # noqa: F401

        from streambed.plugins.object_hdfs.store import open_hdfs
    except ImportError as exc:
        raise _missing("hdfs", exc) from exc
    return await open_hdfs(options)


async def open_fsspec_store(options: FsspecOptions, context: NodeContext) -> Any:
    try:
        import fsspec  # noqa: F401

        from streambed.plugins.object_hdfs.store import open_fsspec
    except ImportError as exc:
        raise _missing("fsspec", exc) from exc
    return await open_fsspec(options)


@hookimpl
def streambed_register_object_stores(registry: KindRegistry[Any]) -> None:
    registry.add("hdfs", HdfsOptions, open_hdfs_store,
                 description="HDFS through hdfs-native (no JVM, no libhdfs.so)")
    registry.add("fsspec", FsspecOptions, open_fsspec_store,
                 description="any fsspec URL: file://, memory://, webhdfs://, ...")
