"""Named locks held until the end of a write transaction, for work several
instances might do at once on one PostgreSQL database.

Two pipelines must not open two conversations for one new thread, nor two
contacts for one new sender, nor assign two conversations to an agent who
has room for one. Each takes :func:`xact_lock` on the names involved
(``ident:email:ann@example.com``, ``thread:telegram:42``, ``team:support``)
before looking; the second waits until the first commits, then finds what
the first created.

SQLite needs none of this: a write transaction holds the whole database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Db, TransientError

WORK = 0  # keys of one message: sender identity, thread, references
TEAM = 1  # assignment within a team: always taken after WORK keys


class LockBusy(TransientError):
    """Another transaction holds a lock this one may not wait for (waiting
    could deadlock): leave the work for a moment later."""


def xact_lock(db: Db, names: Iterable[str], *, rank: int = WORK) -> None:
    """Hold ``names`` until the transaction ends, or raise :class:`LockBusy`."""
    if db.dialect != "postgres":
        return
    names = [n for n in names if n]
    if not names:
        return
    pg: Any = db
    if not pg.xact_lock(names, rank=rank):
        raise LockBusy(f"busy: {', '.join(sorted(names))[:200]}")
