"""Behaviour both engines must share, beyond what the daemon tests reach."""

from __future__ import annotations

import json

import pytest

from omnidesk.config import ConfigError, parse_config
from omnidesk.model import Envelope
from omnidesk.store import Db, Store
from omnidesk.store.inbound import insert_envelopes


def env(ext: str, channel: str = "api", text: str = "hi") -> Envelope:
    return Envelope(channel, ext, json.dumps({"text": text}).encode(), "application/json")


async def test_group_insert_reports_new_and_seen_in_order(store: Store) -> None:
    assert await store.write(insert_envelopes, [env("a"), env("b")]) == [True, True]
    got = await store.write(
        insert_envelopes,
        [env("b"), env("c"), env("c", text="again"), env("c", channel="mail"), env("a")],
    )
    assert got == [False, True, False, True, False]

    def rows(db: Db) -> list[tuple[str, str, bytes]]:
        return [
            (r["channel"], r["external_id"], bytes(r["payload"]))
            for r in db.all("SELECT channel, external_id, payload FROM inbound ORDER BY id")
        ]

    stored = await store.read(rows)
    assert [(c, e) for c, e, _ in stored] == [
        ("api", "a"), ("api", "b"), ("api", "c"), ("mail", "c")
    ]  # fmt: skip
    assert json.loads(stored[2][2]) == {"text": "hi"}  # the first of a repeated key wins


def test_storage_url_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://omnidesk:s3cret@db.internal:5432/desk"
    monkeypatch.setenv("DESK_DB", url)
    assert parse_config({"storage": {"url": "env:DESK_DB"}}).storage_url == url
    monkeypatch.delenv("DESK_DB")
    with pytest.raises(ConfigError) as err:
        parse_config({"storage": {"url": "env:DESK_DB"}})
    assert err.value.key == "storage.url" and "DESK_DB" in err.value.reason
