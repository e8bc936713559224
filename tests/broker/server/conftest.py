"""Fixtures for in-process Kafka server tests (see ``sbtest.inprocess``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sbtest.inprocess import InProcessKafka, start_kafka, stop_kafka

_names = itertools.count()


@pytest.fixture
async def kafka(tmp_path: Path) -> AsyncIterator[InProcessKafka]:
    running = await start_kafka(tmp_path, f"kafka-{next(_names)}")
    yield running
    await stop_kafka(running)
