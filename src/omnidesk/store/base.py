"""The store interface: two engines, one narrow contract.

All data access is written once, as plain synchronous functions over a
:class:`Db` (``store/inbound.py``, ``store/conversations.py`` ...). An engine
only has to run such a function inside a transaction (:meth:`Store.write`) or
a read snapshot (:meth:`Store.read`), apply migrations, and carry
notifications between instances. SQLite runs the function in the database's
own thread, so a pipeline batch of a hundred messages costs no event-loop
round trips; PostgreSQL runs it in a greenlet on the loop whose every
statement is awaited through asyncpg (see ``store/postgres.py``).

SQL is written in the common subset of both dialects with ``?`` placeholders;
the PostgreSQL engine rewrites them to ``$n``. Where the dialects differ
(row locking for work claims), functions branch on ``db.dialect``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class TransientError(Exception):
    """A conflict with a concurrent transaction (deadlock, serialization
    failure, a lock another instance holds): nothing is wrong with the data,
    the same work succeeds when retried a moment later. Only the PostgreSQL
    engine raises it. ``timed_out``: a statement ran past the store's
    ``statement_timeout`` (almost always waiting on a lock another
    transaction held that long; a caller retrying it a few times and then
    giving up keeps a statement that is slow for its own sake from coming
    back for ever)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Row(Protocol):
    """sqlite3.Row and asyncpg.Record both offer this."""

    def __getitem__(self, key: str | int) -> Any: ...
    def keys(self) -> Any: ...


class Db(Protocol):
    """Synchronous primitives, valid only inside ``Store.write``/``Store.read``."""

    dialect: str  # "sqlite" | "postgres"

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def val(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def savepoint(self) -> AbstractContextManager[None]: ...


class Store(abc.ABC):
    """An open database. Use :func:`omnidesk.store.open_store` to get one."""

    dialect: str
    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def write(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(db, ...)`` in one transaction: committed durably when it
        returns, rolled back when it raises."""

    @abc.abstractmethod
    async def read(
        self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(db, ...)`` on a consistent read snapshot."""

    @abc.abstractmethod
    async def migrations(self) -> list[tuple[int, str, bool]]:
        """Every known migration: (version, name, applied)."""

    async def notify(self, channel: str, payload: str) -> None:  # noqa: B027 - optional
        """Tell other instances something changed (PostgreSQL LISTEN/NOTIFY);
        a single-process engine has nobody to tell."""

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:  # noqa: B027
        """Call ``callback(payload)`` for notifications from other instances."""

    async def try_lock(self, name: str) -> bool:
        """Take a named lock held until :meth:`unlock` or this process dies
        (single-consumer channels). One process owns a SQLite file: always true."""
        return True

    async def unlock(self, name: str) -> None:  # noqa: B027
        """Release a lock taken with :meth:`try_lock`."""

    async def scrub(self) -> None:  # noqa: B027 - optional
        """After personal data was deleted (store/privacy.py): leave none of it
        in the engine's own files where a later read of the disk could find
        it. SQLite moves its write-ahead log into the database and empties it."""

    @property
    def multi_instance(self) -> bool:
        """Whether several daemons may share this store."""
        return False


def migration_files(dialect: str) -> list[tuple[int, str, Path]]:
    folder = MIGRATIONS_DIR / dialect
    found = []
    for p in sorted(folder.glob("*.sql")):
        m = re.match(r"(\d+)_(.+)\.sql$", p.name)
        if m:
            found.append((int(m.group(1)), m.group(2), p))
    return found


def row_dict(row: Row | None) -> dict[str, Any] | None:
    return None if row is None else {k: row[k] for k in row.keys()}


def chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def placeholders(n: int) -> str:
    return ",".join("?" * n)
