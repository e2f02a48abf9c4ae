"""The PostgreSQL engine: several daemon instances on one database.

Data access is the same synchronous functions over a :class:`Db` that SQLite
runs (``store/*.py``). Here ``write``/``read`` take a pooled asyncpg
connection, open a transaction, and run the function in a greenlet on the
event loop's thread: each ``Db`` call hands its asyncpg coroutine to the
driving task, which awaits it (the loop serves HTTP and other transactions
meanwhile) and switches back in with the result, the way SQLAlchemy's
asyncio support works. Measured here under load, a statement costs 90-150 us
this way against 240-550 us when the function ran in a worker thread and
hopped to the loop per statement (``run_coroutine_threadsafe``); the price is
that the function's own Python (parsing, classification) runs on the loop
thread between its statements.

``?`` placeholders become ``$n`` (cached per SQL text). asyncpg is strict
about argument types where SQLite converts silently (an ``int`` for a TEXT
column, ``3.0`` for an INTEGER one); a call refused for that reason is
retried once with the arguments converted to the statement's parameter
types, which is what SQLite's column affinity would have done.

Between instances:

* work is claimed with ``FOR UPDATE SKIP LOCKED`` (``store/inbound.py``,
  ``store/outbox.py``); a dead instance's transaction rolls back and its rows
  are claimable again at once;
* :meth:`PostgresStore.try_lock` takes a session advisory lock on a dedicated
  connection: a single-consumer channel (IMAP mailbox, long-poll bot) is
  owned by one instance, and the lock vanishes with that instance's
  connection, so another takes over within its next poll;
* transaction advisory locks (:meth:`_PgDb.xact_lock`, used through
  ``store/locks.py``) keep two instances from opening the same conversation
  or contact twice and serialize assignment per team;
* ``notify``/``listen`` carry live-update events over ``LISTEN/NOTIFY`` on a
  dedicated connection that reconnects by itself.

Advisory lock keys are hashed from names together with the current schema,
so installations in different schemas of one database never share a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import asyncpg.exceptions
import greenlet
import structlog

from .base import Db, Row, Store, TransientError, migration_files

T = TypeVar("T")
P = ParamSpec("P")

log = structlog.get_logger(__name__)

# ``?`` outside string literals, quoted identifiers and comments.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?")

# Errors that say "another transaction got in the way": retry, don't blame the data.
_TRANSIENT = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.LockNotAvailableError,
)


def _statement_timeout(exc: asyncpg.exceptions.QueryCanceledError) -> bool:
    """A statement past ``statement_timeout`` is retried like a conflict (by
    a caller that counts: TransientError.timed_out); one cancelled for
    another reason (a stop) is not."""
    return "statement timeout" in str(exc)


# Lock key ranges (one 64-bit space per database): session locks for channel
# ownership and the migration lock below zero; transaction locks for work
# items in [0, 2^62); team locks in [2^62, 2^63), above every work-item key,
# so taking a team lock after the message's own locks keeps the global order.
_RANK_BITS = {0: 0, 1: 1 << 62}


@functools.lru_cache(maxsize=8192)
def to_dollar(sql: str) -> str:
    """``?`` placeholders to PostgreSQL's ``$1, $2 ...``."""
    counter = itertools.count(1)

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        return f"${next(counter)}" if tok == "?" else tok

    return _TOKEN.sub(sub, sql)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def lock_key(namespace: str, name: str, rank: int = 0) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    h = int.from_bytes(hashlib.blake2b(f"{namespace}\0{name}".encode(), digest_size=8).digest())
    if rank < 0:  # session locks: the negative half
        return -1 - (h >> 1)
    return (h & ((1 << 62) - 1)) | _RANK_BITS[rank]


def _refused_argument(exc: BaseException) -> bool:
    """asyncpg refused an argument while encoding it (nothing was sent, the
    transaction is intact): a DataError caused by the codec's TypeError."""
    return type(exc) is asyncpg.exceptions.DataError and isinstance(
        exc.__cause__, TypeError | ValueError | OverflowError
    )


