"""The Events API over real HTTP through slack-bolt: signatures, the URL
handshake, retries, threads, edits, our own messages, profiles and files."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from omnidesk.store.inbound import get_quarantine, list_quarantine
from tests.conftest import conversations_full
from tests.standins.slack_api import (
    BOT_ID,
    BOT_USER,
    SIGNING_SECRET,
    TEAM_ID,
    SlackStandIn,
    event_callback,
    message_event,
    new_ts,
    sign,
)

from .conftest import StartSlack, inbound_rows, post_event, processed


async def test_url_verification_is_answered_and_not_stored(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    r = await post_event(
        d, {"token": "x", "challenge": "3eZbrw1aBm2rZgRN", "type": "url_verification"}
    )
    assert (r.status_code, r.json()) == (200, {"challenge": "3eZbrw1aBm2rZgRN"})
    assert await inbound_rows(d) == []


@pytest.mark.parametrize("forgery", ["wrong-secret", "stale", "future", "tampered", "missing"])
async def test_forged_or_stale_requests_are_refused_and_nothing_stored(
    start_slack: StartSlack, slack: SlackStandIn, forgery: str
) -> None:
    d = await start_slack()
    body = json.dumps(event_callback(message_event("let me in"))).encode()
    headers = sign(body)
    if forgery == "wrong-secret":
        headers = sign(body, secret="not-the-signing-secret")
    elif forgery == "stale":
        headers = sign(body, ts=int(time.time()) - 6 * 60)
    elif forgery == "future":
        headers = sign(body, ts=int(time.time()) + 6 * 60)
    elif forgery == "tampered":
        body = body.replace(b"let me in", b"LET ME IN")
    else:
        headers = {"Content-Type": "application/json"}
    r = await post_event(d, body, headers=headers)
    assert r.status_code == 401
    assert await inbound_rows(d) == []


async def test_signed_but_unreadable_body_is_quarantined_unsigned_refused(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    garbage = b"\xff\xfe not json at all"
    assert (await post_event(d, garbage, headers={"Content-Type": "text/plain"})).status_code == 401
    assert (
        await post_event(d, garbage, headers={**sign(b"x"), "X-Slack-Signature": "v0=1"})
    ).status_code == 401
    # Signed with the secret: Slack really sent it; kept for an admin.
    t = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{t}:".encode() + garbage, hashlib.sha256)
    r = await post_event(
        d,
        garbage,
        headers={"X-Slack-Request-Timestamp": t, "X-Slack-Signature": "v0=" + mac.hexdigest()},
    )
    assert r.status_code == 200
    await processed(d, 1)
    [q] = await d.store.read(list_quarantine)
    assert "not JSON" in q["error"]
    assert (await d.store.read(get_quarantine, q["id"]))["payload"] == garbage


async def test_dm_becomes_a_conversation_with_the_users_profile(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.add_user("U0ANN", "Ann Customer", email="Ann@Customer.Example", title="Buyer")
    r = await post_event(d, event_callback(message_event("Hi <@U0BOT>, my order &amp; invoice?")))
    assert r.status_code == 200 and r.json()["duplicate"] is False
    await post_event(d, event_callback(message_event("It is order <#C1|orders> 55")))
    await processed(d, 2)
    [conv] = await conversations_full(d)
    assert conv["thread_key"] == "D0ANN", "a DM is one running chat"
    first, second = conv["messages"]
    assert first["text"] == "Hi, my order & invoice?"
    assert second["text"] == "It is order #orders 55"
    assert (first["sender_kind"], first["sender_address"]) == ("slack", f"{TEAM_ID}:U0ANN")
    assert first["sender_name"] == "Ann Customer"
    contact = await d.store.read(get_contact, conv["contact_id"])
    idents = {i["kind"]: i for i in contact["identities"]}
    assert idents["slack"]["data"]["title"] == "Buyer"
    assert idents["email"]["address"] == "ann@customer.example", "Slack-verified e-mail is linked"
    assert len(slack.calls_to("users.info")) == 1, "profiles are cached"


async def test_retries_and_the_mention_twin_of_a_message_are_stored_once(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.add_user()
    ev = message_event("<@U0BOT> help please", channel="C0SHARED", channel_type="channel")
    payload = event_callback(ev)
    assert (await post_event(d, payload)).json()["duplicate"] is False
    for n in (1, 2, 3):
        again = await post_event(d, payload, retry=n)
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
    # The same message also arrives as app_mention, with another event id.
    mention = {k: v for k, v in ev.items() if k != "channel_type"} | {"type": "app_mention"}
    assert (await post_event(d, event_callback(mention))).json()["duplicate"] is True
    rows = await processed(d, 1)
    assert len(rows) == 1
    [conv] = await conversations_full(d)
    assert [m["text"] for m in conv["messages"]] == ["help please"]


async def test_threads_map_to_conversations(start_slack: StartSlack, slack: SlackStandIn) -> None:
    d = await start_slack()
    slack.add_user("U0ANN", "Ann")
    slack.add_user("U0BEN", "Ben")
    shared = {"channel": "C0SHARED", "channel_type": "channel"}
    top = message_event("First problem", **shared)
    await post_event(d, event_callback(top, is_ext_shared_channel=True))
    reply = message_event("more details", user="U0BEN", thread_ts=top["ts"], **shared)
    await post_event(d, event_callback(reply, is_ext_shared_channel=True))
    other = message_event("Unrelated second problem", **shared)
    await post_event(d, event_callback(other, is_ext_shared_channel=True))
    await processed(d, 3)
    convs = {c["thread_key"]: c for c in await conversations_full(d)}
    assert set(convs) == {f"C0SHARED:{top['ts']}", f"C0SHARED:{other['ts']}"}
    thread = convs[f"C0SHARED:{top['ts']}"]
    assert [m["text"] for m in thread["messages"]] == ["First problem", "more details"]


async def test_own_and_bot_messages_and_channel_events_are_skipped_with_reasons(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    ours = message_event("our reply", user=BOT_USER, bot_id=BOT_ID, channel="C0X")
    other_bot = message_event("deploy done", bot_id="B0CI", subtype="bot_message", channel="C0X")
    join = message_event("<@U0ANN> has joined", subtype="channel_join", channel="C0X")
    staff = message_event("I'll handle it", user="U0STAFF", user_team=TEAM_ID, channel="C0X")
    reaction = {"type": "reaction_added", "user": "U0ANN", "reaction": "+1", "event_ts": new_ts()}
    for ev in (ours, other_bot, join, reaction):
        await post_event(d, event_callback(ev))
    await post_event(d, event_callback(staff, is_ext_shared_channel=True))
    rows = await processed(d, 5)
    notes = [r["note"] for r in rows]
    assert notes == [
        "skipped: our own bot's message",
        "skipped: a message from a bot",
        "skipped: message subtype channel_join is not a customer message",
        "skipped: event reaction_added is not a customer message",
        "skipped: written by a member of our own workspace in a shared channel",
    ]
    assert await conversations_full(d) == []


async def test_edits_and_deletions_are_recorded_on_the_original(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.add_user()
    original = message_event("My order 12 is late")
    await post_event(d, event_callback(original))
    changed_ts = new_ts()
    changed = {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": "D0ANN",
        "channel_type": "im",
        "ts": changed_ts,
        "event_ts": changed_ts,
        "message": {
            **original,
            "text": "My order 13 is late",
            "edited": {"user": "U0ANN", "ts": changed_ts},
        },
        "previous_message": original,
    }
    await post_event(d, event_callback(changed))
    deleted_ts = new_ts()
    deleted = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": "D0ANN",
        "channel_type": "im",
        "ts": deleted_ts,
        "event_ts": deleted_ts,
        "deleted_ts": original["ts"],
        "previous_message": {**original, "text": "My order 13 is late"},
    }
    await post_event(d, event_callback(deleted))
    rows = await processed(d, 3)
    assert rows[1]["external_id"] == f"D0ANN:{original['ts']}:edit:{changed_ts}"
    assert rows[2]["external_id"] == f"D0ANN:{original['ts']}:deleted"
    [conv] = await conversations_full(d)
    first, edit, gone = conv["messages"]
    assert (edit["kind"], edit["text"], edit["edit_of"]) == (
        "edit",
        "My order 13 is late",
        first["id"],
    )
    assert (gone["kind"], gone["text"], gone["edit_of"]) == (
        "edit",
        "[message deleted]",
        first["id"],
    )
    assert gone["meta"]["slack"]["deleted"] is True


async def test_files_are_downloaded_with_the_token_only_from_slack_hosts(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.add_user()
    png = b"\x89PNG\r\n\x1a\n screenshot"
    good = slack.add_file(png, "screen.png")
    evil = {
        "id": "F0EVIL",
        "name": "x.pdf",
        "mimetype": "application/pdf",
        "url_private_download": "https://collector.evil.example/steal",
    }
    await post_event(d, event_callback(message_event("", subtype="file_share", files=[good, evil])))
    await processed(d, 1)
    [conv] = await conversations_full(d)
    [msg] = conv["messages"]
    assert msg["text"] == "[file: screen.png]\n[file: x.pdf]"
    a, b = msg["attachments"]
    assert (a["filename"], a["size"], a["content_type"]) == ("screen.png", len(png), "image/png")
    assert b["sha256"] is None and b["ref"] == evil["url_private_download"]
    assert "not a Slack file host" in msg["meta"]["slack"]["file_errors"]["F0EVIL"]


async def test_profile_lookup_failure_does_not_hold_the_message(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.fail("users.info", 500)
    ev = message_event("Anyone there?", user_profile={"real_name": "Ann From Event"})
    assert (await post_event(d, event_callback(ev))).status_code == 200
    await processed(d, 1)
    [conv] = await conversations_full(d)
    [msg] = conv["messages"]
    assert msg["sender_name"] == "Ann From Event"
    assert "users.info" in msg["meta"]["slack"]["profile_error"]


async def test_rate_limited_notice_is_kept_and_shown_in_health(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    payload = {
        "token": "x",
        "type": "app_rate_limited",
        "team_id": TEAM_ID,
        "minute_rate_limited": 1518467820,
        "api_app_id": "A0APP",
    }
    assert (await post_event(d, payload)).status_code == 200
    health = d.adapters["sl"].health()
    assert health.state == "degraded" and "dropped events" in health.detail
    [row] = await processed(d, 1)
    assert row["note"].startswith("skipped: Slack did not deliver")
    slack.add_user()
    await post_event(d, event_callback(message_event("events flow again")))
    assert d.adapters["sl"].health().state == "running"


async def test_event_not_stored_is_answered_503_so_slack_retries(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    slack.add_user()

    async def broken(envelope: Any) -> bool:
        raise RuntimeError("disk full")

    real = d.intake.accept
    d.intake.accept = broken  # type: ignore[method-assign]
    payload = event_callback(message_event("do not lose me"))
    assert (await post_event(d, payload)).status_code == 503
    d.intake.accept = real  # type: ignore[method-assign]
    assert (await post_event(d, payload, retry=1)).json()["duplicate"] is False
    await processed(d, 1)


async def test_socket_mode_channel_takes_no_webhooks(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d: Daemon = await start_slack(mode="socket", app_token="xapp-1-A0APP-3333-omnidesktest")
    r = await post_event(d, event_callback(message_event("hi")))
    assert r.status_code == 404
    assert await inbound_rows(d) == []
