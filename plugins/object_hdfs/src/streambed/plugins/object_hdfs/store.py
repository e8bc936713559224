"""An object store over a filesystem: HDFS through hdfs-native, or any fsspec URL.

Key ``a/b/c`` is the file ``<root>/a/b/c``. A put writes ``<root>/.tmp/<millis>-<random>`` and then
renames it into place, so a reader sees all of an object or none of it. How the rename is done
depends on the filesystem:

- HDFS: the NameNode's rename2. Without OVERWRITE it fails atomically when the target exists, so of
  several racing conditional puts exactly one wins (checked on the real server by a start-up probe);
  with OVERWRITE it replaces the target atomically.
- Local directory (``file://``): ``os.replace``, or ``os.link`` for a conditional put (fails when the
  target exists); file and directory are fsynced, as by the built-in ``file`` store.
- Anything else: fsspec's ``mv``. No conditional puts.

Every filesystem call runs in the store's own threads (hdfs-native's Python client blocks) and is
bounded by ``timeout_s`` (plus ``timeout_per_mib_s`` per MiB moved): hdfs-native applies no timeout
to a NameNode that accepted the connection and went silent. A call that timed out is reported as
:class:`Unavailable` but may still complete later: a put whose outcome is unknown must be retried
(the engine writes each object under a new key, so a late rename is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

from streambed.core.errors import Closed, NotFound, StreambedError, Unavailable
from streambed.core.objects.api import Buffers, Capabilities, ListPage, ObjectInfo
from streambed.plugins.object_hdfs._errors import (
    KeyConflict,
    java_class,
    path_through_file,
    translate,
)
from streambed.plugins.object_hdfs._workers import Workers
from streambed.plugins.object_hdfs.options import FsspecOptions, HdfsOptions, StoreOptions

__all__ = ["FsspecObjectStore", "open_fsspec", "open_hdfs"]

T = TypeVar("T")
Kind = Literal["hdfs", "local", "generic"]
log = logging.getLogger("streambed.objects.hdfs")

_TMP = ".tmp"
_MIB = 1024 * 1024
_DELETE_CHUNK = 64

# The store's ``list`` method shadows the builtin inside the class body.
_Parts = list[str]
_Infos = list[ObjectInfo]


def _buffers(data: Buffers) -> list[bytes | memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        return [data]
    return list(data)


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    if parts[0] == _TMP:
        raise ValueError(f"invalid object key {key!r}: {_TMP}/ is reserved for temporary files")


def _seconds(info: dict[str, Any]) -> float | None:
    """Modification time in seconds from an fsspec ``info`` dict, whatever the filesystem."""
    if isinstance(ms := info.get("modification_time"), int | float):
        return ms / 1000.0  # hdfs-native: milliseconds
    for field in ("mtime", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def _name(info: dict[str, Any]) -> str:
    return str(info["name"]).rstrip("/").rsplit("/", 1)[-1]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FsspecObjectStore:
    def __init__(self, fs: Any, kind: Kind, url: str, root: str, options: StoreOptions,
                 open_kwargs: dict[str, Any] | None = None) -> None:
        self._fs = fs
        self._kind: Kind = kind
        self._url = url
        self._root = root.rstrip("/")
        self._opts = options
        self._open_kwargs = open_kwargs or {}
        self._conditional = False
        self._known_dirs: set[str] = set()
        self._workers = Workers(options.io_threads, f"objects-{kind}")
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_put=self._conditional, multipart=False)

    @property
    def url(self) -> str:
        return self._url

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _transfer_timeout(self, nbytes: int) -> float:
        return self._opts.timeout_s + self._opts.timeout_per_mib_s * nbytes / _MIB

    async def _call(self, what: str, fn: Callable[[], T], *, timeout: float | None = None,
                    writing: bool = False) -> T:
        if self._closed:
            raise Closed(f"object store {self._url} is closed")
        limit = self._opts.timeout_s if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._workers.run(fn), limit)
        except TimeoutError as exc:
            raise Unavailable(
                f"{what} on {self._url}: no answer within {limit:.1f} s"
                + (" (NameNode down or frozen?)" if self._kind == "hdfs" else "")
            ) from exc
        except Exception as exc:
            error = translate(exc, f"{what} on {self._url}", writing=writing)
            if error is exc:
                raise
            raise error from exc

    # -- blocking pieces (run in the workers) -------------------------------------------------------

    def _tmp_path(self) -> str:
        return f"{self._root}/{_TMP}/{int(time.time() * 1000):013d}-{uuid.uuid4().hex}"

    def _makedirs(self, directory: str) -> None:
        if directory not in self._known_dirs:
            try:
                self._fs.makedirs(directory, exist_ok=True)
            except FileExistsError as exc:  # HDFS: a file holds (part of) the directory's path
                raise NotADirectoryError(f"{directory}: a file is in the way") from exc
            self._known_dirs.add(directory)

    def _write(self, path: str, buffers: list[bytes | memoryview]) -> None:
        with self._fs.open(path, "wb", **self._open_kwargs) as f:
            for buffer in buffers:
                if len(buffer):
                    f.write(buffer)
            if self._kind == "local":
                f.flush()
                os.fsync(f.fileno())

    def _rename(self, tmp: str, path: str, if_none_match: bool) -> None:
        """Move ``tmp`` to ``path`` atomically; ``FileExistsError`` if ``if_none_match`` and
        ``path`` exists. The parent directory must exist."""
        if self._kind == "hdfs":
            self._fs.mv(tmp, path, overwrite=not if_none_match)
        elif self._kind == "local":
            if if_none_match:
                os.link(tmp, path)
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))
        else:
            self._fs.mv(tmp, path)
            if self._fs.exists(tmp):
                # Some filesystems (WebHDFS) refuse, without an error, to rename onto a file.
                self._fs.rm_file(path)
                self._fs.mv(tmp, path)

    def _commit(self, tmp: str, path: str, if_none_match: bool) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        self._makedirs(parent)
        try:
            try:
                self._rename(tmp, path, if_none_match)
            except FileNotFoundError:
                # The parent may have been removed behind our back; create it and try once more.
                self._known_dirs.discard(parent)
                self._makedirs(parent)
                self._rename(tmp, path, if_none_match)
        except Exception as exc:
            # Each filesystem words "the target is a directory" differently (HDFS: "must both be
            # directories"); ask instead of parsing.
            is_dir = False
            with contextlib.suppress(Exception):
                is_dir = bool(self._fs.isdir(path))
            if is_dir:
                raise IsADirectoryError(f"{path} is a directory") from exc
            raise

    def _put(self, path: str, buffers: list[bytes | memoryview], if_none_match: bool) -> None:
        tmp = self._tmp_path()
        try:
            try:
                self._write(tmp, buffers)
            except FileNotFoundError:  # someone removed .tmp
                self._fs.makedirs(f"{self._root}/{_TMP}", exist_ok=True)
                self._write(tmp, buffers)
            self._commit(tmp, path, if_none_match)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm_file(tmp)
            raise

    def _read(self, path: str, start: int, end: int | None) -> bytes:
        with self._fs.open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            size = f.tell() if size is None else size  # hdfs-native's seek returns None
            stop = size if end is None else min(end, size)
            # Never seek past the end: hdfs-native panics ("Cannot seek beyond the end of a file").
            if start >= stop:
                return b""
            f.seek(start)
            data: bytes = f.read(stop - start)
            if len(data) != stop - start:
                raise OSError(f"short read: {len(data)} of {stop - start} bytes")
            return data

    def _ls(self, directory: str) -> list[dict[str, Any]]:
        try:
            entries: list[dict[str, Any]] = self._fs.ls(directory or "/", detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        if len(entries) == 1 and str(entries[0]["name"]).rstrip("/") == directory.rstrip("/"):
            return []  # ``directory`` is a file: ls of a file lists the file itself
        return sorted(entries, key=_name)

    def _remove(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self._fs.rm_file(path)
            except (FileNotFoundError, IsADirectoryError):
                pass  # absent, or a directory (never an object)
            except Exception as exc:
                parsed = java_class(exc)
                if path_through_file(exc) or (
                    parsed is not None and parsed[0].endswith(".PathIsNotEmptyDirectoryException")
                ):
                    continue  # a path through a file, or a directory: not an object either
                raise

    # -- the ObjectStore protocol ------------------------------------------------------------------

    async def put(self, key: str, data: Buffers, *, if_none_match: bool = False) -> ObjectInfo:
        _check_key(key)
        if if_none_match and not self._conditional:
            raise ValueError(f"{self._url} does not support conditional puts (see capabilities)")
        buffers = _buffers(data)
        size = sum(len(b) for b in buffers)
        path = self._path(key)
        try:
            await self._call(f"PUT {key}", lambda: self._put(path, buffers, if_none_match),
                             timeout=self._transfer_timeout(size), writing=True)
        except NotFound as exc:
            raise Unavailable(f"PUT {key} on {self._url}: a path vanished during the put: {exc}") from exc
        return ObjectInfo(key, size)

    async def get(self, key: str) -> bytes:
        _check_key(key)
        path = self._path(key)
        try:
            info = await self.head(key)
        except NotFound as exc:
            raise NotFound(f"GET {key} on {self._url}: not found") from exc
        return await self._call(f"GET {key}", lambda: self._read(path, 0, None),
                                timeout=self._transfer_timeout(info.size))

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        _check_key(key)
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        path = self._path(key)
        return await self._call(f"GET {key} [{start}, {end})", lambda: self._read(path, start, end),
                                timeout=self._transfer_timeout(end - start))

    async def head(self, key: str) -> ObjectInfo:
        _check_key(key)
        path = self._path(key)
        info: dict[str, Any] = await self._call(f"HEAD {key}", lambda: self._fs.info(path))
        if info.get("type") != "file":
            raise NotFound(f"HEAD {key} on {self._url}: not found (a directory)")
        return ObjectInfo(key, int(info["size"]), modified=_seconds(info))

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            _check_key(key)
        paths = [self._path(k) for k in keys]
        chunks = [paths[i : i + _DELETE_CHUNK] for i in range(0, len(paths), _DELETE_CHUNK)]
        await asyncio.gather(*(
            self._call(f"DELETE {len(chunk)} keys", functools.partial(self._remove, chunk))
            for chunk in chunks
        ))

    async def list(self, prefix: str, *, token: str | None = None, limit: int = 1000) -> ListPage:
        """Walks the directories in name order, so keys come in byte order within a directory;
        the token is the last key returned, and the walk skips every directory that holds only
        keys up to it."""
        if limit < 1:
            raise ValueError(f"limit must be positive (got {limit})")
        directory, _, leaf = prefix.rpartition("/")
        if directory.split("/", 1)[0] == _TMP:
            return ListPage()
        out: list[ObjectInfo] = []
        after = token.split("/") if token else None
        await self._walk(directory.split("/") if directory else [], leaf, after, out, limit + 1)
        page = out[:limit]
        return ListPage(page, page[-1].key if len(out) > limit else None)

    async def _walk(self, parts: _Parts, leaf: str, after: _Parts | None, out: _Infos,
                    want: int) -> None:
        directory = "/".join([self._root, *parts])
        try:
            entries = await self._call(f"LIST {'/'.join(parts) or '/'}", lambda: self._ls(directory))
        except NotFound:  # an object sits where the prefix needs a directory
            return
        for entry in entries:
            name = _name(entry)
            if not name.startswith(leaf) or (not parts and name == _TMP):
                continue
            comps = [*parts, name]
            if entry.get("type") == "directory":
                bound = after[: len(comps)] if after is not None else None
                if bound is not None and comps < bound:
                    continue
                await self._walk(comps, "", after if comps == bound else None, out, want)
            elif entry.get("type") == "file":
                if after is not None and comps <= after:
                    continue
                out.append(ObjectInfo("/".join(comps), int(entry.get("size") or 0),
                                      modified=_seconds(entry)))
            if len(out) >= want:
                return

    async def cleanup(self) -> int:
        """Removes temporary files older than ``tmp_max_age_s`` (interrupted puts, here or on
        another broker sharing the root); the age comes from the name, else the file's mtime."""
        horizon = time.time() - self._opts.tmp_max_age_s
        entries = await self._call("LIST .tmp", lambda: self._ls(f"{self._root}/{_TMP}"))
        stale: list[str] = []
        for entry in entries:
            if entry.get("type") != "file":
                continue
            name = _name(entry)
            stamp = name.partition("-")[0]
            born = int(stamp) / 1000.0 if stamp.isdigit() else _seconds(entry)
            if born is not None and born < horizon:
                stale.append(f"{self._root}/{_TMP}/{name}")
        if stale:
            await self._call(f"cleanup of {len(stale)} temporary files", lambda: self._remove(stale))
            log.info("removed %d stale temporary files from %s/%s", len(stale), self._url, _TMP)
        return len(stale)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._workers.close()
            # Threads blocked on a frozen NameNode are left behind (they are daemons), but a
            # clean shutdown lets the others finish before the interpreter goes away.
            if not await asyncio.to_thread(self._workers.join, 1.0):
                log.warning("HDFS store %s: I/O threads still busy at close", self._root)

    # -- start-up ----------------------------------------------------------------------------------

    async def _probe(self) -> None:
        """Refuse to start on a store that cannot write, read, rename and delete; find out whether
        a conditional rename really fails when its target exists (never assumed)."""
        tmp_dir = f"{self._root}/{_TMP}"
        await self._call("creating .tmp", lambda: self._fs.makedirs(tmp_dir, exist_ok=True))
        first, second, target = self._tmp_path(), self._tmp_path(), self._tmp_path()

        def probe() -> bool:
            try:
                self._write(first, [b"first"])
                # Empty: hdfs-native's close() of a file with data polls the NameNode with a fixed
                # 500 ms back-off until the DataNode reported the block; an empty file has none.
                self._write(second, [])
                if self._read(first, 0, None) != b"first":
                    raise OSError("the probe file read back different bytes")
                if self._kind == "generic":
                    self._commit(first, target, False)
                    return False
                self._commit(first, target, True)
                try:
                    self._commit(second, target, True)
                except FileExistsError:
                    return self._read(target, 0, None) == b"first"
                return False
            finally:
                self._remove([first, second, target])

        self._conditional = await self._call("start-up probe", probe, writing=True)
        if self._kind != "generic" and not self._conditional:
            log.warning("%s: a rename onto an existing file did not fail; conditional puts are "
                        "not available", self._url)


