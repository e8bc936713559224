"""Behaviour beyond the conformance suite: temp-file sweep, key/path conflicts, listing order and
tokens across directories, probe results, closed stores."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambed.core.context import NodeContext
from streambed.core.errors import Closed, NotFound
from streambed.plugins.object_hdfs._errors import KeyConflict
from streambed.plugins.object_hdfs.options import FsspecOptions
from streambed.plugins.object_hdfs.plugin import open_fsspec_store
from streambed.plugins.object_hdfs.store import FsspecObjectStore

_ids = itertools.count()


async def _all(store: FsspecObjectStore, prefix: str, limit: int) -> list[str]:
    keys: list[str] = []
    token = None
    while True:
        page = await store.list(prefix, token=token, limit=limit)
        keys += [o.key for o in page.objects]
        if page.next_token is None:
            return keys
        assert len(page.objects) == limit
        token = page.next_token


def _plant_tmp(store: FsspecObjectStore, name: str, age_s: float | None = None) -> str:
    """A temporary file as an interrupted put leaves it (written behind the store's back)."""
    path = f"{store._root}/.tmp/{name}"
    store._fs.pipe_file(path, b"partial")
    if age_s is not None:  # a foreign name: only the file's mtime tells its age
        when = time.time() - age_s
        os.utime(path, (when, when))
    return path


async def _check_cleanup(store: FsspecObjectStore, *, with_mtime: bool) -> None:
    await store.put("keep/me", b"k")
    hour_ago = int((time.time() - 3700) * 1000)
    old = _plant_tmp(store, f"{hour_ago:013d}-{uuid.uuid4().hex}")
    young = _plant_tmp(store, f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex}")
    foreign = _plant_tmp(store, "foreign-old", age_s=7200) if with_mtime else None
    assert [o.key for o in (await store.list("")).objects] == ["keep/me"]

    assert await store.cleanup() == (2 if with_mtime else 1)
    assert not store._fs.exists(old) and store._fs.exists(young)
    if foreign is not None:
        assert not store._fs.exists(foreign)
    assert await store.get("keep/me") == b"k"
    assert await store.cleanup() == 0


async def test_cleanup_removes_only_stale_temp_files(fsspec_store: FsspecObjectStore) -> None:
    await _check_cleanup(fsspec_store, with_mtime=fsspec_store._kind == "local")


@pytest.mark.external
async def test_cleanup_on_hdfs(hdfs_store: FsspecObjectStore) -> None:
    await _check_cleanup(hdfs_store, with_mtime=False)


async def _check_conflicts(store: FsspecObjectStore) -> None:
    await store.put("a", b"file")
    with pytest.raises(KeyConflict):
        await store.put("a/b", b"under a file")
    with pytest.raises(NotFound):
        await store.get("a/b")
    with pytest.raises(NotFound):
        await store.head("a/b/c")
    assert (await store.list("a/b/")).objects == []
    await store.delete(["a/b"])
    await store.put("d/x", b"x")
    with pytest.raises(KeyConflict):
        await store.put("d", b"onto a directory")
    with pytest.raises(NotFound):
        await store.get("d")
    with pytest.raises(NotFound):
        await store.head("d")
    await store.delete(["d"])  # a directory is not an object: nothing happens
    assert await store.get("d/x") == b"x"
    assert [o.key for o in (await store.list("")).objects] == ["a", "d/x"]
    assert await _all(store, ".tmp/", 10) == []  # only the store's own files are there


async def test_key_conflicts_on_a_local_disk(tmp_path: Path) -> None:
    store = await open_fsspec_store(FsspecOptions(url=f"file://{tmp_path}/o"),
                                    NodeContext(data_dir=tmp_path))
    await _check_conflicts(store)
    await store.close()


@pytest.mark.external
async def test_key_conflicts_on_hdfs(hdfs_store: FsspecObjectStore) -> None:
    await _check_conflicts(hdfs_store)


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "../x", "a/./b", ".tmp/x", ".tmp"])
async def test_invalid_keys(fsspec_store: FsspecObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        await fsspec_store.put(key, b"x")
    with pytest.raises(ValueError):
        await fsspec_store.get(key)


async def test_interrupted_put_leaves_nothing(fsspec_store: FsspecObjectStore,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(tmp: str, path: str, if_none_match: bool) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(fsspec_store, "_rename", fail)
    with pytest.raises(Exception, match="disk went away"):
        await fsspec_store.put("k", b"data")
    monkeypatch.undo()
    with pytest.raises(NotFound):
        await fsspec_store.get("k")
    assert fsspec_store._fs.ls(f"{fsspec_store._root}/.tmp") == []


async def test_probe_finds_conditional_puts(fsspec_store: FsspecObjectStore) -> None:
    # os.link on a local disk refuses an existing name; memory:// has no such rename.
    assert fsspec_store.capabilities.conditional_put is (fsspec_store._kind == "local")
    if not fsspec_store.capabilities.conditional_put:
        with pytest.raises(ValueError, match="conditional"):
            await fsspec_store.put("c", b"x", if_none_match=True)


async def test_closed_store_refuses_calls(fsspec_store: FsspecObjectStore) -> None:
    await fsspec_store.close()
    with pytest.raises(Closed):
        await fsspec_store.put("k", b"x")
    await fsspec_store.close()


# Components from a tiny alphabet where byte order and per-directory order disagree ("-" < "/").
_component = st.text(alphabet="a-0", min_size=1, max_size=3)
_key = st.lists(_component, min_size=1, max_size=3).map("/".join)


def _no_file_dir_clash(keys: set[str]) -> bool:
    return not any(other.startswith(k + "/") for k in keys for other in keys)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.sets(_key, min_size=1, max_size=25).filter(_no_file_dir_clash),
       prefix=st.sampled_from(["", "a", "a/", "a-", "0/a", "-"]),
       limit=st.integers(1, 6))
async def test_paging_walks_directories_in_order(tmp_path: Path, keys: set[str], prefix: str,
                                                 limit: int) -> None:
    store = await open_fsspec_store(FsspecOptions(url=f"memory://walk-{next(_ids)}"),
                                    NodeContext(data_dir=tmp_path))
    try:
        for key in keys:
            await store.put(key, key.encode())
        listed = await _all(store, prefix, limit)
        # Every key exactly once, directories walked in name order (byte order per directory).
        assert listed == sorted((k for k in keys if k.startswith(prefix)), key=lambda k: k.split("/"))
    finally:
        await store.close()
