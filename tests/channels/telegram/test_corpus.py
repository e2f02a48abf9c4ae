"""Every Telegram payload of three sets posted to the webhook: our own updates
(tests/channels/telegram/updates, written for these tests; the folder says what each
must become: messages/ every kind of message, skipped/ updates that are no customer
message, quarantined/ input that is no update at all), and courier's (AGPL) and
pyTelegramBotAPI's (GPL) objects, read from OMNIDESK_CORPORA under the ``corpus`` mark.
Each is accepted, and then stored as a message, skipped with a reason or quarantined
with its raw bytes. None is lost, none crashes the daemon."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.model import Envelope, Message, NormalizeError, Skip
from omnidesk.store.inbound import list_quarantine
from tests.conftest import conversations_full, settle
from tests.standins.telegram_api import TelegramStandIn
from tests.testdata import outside

from .conftest import SECRET, StartTg, inbound_rows
from .test_webhook import post, start_webhook

OWN = Path(__file__).parent / "updates"
COURIER = "webhooks/telegram/courier"
PYTELEGRAMBOTAPI = "webhooks/telegram/pytelegrambotapi"
SOURCES = [
    "own",
    pytest.param("courier", marks=pytest.mark.corpus(COURIER)),
    pytest.param("pytelegrambotapi", marks=pytest.mark.corpus(PYTELEGRAMBOTAPI)),
]


@dataclass(frozen=True)
class Expect:
    bodies: int  # at least, with the bare Message objects wrapped in an Update
    stored_ids: tuple[str, ...]  # messages that must be stored, by external id
    stored: int  # at least, by the daemon
    skipped: int  # at least, by the daemon
    quarantined: int  # at least, by the daemon
    messages: int  # at least, by normalize, file by file
    quarantine: int  # at least, by normalize, file by file


EXPECT = {
    "own": Expect(41, ("7100001:11", "7100002:38", "-1001309982000:31"), 25, 6, 10, 25, 10),
    "courier": Expect(19, ("3527065:41",), 1, 1, 0, 1, 0),
    "pytelegrambotapi": Expect(38, ("1734:1",), 1, 0, 1, 1, 1),
}


def corpus_bodies(source: str) -> list[tuple[str, bytes]]:
    """Each file as it is, and each bare Message object (most of the
    pyTelegramBotAPI files) also wrapped in the Update Telegram would send."""
    folder = OWN if source == "own" else outside(f"webhooks/telegram/{source}")
    out: list[tuple[str, bytes]] = []
    for i, path in enumerate(sorted(folder.rglob("*.json"))):
        raw = path.read_bytes()
        name = str(path.relative_to(folder))
        out.append((name, raw))
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and "update_id" not in obj and "message_id" in obj:
            wrapped = {"update_id": 800_000 + i, "message": obj}
            out.append((f"{name} (as an update)", json.dumps(wrapped).encode()))
    return out


@pytest.mark.parametrize("source", SOURCES)
async def test_every_corpus_payload_is_stored_skipped_or_quarantined(
    start_tg: StartTg, tg: TelegramStandIn, source: str
) -> None:
    d = await start_webhook(start_tg, tg)
    bodies = corpus_bodies(source)
    expect = EXPECT[source]
    assert len(bodies) >= expect.bodies
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
    # Real updates become messages; bare objects that are not updates (User,
    # Chat, WebhookInfo...) are quarantined with why. Several courier files
    # reuse one chat and message id: they are one message.
    assert set(expect.stored_ids) <= stored_ids
    assert len(outcome["stored"]) >= expect.stored, outcome
    assert len(outcome["skipped"]) >= expect.skipped, outcome
    assert len(outcome["quarantined"]) >= expect.quarantined, outcome
    reasons = {q["error"] for q in quarantined.values()}
    if expect.quarantined:
        assert any("no integer update_id" in r for r in reasons)
    assert not any("Error:" in r for r in reasons), f"a parser bug, not a reason: {reasons}"
    # Still healthy and still taking messages.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        assert (await c.get("/healthz")).status_code == 200
    after = await post(d, json.dumps({"update_id": 1, "message": tg.message("still ok")}).encode())
    assert after.json() == {"ok": True, "duplicate": False}


@pytest.mark.parametrize("source", SOURCES)
def test_normalize_of_each_corpus_file_gives_an_answer_or_a_reason(source: str) -> None:
    """Pure check, file by file (the daemon test above sees duplicates once)."""
    adapter = _adapter()
    kinds: dict[str, int] = {}
    for name, body in corpus_bodies(source):
        env = Envelope("tg", f"test:{name}", body, "application/json")
        try:
            item: Any = adapter.normalize(env)
        except NormalizeError as exc:
            assert str(exc), name
            kinds["quarantine"] = kinds.get("quarantine", 0) + 1
            assert source != "own" or _own_outcome(name) == "quarantined", name
            continue
        assert isinstance(item, Message | Skip), name
        if isinstance(item, Message):
            assert item.sender.kind == "telegram" and item.sender.address, name
            assert item.text or item.attachments, name
            assert item.thread_key, name
        else:
            assert item.reason, name
        assert source != "own" or _own_outcome(name) == type(item).__name__.lower(), name
        kinds[type(item).__name__] = kinds.get(type(item).__name__, 0) + 1
    expect = EXPECT[source]
    assert kinds.get("Message", 0) >= expect.messages, kinds
    assert kinds.get("quarantine", 0) >= expect.quarantine, kinds


def _own_outcome(name: str) -> str:
    """What one of our own payloads must become, from its folder."""
    if name.endswith("(as an update)"):
        return "message"
    return {"messages": "message", "skipped": "skip", "quarantined": "quarantined"}[
        name.split("/", 1)[0]
    ]


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
