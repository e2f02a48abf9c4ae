"""Migration 0010 on a store made before it: the response times are worked
out again from the messages, so an automatic acknowledgement that used to set
``first_response_at`` no longer counts as the first response, and the new
columns (last customer message, last agent reply, waiting since) are filled."""

from __future__ import annotations

from typing import Any

import pytest

from omnidesk.store import open_store
from omnidesk.store import postgres as pg_engine
from omnidesk.store import sqlite as sqlite_engine
from omnidesk.store.service import changed_ids


async def test_old_conversations_get_true_response_times(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def before_0010(migration_files: Any) -> Any:
        return lambda dialect: [m for m in migration_files(dialect) if m[0] < 10]

    for engine in (sqlite_engine, pg_engine):
        monkeypatch.setattr(engine, "migration_files", before_0010(engine.migration_files))
    old = open_store(store_url)
    await old.open()

    def fill(db: Any) -> None:
        db.run(
            "INSERT INTO contacts (id, name, created_at, updated_at) VALUES (1, 'Ann', 100, 100)"
        )
        # 1: acknowledged at 101 (what first_response_at said), answered at
        # 200, the customer wrote again at 300 and waits. 2: acknowledged
        # only, resolved. 3: answered, nothing since.
        for cid, status, first, resolved in (
            (1, "open", 101, None),
            (2, "resolved", 101, 500),
            (3, "open", 150, None),
        ):
            db.run(
                "INSERT INTO conversations (id, contact_id, channel, status, created_at,"
                " updated_at, first_response_at, resolved_at) VALUES (?, 1, 'email', ?, 100,"
                " 300, ?, ?)",
                (cid, status, first, resolved),
            )
        rows = [
            (1, "in", "message", None, 100),
            (1, "out", "message", "auto-acknowledgement", 101),
            (1, "out", "note", None, 150),
            (1, "out", "message", None, 200),
            (1, "in", "message", None, 300),
            (2, "in", "message", None, 100),
            (2, "out", "message", "auto-acknowledgement", 101),
            (3, "in", "message", None, 100),
            (3, "out", "message", None, 150),
        ]
        for cid, direction, kind, auto, at in rows:
            db.run(
                "INSERT INTO messages (conversation_id, direction, kind, channel, text, auto,"
                " created_at) VALUES (?, ?, ?, 'email', 'x', ?, ?)",
                (cid, direction, kind, auto, at),
            )

    await old.write(fill)
    await old.close()
    monkeypatch.undo()

    store = open_store(store_url)
    await store.open()
    try:
        got = await store.read(
            lambda db: {
                int(r["id"]): (
                    r["first_response_at"],
                    r["last_reply_at"],
                    r["last_customer_at"],
                    r["awaiting_since"],
                    r["status_at"],
                )
                for r in db.all(
                    "SELECT id, first_response_at, last_reply_at, last_customer_at,"
                    " awaiting_since, status_at FROM conversations ORDER BY id"
                )
            }
        )
        assert got == {
            1: (200, 200, 300, 300, 300),  # the note and the ack never count
            2: (None, None, 100, None, 500),  # resolved: waits on nobody
            3: (150, 150, 100, None, 300),
        }
        # The scheduler has not looked at them yet: the open ones are due a look.
        assert sorted(await store.read(changed_ids, 100)) == [1, 3]
    finally:
        await store.close()
