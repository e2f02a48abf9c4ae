"""The embedded engine: one SQLite file in WAL mode through aiosqlite.

One writer connection (SQLite allows one writer at a time anyway) and a few
reader connections; each is an aiosqlite connection with its own thread. A
unit of work runs *inside* that thread (aiosqlite's ``_execute``), so the
pipeline's dozen small statements per message do not each pay an event-loop
round trip (~75 µs each, measured), which is what lets one process pass
several thousand messages a second.

``synchronous=FULL``: a COMMIT is on disk before it returns, which is the
promise behind every channel's acknowledgement (a power cut must not lose an
acknowledged message; WAL + NORMAL only survives process crashes).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from .base import Db, Row, Store, migration_files

T = TypeVar("T")
P = ParamSpec("P")


class _SqliteDb:
    dialect = "sqlite"

    __slots__ = ("_conn", "_sp")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._sp = itertools.count()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def val(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"sp{next(self._sp)}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")


# How long a write waits for another process's write lock (the daemon and a
# pipeline process, or a CLI command beside the daemon) before it fails.
LOCK_TIMEOUT = 10.0


def _configure(conn: sqlite3.Connection, *, readonly: bool) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(LOCK_TIMEOUT * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA mmap_size = 268435456")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL").fetchall()


def _begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE takes the write lock up front: a transaction that reads
    and then writes can never fail half-way with SQLITE_BUSY. Held by another
    process, the lock is tried again after 0.1 ms, doubling up to 2 ms."""
    delay, deadline = 0.0001, time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # the writer thread's own: the event loop goes on
        delay = min(delay * 2, 0.002)