def _numeric(text: str) -> int | float:
    # SUM over BIGINT and AVG give NUMERIC; SQLite gives int or float.
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _coerce(value: Any, pg_type: str) -> Any:
    """Convert an argument the way SQLite's column affinity would."""
    if value is None:
        return None
    if pg_type in ("text", "varchar", "bpchar", "name"):
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8", "replace")
        return value if isinstance(value, str) else str(value)
    if pg_type in ("int2", "int4", "int8"):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return int(value) if isinstance(value, bool) else value
    if pg_type in ("float4", "float8"):
        if isinstance(value, int | str):
            return float(value)
        return value
    if pg_type == "bytea":
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
    if pg_type == "bool" and isinstance(value, int):
        return bool(value)
    return value


def _set_event(event: asyncio.Event, *_: Any) -> None:
    event.set()


class _Worker(greenlet.greenlet):
    """Runs a unit of work; each statement switches to the driving coroutine."""


async def _drive(fn: Callable[..., T], *args: Any) -> T:
    """Run synchronous ``fn`` on the event loop's thread: whenever it needs a
    result from asyncpg it hands the coroutine over (``_PgDb._wait``) and
    this awaits it and switches back in, the way SQLAlchemy's asyncio
    support does. No thread hop per statement."""
    worker = _Worker(fn)
    # The caller's context variables (structlog's bound request fields) stay
    # visible inside the work, as they would in the same task.
    worker.gr_context = contextvars.copy_context()
    value = worker.switch(*args)
    cancelled: asyncio.CancelledError | None = None
    while not worker.dead:
        try:
            result = await value
        except GeneratorExit:
            # This coroutine is being closed (its loop is gone, or the garbage
            # collector is at work, from any stack): never switch into the
            # work from here. Left suspended, the greenlet is killed safely
            # when collected; its Db refuses further statements.
            value.close()
            raise
        except asyncio.CancelledError as exc:
            # The work sees the cancellation (its savepoints roll back, its Db
            # refuses further statements) but however it ends, the caller is
            # told it was cancelled: a work that catches the error, or turns
            # it into another, must not make its task outlive a cancel()
            # (a daemon's stop() would wait for it forever).
            cancelled = exc
            try:
                value = worker.throw(exc)
            except BaseException as other:
                if other is exc:
                    raise
                raise exc from other
        except BaseException as exc:  # handed to the work, which may handle it
            value = worker.throw(exc)
        else:
            value = worker.switch(result)
    if cancelled is not None:
        raise cancelled
    return value


class _Cancelled(Exception):
    """The awaiting task was cancelled: stop issuing statements."""


