"""The built-in single-broker metadata store: the transactional KV in one SQLite file.

All database work runs on one dedicated thread (SQLite connections are not shared across threads),
each transaction is one ``BEGIN IMMEDIATE … COMMIT`` with ``synchronous=FULL`` in WAL journal mode,
so it is durable when ``txn`` returns. Keys are stored as UTF-8 BLOBs, which SQLite compares
bytewise: ranges come back in exactly the order etcd would return them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from streambed.core.context import NodeContext
from streambed.core.errors import Closed, Unavailable
from streambed.core.metadata._kv import compare_holds, prefix_end
from streambed.core.metadata.api import Compare, Delete, KeyValue, Put, TxnResult

__all__ = ["LocalMetadataOptions", "LocalMetadataStore", "open_local_metadata"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, rev INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
"""


class LocalMetadataOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(None, description="SQLite file; default <data_dir>/metadata.sqlite3.")
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite synchronous mode; FULL makes every commit durable."
    )


class LocalMetadataStore:
    def __init__(self, path: Path, synchronous: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metadata-sqlite")
        self._db: sqlite3.Connection | None = None
        self._synchronous = synchronous
        self._closed = False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise Closed(f"metadata store {self._path} is closed")
        loop = asyncio.get_running_loop()

        def call() -> T:
            assert self._db is not None
            return fn(self._db)

        try:
            return await loop.run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"metadata store {self._path}: {exc}") from exc

    async def open(self) -> None:
        def connect() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.executescript(_SCHEMA)
            self._db = db

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, connect)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"metadata store {self._path} cannot be opened: {exc}") from exc

    async def get(self, key: str) -> KeyValue | None:
        def query(db: sqlite3.Connection) -> KeyValue | None:
            row = db.execute("SELECT value, rev FROM kv WHERE key = ?", (key.encode(),)).fetchone()
            return None if row is None else KeyValue(key, bytes(row[0]), int(row[1]))

        return await self._run(query)

    async def range(
        self, prefix: str, *, start_after: str | None = None, limit: int = 0
    ) -> list[KeyValue]:
        raw = prefix.encode()
        lower = max(raw, start_after.encode()) if start_after is not None else raw
        upper = prefix_end(raw)
        sql = "SELECT key, value, rev FROM kv WHERE key >= ?"
        args: list[object] = [lower]
        if start_after is not None:
            sql += " AND key > ?"
            args.append(start_after.encode())
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)

        def query(db: sqlite3.Connection) -> list[KeyValue]:
            return [
                KeyValue(bytes(k).decode(), bytes(v), int(r))
                for k, v, r in db.execute(sql, args).fetchall()
            ]

        return await self._run(query)

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Put | Delete],
        on_failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        compares, on_success, on_failure = list(compares), list(on_success), list(on_failure)

        def transact(db: sqlite3.Connection) -> TxnResult:
            db.execute("BEGIN IMMEDIATE")
            try:
                ok = True
                for compare in compares:
                    row = db.execute(
                        "SELECT rev FROM kv WHERE key = ?", (compare.key.encode(),)
                    ).fetchone()
                    if not compare_holds(compare, int(row[0]) if row else 0):
                        ok = False
                        break
                ops = on_success if ok else on_failure
                revision = int(db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0])
                if ops:
                    revision += 1
                    for op in ops:
                        if isinstance(op, Put):
                            db.execute(
                                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)",
                                (op.key.encode(), bytes(op.value), revision),
                            )
                        elif op.prefix:
                            raw = op.key.encode()
                            upper = prefix_end(raw)
                            if upper is None:
                                db.execute("DELETE FROM kv WHERE key >= ?", (raw,))
                            else:
                                db.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (raw, upper))
                        else:
                            db.execute("DELETE FROM kv WHERE key = ?", (op.key.encode(),))
                    db.execute("UPDATE meta SET value = ? WHERE name='revision'", (revision,))
                db.execute("COMMIT")
                return TxnResult(ok, revision)
            except BaseException:
                db.execute("ROLLBACK")
                raise

        return await self._run(transact)

    async def revision(self) -> int:
        return await self._run(
            lambda db: int(db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0])
        )

    async def close(self) -> None:
        if self._closed:
            return

        def shutdown(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(shutdown)
        self._closed = True
        self._executor.shutdown(wait=True)


async def open_local_metadata(
    options: LocalMetadataOptions, context: NodeContext
) -> LocalMetadataStore:
    path = options.path if options.path is not None else context.local_path("metadata.sqlite3")
    store = LocalMetadataStore(Path(path), options.synchronous)
    await store.open()
    return store
