"""Filesystem errors → the core taxonomy, at the edge.

hdfs-native raises ``FileNotFoundError``/``FileExistsError``/``OSError`` for what it recognises and a
``RuntimeError('RPCError("<java class>", "<message with Java stack>")')`` for any other NameNode
exception, so the Java class is parsed out of the text.
"""

from __future__ import annotations

import re

from streambed.core.errors import (
    ConditionFailed,
    NotFound,
    PermissionDenied,
    StreambedError,
    Unavailable,
)

__all__ = ["KeyConflict", "java_class", "path_through_file", "translate"]

_RPC_ERROR = re.compile(r'^(?:Fatal)?RPCError\("([\w.$]+)", "(.*)"\)\s*$', re.DOTALL)


class KeyConflict(ValueError):
    """A key would need a path that is both a file and a directory (``a`` and ``a/b``): S3 allows
    it, a filesystem does not."""


def java_class(exc: BaseException) -> tuple[str, str] | None:
    """``(class name, first message line)`` of a NameNode exception reported by hdfs-native."""
    if not isinstance(exc, RuntimeError):
        return None
    match = _RPC_ERROR.match(str(exc))
    if match is None:
        return None
    message = match.group(2).replace("\\n", "\n").replace("\\t", "\t").split("\n", 1)[0]
    return match.group(1), message.strip()


def path_through_file(exc: BaseException) -> bool:
    """Whether ``exc`` says a path runs through a file (``a/b`` when ``a`` is a file). The NameNode
    reports it as ParentNotDirectoryException, or from listings as an AccessControlException."""
    if isinstance(exc, NotADirectoryError):
        return True
    parsed = java_class(exc)
    if parsed is None:
        return False
    name, message = parsed
    return name.endswith(".ParentNotDirectoryException") or (
        name.endswith(".AccessControlException") and message.endswith("(is not a directory)")
    )


def translate(exc: Exception, what: str, *, writing: bool) -> Exception:
    """The error to raise for ``exc``, which happened while doing ``what`` (e.g. "GET k on url")."""
    if isinstance(exc, StreambedError | KeyConflict):
        return exc
    parsed = java_class(exc)
    detail = parsed[1] if parsed is not None else str(exc)
    conflict = f"{what}: the key's path conflicts with an existing object or directory ({detail})"
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(exc, IsADirectoryError) or path_through_file(exc):
        return KeyConflict(conflict) if writing else NotFound(f"{what}: not found")
    if isinstance(exc, FileExistsError):
        return ConditionFailed(f"{what}: the object already exists")
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"{what}: permission denied: {exc}")
    if parsed is not None:
        name, message = parsed
        short = name.rsplit(".", 1)[-1]
        if short == "FileNotFoundException":
            return NotFound(f"{what}: not found")
        if short == "FileAlreadyExistsException":
            return ConditionFailed(f"{what}: the object already exists")
        if short in ("AccessControlException", "AuthorizationException"):
            return PermissionDenied(f"{what}: permission denied by HDFS: {message}")
        if short == "PathIsNotEmptyDirectoryException" and writing:
            return KeyConflict(f"{what}: the key's path conflicts with an existing object ({message})")
        return Unavailable(f"{what}: HDFS {short}: {message}")
    return Unavailable(f"{what}: {type(exc).__name__}: {exc}")
