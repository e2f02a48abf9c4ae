"""Migration 0005: tokens made before it get random public ids and keep
working; the ids are unique and unguessable, and revocation needs the owner."""

from __future__ import annotations

import re
from typing import Any

import pytest

from omnidesk.store import open_store
from omnidesk.store import postgres as pg_engine
from omnidesk.store import sqlite as sqlite_engine
from omnidesk.store.tokens import Owner, hash_token, list_tokens, lookup_token, revoke_token


async def test_tokens_made_before_0005_get_public_ids(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def before_0005(migration_files: Any) -> Any:
        return lambda dialect: [m for m in migration_files(dialect) if m[0] < 5]

    for engine in (sqlite_engine, pg_engine):
        monkeypatch.setattr(engine, "migration_files", before_0005(engine.migration_files))
    old = open_store(store_url)
    await old.open()
    for i, user in enumerate(("ann", "ann", None)):
        await old.write(
            lambda db, i=i, user=user: db.run(
                "INSERT INTO api_tokens (token_hash, role, name, username, created_at)"
                " VALUES (?, 'agent', ?, ?, 1.0)",
                (hash_token(f"odk_old_{i}"), f"old{i}", user),
            )
        )
    await old.close()
    monkeypatch.undo()

    store = open_store(store_url)
    await store.open()
    try:
        items = await store.read(list_tokens, Owner.anyone())
        ids = [t["id"] for t in items]
        assert len(set(ids)) == 3 and all(re.fullmatch(r"tok_[0-9a-f]{24}", i) for i in ids)
        found = await store.read(lookup_token, "odk_old_2")
        assert found is not None and found["id"] == ids[2]
        # The owner is part of the revocation: ann cannot revoke the user-less one.
        assert await store.write(revoke_token, ids[2], Owner.user("ann")) is None
        assert await store.write(revoke_token, ids[0], Owner.token(ids[1])) is None
        assert await store.write(revoke_token, ids[2], Owner.token(ids[2])) is not None
        assert await store.read(lookup_token, "odk_old_2") is None
        with pytest.raises(ValueError):
            await store.read(list_tokens, Owner())
    finally:
        await store.close()
