"""Privacy: the export holds every message and attachment of the contact;
after erasure no table, search index or attachment holds the contact's
address, phone, name or message text (the SQLite file and its WAL searched
byte for byte; PostgreSQL through a pg_dump of the test's schema); the
retention job removes exactly what its dry run listed; card numbers are
masked before storage when asked."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon
from omnidesk.customers.settings import RetentionPolicy
from omnidesk.service.privacy import run_retention
from omnidesk.store.audit import add_audit
from omnidesk.store.base import Db
from tests.conftest import admin_token, post_inbound, settle, wait_for

NAME = "Zelda Quixote"
EMAIL = "zelda.quixote@example.net"
PHONE = "+12025550199"
TEXT = "the purple giraffe manifesto 8931"
NOTE = "agent note about the giraffe 4417"
ATTACHMENT = b"ATTACHMENT-SECRET-PAYLOAD-77 " * 40
NEEDLES = [NAME, EMAIL, PHONE, TEXT, "giraffe manifesto", "ATTACHMENT-SECRET-PAYLOAD", "Zelda"]


def raw_of(store_url: str) -> bytes:
    """Every byte the database keeps: the SQLite file with its WAL, or a
    pg_dump of the test's schema."""
    if store_url.startswith("sqlite:///"):
        path = Path(store_url[len("sqlite:///") :])
        return b"".join(
            p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        )
    u = urllib.parse.urlsplit(store_url)
    schema = urllib.parse.parse_qs(u.query)["search_path"][0]
    out = subprocess.run(
        [
            "pg_dump",
            "-h",
            u.hostname or "127.0.0.1",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "postgres",
            "-n",
            schema,
            u.path.lstrip("/"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    # BYTEA columns (raw input, attachment blobs) are dumped as hex: add their bytes.
    decoded = [bytes.fromhex(h.decode()) for h in re.findall(rb"\\x((?:[0-9a-f]{2})+)", out.stdout)]
    return out.stdout + b"\n".join(decoded)


async def seed(c: httpx.AsyncClient, daemon: Daemon, auth: dict[str, str]) -> tuple[int, int]:
    """Zelda (by e-mail, with an attachment; and by phone, merged into her),
    and Otto, whose data must stay."""
    for body in (
        {
            "external_id": "z-1",
            "sender": {"kind": "email", "address": EMAIL, "name": NAME},
            "subject": f"About {TEXT}",
            "text": f"Hello, {TEXT}. Call me on {PHONE}.",
            "thread_key": "z1",
            "attachments": [
                {
                    "filename": "zelda-id.txt",
                    "content_type": "text/plain",
                    "data": base64.b64encode(ATTACHMENT).decode(),
                }
            ],
        },
        {
            "external_id": "z-2",
            "sender": {"kind": "phone", "address": PHONE, "name": "Zelda Q."},
            "text": f"Zelda again from my phone: {TEXT}",
            "thread_key": "z2",
        },
        {
            "external_id": "o-1",
            "sender": {"kind": "email", "address": "otto@example.org", "name": "Otto Keep"},
            "text": "Otto's message stays",
            "thread_key": "o1",
        },
    ):
        r = await post_inbound(c, body)
        assert r.status_code == 202, r.text
    await settle(daemon)
    found = (await c.get("/api/v1/contacts", params={"q": EMAIL}, headers=auth)).json()["items"]
    zelda = found[0]["id"]
    phone = (await c.get("/api/v1/contacts", params={"q": PHONE}, headers=auth)).json()["items"]
    r = await c.post(
        f"/api/v1/contacts/{zelda}/merge", json={"source_id": phone[0]["id"]}, headers=auth
    )
    assert r.status_code == 200, r.text
    r = await c.put(
        f"/api/v1/contacts/{zelda}/fields", json={"fields": {"nick": NAME}}, headers=auth
    )
    assert r.status_code == 200, r.text
    r = await c.post(
        f"/api/v1/contacts/{zelda}/events",
        json={"kind": "order", "external_id": "Z-77", "amount": 5, "data": {"gift_for": NAME}},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    convs = (await c.get(f"/api/v1/contacts/{zelda}", headers=auth)).json()["conversations"]
    r = await c.post(
        f"/api/v1/conversations/{convs[0]['id']}/messages",
        json={"text": NOTE, "kind": "note"},
        headers=auth,
    )
    assert r.status_code in (200, 201), r.text
    otto = (await c.get("/api/v1/contacts", params={"q": "otto"}, headers=auth)).json()["items"]
    # What the pipeline writes when Otto's chat visitor types Zelda's address.
    await daemon.store.write(
        add_audit,
        "pipeline",
        "identity_in_use",
        contact_id=otto[0]["id"],
        reason=f"email {EMAIL} already belongs to another contact",
        detail={"kind": "email", "address": EMAIL},
    )
    return zelda, otto[0]["id"]


async def test_export_then_erase_leaves_nothing(
    config_factory: Any, daemon_factory: Any, store_url: str
) -> None:
    daemon: Daemon = await daemon_factory(config_factory())
    auth = await admin_token(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        zelda, otto = await seed(c, daemon, auth)
        before = raw_of(store_url)
        assert all(n.encode() in before for n in NEEDLES)  # the search below can find them

        # The export: every message (notes too) and the attachment's bytes.
        r = await c.get(f"/api/v1/contacts/{zelda}/export", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        z = zipfile.ZipFile(io.BytesIO(r.content))
        data = json.loads(z.read("contact.json"))
        texts = [m["text"] for conv in data["conversations"] for m in conv["messages"]]
        assert len(data["conversations"]) == 2
        assert any(TEXT in t for t in texts) and NOTE in texts
        assert sum(TEXT in t for t in texts) == 2  # both channels' messages
        assert {i["address"] for i in data["identities"]} == {EMAIL, PHONE}
        assert data["events"][0]["external_id"] == "Z-77"
        assert [a["filename"] for a in data["attachments"]] == ["zelda-id.txt"]
        assert z.read(data["attachments"][0]["path"]) == ATTACHMENT
        assert any(a["action"] == "contacts_merged" for a in data["audit"])

        # Erasure: admins only, and the id repeated.
        r = await c.delete(f"/api/v1/contacts/{zelda}", headers=auth)
        assert r.status_code == 422
        r = await c.delete(f"/api/v1/contacts/{zelda}", params={"confirm": otto}, headers=auth)
        assert r.status_code == 422
        r = await c.delete(f"/api/v1/contacts/{zelda}", params={"confirm": zelda}, headers=auth)
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["contacts"], out["conversations"], out["identities"]) == (2, 2, 2)

        after = raw_of(store_url)
        left = [n for n in NEEDLES if n.encode() in after or n.lower().encode() in after]
        assert not left, f"still in the database after erasure: {left}"
        # Otto is untouched; search finds nothing of Zelda.
        assert b"Otto's message stays" in after
        for q in (EMAIL, "Zelda", "giraffe"):
            r = await c.get("/api/v1/contacts", params={"q": q}, headers=auth)
            assert r.json()["items"] == [], q
            r = await c.get("/api/v1/search", params={"q": q}, headers=auth)
            assert r.status_code == 200 and r.json()["items"] == [], q
        # One audit entry, without personal data; the conversations stay, redacted.
        contact = (await c.get(f"/api/v1/contacts/{zelda}", headers=auth)).json()
        erased = [a for a in contact["audit"] if a["action"] == "contact_erased"]
        assert len(erased) == 1 and "admin" in erased[0]["actor"]
        assert NAME not in json.dumps(contact)
        assert len(contact["conversations"]) == 2


async def test_erase_removing_messages(
    config_factory: Any, daemon_factory: Any, store_url: str
) -> None:
    daemon: Daemon = await daemon_factory(config_factory(privacy={"erase_messages": "remove"}))
    auth = await admin_token(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        zelda, _ = await seed(c, daemon, auth)
        r = await c.delete(f"/api/v1/contacts/{zelda}", params={"confirm": zelda}, headers=auth)
        assert r.status_code == 200 and r.json()["mode"] == "remove"

        def left(db: Db) -> int:
            return int(db.val("SELECT COUNT(*) FROM conversations WHERE contact_id = ?", (zelda,)))

        assert await daemon.store.read(left) == 0
        after = raw_of(store_url)
        assert not [n for n in NEEDLES if n.encode() in after]


async def test_retention_removes_exactly_what_the_dry_run_listed(
    config_factory: Any, daemon_factory: Any
) -> None:
    daemon: Daemon = await daemon_factory(config_factory())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        for i in range(12):
            ch = "old" if i % 3 else "keep"
            await post_inbound(
                c,
                {
                    "external_id": f"r-{i}",
                    "sender": {"kind": "email", "address": f"r{i}@example.com"},
                    "text": f"message {i} {ch}",
                    "thread_key": f"r{i}",
                },
            )
        await settle(daemon)

    # Eight conversations are made old; four stay recent.
    def age(db: Db) -> list[int]:
        ids = [int(r["id"]) for r in db.all("SELECT id FROM conversations ORDER BY id")]
        old = [i for n, i in enumerate(ids) if n % 3]
        for i in old:
            db.run(
                "UPDATE conversations SET created_at = 1000, last_message_at = 1000 WHERE id = ?",
                (i,),
            )
        return old

    old = await daemon.store.write(age)
    policy = RetentionPolicy("old", days=30, action="delete", channels=("api",))
    now = 10_000_000.0
    dry = await run_retention(daemon.store, policy, now, dry_run=True, actor="test")
    assert sorted(dry["ids"]) == old and dry["dry_run"] and dry["messages"] == 8

    def ids(db: Db) -> list[int]:
        return [int(r["id"]) for r in db.all("SELECT id FROM conversations ORDER BY id")]

    all_before = await daemon.store.read(ids)
    assert len(all_before) == 12  # the dry run changed nothing
    seen: list[int] = []
    real = await run_retention(
        daemon.store, policy, now, dry_run=False, actor="test", progress=lambda d, m: seen.append(d)
    )
    assert real["ids"] == dry["ids"] and seen[-1] == 8
    assert await daemon.store.read(ids) == [i for i in all_before if i not in old]
    again = await run_retention(daemon.store, policy, now, dry_run=True, actor="test")
    assert again["ids"] == []

    # Redaction as the action: texts replaced, conversations kept.
    def make_old(db: Db) -> None:
        db.run("UPDATE conversations SET created_at = 1000, last_message_at = 1000")

    await daemon.store.write(make_old)
    red = RetentionPolicy("redact", days=30, action="redact")
    dry = await run_retention(daemon.store, red, now, dry_run=True, actor="test")
    real = await run_retention(daemon.store, red, now, dry_run=False, actor="test")
    assert real["ids"] == dry["ids"] and len(real["ids"]) == 4

    def texts(db: Db) -> set[str]:
        return {str(r["text"]) for r in db.all("SELECT text FROM messages")}

    assert await daemon.store.read(texts) == {"[redacted by retention]"}


async def test_card_numbers_masked_before_storage(config_factory: Any, daemon_factory: Any) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(privacy={"redact_card_numbers": True, "redact_patterns": [r"PIN \d{4}"]})
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        await post_inbound(
            c,
            {
                "external_id": "card-1",
                "sender": {"kind": "email", "address": "payer@example.com"},
                "text": "My card 4111 1111 1111 1111, PIN 1234, order 1234567890123.",
            },
        )
        await settle(daemon)

    def stored(db: Db) -> tuple[str, bytes]:
        m = db.one("SELECT text FROM messages")
        i = db.one("SELECT payload FROM inbound")
        assert m is not None and i is not None
        return str(m["text"]), bytes(i["payload"])

    text, raw = await daemon.store.read(stored)
    # A number failing the Luhn check (the order number) is left alone.
    assert text == "My card [card ****1111], [redacted], order 1234567890123."
    assert b"4111 1111 1111 1111" not in raw and b"**** **** **** 1111" in raw


async def age_some(daemon: Daemon, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        for i in range(n):
            await post_inbound(
                c,
                {
                    "external_id": f"s-{i}",
                    "sender": {"kind": "email", "address": f"s{i}@example.com"},
                    "text": f"scheduled {i}",
                    "thread_key": f"s{i}",
                },
            )
        await settle(daemon)

    def age(db: Db) -> list[int]:
        ids = [int(r["id"]) for r in db.all("SELECT id FROM conversations ORDER BY id")]
        for i in ids[1:]:
            db.run(
                "UPDATE conversations SET created_at = 1000, last_message_at = 1000 WHERE id = ?",
                (i,),
            )
        return ids

    return await daemon.store.write(age)


async def test_the_scheduler_runs_the_retention_policies(
    config_factory: Any, daemon_factory: Any
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            privacy={
                "retention": {"old": {"days": 30, "action": "delete"}},
                "retention_every": "1h",
            }
        )
    )
    ids = await age_some(daemon, 3)
    daemon.retention.last = 0.0  # due now
    await daemon.scheduler.tick()

    def state(db: Db) -> tuple[list[int], list[tuple[str, int, list[int]]]]:
        left = [int(r["id"]) for r in db.all("SELECT id FROM conversations ORDER BY id")]
        runs = [
            (str(r["actor"]), int(r["dry_run"]), json.loads(r["ids"]))
            for r in db.all(
                "SELECT actor, dry_run, ids FROM retention_runs WHERE conversations > 0"
            )
        ]
        return left, runs

    # (the scheduler's own loop may be the one that found it due: wait for it)
    async def done() -> bool:
        return len((await daemon.store.read(state))[0]) == 1

    await wait_for(done, timeout=20)
    left, runs = await daemon.store.read(state)
    assert left == ids[:1]
    assert runs == [("scheduler", 0, ids[1:])]
    # Not again before retention_every has passed.
    await daemon.scheduler.tick()
    assert len((await daemon.store.read(state))[1]) == 1


async def test_cli_retention_and_erase_confirmation(
    config_factory: Any, daemon_factory: Any, store_url: str, tmp_path: Path
) -> None:
    daemon: Daemon = await daemon_factory(config_factory())
    ids = await age_some(daemon, 3)
    cfg = tmp_path / "cli.toml"
    cfg.write_text(
        f'[storage]\nurl = "{store_url}"\n'
        '[privacy.retention.old]\ndays = 30\naction = "redact"\nchannels = ["api"]\n'
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omnidesk.cli", *args, "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = cli("privacy", "retention", "--dry-run", "--list")
    assert dry.returncode == 0, dry.stderr
    assert "old: would redact 2 conversations, 2 messages" in dry.stdout
    assert f"  {ids[1]} {ids[2]}" in dry.stdout
    real = cli("privacy", "retention")
    assert "old: redacted 2 conversations" in real.stdout, real.stdout + real.stderr
    r = cli("contacts", "erase", "1", "--confirm", "2")
    assert r.returncode == 2 and "repeat the id, --confirm 1" in r.stderr
    r = cli("contacts", "erase", "999", "--confirm", "999")
    assert r.returncode == 1 and "no contact 999" in r.stderr
    r = cli("contacts", "erase", "1", "--confirm", "1")
    assert r.returncode == 0 and "contact 1 erased" in r.stdout, r.stderr
