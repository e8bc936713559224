"""Object store over an fsspec filesystem (HDFS through hdfs-native, or any fsspec URL).

Objects are committed atomically: a put writes ``<root>/.tmp/<random>`` and renames it into place.
On HDFS a rename without overwrite fails when the target exists, atomically, in the NameNode, so
the ``hdfs`` store advertises conditional puts; other filesystems do not. Every call runs in a worker
thread bounded by ``timeout_s`` (hdfs-native would otherwise retry for minutes against a dead
NameNode) and filesystem errors are translated into the core error taxonomy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import fsspec

from streambed.core.errors import ConditionFailed, NotFound, StreambedError, Unavailable
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo

__all__ = ["FsspecObjectStore", "open_store"]

T = TypeVar("T")
log = logging.getLogger("streambed.objects.fsspec")
_TMP = ".tmp"


def _join(data: Buffers) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return b"".join(bytes(part) for part in data)


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    if parts[0] == _TMP:
        raise ValueError(f"invalid object key {key!r}: {_TMP}/ is reserved")


class FsspecObjectStore:
    def __init__(self, fs: Any, url: str, root: str, timeout_s: float, tmp_max_age_s: float) -> None:
        self._fs = fs
        self._url = url
        self._root = root.rstrip("/")
        self._timeout = timeout_s
        self._tmp_max_age = tmp_max_age_s
        self._conditional = fs.protocol in ("hdfs", "viewfs") or (
            isinstance(fs.protocol, tuple) and "hdfs" in fs.protocol
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_put=self._conditional, multipart=False)

    def _path(self, key: str) -> str:
        _check_key(key)
        return f"{self._root}/{key}"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), self._timeout)
        except TimeoutError as exc:
            raise Unavailable(f"{what} on {self._url}: no answer within {self._timeout:.0f} s") from exc
        except StreambedError:
            raise
        except FileNotFoundError as exc:
            raise NotFound(f"{what} on {self._url}: not found") from exc
        except FileExistsError as exc:
            raise ConditionFailed(f"{what} on {self._url}: already exists") from exc
        except (OSError, RuntimeError, ConnectionError) as exc:
            text = str(exc)
            if "FileNotFound" in text or "does not exist" in text:
                raise NotFound(f"{what} on {self._url}: not found") from exc
            if "AlreadyExists" in text or "already exists" in text:
                raise ConditionFailed(f"{what} on {self._url}: already exists") from exc
            raise Unavailable(f"{what} on {self._url}: {type(exc).__name__}: {exc}") from exc

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        if if_none_match and not self._conditional:
            raise ValueError("this filesystem does not support conditional puts")
        path = self._path(key)
        body = _join(data)
        tmp = f"{self._root}/{_TMP}/{uuid.uuid4().hex}"

        def write() -> None:
            self._fs.pipe_file(tmp, body)
            parent = path.rsplit("/", 1)[0]
            self._fs.makedirs(parent, exist_ok=True)
            try:
                if self._conditional:
                    if not if_none_match and self._fs.exists(path):
                        self._fs.rm_file(path)
                    self._fs.mv(tmp, path, overwrite=False)
                else:
                    self._fs.mv(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._fs.rm_file(tmp)
                raise

        await self._call(f"PUT {key}", write)
        return ObjectInfo(key, len(body))

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        data: bytes = await self._call(f"GET {key}", lambda: self._fs.cat_file(path))
        return data

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        path = self._path(key)

        def read() -> bytes:
            size = int(self._fs.info(path)["size"])
            if start >= size or end == start:
                return b""
            data: bytes = self._fs.cat_file(path, start=start, end=min(end, size))
            return data

        return await self._call(f"GET {key} [{start}, {end})", read)

    async def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        info = await self._call(f"HEAD {key}", lambda: self._fs.info(path))
        if info.get("type") == "directory":
            raise NotFound(f"HEAD {key} on {self._url}: not found")
        modified = info.get("mtime") or info.get("modification_time")
        return ObjectInfo(key, int(info["size"]),
                          modified=float(modified) if isinstance(modified, int | float) else None)

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(k) for k in keys]

        def remove() -> None:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm_file(path)

        await self._call(f"DELETE {len(paths)} keys", remove)

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = f"{self._root}/{directory}" if directory else self._root
        strip = len(self._fs._strip_protocol(self._root).rstrip("/")) + 1

        def walk() -> list[tuple[str, int]]:
            try:
                found = self._fs.find(base, detail=True)
            except FileNotFoundError:
                return []
            out = []
            for path, info in found.items():
                key = self._fs._strip_protocol(path)[strip:]
                if key.startswith(_TMP + "/") or info.get("type") == "directory":
                    continue
                if key.startswith(prefix) and (token is None or key > token):
                    out.append((key, int(info.get("size", 0))))
            out.sort()
            return out

        keys = await self._call(f"LIST {prefix}", walk)
        page = [ObjectInfo(k, size) for k, size in keys[:limit]]
        return ListPage(page, page[-1].key if len(keys) > limit else None)

    async def cleanup(self) -> int:
        horizon = time.time() - self._tmp_max_age

        def sweep() -> int:
            removed = 0
            try:
                entries = self._fs.ls(f"{self._root}/{_TMP}", detail=True)
            except FileNotFoundError:
                return 0
            for entry in entries:
                modified = entry.get("mtime") or entry.get("modification_time") or entry.get("created")
                if hasattr(modified, "timestamp"):
                    modified = modified.timestamp()
                if isinstance(modified, int | float) and modified > 1e11:
                    modified /= 1000.0  # HDFS reports milliseconds
                if isinstance(modified, int | float) and modified < horizon:
                    with contextlib.suppress(FileNotFoundError):
                        self._fs.rm_file(entry["name"])
                        removed += 1
            return removed

        return await self._call("cleanup", sweep)

    async def close(self) -> None:
        return None


async def open_store(options: Any) -> FsspecObjectStore:
    url: str = options.url.rstrip("/")
    storage_options = dict(options.storage_options)
    if url.startswith(("hdfs://", "viewfs://")):
        # hdfs-native retries a dead NameNode for minutes by default; bound it (users may override).
        storage_options.update({
            "dfs.client.failover.max.attempts": "3",
            "dfs.client.failover.sleep.base.millis": "100",
            "dfs.client.failover.sleep.max.millis": "2000",
            "dfs.client.socket-timeout": str(int(options.timeout_s * 1000)),
        })
        storage_options.update(getattr(options, "hdfs_config", {}))
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as exc:
        raise Unavailable(f"cannot open filesystem for {url!r}: {exc}") from exc
    store = FsspecObjectStore(fs, url, root, options.timeout_s, options.tmp_max_age_s)
    # Probe: the root must be reachable and writable before the broker starts.
    probe = f".streambed-probe-{uuid.uuid4().hex}"
    try:
        await store._call("create root", lambda: fs.makedirs(f"{store._root}/{_TMP}", exist_ok=True))
        await store.put(probe, b"probe")
        if await store.get(probe) != b"probe":
            raise Unavailable("probe object read back different bytes")
        await store.delete([probe])
    except StreambedError as exc:
        raise Unavailable(f"object store {url} is unusable: the start-up probe failed: {exc}") from exc
    log.info("fsspec store %s ready (conditional writes: %s)", url,
             "yes" if store.capabilities.conditional_put else "no")
    return store