class _PgDb:
    """The synchronous Db primitives over one asyncpg connection in one
    transaction, called from the greenlet that runs the unit of work."""

    dialect = "postgres"

    __slots__ = ("_conn", "_release", "_sp", "_store", "cancelled", "held")

    def __init__(self, store: PostgresStore, conn: asyncpg.Connection) -> None:
        self._store = store
        self._conn = conn
        self._sp = itertools.count()
        self.cancelled = False
        # Transaction advisory locks held (keys), restored on savepoint rollback
        # because PostgreSQL releases the ones taken inside it.
        self.held: frozenset[int] = frozenset()
        # A savepoint that ended well is released together with the next
        # savepoint command (one round trip instead of two per message).
        self._release: str | None = None

    def _wait(self, method: Callable[..., Any], *args: Any) -> Any:
        """``await method(*args)`` from the work's greenlet."""
        current = greenlet.getcurrent()
        if self.cancelled:
            raise _Cancelled("transaction cancelled")
        if not isinstance(current, _Worker):
            raise RuntimeError("a Db is only usable inside Store.write() or Store.read()")
        try:
            return current.parent.switch(method(*args))
        except greenlet.GreenletExit:
            self.cancelled = True  # being killed: nothing more goes to the server
            raise

    def _call(self, method: str, sql: str, params: Sequence[Any]) -> Any:
        q = to_dollar(sql)
        fn = getattr(self._conn, method)
        try:
            try:
                return self._wait(fn, q, *params)
            except asyncpg.exceptions.DataError as exc:
                if not _refused_argument(exc):
                    raise
                # Refused before it was sent (the transaction is intact):
                # convert to the statement's parameter types and retry once.
                types = self._store.param_types(q)
                if types is None:
                    types = self._wait(self._store.fetch_param_types, self._conn, q)
                fixed = [_coerce(v, t) for v, t in zip(params, types, strict=True)]
                return self._wait(fn, q, *fixed)
        except _TRANSIENT as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        except asyncpg.exceptions.QueryCanceledError as exc:
            if not _statement_timeout(exc):
                raise
            raise TransientError(f"{type(exc).__name__}: {exc}", timed_out=True) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._call("fetchrow", sql, params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._call("fetch", sql, params)

    def val(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._call("fetchval", sql, params)

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        status = self._call("execute", sql, params)
        # "UPDATE 3", "INSERT 0 1", "DELETE 0": the last word is the row count.
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        q = to_dollar(sql)
        try:
            try:
                self._wait(self._conn.executemany, q, rows)
            except asyncpg.exceptions.DataError as exc:
                if not _refused_argument(exc):
                    raise
                types = self._store.param_types(q)
                if types is None:
                    types = self._wait(self._store.fetch_param_types, self._conn, q)
                fixed = [tuple(_coerce(v, t) for v, t in zip(r, types, strict=True)) for r in rows]
                self._wait(self._conn.executemany, q, fixed)
        except _TRANSIENT as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        except asyncpg.exceptions.QueryCanceledError as exc:
            if not _statement_timeout(exc):
                raise
            raise TransientError(f"{type(exc).__name__}: {exc}", timed_out=True) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"sp{next(self._sp)}"
        held = self.held
        before = f"RELEASE SAVEPOINT {self._release}; " if self._release else ""
        self._release = None
        self._wait(self._conn.execute, f"{before}SAVEPOINT {name}")
        try:
            yield
        except BaseException as exc:
            self._release = None  # any inner one is rolled back with this
            if self.cancelled or isinstance(exc, asyncio.CancelledError | _Cancelled):
                # The statement in flight was abandoned: the connection is
                # discarded, nothing more may be sent on it.
                self.cancelled = True
            else:
                self._wait(
                    self._conn.execute, f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
                )
            self.held = held
            raise
        # Released with the next savepoint, or by the commit. Releasing this
        # one releases any inner one still pending.
        self._release = name

    def xact_lock(self, names: Iterable[str], *, rank: int = 0) -> bool:
        """Take transaction advisory locks on ``names`` (released at commit or
        rollback). Deadlock-free by construction: this transaction waits for
        a lock only when every key it asks for is above every key it holds
        (one global order); otherwise it only tries, and returns False if
        another transaction holds one of them (the caller leaves the work for
        later)."""
        want = sorted({lock_key(self._store.lock_namespace, n, rank) for n in names} - self.held)
        if not want:
            return True
        try:
            if not self.held or want[0] > max(self.held):
                self._wait(
                    self._conn.execute,
                    "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
                    want,
                )
                self.held = self.held | set(want)
                return True
            rows = self._wait(
                self._conn.fetch,
                "SELECT k, pg_try_advisory_xact_lock(k) AS ok FROM unnest($1::bigint[]) AS k",
                want,
            )
        except (*_TRANSIENT, asyncpg.exceptions.QueryCanceledError) as exc:
            # A wait longer than statement_timeout is another transaction
            # being slow, not bad data: retried later like any conflict.
            timed_out = isinstance(exc, asyncpg.exceptions.QueryCanceledError)
            raise TransientError(f"{type(exc).__name__}: {exc}", timed_out=timed_out) from exc
        got = {int(r["k"]) for r in rows if r["ok"]}
        self.held = self.held | got
        return len(got) == len(want)


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        application_name: str = "omnidesk",
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.statement_timeout = statement_timeout
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self.lock_namespace = ""
        self._pool: asyncpg.Pool | None = None
        self._param_types: dict[str, list[str]] = {}
        # LISTEN connection and its subscriptions
        self._listen_conn: asyncpg.Connection | None = None
        self._listeners: dict[str, list[Callable[[str], None]]] = {}
        self._listen_task: asyncio.Task[None] | None = None
        self._own_pids: set[int] = set()
        # session advisory locks (channel ownership)
        self._lock_conn: asyncpg.Connection | None = None
        self._lock_mutex = asyncio.Lock()
        self._locks: dict[str, int] = {}
        self._closing = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    # -- connections -------------------------------------------------------
    def _server_settings(self) -> dict[str, str]:
        ms = max(1, int(self.statement_timeout * 1000))
        return {
            "application_name": self.application_name,
            "statement_timeout": str(ms),
            # A transaction left open by a hung client (not a dead one: that
            # closes its socket) must not hold rows and locks for ever.
            "idle_in_transaction_session_timeout": str(max(60_000, 4 * ms)),
        }

    async def _connect(self, *, timeouts: bool = True) -> asyncpg.Connection:
        settings = self._server_settings()
        if not timeouts:
            settings = {"application_name": self.application_name}
        try:
            conn = await asyncpg.connect(
                self.url, timeout=self.connect_timeout, server_settings=settings
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}"
            ) from exc
        await self._init_conn(conn)
        return conn

    @staticmethod
    async def _init_conn(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
        )

    async def open(self) -> None:
        self._closing = False
        mig = await self._connect(timeouts=False)  # migrations may run long
        try:
            schema = await mig.fetchval("SELECT current_schema()")
            if schema is None:
                raise ConnectionError(
                    f"{redact_url(self.url)}: no schema to work in (the search_path names"
                    " none that exists; create it or fix search_path)"
                )
            self.lock_namespace = str(schema)
            await self._migrate(mig)
        finally:
            await mig.close()
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings=self._server_settings(),
                statement_cache_size=1024,
                # Connections are kept, not recycled when idle: notifications
                # are recognised as our own by the sending backend's pid.
                max_inactive_connection_lifetime=0,
                init=self._init_conn,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}"
            ) from exc

    async def close(self) -> None:
        self._closing = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        for conn in (self._listen_conn, self._lock_conn):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
        self._listen_conn = self._lock_conn = None
        self._locks.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, Exception):
                pool.terminate()

    # -- migrations ----------------------------------------------------------
    async def _migrate(self, conn: asyncpg.Connection) -> None:
        # Two instances starting together: the second waits here, then finds
        # everything applied.
        key = lock_key(self.lock_namespace, "migrations", -1)
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at DOUBLE PRECISION NOT NULL)"
            )
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            known = migration_files("postgres")
            for version, name, path in known:
                if version in applied:
                    continue
                t0 = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                        version,
                        name,
                        time.time(),
                    )
                log.info(
                    "migration_applied",
                    version=version,
                    name=name,
                    seconds=round(time.perf_counter() - t0, 3),
                )
            newest = max((v for v, _, _ in known), default=0)
            ahead = sorted(v for v in applied if v > newest)
            if ahead:
                log.warning(
                    "schema_newer_than_code",
                    detail="the database has migrations this version of omnidesk does not"
                    " know (another instance was upgraded first?)",
                    unknown=ahead,
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def migrations(self) -> list[tuple[int, str, bool]]:
        assert self._pool is not None, "store is not open"
        async with self._pool.acquire() as conn:
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        return [(v, n, v in applied) for v, n, _ in migration_files("postgres")]

    # -- units of work -------------------------------------------------------
    def param_types(self, q: str) -> list[str] | None:
        return self._param_types.get(q)

    async def fetch_param_types(self, conn: asyncpg.Connection, q: str) -> list[str]:
        stmt = await conn.prepare(q)
        types = [t.name for t in stmt.get_parameters()]
        self._param_types[q] = types
        return types

    async def _run(
        self,
        conn: asyncpg.Connection,
        fn: Callable[..., T],
        args: Any,
        kwargs: Any,
    ) -> T:
        return await _drive(functools.partial(fn, _PgDb(self, conn), *args, **kwargs))

    async def write(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._pool is not None, "store is not open"
        async with self._pool.acquire() as conn:
            try:
                tx = conn.transaction()
                await tx.start()
                try:
                    result = await self._run(conn, fn, args, kwargs)
                except Exception:
                    with contextlib.suppress(Exception):
                        await tx.rollback()
                    raise
                try:
                    await tx.commit()
                except _TRANSIENT as exc:  # serialization failure at commit
                    raise TransientError(f"{type(exc).__name__}: {exc}") from exc
                return result
            except asyncio.CancelledError:
                # Cut off mid-statement (or mid-commit): the connection's state
                # is unknown. Closing it rolls an open transaction back.
                conn.terminate()
                raise

    async def read(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._pool is not None, "store is not open"
        async with self._pool.acquire() as conn:
            try:
                tx = conn.transaction(isolation="repeatable_read", readonly=True)
                await tx.start()
                try:
                    return await self._run(conn, fn, args, kwargs)
                finally:
                    if not conn.is_closed():
                        with contextlib.suppress(Exception):
                            await tx.rollback()
            except asyncio.CancelledError:
                conn.terminate()
                raise

    # -- between instances ---------------------------------------------------
    @property
    def multi_instance(self) -> bool:
        return True

    def _pg_channel(self, channel: str) -> str:
        # NOTIFY channels are database-wide: installations in other schemas of
        # the same database must not hear ours. Identifiers stop at 63 bytes.
        name = f"{channel}.{self.lock_namespace}"
        if len(name.encode()) > 63:
            digest = hashlib.blake2b(self.lock_namespace.encode(), digest_size=8).hexdigest()
            name = f"{channel[:40]}.{digest}"
        return name

    async def notify(self, channel: str, payload: str) -> None:
        assert self._pool is not None, "store is not open"
        async with self._pool.acquire() as conn:
            self._own_pids.add(conn.get_server_pid())
            await conn.execute("SELECT pg_notify($1, $2)", self._pg_channel(channel), payload)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        channel = self._pg_channel(channel)
        first = channel not in self._listeners
        self._listeners.setdefault(channel, []).append(callback)
        if self._listen_task is None:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._listen_task = asyncio.create_task(self._keep_listening(ready), name="pg-listen")
            await ready  # the first connection is up (or failed loudly)
        elif first and self._listen_conn is not None and not self._listen_conn.is_closed():
            await self._listen_conn.add_listener(channel, self._dispatch)

    def _dispatch(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if pid in self._own_pids:
            return  # our own notification: already published locally
        for cb in list(self._listeners.get(channel, ())):
            try:
                cb(payload)
            except Exception:
                log.exception("notification_handler_failed", channel=channel)

    async def _keep_listening(self, ready: asyncio.Future[None]) -> None:
        """Hold a LISTEN connection; when it drops, reconnect with backoff and
        subscribe again (events sent meanwhile are lost: they are hints the
        inbox refetches after a ``resync``)."""
        delay = 0.2
        while not self._closing:
            lost = asyncio.Event()
            try:
                conn = await self._connect()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                for ch in self._listeners:
                    await conn.add_listener(ch, self._dispatch)
                self._own_pids.add(conn.get_server_pid())
            except ConnectionError as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                log.warning("listen_reconnect_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._listen_conn = conn
            if not ready.done():
                ready.set_result(None)
            else:
                log.info("listen_reconnected")
                for cbs in self._listeners.values():
                    for cb in cbs:
                        with contextlib.suppress(Exception):
                            cb('[{"type": "resync"}]')
            delay = 0.2
            await lost.wait()
            if not self._closing:
                log.warning("listen_connection_lost")

    def _session_key(self, name: str) -> int:
        return lock_key(self.lock_namespace, name, -1)

    async def _lock_connection(self) -> asyncpg.Connection:
        conn = self._lock_conn
        if conn is not None and not conn.is_closed():
            return conn
        self._forget_locks("the lock connection closed")
        conn = await self._connect(timeouts=False)
        conn.add_termination_listener(self._on_lock_conn_lost)
        self._lock_conn = conn
        return conn

    def _forget_locks(self, why: str) -> None:
        if self._locks and not self._closing:
            # Session locks die with their connection: another instance may
            # own these channels now.
            log.error("channel_locks_lost", locks=sorted(self._locks), detail=why)
        self._locks.clear()

    def _on_lock_conn_lost(self, _conn: Any) -> None:
        self._forget_locks("the lock connection closed")

    async def try_lock(self, name: str) -> bool:
        """Take (or confirm) the session lock ``name``. Called again while
        held, it checks the connection is alive, so the daemon's periodic
        call notices a lost lock; it is then taken afresh if still free."""
        async with self._lock_mutex:
            conn = self._lock_conn
            if name in self._locks and conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self.connect_timeout)
                    return True
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    # Half-open or dead: drop it rather than trust it.
                    self._forget_locks("the lock connection stopped answering")
                    conn.terminate()
            conn = await self._lock_connection()
            key = self._session_key(name)
            ok = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            if ok:
                self._locks[name] = key
            return ok

    async def unlock(self, name: str) -> None:
        async with self._lock_mutex:
            key = self._locks.pop(name, None)
            conn = self._lock_conn
            if key is not None and conn is not None and not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    def locks_held(self) -> list[str]:
        """Names of the session locks this instance holds (for health output)."""
        return sorted(self._locks)
