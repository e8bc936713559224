"""Fixtures for the broker's domain logic: a metadata store per test, a manual clock, and fake
stream allocators (``domain_fakes`` next to this file)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from domain_fakes import FakeAllocator  # noqa: E402

from streambed.broker.domain.clock import ManualClock  # noqa: E402
from streambed.core.context import NodeContext  # noqa: E402
from streambed.core.metadata.api import MetadataStore  # noqa: E402
from streambed.core.metadata.local import LocalMetadataOptions, open_local_metadata  # noqa: E402
from streambed.core.metadata.memory import MemoryMetadataOptions, open_memory_metadata  # noqa: E402

_names = itertools.count()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    """The in-memory reference store and the embedded SQLite store: both honour the same
    contract, and SQLite proves the state really is in the file."""
    ctx = NodeContext(data_dir=tmp_path)
    opened: MetadataStore
    if request.param == "memory":
        opened = await open_memory_metadata(
            MemoryMetadataOptions(name=f"domain-{next(_names)}"), ctx
        )
    else:
        opened = await open_local_metadata(LocalMetadataOptions(), ctx)
    yield opened
    await opened.close()


@pytest.fixture
async def memory_store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    opened = await open_memory_metadata(
        MemoryMetadataOptions(name=f"domain-mem-{next(_names)}"), NodeContext(data_dir=tmp_path)
    )
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def allocator() -> FakeAllocator:
    return FakeAllocator()