def _in_write_tx(
    conn: sqlite3.Connection,
    fn: Callable[..., T],
    args: Any,
    kwargs: Any,
    on_locked: Callable[[], None] | None = None,
) -> T:
    try:
        _begin(conn)
    finally:
        if on_locked is not None:
            on_locked()
    try:
        result = fn(_SqliteDb(conn), *args, **kwargs)
        _index_pending_search(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def shared_writes_waiting(counters: Any) -> int:
    """Writes another process's store has queued (see ``share_waiting``)."""
    return max(0, int(counters[0]) - int(counters[1]))


def _index_pending_search(conn: sqlite3.Connection) -> None:
    """Bring the search index up to date with what this transaction changed,
    all at once and outside any savepoint (migration 0004 says why):
    messages added or edited, contacts whose name or identities changed."""
    if conn.execute("SELECT 1 FROM messages_fts_pending LIMIT 1").fetchone() is not None:
        conn.execute(
            "INSERT INTO messages_fts (rowid, subject, text) SELECT m.id, m.subject, m.text"
            " FROM messages_fts_pending p JOIN messages m ON m.id = p.message_id"
        )
        conn.execute("DELETE FROM messages_fts_pending")
    if conn.execute("SELECT 1 FROM contacts_fts_pending LIMIT 1").fetchone() is not None:
        conn.execute(
            "DELETE FROM contacts_fts WHERE rowid IN (SELECT contact_id FROM contacts_fts_pending)"
        )
        conn.execute(
            "INSERT INTO contacts_fts (rowid, name, identities)"
            " SELECT c.id, c.name, COALESCE((SELECT group_concat("
            "i.address || ' ' || COALESCE(i.display_name, ''), ' ')"
            " FROM identities i WHERE i.contact_id = c.id), '')"
            " FROM contacts_fts_pending p JOIN contacts c ON c.id = p.contact_id"
        )
        conn.execute("DELETE FROM contacts_fts_pending")


def _in_read_tx(conn: sqlite3.Connection, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    conn.execute("BEGIN")
    try:
        return fn(_SqliteDb(conn), *args, **kwargs)
    finally:
        conn.execute("ROLLBACK")


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, path in migration_files("sqlite"):
        if version in applied:
            continue
        script = path.read_text(encoding="utf-8")
        # executescript commits first; wrapping the script in BEGIN/COMMIT makes
        # the migration and its bookkeeping row one atomic step.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;INSERT INTO schema_migrations VALUES "
                f"({version}, '{name}', (julianday('now') - 2440587.5) * 86400.0);\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _list_migrations(conn: sqlite3.Connection) -> list[tuple[int, str, bool]]:
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    return [(v, n, v in applied) for v, n, _ in migration_files("sqlite")]


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, url: str, *, readers: int = 2) -> None:
        self.url = url
        path = url[len("sqlite:///") :]
        self.path = path
        self._readers_n = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.cycle(range(readers))
        # Writes handed to the writer thread, and writes that hold the write
        # lock (or are done): each counter is changed by one thread only.
        self._writes_submitted = 0
        self._writes_started = 0
        # The same two counters in memory shared with a pipeline process
        # (``share_waiting``), which lets this process's writes go first.
        self._shared: Any = None

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        await self._call(conn, _configure, readonly=readonly)
        return conn

    @staticmethod
    async def _call(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        # aiosqlite runs every call in the connection's own thread; ``_execute``
        # is how it does so for its own methods. We hand it a function that
        # receives the sqlite3 connection (aiosqlite pinned below 0.23 for this).
        def bound() -> T:
            return fn(conn._conn, *args, **kw)

        return await conn._execute(bound)

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect(readonly=False)
        await self._call(self._writer, _migrate)
        # From now on the writer waits for the write lock itself (``_begin``):
        # SQLite's busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries
        # and keeps missing the short gaps between another process's writes.
        await self._call(self._writer, lambda c: c.execute("PRAGMA busy_timeout = 0"))
        if self.path == ":memory:":
            self._readers = [self._writer]  # a memory database is private to its connection
        else:
            self._readers = [await self._connect(readonly=True) for _ in range(self._readers_n)]

    async def close(self) -> None:
        conns = [self._writer, *self._readers]
        self._writer, self._readers = None, []
        for conn in {id(c): c for c in conns if c is not None}.values():
            await conn.close()

    async def write(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._writer is not None, "store is not open"
        self._writes_submitted += 1
        if self._shared is not None:
            self._shared[0] = self._writes_submitted
        return await self._call(self._writer, self._locked, fn, args, kwargs)

    def _locked(self, conn: sqlite3.Connection, fn: Callable[..., T], args: Any, kw: Any) -> T:
        return _in_write_tx(conn, fn, args, kw, self._started)

    def _started(self) -> None:  # in the writer thread: holds the lock, or gave up
        self._writes_started += 1
        if self._shared is not None:
            self._shared[1] = self._writes_started

    def writes_waiting(self) -> int:
        """Writes queued behind the one running (callable from the writer
        thread: the pipeline asks it to decide whether to end its batch)."""
        return max(0, self._writes_submitted - self._writes_started)

    def share_waiting(self, counters: Any) -> None:
        """Publish this store's write counters into ``counters`` (two shared
        64-bit integers, e.g. ``multiprocessing.RawArray("q", 2)``), which
        ``shared_writes_waiting`` reads in another process."""
        counters[0], counters[1] = self._writes_submitted, self._writes_started
        self._shared = counters

    async def read(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._readers, "store is not open"
        conn = self._readers[next(self._next_reader) % len(self._readers)]
        return await self._call(conn, _in_read_tx, fn, args, kwargs)

    async def scrub(self) -> None:
        """Checkpoint the WAL into the database and truncate it: its frames
        still hold pages as they were before an erasure (the erasure ran with
        ``secure_delete``, so the database's freed pages are zeroed). A reader
        in the middle of a snapshot keeps frames alive: try again shortly."""
        assert self._writer is not None, "store is not open"

        def checkpoint(conn: sqlite3.Connection) -> bool:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy

        for _ in range(100):
            if await self._call(self._writer, checkpoint):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the WAL could not be checkpointed: a reader kept it busy")

    async def migrations(self) -> list[tuple[int, str, bool]]:
        assert self._writer is not None, "store is not open"
        return await self._call(self._writer, _list_migrations)
