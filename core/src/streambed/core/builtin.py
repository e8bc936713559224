"""Built-in implementations, registered through the same hooks as external plugins.

Only option models are imported here; each factory imports its implementation when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streambed.core.context import NodeContext
from streambed.core.hookspecs import hookimpl
from streambed.core.lifecycle import HealthCheck, HealthResult, writable_dir
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.registry import KindRegistry
from streambed.core.wal.file import FileWalOptions, open_file_wal
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal

if TYPE_CHECKING:
    from streambed.core.config.loader import ResolvedComponent, ResolvedConfig


@hookimpl
def streambed_register_wals(registry: KindRegistry[Any]) -> None:
    registry.add(
        "file",
        FileWalOptions,
        open_file_wal,
        description="segment files under data_dir/wal, group commit with fsync (embedded default)",
    )
    registry.add(
        "memory",
        MemoryWalOptions,
        open_memory_wal,
        description="in-process reference WAL; NOT durable, for tests and experiments",
    )


@hookimpl
def streambed_register_object_stores(registry: KindRegistry[Any]) -> None:
    registry.add(
        "file",
        FileObjectStoreOptions,
        open_file_store,
        description="a local directory (data_dir/objects by default; embedded default)",
    )
    registry.add(
        "memory",
        MemoryObjectStoreOptions,
        open_memory_store,
        description="in-process reference store; NOT durable, for tests and experiments",
    )


@hookimpl
def streambed_register_metadata_stores(registry: KindRegistry[Any]) -> None:
    registry.add(
        "local",
        LocalMetadataOptions,
        open_local_metadata,
        description="SQLite file under data_dir for a single broker (embedded default)",
    )
    registry.add(
        "memory",
        MemoryMetadataOptions,
        open_memory_metadata,
        description="in-process reference store; NOT durable, for tests",
    )


@hookimpl
def streambed_health_checks(config: ResolvedConfig) -> list[HealthCheck]:
    data_dir = config.settings.broker.data_dir
    ctx = NodeContext(data_dir=data_dir, node_id=config.settings.broker.node_id)

    async def data_dir_writable() -> HealthResult:
        return HealthResult(True, writable_dir(data_dir))

    def opens(component: ResolvedComponent) -> HealthCheck:
        async def check() -> HealthResult:
            store = await component.implementation.factory(component.options, ctx)
            await store.close()
            return HealthResult(True, f"type {component.implementation.name}")

        return HealthCheck(f"{component.role} store opens", check)

    checks = [
        HealthCheck("data_dir writable", data_dir_writable),
        opens(config.objects),
        opens(config.metadata),
    ]
    options = config.wal.options
    if isinstance(options, FileWalOptions):
        wal_dir = options.dir if options.dir is not None else ctx.local_path("wal")

        async def wal_dir_writable() -> HealthResult:
            # The WAL itself is not opened: a running broker holds it, and opening it is
            # recovery's business. Writing next to it is what the WAL needs.
            return HealthResult(True, writable_dir(wal_dir))

        checks.append(HealthCheck("wal directory writable", wal_dir_writable))
    return checks

