"""Every payload of the Slack corpus (../shared/corpora/webhooks/slack),
signed and posted to the Events API endpoint: each is answered (the URL
handshake with its challenge), and what is stored becomes a message, a skip
with a reason or a quarantine entry with raw bytes. None crashes the daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from omnidesk.model import Envelope, Message, NormalizeError, Skip
from omnidesk.store.inbound import list_quarantine
from tests.conftest import CORPORA, conversations_full, require_service, settle
from tests.standins.slack_api import SIGNING_SECRET, SlackStandIn, event_callback

from .conftest import StartSlack, inbound_rows, post_event

CORPUS = CORPORA / "webhooks" / "slack"


def corpus_bodies() -> list[tuple[str, bytes]]:
    """Each file as it is; the bare inner events (inner_events_test/) also
    wrapped in the event_callback Slack sends them in."""
    out: list[tuple[str, bytes]] = []
    for i, path in enumerate(sorted(CORPUS.rglob("*.json"))):
        raw = path.read_bytes()
        name = str(path.relative_to(CORPUS))
        out.append((name, raw))
        if "inner_events_test" in name:
            event = json.loads(raw)
            wrapped = event_callback(event, event_id=f"EvCORPUS{i:04d}")
            out.append((f"{name} (in an event_callback)", json.dumps(wrapped).encode()))
    return out


async def test_every_corpus_payload_is_answered_and_stored_skipped_or_quarantined(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    require_service(CORPUS.is_dir(), "the Slack webhook corpus", f"expected at {CORPUS}")
    d = await start_slack(fetch_profiles=False)
    bodies = corpus_bodies()
    assert len(bodies) > 150
    new = challenges = 0
    async with httpx.AsyncClient() as c:
        for name, body in bodies:
            r = await post_event(d, body, client=c)
            assert r.status_code == 200, (name, r.status_code, r.text)
            answer = r.json()
            if "challenge" in answer:
                challenges += 1
            else:
                new += not answer["duplicate"]
    assert challenges == 4, "every url_verification file is answered with its challenge"
    await settle(d)
    rows = await inbound_rows(d)
    assert len(rows) == new
    quarantined = {q["inbound_id"]: q for q in await d.store.read(list_quarantine, limit=500)}
    outcome: dict[str, int] = {"stored": 0, "skipped": 0, "quarantined": 0}
    for row in rows:
        assert row["state"] in ("done", "quarantined"), row
        if row["state"] == "quarantined":
            assert quarantined[row["id"]]["error"]
            outcome["quarantined"] += 1
        elif (row["note"] or "").startswith("skipped: "):
            outcome["skipped"] += 1
        else:
            outcome["stored"] += 1
    messages = [m for c in await conversations_full(d) for m in c["messages"]]
    texts = {m["text"] for m in messages}
    assert "Hello World!" in texts  # courier helloMsg (a DM)
    assert "Live long and prospect." in texts  # inner message event, wrapped
    assert outcome["stored"] >= 8 and outcome["skipped"] >= 50
    reasons = {q["error"] for q in quarantined.values()}
    assert not any("Error:" in r for r in reasons), f"a parser bug, not a reason: {reasons}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        assert (await c.get("/healthz")).status_code == 200


def test_normalize_of_each_corpus_file_gives_an_answer_or_a_reason() -> None:
    require_service(CORPUS.is_dir(), "the Slack webhook corpus", f"expected at {CORPUS}")
    adapter = _adapter()
    kinds: dict[str, int] = {}
    for name, body in corpus_bodies():
        env = Envelope("sl", f"test:{name}", body, "application/json")
        try:
            item: Any = adapter.normalize(env)
        except NormalizeError as exc:
            assert str(exc), name
            kinds["quarantine"] = kinds.get("quarantine", 0) + 1
            continue
        assert isinstance(item, Message | Skip), name
        if isinstance(item, Message):
            assert item.sender.kind == "slack" and item.sender.address, name
            assert item.text and item.thread_key, name
        else:
            assert item.reason, name
        kinds[type(item).__name__] = kinds.get(type(item).__name__, 0) + 1
    assert kinds.get("Message", 0) >= 20 and kinds.get("Skip", 0) >= 100


def _adapter() -> Any:
    from omnidesk.channels.base import ChannelContext
    from omnidesk.channels.slack import SlackChannel
    from omnidesk.config import ChannelConfig, Options

    opts = Options(
        {"bot_token": "xoxb-1", "signing_secret": SIGNING_SECRET},
        file=None,
        prefix="channels[0]",
        base_dir=Path("."),
    )
    return SlackChannel(ChannelContext("sl", ChannelConfig("sl", "slack", opts), None))  # type: ignore[arg-type]