async def _start(store: FsspecObjectStore) -> FsspecObjectStore:
    try:
        await store._probe()
    except (StreambedError, KeyConflict) as exc:
        await store.close()
        error = type(exc)(f"object store {store.url} is unusable: {exc}")
        raise error from exc
    log.info("object store %s ready (conditional puts: %s)", store.url,
             "yes" if store.capabilities.conditional_put else "no")
    return store


async def open_hdfs(options: HdfsOptions) -> FsspecObjectStore:
    """The ``hdfs`` store: hdfs-native with bounded client retries. Imports hdfs-native."""
    from hdfs_native.fsspec import HdfsFileSystem, ViewfsFileSystem

    parsed = urlparse(options.url)
    cls = HdfsFileSystem if parsed.scheme == "hdfs" else ViewfsFileSystem
    # Not parsed.hostname: it lowercases, and nameservice ids in the Hadoop settings are not.
    host = parsed.netloc.rpartition("@")[2]
    if parsed.port is not None:
        host = host.rpartition(":")[0]
    try:
        fs = cls(host or None, parsed.port, **options.client_config())
    except Exception as exc:
        raise Unavailable(f"cannot create an HDFS client for {options.url}: {exc}") from exc
    open_kwargs: dict[str, Any] = {}
    if options.replication is not None:
        open_kwargs["replication"] = options.replication
    if options.block_size_mib is not None:
        open_kwargs["block_size"] = options.block_size_mib * _MIB
    store = FsspecObjectStore(fs, "hdfs", options.url, parsed.path or "/", options, open_kwargs)
    return await _start(store)


async def open_fsspec(options: FsspecOptions) -> FsspecObjectStore:
    """The ``fsspec`` store: any URL fsspec knows. Imports fsspec (and the filesystem's package)."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    try:
        fs, root = fsspec.core.url_to_fs(options.url, **options.storage_options)
    except ImportError as exc:
        raise Unavailable(f"no fsspec filesystem for {options.url}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise Unavailable(f"cannot open {options.url}: {exc}") from exc
    kind: Kind = "local" if isinstance(fs, LocalFileSystem) else "generic"
    store = FsspecObjectStore(fs, kind, options.url, root, options)
    return await _start(store)
