"""Entry point: registers the ``s3`` object store. Imports no SDK at module level."""

from __future__ import annotations

from typing import Any

from streambed.core import hookimpl
from streambed.core.context import NodeContext
from streambed.core.errors import PluginError
from streambed.core.registry import KindRegistry
from streambed.plugins.object_minio.options import S3Options

__all__ = ["open_s3_store"]


async def open_s3_store(options: S3Options, context: NodeContext) -> Any:
    try:
        from streambed.plugins.object_minio.store import open_store
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PluginError(
            f"the s3 object store needs aioboto3 ({exc}): pip install streambed-object-minio"
        ) from exc
    return await open_store(options, context)


@hookimpl
def streambed_register_object_stores(registry: KindRegistry[Any]) -> None:
    registry.add(
        "s3",
        S3Options,
        open_s3_store,
        description="S3-compatible storage: MinIO, Ceph RGW, CubeFS, SeaweedFS, AWS S3",
    )
