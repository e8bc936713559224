"""Built-in implementations, registered through the same hooks as external plugins.

Only option models are imported here; each factory imports its implementation when called.
"""

from __future__ import annotations

from typing import Any

from streambed.core.hookspecs import hookimpl
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.objects.memory import MemoryObjectStoreOptions, open_memory_store
from streambed.core.registry import KindRegistry
from streambed.core.wal.file import FileWalOptions, open_file_wal
from streambed.core.wal.memory import MemoryWalOptions, open_memory_wal


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
