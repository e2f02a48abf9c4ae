"""The Slack parser and helpers as pure functions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from omnidesk.channels.slack import (
    _parse_thread_key,
    _send_error,
    escape_text,
    event_external_id,
    signature_valid,
    slack_to_text,
    thread_key_for,
)
from omnidesk.model import Envelope, Message, NormalizeError, Skip
from tests.standins.slack_api import event_callback, message_event

from .test_corpus import _adapter


@pytest.mark.parametrize(
    ("mrkdwn", "text"),
    [
        ("Hi <@U0BOT>, help", "Hi, help"),
        ("<@U0BOT> help", "help"),
        ("ask <@U0SAM|sam>", "ask @sam"),
        ("see <#C1|orders> and <!here>", "see #orders and @here"),
        (
            "<https://shop.example/o/5|order 5> &amp; <https://x.example>",
            "order 5 (https://shop.example/o/5) & https://x.example",
        ),
        ("<mailto:ann@x.example|ann@x.example> &lt;3", "ann@x.example <3"),
        ("<!subteam^S1|@support> <!date^1392734382^{date}|Feb 18>", "@support Feb 18"),
    ],
)
def test_slack_markup_becomes_plain_text(mrkdwn: str, text: str) -> None:
    assert slack_to_text(mrkdwn, our_user="U0BOT") == text


def test_outbound_text_escapes_only_what_slack_reads_as_markup() -> None:
    assert escape_text("a < b & c > d *bold*") == "a &lt; b &amp; c &gt; d *bold*"


def test_external_ids_join_retries_and_mention_twins() -> None:
    ev = message_event("x", channel="C1", channel_type="channel", ts="1.000001")
    assert event_external_id(event_callback(ev)) == "C1:1.000001"
    mention = {**ev, "type": "app_mention"}
    assert event_external_id(event_callback(mention)) == "C1:1.000001"
    other = event_callback({"type": "reaction_added"}, event_id="Ev1")
    assert event_external_id(other) == "ev:Ev1"
    assert event_external_id({"type": "url_verification"}) is None
    assert event_external_id([]) is None


def test_thread_keys() -> None:
    top = {"ts": "5.1", "channel_type": "channel"}
    assert thread_key_for("C1", top, top) == "C1:5.1"
    reply = {"ts": "6.1", "thread_ts": "5.1", "channel_type": "channel"}
    assert thread_key_for("C1", reply, reply) == "C1:5.1"
    assert thread_key_for("D1", {"channel_type": "im"}, {"ts": "7.1"}) == "D1"
    assert thread_key_for("D1", {}, {"ts": "7.1"}) == "D1", "a D channel is a DM"
    assert _parse_thread_key("C1:5.1", "T:U") == ("C1", "5.1")
    assert _parse_thread_key("D1", "T:U") == ("D1", None)
    assert _parse_thread_key(None, "T1:U1") == ("U1", None)


def test_signature_over_raw_bytes() -> None:
    body, t = b'{"a":1}', str(int(time.time()))
    mac = "v0=" + hmac.new(b"s3", f"v0:{t}:".encode() + body, hashlib.sha256).hexdigest()
    assert signature_valid("s3", body, t, mac)
    assert not signature_valid("s3", body + b" ", t, mac)
    assert not signature_valid("other", body, t, mac)
    assert not signature_valid("s3", body, str(int(t) - 301), mac)
    assert not signature_valid("s3", body, None, mac)


def normalize(payload: dict[str, Any], **meta: Any) -> Any:
    raw = json.dumps(payload).encode()
    ext = event_external_id(payload) or "x"
    return _adapter().normalize(Envelope("sl", ext, raw, meta=meta))


def test_profile_from_intake_names_the_sender_and_links_the_email() -> None:
    profile = {"real_name": "Ann Lee", "email": "Ann@Example.com", "is_restricted": True}
    item = normalize(event_callback(message_event("hi")), profile=profile)
    assert isinstance(item, Message)
    assert item.sender.display_name == "Ann Lee"
    assert item.sender.data["guest"] is True
    assert [(i.kind, i.address) for i in item.extra_identities] == [("email", "ann@example.com")]


def test_bot_profiles_are_not_linked_by_email() -> None:
    profile = {"real_name": "Robo", "email": "robo@example.com", "is_bot": True}
    item = normalize(event_callback(message_event("hi")), profile=profile)
    assert isinstance(item, Message) and item.extra_identities == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"no": "type"}, "no 'type'"),
        ({"type": "event_callback"}, "without an 'event'"),
        ({"type": "event_callback", "event": {"type": "message", "channel": "C1"}}, "'user'"),
    ],
)
def test_unreadable_payloads_are_refused_with_a_reason(
    payload: dict[str, Any], problem: str
) -> None:
    with pytest.raises(NormalizeError, match=problem):
        normalize(payload)


def test_interactive_payloads_other_than_survey_buttons_are_skipped() -> None:
    item = normalize({"type": "block_actions", "user": {"id": "U1"}})
    assert isinstance(item, Skip) and "did not send" in item.reason
    item = normalize({"type": "view_submission", "user": {"id": "U1"}})
    assert isinstance(item, Skip) and "view_submission" in item.reason


class _Resp:
    def __init__(self, status: int, data: dict[str, Any], headers: dict[str, str]) -> None:
        self.status_code, self.data, self.headers = status, data, headers


def test_send_errors_classify_retry_and_failure() -> None:
    from slack_sdk.errors import SlackApiError

    def err(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return _send_error(SlackApiError("x", _Resp(status, data, headers or {})))

    limited = err(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"})
    assert (limited.retry, limited.retry_after) == (True, 7.0)
    assert err(502, {}).retry is True
    assert err(200, {"ok": False, "error": "fatal_error"}).retry is True
    gone = err(200, {"ok": False, "error": "channel_not_found"})
    assert (gone.retry, gone.reason) == (False, "Slack refused: channel_not_found")


def test_a_survey_button_press_is_the_answer_in_its_thread() -> None:
    from urllib.parse import parse_qs

    from tests.standins.slack_api import block_actions

    a = _adapter()
    posted = {"ts": "5.000001", "thread_ts": "4.000001", "text": "How would you rate us?"}
    body = block_actions(posted, "survey:7:3", channel="C1", user="U0ANN")
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert event_external_id(payload) == f"action:{payload['trigger_id']}"
    got = a.normalize(Envelope("sl", "action:1", body, "application/x-www-form-urlencoded"))
    assert isinstance(got, Message)
    assert (got.text, got.thread_key) == ("3", "C1:4.000001")
    assert got.sender.address.endswith(":U0ANN")
    # A button omnidesk did not send, and a payload without its user.
    other = block_actions(posted, "approve:7", channel="C1")
    assert isinstance(a.normalize(Envelope("sl", "a2", other, "x")), Skip)
    broken = json.loads(parse_qs(body.decode())["payload"][0])
    del broken["user"]
    with pytest.raises(NormalizeError, match="without a user"):
        a.normalize(Envelope("sl", "a3", json.dumps(broken).encode(), "application/json"))
