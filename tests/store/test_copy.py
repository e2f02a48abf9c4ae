"""Moving a store between engines: `omnidesk store copy` keeps every row and
id, leaves PostgreSQL's sequences past them, refuses a non-empty target
unless resuming, and `omnidesk migrate --status` applies nothing."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.cli import main
from omnidesk.model import Envelope
from omnidesk.outbox import queue_reply
from omnidesk.store import Db, Store, open_store
from omnidesk.store.maintenance import CopyError, copy_urls, describe, migration_status
from omnidesk.store.search import search_messages
from tests.conftest import make_config, message, post_inbound, settle

pytestmark = pytest.mark.postgres


async def fill(tmp_path: Path, url: str, daemon_factory: Any) -> None:
    """A store with a bit of everything: contacts (one merged into a newer
    one), conversations, messages with an attachment, an edit, a reply in the
    outbox, a quarantined envelope, audit, tokens, routing state."""
    d = await daemon_factory(make_config(tmp_path, url))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as client:
        pdf = base64.b64encode(b"%PDF-1.4 invoice").decode()
        await post_inbound(
            client,
            message(
                "m1",
                "My invoice is wrong",
                attachments=[
                    {"filename": "invoice.pdf", "content_type": "application/pdf", "data": pdf}
                ],
            ),
        )
        await post_inbound(client, message("m2", "我想申请退款", address="wang@example.cn"))
        await post_inbound(client, message("m3", "Also: where is it?", thread_key="t"))
        await d.intake.accept(Envelope("api", "broken", b"{not json", "application/json"))
        await settle(d)

    def more(db: Db) -> None:
        ids = [r[0] for r in db.all("SELECT id FROM contacts ORDER BY id")]
        db.run("UPDATE contacts SET merged_into = ? WHERE id = ?", (ids[-1], ids[0]))
        conv = db.val("SELECT MIN(id) FROM conversations")
        queue_reply(db, int(conv), text="We are on it", author="agent:alice")

    await d.store.write(more)
    await d.stop()  # a copy is made with the daemon stopped


def dump(db: Db) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for name, t in describe(db).items():
        cols = ", ".join(f'"{c}"' for c in sorted(t.columns))
        keys = ", ".join(f'"{k}"' for k in t.key)
        out[name] = [
            tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in r)
            for r in db.all(f'SELECT {cols} FROM "{name}" ORDER BY {keys}')
        ]
    return out


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    s = open_store(url)
    await s.open()
    try:
        return await s.read(dump)
    finally:
        await s.close()


async def test_sqlite_to_postgres_and_back_keeps_every_row(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    await fill(tmp_path / "a", src, daemon_factory)
    seen: dict[str, tuple[int, int]] = {}
    reports = await copy_urls(
        src, pg_url, batch=2, progress=lambda t, n, total: seen.__setitem__(t, (n, total))
    )
    original = await snapshot(src)
    copied = await snapshot(pg_url)
    assert copied == original
    assert original["contacts"] and original["attachments"] and original["quarantine"]
    assert {r.name for r in reports} == set(original)
    assert all(done == total for done, total in seen.values())

    # New rows continue after the copied ids, and search works on the copy.
    pg: Store = open_store(pg_url)
    await pg.open()
    try:
        top = max(r[0] for r in await pg.read(lambda db: db.all("SELECT id FROM contacts")))
        new = await pg.write(
            lambda db: db.val(
                "INSERT INTO contacts (name, created_at, updated_at) VALUES ('n', 0, 0)"
                " RETURNING id"
            )
        )
        assert new == top + 1
        hits = await pg.read(search_messages, "退款")
        assert [h["snippet"] for h in hits] == ["我想申请退款"]
        await pg.write(lambda db: db.run("DELETE FROM contacts WHERE id = ?", (new,)))
    finally:
        await pg.close()

    back = f"sqlite:///{tmp_path / 'back.db'}"
    await copy_urls(pg_url, back)
    assert await snapshot(back) == original


async def test_non_empty_target_is_refused_unless_resuming(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    await fill(tmp_path / "a", src, daemon_factory)
    await copy_urls(src, pg_url)
    with pytest.raises(CopyError, match=r"already holds data: .*--resume"):
        await copy_urls(src, pg_url)
    # An interrupted copy: part of the rows gone from the target.
    pg = open_store(pg_url)
    await pg.open()
    try:
        await pg.write(lambda db: db.run("DELETE FROM audit WHERE id > 2"))
    finally:
        await pg.close()
    reports = await copy_urls(src, pg_url, resume=True)
    assert await snapshot(pg_url) == await snapshot(src)
    assert {r.name: r.target_rows for r in reports} == {r.name: r.source_rows for r in reports}
    with pytest.raises(CopyError, match="same store"):
        await copy_urls(src, src)
    with pytest.raises(CopyError, match="no SQLite store"):
        await copy_urls(f"sqlite:///{tmp_path / 'nope.db'}", pg_url, resume=True)


def test_cli_copy_and_migrate_status(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    db = tmp_path / "fresh.db"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n[rules]\ndir = "{Path("rules").resolve()}"\n'
    )
    assert main(["migrate", "--status", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "0001 core" in out and "pending" in out and not db.exists()
    assert main(["migrate", "-c", str(cfg)]) == 0
    assert main(["migrate", "--status", "-c", str(cfg)]) == 0
    assert "pending" not in capsys.readouterr().out
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO contacts (name, created_at, updated_at) VALUES ('Ann', 1, 1)")
    conn.close()

    status = asyncio.run(migration_status(pg_url))
    assert {s for _, _, s in status} == {"pending"}
    monkeypatch.setenv("TARGET_URL", pg_url)
    assert main(["store", "copy", "--from", f"sqlite:///{db}", "--to", "env:TARGET_URL"]) == 0
    err = capsys.readouterr().err
    assert "row counts match" in err
    assert {s for _, _, s in asyncio.run(migration_status(pg_url))} == {"applied"}
    assert main(["store", "copy", "--from", f"sqlite:///{db}", "--to", "env:TARGET_URL"]) == 1
    assert "already holds data" in capsys.readouterr().err


def test_copy_order_puts_parents_first() -> None:
    from omnidesk.store.maintenance import Table, copy_order

    tables = {
        "messages": Table("messages", ["id"], ["id"], {"conversations", "inbound"}, ["edit_of"]),
        "conversations": Table("conversations", ["id"], ["id"], {"contacts"}),
        "contacts": Table("contacts", ["id"], ["id"], set(), ["merged_into"]),
        "inbound": Table("inbound", ["id"], ["id"]),
    }
    order = copy_order(tables)
    assert order.index("contacts") < order.index("conversations") < order.index("messages")
    assert order.index("inbound") < order.index("messages")
    tables["contacts"].parents.add("messages")
    with pytest.raises(CopyError, match="circular"):
        copy_order(tables)
