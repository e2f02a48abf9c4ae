"""The PostgreSQL engine's own promises: placeholders and argument types as
SQLite would take them, transactions, savepoints, timeouts and cancellation,
migrations that two instances can start at once, channel ownership through
session locks, transaction locks that never deadlock, and notifications
between instances that survive a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from omnidesk.model import Identity
from omnidesk.store import Db, open_store
from omnidesk.store.base import TransientError, migration_files
from omnidesk.store.contacts import resolve_contact
from omnidesk.store.locks import LockBusy, xact_lock
from omnidesk.store.postgres import PostgresStore, lock_key, redact_url, to_dollar
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = open_store(pg_url, statement_timeout=5.0)
    assert isinstance(s, PostgresStore)
    await s.open()
    yield s
    await s.close()


async def other(pg_url: str, **kw: Any) -> PostgresStore:
    s = open_store(pg_url, **kw)
    assert isinstance(s, PostgresStore)
    await s.open()
    return s


async def terminate(pg_url: str, pid: int) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def eventually(pred: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_placeholders_outside_literals_and_comments_only() -> None:
    assert to_dollar("SELECT ? , '?', \"a?\" -- why?\n, ?") == (
        "SELECT $1 , '?', \"a?\" -- why?\n, $2"
    )
    assert to_dollar("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', $1"


def test_url_password_is_redacted_and_lock_keys_are_stable() -> None:
    assert redact_url("postgresql://u:s3cret@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert lock_key("s", "channel:imap", -1) == lock_key("s", "channel:imap", -1) < 0
    assert 0 <= lock_key("s", "ident:x") < (1 << 62) <= lock_key("s", "team:x", 1)
    assert lock_key("a", "x") != lock_key("b", "x")  # one lock space per schema


async def test_arguments_are_converted_like_sqlite_affinity(pg: PostgresStore) -> None:
    def work(db: Db) -> list[Any]:
        db.run("CREATE TEMP TABLE t (s TEXT, i BIGINT, f DOUBLE PRECISION, b BYTEA)")
        db.run("INSERT INTO t VALUES (?, ?, ?, ?)", (42, 3.0, 7, bytearray(b"\x00\xff")))
        db.many("INSERT INTO t VALUES (?, ?, ?, ?)", [(1.5, "8", 2, memoryview(b"z"))])
        row = db.one("SELECT s, i, f, b FROM t WHERE s = ?", (42,))
        assert row is not None
        return [
            *row.values(),  # type: ignore[attr-defined]
            db.val("SELECT SUM(i) FROM t"),
            db.val("SELECT AVG(i) FROM t"),
            db.run("UPDATE t SET s = s"),
            db.val("SELECT s FROM t WHERE i = ?", ("8",)),
        ]

    assert await pg.write(work) == ["42", 3, 7.0, b"\x00\xff", 11, 5.5, 2, "1.5"]


async def test_savepoint_rolls_back_data_and_forgets_its_locks(pg: PostgresStore) -> None:
    def work(db: Db) -> tuple[Any, ...]:
        db.run("CREATE TEMP TABLE t (x INT)")
        xact_lock(db, ["outer"])
        with pytest.raises(ZeroDivisionError), db.savepoint():
            db.run("INSERT INTO t VALUES (1)")
            xact_lock(db, ["inner"])
            raise ZeroDivisionError
        held = len(db.held)  # type: ignore[attr-defined]
        with pytest.raises(asyncpg.UniqueViolationError), db.savepoint():
            db.run("CREATE UNIQUE INDEX ON t (x)")
            db.run("INSERT INTO t VALUES (2), (2)")
        db.run("INSERT INTO t VALUES (3)")  # the transaction is usable again
        return db.val("SELECT COUNT(*) FROM t"), held

    assert await pg.write(work) == (1, 1)


async def test_read_is_a_read_only_snapshot(pg: PostgresStore) -> None:
    def bad(db: Db) -> None:
        db.run("CREATE TABLE nope (x INT)")

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await pg.read(bad)


async def test_write_rolls_back_on_error(pg: PostgresStore) -> None:
    def fail(db: Db) -> None:
        resolve_contact(db, Identity("email", "a@example.com"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await pg.write(fail)
    assert await pg.read(lambda db: db.val("SELECT COUNT(*) FROM contacts")) == 0


async def test_statement_timeout_stops_a_runaway_query(pg_url: str) -> None:
    s = await other(pg_url, statement_timeout=0.2)
    try:
        # Retried by a caller that counts (the pipeline): a transient error.
        with pytest.raises(TransientError) as caught:
            await s.read(lambda db: db.val("SELECT pg_sleep(3)"))
        assert caught.value.timed_out
        assert isinstance(caught.value.__cause__, asyncpg.QueryCanceledError)
        assert await s.read(lambda db: db.val("SELECT 1")) == 1
    finally:
        await s.close()


async def test_cancelled_write_rolls_back_and_frees_its_connection(pg: PostgresStore) -> None:
    started = asyncio.Event()

    def slow(db: Db) -> None:
        resolve_contact(db, Identity("email", "slow@example.com"))
        started.set()
        db.val("SELECT pg_sleep(5)")  # cut off by the cancellation

    task = asyncio.create_task(pg.write(slow))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pg.read(lambda db: db.val("SELECT COUNT(*) FROM contacts")) == 0
    assert await pg.write(lambda db: db.val("SELECT 2")) == 2


async def test_instances_starting_together_apply_migrations_once(pg_url: str) -> None:
    stores = [open_store(pg_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        listed = await stores[0].migrations()
        assert [v for v, _, applied in listed if applied] == [
            v for v, _, _ in migration_files("postgres")
        ]
        rows = await stores[1].read(lambda db: db.all("SELECT version FROM schema_migrations"))
        assert len(rows) == len(listed)
    finally:
        for s in stores:
            await s.close()


async def test_a_deadlock_is_transient(pg: PostgresStore) -> None:
    await pg.write(lambda db: db.run("CREATE TABLE d (id INT PRIMARY KEY, v INT)"))
    await pg.write(lambda db: db.run("INSERT INTO d VALUES (1, 0), (2, 0)"))

    def cross(db: Db, first: int, second: int) -> None:
        db.run("UPDATE d SET v = v + 1 WHERE id = ?", (first,))
        db.val("SELECT pg_sleep(0.3)")  # both now hold their first row
        db.run("UPDATE d SET v = v + 1 WHERE id = ?", (second,))

    results = await asyncio.gather(
        pg.write(cross, 1, 2), pg.write(cross, 2, 1), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "TransientError"]


async def test_transaction_locks_wait_in_order_and_refuse_out_of_order(
    pg: PostgresStore,
) -> None:
    """A transaction waits for a lock only when it is above all it holds;
    otherwise it is told the lock is busy, so waiting never closes a cycle."""
    holding = asyncio.Event()
    low, high = sorted(["a", "b"], key=lambda n: lock_key(pg.lock_namespace, n))

    def holder(db: Db) -> None:
        xact_lock(db, [low])
        holding.set()
        db.val("SELECT pg_sleep(0.6)")

    def out_of_order(db: Db) -> str:
        xact_lock(db, [high])
        try:
            xact_lock(db, [low])  # below what it holds, and taken: busy
        except LockBusy:
            return "busy"
        return "got it"

    def in_order(db: Db) -> str:
        xact_lock(db, [low])  # holds nothing yet: waits for the holder
        return "waited"

    h = asyncio.create_task(pg.write(holder))
    await holding.wait()
    assert await pg.write(out_of_order) == "busy"
    waiter = asyncio.create_task(pg.write(in_order))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await h
    assert await waiter == "waited"
    assert issubclass(LockBusy, TransientError)


async def test_concurrent_resolve_contact_makes_one_contact(pg: PostgresStore) -> None:
    """Without any lock: the second insert waits for the first commit and
    then uses that contact."""
    first_in = asyncio.Event()
    ident = Identity("email", "race@example.com", "Race")

    def slow_first(db: Db) -> tuple[int, bool]:
        got = resolve_contact(db, ident)
        first_in.set()
        db.val("SELECT pg_sleep(0.4)")
        return got

    t1 = asyncio.create_task(pg.write(slow_first))
    await first_in.wait()
    (c2, created2) = await pg.write(resolve_contact, ident)
    (c1, created1) = await t1
    assert c1 == c2 and created1 and not created2
    assert await pg.read(lambda db: db.val("SELECT COUNT(*) FROM contacts")) == 1


async def test_a_db_kept_past_its_transaction_refuses_work(pg: PostgresStore) -> None:
    kept: list[Db] = []
    await pg.write(kept.append)
    with pytest.raises(RuntimeError, match="only usable inside"):
        kept[0].val("SELECT 1")


async def test_channel_lock_is_exclusive_and_taken_over(pg_url: str) -> None:
    a, b = await other(pg_url), await other(pg_url)
    try:
        assert await a.try_lock("channel:mailbox") is True
        assert await a.try_lock("channel:mailbox") is True  # already ours
        assert await b.try_lock("channel:mailbox") is False
        await a.unlock("channel:mailbox")
        assert await b.try_lock("channel:mailbox") is True
        assert await a.try_lock("channel:mailbox") is False
        # The owner's connection dies (as with a killed process): the lock goes with it.
        assert b._lock_conn is not None
        await terminate(pg_url, b._lock_conn.get_server_pid())
        await eventually(lambda: a.try_lock("channel:mailbox"))

        async def b_noticed() -> bool:
            return b.locks_held() == []

        await eventually(b_noticed)
    finally:
        await a.close()
        await b.close()


async def test_notifications_reach_other_instances_not_self(pg_url: str) -> None:
    a, b = await other(pg_url), await other(pg_url)
    got_a: list[str] = []
    got_b: list[str] = []
    try:
        await a.listen("ev", got_a.append)
        await b.listen("ev", got_b.append)
        await a.notify("ev", '[{"type": "x"}]')

        async def b_has() -> bool:
            return got_b == ['[{"type": "x"}]']

        await eventually(b_has)
        await asyncio.sleep(0.1)
        assert got_a == []
        # The LISTEN connection drops: it comes back, says so, and delivers again.
        assert b._listen_conn is not None
        await terminate(pg_url, b._listen_conn.get_server_pid())

        async def resynced() -> bool:
            return '[{"type": "resync"}]' in got_b

        await eventually(resynced)
        await a.notify("ev", "after")

        async def after() -> bool:
            return got_b[-1] == "after"

        await eventually(after)
    finally:
        await a.close()
        await b.close()


async def test_installations_in_other_schemas_hear_nothing(pg_url: str) -> None:
    from tests.postgres.pgtools import temp_schema

    a = await other(pg_url)
    got: list[str] = []
    try:
        await a.listen("ev", got.append)
        with temp_schema(PG_URL) as url2:
            b = await other(url2)
            try:
                await b.notify("ev", "elsewhere")
                assert await b.try_lock("channel:x") and await a.try_lock("channel:x")
            finally:
                await b.close()
        await a.notify("ev", "probe")  # a's own: dropped, but proves the round trip
        await asyncio.sleep(0.3)
        assert got == []
    finally:
        await a.close()


async def test_unreachable_server_is_a_clear_error() -> None:
    s = open_store("postgresql://nobody:pw@127.0.0.1:1/db", pool_size=1)
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1") as err:
        await s.open()
    assert "pw" not in str(err.value)


async def test_context_variables_reach_the_unit_of_work(pg: PostgresStore) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    var.set("req-42")
    assert await pg.read(lambda db: (var.get(), db.val("SELECT 1"))) == ("req-42", 1)


async def test_a_lock_wait_past_the_statement_timeout_is_transient(pg_url: str) -> None:
    s = await other(pg_url, statement_timeout=0.3)
    holding = asyncio.Event()

    def holder(db: Db) -> None:
        xact_lock(db, ["slow"])
        holding.set()
        for _ in range(4):  # each statement within the timeout, the lock held throughout
            db.val("SELECT pg_sleep(0.2)")

    def waiter(db: Db) -> None:
        xact_lock(db, ["slow"])

    try:
        h = asyncio.create_task(s.write(holder))
        await holding.wait()
        with pytest.raises(TransientError, match="QueryCanceled"):
            await s.write(waiter)
        await h
    finally:
        await s.close()
