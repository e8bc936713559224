"""Error translation and the worker threads, without a server."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streambed.core.errors import ConditionFailed, NotFound, PermissionDenied, Unavailable
from streambed.plugins.object_hdfs._errors import KeyConflict, java_class, translate
from streambed.plugins.object_hdfs._workers import ClientPanic, Workers


def _rpc(java: str, message: str) -> RuntimeError:
    """What hdfs-native raises for a NameNode exception it does not map (its Debug format)."""
    escaped = message.replace("\n", "\\n").replace("\t", "\\t")
    return RuntimeError(f'RPCError("{java}", "{escaped}\\n\\tat org.apache.hadoop.ipc.Server.run")')


def test_java_class_is_parsed_from_hdfs_native_errors() -> None:
    exc = _rpc("org.apache.hadoop.fs.PathIsNotEmptyDirectoryException", "`/t/d is non empty'")
    assert java_class(exc) == ("org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
                               "`/t/d is non empty'")
    assert java_class(RuntimeError("something else")) is None
    assert java_class(OSError("RPCError")) is None


@pytest.mark.parametrize(("exc", "writing", "expected", "text"), [
    (FileNotFoundError("/x"), False, NotFound, "not found"),
    (FileExistsError("/x"), True, ConditionFailed, "already exists"),
    (IsADirectoryError("/x"), False, NotFound, "not found"),
    (IsADirectoryError("/x"), True, KeyConflict, "conflicts"),
    (NotADirectoryError("/x"), True, KeyConflict, "conflicts"),
    (PermissionError("/x"), True, PermissionDenied, "permission denied"),
    (OSError("Connection refused (os error 111)"), False, Unavailable, "Connection refused"),
    (_rpc("org.apache.hadoop.security.AccessControlException",
          "Permission denied: user=kafka, access=WRITE"), True, PermissionDenied, "user=kafka"),
    (_rpc("org.apache.hadoop.hdfs.server.namenode.SafeModeException",
          "Cannot create file. Name node is in safe mode."), True, Unavailable,
     "SafeModeException: Cannot create file"),
    (_rpc("org.apache.hadoop.fs.ParentNotDirectoryException", "/a (is not a directory)"), True,
     KeyConflict, "is not a directory"),
    (_rpc("org.apache.hadoop.fs.ParentNotDirectoryException", "/a (is not a directory)"), False,
     NotFound, "not found"),
    (_rpc("org.apache.hadoop.security.AccessControlException", "/t0/a (is not a directory)"),
     False, NotFound, "not found"),
    (_rpc("java.io.FileNotFoundException", "File does not exist"), False, NotFound, "not found"),
    (ClientPanic("PanicException: Cannot seek beyond the end of a file"), False, Unavailable,
     "Cannot seek"),
])
def test_translation(exc: Exception, writing: bool, expected: type[Exception], text: str) -> None:
    error = translate(exc, "PUT k on hdfs://nn/x", writing=writing)
    assert type(error) is expected
    assert text in str(error) and "PUT k on hdfs://nn/x" in str(error)
    assert "\tat " not in str(error) and "\\tat" not in str(error)  # no Java stack


class _Panic(BaseException):
    """Stands in for pyo3's PanicException, which derives from BaseException."""


async def test_workers_turn_panics_into_errors_and_run_in_daemon_threads() -> None:
    workers = Workers(2, "t")
    try:
        def panic() -> None:
            raise _Panic("boom")

        with pytest.raises(ClientPanic, match="_Panic: boom"):
            await workers.run(panic)
        assert await workers.run(lambda: threading.current_thread().daemon) is True
    finally:
        workers.close()


async def test_a_call_abandoned_before_it_started_never_runs() -> None:
    workers = Workers(1, "t")
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(workers.run(gate.wait))
        await asyncio.sleep(0.05)  # the only thread is now busy
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(workers.run(lambda: ran.append("late")), 0.05)
        gate.set()
        assert await blocker is True
        assert await workers.run(lambda: "next") == "next"
        assert ran == []
    finally:
        workers.close()


async def test_close_cancels_queued_calls() -> None:
    workers = Workers(1, "t")
    gate = threading.Event()
    blocker = asyncio.ensure_future(workers.run(gate.wait))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(workers.run(lambda: "never"))
    await asyncio.sleep(0.01)
    workers.close()
    gate.set()
    assert await blocker is True
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(RuntimeError, match="closed"):
        await workers.run(lambda: None)
