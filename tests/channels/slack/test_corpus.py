"""Every payload of the Slack corpora (slack-go's, in tests/corpora; courier's, AGPL,
read from OMNIDESK_CORPORA under the ``corpus`` mark), signed and posted to the Events
API endpoint: each is answered (the URL handshake with its challenge), and what is
stored becomes a message, a skip with a reason or a quarantine entry with raw bytes.
None crashes the daemon."""

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
from tests.standins.slack_api import SIGNING_SECRET, SlackStandIn, event_callback
from tests.testdata import outside, vendored

from .conftest import StartSlack, inbound_rows, post_event

COURIER = "webhooks/slack/courier"
SOURCES = ["slack-go", pytest.param("courier", marks=pytest.mark.corpus(COURIER))]


@dataclass(frozen=True)
class Expect:
    bodies: int  # at least, with the wrapped inner events
    challenges: int  # url_verification files
    text: str  # a text that must come out as a message
    stored: int  # at least, by the daemon
    skipped: int  # at least, by the daemon
    messages: int  # at least, by normalize, file by file
    skips: int  # at least, by normalize, file by file


EXPECT = {
    # inner message event, wrapped
    "slack-go": Expect(160, 4, "Live long and prospect.", 6, 120, 15, 130),
    # helloMsg (a DM); the file messages reuse its ids
    "courier": Expect(4, 0, "Hello World!", 2, 0, 4, 0),
}


def corpus_bodies(source: str) -> list[tuple[str, bytes]]:
    """Each file as it is; the bare inner events (inner_events_test/) also
    wrapped in the event_callback Slack sends them in."""
    folder = outside(COURIER) if source == "courier" else vendored("webhooks/slack/slack-go")
    out: list[tuple[str, bytes]] = []
    for i, path in enumerate(sorted(folder.rglob("*.json"))):
        raw = path.read_bytes()
        name = str(path.relative_to(folder))
        out.append((name, raw))
        if "inner_events_test" in name:
            event = json.loads(raw)
            wrapped = event_callback(event, event_id=f"EvCORPUS{i:04d}")
            out.append((f"{name} (in an event_callback)", json.dumps(wrapped).encode()))
    return out


@pytest.mark.parametrize("source", SOURCES)
async def test_every_corpus_payload_is_answered_and_stored_skipped_or_quarantined(
    start_slack: StartSlack, slack: SlackStandIn, source: str
) -> None:
    d = await start_slack(fetch_profiles=False)
    bodies = corpus_bodies(source)
    expect = EXPECT[source]
    assert len(bodies) >= expect.bodies
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
    # every url_verification file is answered with its challenge
    assert challenges == expect.challenges
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
    assert expect.text in texts
    assert outcome["stored"] >= expect.stored and outcome["skipped"] >= expect.skipped, outcome
    reasons = {q["error"] for q in quarantined.values()}
    assert not any("Error:" in r for r in reasons), f"a parser bug, not a reason: {reasons}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        assert (await c.get("/healthz")).status_code == 200


@pytest.mark.parametrize("source", SOURCES)
def test_normalize_of_each_corpus_file_gives_an_answer_or_a_reason(source: str) -> None:
    adapter = _adapter()
    kinds: dict[str, int] = {}
    for name, body in corpus_bodies(source):
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
    expect = EXPECT[source]
    assert kinds.get("Message", 0) >= expect.messages, kinds
    assert kinds.get("Skip", 0) >= expect.skips, kinds


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
