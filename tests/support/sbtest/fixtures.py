"""Session-scoped pytest fixtures for real servers. Use with ``pytest_plugins = ["sbtest.fixtures"]``
in a test module or conftest, or import the fixture functions directly."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from sbtest.broker import BrokerProcess
from sbtest.servers import (
    CephRgw,
    MiniHdfs,
    SeaweedFS,
    create_bucket,
    start_ceph_rgw,
    start_minihdfs,
    start_seaweedfs,
)

_bucket_ids = itertools.count()


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    try:
        server = start_seaweedfs()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise  # CI must install everything: a skip there would hide a missing dependency
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh, empty bucket on the session's SeaweedFS."""
    name = f"test-{next(_bucket_ids)}"
    create_bucket(seaweedfs, name)
    return name


@pytest.fixture(scope="session")
def minihdfs() -> Iterator[MiniHdfs]:
    from sbtest.java import java_available

    reason = java_available()
    if reason is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"HDFS tests need Java and Maven: {reason}")
        pytest.skip(f"HDFS tests need Java and Maven: {reason}")
    server = start_minihdfs()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[CephRgw]:
    try:
        server = start_ceph_rgw()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A fresh streambed broker process on the embedded default storage, for one test."""
    process = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    yield process
    _stop_broker(process)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One streambed broker process shared by the tests of a module (each uses its own topics)."""
    process = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    yield process
    _stop_broker(process)


def _stop_broker(process: BrokerProcess) -> None:
    status = process.stop()
    assert status == 0, f"broker exited with {status}:\n{process.log_tail()}"
    text = process.log_path.read_text(errors="replace")
    assert "Traceback" not in text, f"the broker logged a traceback:\n{text[-5000:]}"
