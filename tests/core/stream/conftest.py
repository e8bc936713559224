from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streambed.core.context import NodeContext
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata
from streambed.core.objects.file import FileObjectStoreOptions, open_file_store
from streambed.core.stream.engine import StreamEngine
from streambed.core.stream.settings import EngineSettings
from streambed.core.wal.file import FileWalOptions, open_file_wal

_ids = itertools.count()

EngineFactory = Callable[..., Awaitable[StreamEngine]]


@pytest.fixture
def engine_factory(tmp_path: Path) -> EngineFactory:
    """Opens an engine on file media under tmp_path; call again after close() to "restart"."""

    async def open_engine(**settings: Any) -> StreamEngine:
        ctx = NodeContext(data_dir=tmp_path, node_id=1, node_epoch=next(_ids))
        wal = await open_file_wal(FileWalOptions(segment_bytes=1 << 20), ctx)
        objects = await open_file_store(FileObjectStoreOptions(), ctx)
        metadata = await open_local_metadata(LocalMetadataOptions(), ctx)
        defaults: dict[str, Any] = {"upload_interval_ms": 60_000, "compaction_interval_ms": 600_000,
                                    "block_bytes": 4096}
        engine = StreamEngine(wal, objects, metadata, EngineSettings(**{**defaults, **settings}))
        await engine.start()
        return engine

    return open_engine
