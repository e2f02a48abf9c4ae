"""Every payload of the Telegram corpus (../shared/corpora/webhooks/telegram)
posted to the webhook: each is accepted, and then stored as a message,
skipped with a reason or quarantined with its raw bytes. None is lost, none
crashes the daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from omnidesk.model import Envelope, Message, NormalizeError, Skip
from omnidesk.store.inbound import list_quarantine
from tests.conftest import CORPORA, conversations_full, require_service, settle
from tests.standins.telegram_api import TelegramStandIn

from .conftest import SECRET, StartTg, inbound_rows
from .test_webhook import post, start_webhook

CORPUS = CORPORA / "webhooks" / "telegram"


def corpus_bodies() -> list[tuple[str, bytes]]:
    """Each file as it is, and each bare Message object (most of the
    pyTelegramBotAPI files) also wrapped in the Update Telegram would send."""
    out: list[tuple[str, bytes]] = []
    for i, path in enumerate(sorted(CORPUS.rglob("*.json"))):
        raw = path.read_bytes()
        name = str(path.relative_to(CORPUS))
        out.append((name, raw))
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and "update_id" not in obj and "message_id" in obj:
            wrapped = {"update_id": 800_000 + i, "message": obj}
            out.append((f"{name} (as an update)", json.dumps(wrapped).encode()))
    return out


async def test_every_corpus_payload_is_stored_skipped_or_quarantined(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    require_service(CORPUS.is_dir(), "the Telegram webhook corpus", f"expected at {CORPUS}")
    d = await start_webhook(start_tg, tg)
    bodies = corpus_bodies()
    assert len(bodies) > 57
    new = 0
    async with httpx.AsyncClient(timeout=30) as c:
        for name, body in bodies:
            r = await post(d, body, client=c)
            assert r.status_code == 200, (name, r.text)
            new += not r.json()["duplicate"]
    await settle(d)
    rows = await inbound_rows(d)
    assert len(rows) == new, "every new payload is one inbound row"
    quarantined = {q["inbound_id"]: q for q in await d.store.read(list_quarantine, limit=500)}
    outcome: dict[str, list[str]] = {"stored": [], "skipped": [], "quarantined": []}
    for row in rows:
        assert row["state"] in ("done", "quarantined"), row
        if row["state"] == "quarantined":
            assert quarantined[row["id"]]["error"], "quarantine always says why"
            outcome["quarantined"].append(row["external_id"])
        elif (row["note"] or "").startswith("skipped: "):
            assert len(row["note"]) > len("skipped: ")
            outcome["skipped"].append(row["external_id"])
        else:
            outcome["stored"].append(row["external_id"])
    stored_ids = {m["external_id"] for c in await conversations_full(d) for m in c["messages"]}
    assert set(outcome["stored"]) <= stored_ids
    # What the corpus holds: real updates become messages; bare objects that
    # are not updates (User, Chat, WebhookInfo...) are quarantined with why.
    assert "3527065:41" in stored_ids  # courier helloMsg
    assert "1734:1" in stored_ids  # json_message.json, wrapped
    # Several courier files reuse one chat and message id: they are one message.
    assert len(outcome["stored"]) >= 25
    assert outcome["skipped"], "the empty update is skipped with its reason"
    assert len(outcome["quarantined"]) >= 20
    reasons = {q["error"] for q in quarantined.values()}
    assert any("no integer update_id" in r for r in reasons)
    assert not any("Error:" in r for r in reasons), f"a parser bug, not a reason: {reasons}"
    # Still healthy and still taking messages.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        assert (await c.get("/healthz")).status_code == 200
    after = await post(d, json.dumps({"update_id": 1, "message": tg.message("still ok")}).encode())
    assert after.json() == {"ok": True, "duplicate": False}


def test_normalize_of_each_corpus_file_gives_an_answer_or_a_reason() -> None:
    """Pure check, file by file (the daemon test above sees duplicates once)."""
    require_service(CORPUS.is_dir(), "the Telegram webhook corpus", f"expected at {CORPUS}")
    adapter = _adapter()
    kinds: dict[str, int] = {}
    for name, body in corpus_bodies():
        env = Envelope("tg", f"test:{name}", body, "application/json")
        try:
            item: Any = adapter.normalize(env)
        except NormalizeError as exc:
            assert str(exc), name
            kinds["quarantine"] = kinds.get("quarantine", 0) + 1
            continue
        assert isinstance(item, Message | Skip), name
        if isinstance(item, Message):
            assert item.sender.kind == "telegram" and item.sender.address, name
            assert item.text or item.attachments, name
            assert item.thread_key, name
        else:
            assert item.reason, name
        kinds[type(item).__name__] = kinds.get(type(item).__name__, 0) + 1
    assert kinds.get("Message", 0) >= 35 and kinds.get("quarantine", 0) >= 20


def _adapter() -> Any:
    from omnidesk.channels.base import ChannelContext
    from omnidesk.channels.telegram import TelegramChannel
    from omnidesk.config import ChannelConfig, Options

    opts = Options(
        {"token": "1:x", "mode": "webhook", "secret_token": SECRET},
        file=None,
        prefix="channels[0]",
        base_dir=Path("."),
    )
    return TelegramChannel(ChannelContext("tg", ChannelConfig("tg", "telegram", opts), None))  # type: ignore[arg-type]
