"""The SMS channel end to end: Twilio's signed webhooks into a running daemon,
replies through the real twilio SDK to the local stand-in of Twilio's REST
API, status callbacks, opt-out, splitting, and a restart."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from twilio.request_validator import RequestValidator

from omnidesk.channels.meta.webhook import SIGNATURE_HEADER as META_SIGNATURE
from omnidesk.channels.meta.webhook import sign as meta_sign
from omnidesk.channels.sms import keyword, segments, split_sms
from tests.channels.meta.conftest import wa_text
from tests.channels.sms.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CUSTOMER,
    OUR_NUMBER,
    Sms,
    SmsFactory,
    inbound_params,
    new_sid,
    status_params,
)
from tests.conftest import wait_for
from tests.standins.twilio_api import TwilioStandIn

# -- inbound -----------------------------------------------------------------------


async def test_text_becomes_a_conversation_with_an_e164_phone_contact(sms: Sms) -> None:
    r = await sms.text("Hello, my order has not arrived", frm="+1 (415) 555-0123")
    assert r.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in r.text  # empty TwiML: Twilio sends nothing itself
    conv = await sms.only_conversation()
    msg = conv["messages"][0]
    assert msg["text"] == "Hello, my order has not arrived"
    assert conv["contact"]["identities"][0]["kind"] == "phone"
    assert conv["contact"]["identities"][0]["address"] == CUSTOMER


async def test_missing_wrong_or_misdirected_signature_is_refused_and_nothing_stored(
    sms: Sms,
) -> None:
    params = inbound_params("forged")
    assert (await sms.post(params, signature="")).status_code == 401
    assert (await sms.post(params, token="another-accounts-token")).status_code == 403
    assert (await sms.post(params, signature="AAAA" + "x" * 24)).status_code == 403
    validator = RequestValidator(AUTH_TOKEN)
    # Signed for another URL (a request captured elsewhere and replayed here).
    elsewhere = validator.compute_signature("https://other.example.com/webhooks/sms", params)
    assert (await sms.post(params, signature=elsewhere)).status_code == 403
    # The query string is part of what Twilio signs.
    good = validator.compute_signature(sms.adapter.webhook_url, params)
    assert (await sms.post(params, query="x=1", signature=good)).status_code == 403
    tampered = dict(params, Body="changed after signing")
    assert (await sms.post(tampered, signature=good)).status_code == 403
    await sms.settle()
    assert await sms.inbound("sms") == []
    assert (await sms.post(params, signature=good)).status_code == 200
    await sms.settle()
    assert [r["external_id"] for r in await sms.inbound("sms")] == [params["MessageSid"]]


async def test_replayed_and_stale_deliveries_are_stored_once(sms: Sms) -> None:
    params = inbound_params("Where is my parcel?")
    first = await sms.post(params)
    # Twilio's signature carries no time: a copy replayed later is the same
    # MessageSid, which the intake has already.
    again = await sms.post(params)
    assert first.status_code == again.status_code == 200
    assert "X-Omnidesk-Duplicate" not in first.headers
    assert again.headers["X-Omnidesk-Duplicate"] == "1"
    conv = await sms.only_conversation()
    assert [m["text"] for m in conv["messages"]] == ["Where is my parcel?"]


async def test_mms_media_are_downloaded_or_kept_as_reference(sms: Sms, twilio: Any) -> None:
    sid = new_sid("MM")
    url = twilio.add_media(sid, "image/jpeg", b"\xff\xd8jpeg-bytes")
    params = inbound_params(
        "",
        sid=sid,
        NumMedia="2",
        MediaUrl0=url,
        MediaContentType0="image/jpeg",
        MediaUrl1="https://elsewhere.example.com/file.pdf",
        MediaContentType1="application/pdf",
    )
    assert (await sms.post(params)).status_code == 200
    conv = await sms.only_conversation()
    msg = conv["messages"][0]
    assert msg["text"] == "[picture] [file]"
    atts = msg["attachments"]
    assert len(atts) == 2
    assert atts[0]["content_type"] == "image/jpeg" and atts[0]["size"] == 12
    assert atts[1]["size"] in (0, None)
    errors = msg["meta"]["sms"]["media_errors"]
    assert "not a URL of" in errors["https://elsewhere.example.com/file.pdf"]
    # The download used the account's credentials.
    assert [c.authorized for c in twilio.calls if "/Media/" in c.path] == [True]


async def test_signed_garbage_is_kept_in_quarantine(sms: Sms) -> None:
    params = {"AccountSid": ACCOUNT_SID, "Something": "else"}
    assert (await sms.post(params)).status_code == 200
    await sms.settle()
    rows = await sms.inbound("sms")
    assert rows[0]["state"] == "quarantined"
    assert "no MessageSid" in rows[0]["error"]


async def test_sms_and_whatsapp_from_one_number_are_one_contact(
    sms_factory: SmsFactory,
) -> None:
    wa = {
        "name": "wa",
        "type": "whatsapp",
        "app_secret": "wa-secret",
        "verify_token": "v",
        "access_token": "t",
        "phone_number_id": "1234567890",
        "check_token": False,
    }
    sms = await sms_factory(extra_channels=[wa])
    await sms.text("SMS first")
    raw = json.dumps(wa_text("wamid.1", CUSTOMER.lstrip("+"), "then WhatsApp")).encode()
    r = await sms.client.post(
        "/webhooks/wa", content=raw, headers={META_SIGNATURE: meta_sign("wa-secret", raw)}
    )
    assert r.status_code == 200, r.text
    await sms.settle()
    convs = await sms.conversations()
    assert len(convs) == 2
    contacts = {(await sms.conversation(c["id"]))["contact"]["id"] for c in convs}
    assert len(contacts) == 1


# -- replies -------------------------------------------------------------------------


async def test_reply_goes_out_through_twilio_and_status_callbacks_move_it(
    sms: Sms, twilio: TwilioStandIn
) -> None:
    await sms.text("Hi")
    conv = await sms.only_conversation()
    out = await sms.reply(conv["id"], "Hello from support")
    sent = await sms.delivery(conv["id"], out["id"], "sent")
    call = (await twilio.wait_sends(1))[0]
    assert call.authorized
    assert call.form["To"] == CUSTOMER and call.form["From"] == OUR_NUMBER
    assert call.form["Body"] == "Hello from support"
    assert call.form["StatusCallback"] == sms.adapter.webhook_url
    sid = sent["provider_id"]
    assert sid.startswith("SM")
    for status in ("sending", "sent", "delivered"):
        r = await sms.post(status_params(sid, status))
        assert r.status_code == 204
    await sms.settle()
    assert (await sms.message(conv["id"], out["id"]))["delivery_state"] == "delivered"
    # A late 'sent' (callbacks may arrive out of order) never moves it back.
    await sms.post(status_params(sid, "sent") | {"SmsStatus": "sent"})
    await sms.settle()
    assert (await sms.message(conv["id"], out["id"]))["delivery_state"] == "delivered"
    notes = [r["note"] for r in await sms.inbound("sms") if r["external_id"].startswith("status:")]
    assert any("not a delivery state we track" in (n or "") for n in notes)


async def test_undelivered_callback_shows_twilios_reason(sms: Sms, twilio: TwilioStandIn) -> None:
    await sms.text("Hi")
    conv = await sms.only_conversation()
    out = await sms.reply(conv["id"], "Call us back")
    sid = (await sms.delivery(conv["id"], out["id"], "sent"))["provider_id"]
    await sms.post(status_params(sid, "undelivered", error=30006))
    await sms.settle()
    msg = await sms.message(conv["id"], out["id"])
    assert msg["delivery_state"] == "failed"
    assert "landline" in msg["delivery_error"] and "30006" in msg["delivery_error"]


async def test_rate_limit_is_retried_and_a_refusal_fails_with_the_reason(
    sms: Sms, twilio: TwilioStandIn
) -> None:
    await sms.text("Hi")
    conv = await sms.only_conversation()
    twilio.fail_next(429, 20429, "Too Many Requests", times=2)
    out = await sms.reply(conv["id"], "after the rate limit")
    await sms.delivery(conv["id"], out["id"], "sent")
    assert [c.status for c in twilio.sends()] == [429, 429, 201]

    twilio.fail_next(400, 21614, "'To' number is not a valid mobile number")
    bad = await sms.reply(conv["id"], "to a landline")
    failed = await sms.delivery(conv["id"], bad["id"], "failed")
    assert "not a mobile number" in failed["delivery_error"]
    assert "21614" in failed["delivery_error"]
    assert len(twilio.sends()) == 4  # not retried


async def test_stop_blocks_replies_until_start(sms: Sms, twilio: TwilioStandIn) -> None:
    await sms.text("I have a question")
    conv = await sms.only_conversation()
    stop_sid = new_sid()
    await sms.text("Stop", sid=stop_sid)
    await sms.settle()
    out = await sms.reply(conv["id"], "Are you still there?")
    failed = await sms.delivery(conv["id"], out["id"], "failed")
    assert "opted out" in failed["delivery_error"]
    assert twilio.sends() == []
    texts = [(m["text"], m.get("auto")) for m in (await sms.conversation(conv["id"]))["messages"]]
    assert ("Stop", "sms opt-out") in texts
    assert len(await sms.conversations()) == 1  # the STOP opened nothing

    start = inbound_params("START")
    await sms.post(start)
    await sms.settle()
    # A late redelivery of the STOP changes nothing any more.
    stop_again = await sms.post(inbound_params("Stop", sid=stop_sid))
    assert stop_again.headers["X-Omnidesk-Duplicate"] == "1"
    await sms.settle()
    again = await sms.reply(conv["id"], "Welcome back")
    await sms.delivery(conv["id"], again["id"], "sent")
    assert [c.form["Body"] for c in twilio.delivered()] == ["Welcome back"]


async def test_twilios_unsubscribed_refusal_records_the_opt_out(
    sms: Sms, twilio: TwilioStandIn
) -> None:
    await sms.text("Hi")
    conv = await sms.only_conversation()
    twilio.unsubscribed.add(CUSTOMER)
    out = await sms.reply(conv["id"], "one")
    failed = await sms.delivery(conv["id"], out["id"], "failed")
    assert "opted out" in failed["delivery_error"] and "21610" in failed["delivery_error"]
    second = await sms.reply(conv["id"], "two")
    await sms.delivery(conv["id"], second["id"], "failed")
    assert len(twilio.sends()) == 1  # the second never reached Twilio


async def test_long_reply_is_split_each_part_sent_once_and_callbacks_name_the_reply(
    sms: Sms, twilio: TwilioStandIn
) -> None:
    await sms.text("Hi")
    conv = await sms.only_conversation()
    text = " ".join(f"word{i}" for i in range(500))  # ~4,400 characters
    # The second part fails once with a server error: the retry sends only
    # what is missing.
    twilio.script.clear()
    out_holder: dict[str, Any] = {}

    original = twilio._answer

    def second_fails_once(request: Any, call: Any) -> Any:
        if len(twilio.sends()) == 1 and not out_holder.get("failed"):
            out_holder["failed"] = True
            return twilio._error(503, 20500, "Service Unavailable")
        return original(request, call)

    twilio._answer = second_fails_once  # type: ignore[method-assign]
    out = await sms.reply(conv["id"], text)
    sent = await sms.delivery(conv["id"], out["id"], "sent")
    ok = twilio.delivered()
    assert len(ok) == 3 and all(len(c.form["Body"]) <= 1600 for c in ok)
    assert " ".join(c.form["Body"] for c in ok) == text
    assert [c.status for c in twilio.sends()] == [201, 503, 201, 201]
    first = sent["provider_id"]
    assert ok[1].form["StatusCallback"].endswith(f"?part_of={first}")
    # A later part's failure fails the reply.
    later_sid = "SM" + "f" * 32
    r = await sms.post(status_params(later_sid, "failed", error=30007), query=f"part_of={first}")
    assert r.status_code == 204
    await sms.settle()
    msg = await sms.message(conv["id"], out["id"])
    assert msg["delivery_state"] == "failed" and "spam" in msg["delivery_error"]


async def test_restart_loses_and_duplicates_nothing(
    sms_factory: SmsFactory, twilio: TwilioStandIn
) -> None:
    # Retries a second apart: the reply waits in the outbox, not in a send.
    sms = await sms_factory(outbox={"backoff_base": 1.0, "backoff_max": 1.0})
    first = inbound_params("before the restart")
    await sms.post(first)
    conv = await sms.only_conversation()
    twilio.fail_next(503, 20500, "down", times=1000)  # Twilio down: the reply waits
    out = await sms.reply(conv["id"], "queued across the restart")
    # Stopped once the failed attempt is recorded (not while a send is in
    # flight, whose lease would hold the reply for two minutes).
    await sms.delivery(conv["id"], out["id"], "queued")
    await wait_for(lambda: sms.retrying(conv["id"], out["id"]))
    await sms.daemon.stop()

    twilio.script.clear()
    sms2 = await sms_factory()
    await sms2.post(first)  # Twilio retrying what the first daemon took
    await sms2.post(inbound_params("after the restart"))
    await sms2.settle()
    conv2 = await sms2.conversation(conv["id"])
    inbound = [m["text"] for m in conv2["messages"] if m["direction"] == "in"]
    assert inbound == ["before the restart", "after the restart"]
    await sms2.delivery(conv["id"], out["id"], "sent")
    await asyncio.sleep(0.2)
    assert [c.form["Body"] for c in twilio.delivered()] == ["queued across the restart"]


# -- pure helpers ----------------------------------------------------------------------


def test_segments_follow_gsm7_and_ucs2_limits() -> None:
    assert segments("a" * 160) == ("GSM-7", 1)
    assert segments("a" * 161) == ("GSM-7", 2)
    assert segments("a" * 306) == ("GSM-7", 2)
    assert segments("a" * 307) == ("GSM-7", 3)
    assert segments("€" * 80) == ("GSM-7", 1)  # extension characters count two septets
    assert segments("€" * 81) == ("GSM-7", 2)
    assert segments("你" * 70) == ("UCS-2", 1)
    assert segments("你" * 71) == ("UCS-2", 2)
    assert segments("a" * 100 + "’") == ("UCS-2", 2)  # one curly quote makes it UCS-2
    assert segments("😀" * 35) == ("UCS-2", 1)  # each emoji is two UTF-16 units


def test_split_keeps_every_part_within_1600_and_cuts_at_words() -> None:
    text = " ".join(["support"] * 600)
    parts = split_sms(text)
    assert len(parts) == 3 and all(len(p) <= 1600 for p in parts)
    assert " ".join(parts) == text
    emoji = "😀" * 1000  # 2,000 UTF-16 units
    parts = split_sms(emoji)
    assert [len(p.encode("utf-16-le")) // 2 for p in parts] == [1600, 400]
    assert split_sms("short") == ["short"]


def test_opt_out_keywords_are_the_whole_message() -> None:
    assert keyword("STOP") == "stop" and keyword(" stop. ") == "stop"
    assert keyword("Unsubscribe") == "stop" and keyword("start") == "start"
    assert keyword("please stop calling me") is None
    assert keyword("yes") == "start"


async def test_an_email_contact_and_an_sms_contact_become_one_by_an_agents_merge(
    sms: Sms,
) -> None:
    from tests.conftest import message, post_inbound

    r = await post_inbound(sms.client, message("e-1", "Order 1234 is late", "ann@example.com"))
    assert r.status_code == 202, r.text
    await sms.text("It's Ann again, by text")
    await sms.settle()
    by_kind = {}
    for c in await sms.conversations():
        conv = await sms.conversation(c["id"])
        by_kind[conv["contact"]["identities"][0]["kind"]] = conv["contact"]["id"]
    assert by_kind["email"] != by_kind["phone"]  # a phone number alone proves nothing
    r = await sms.client.post(
        f"/api/v1/contacts/{by_kind['email']}/merge",
        json={"source_id": by_kind["phone"], "reason": "same customer"},
    )
    assert r.status_code == 200, r.text
    await sms.text("And a third message")
    await sms.settle()
    contact = (await sms.client.get(f"/api/v1/contacts/{by_kind['email']}")).json()
    kinds = {(i["kind"], i["address"]) for i in contact["identities"]}
    assert {("email", "ann@example.com"), ("phone", CUSTOMER)} <= kinds
    owners = {(await sms.conversation(c["id"]))["contact"]["id"] for c in await sms.conversations()}
    assert owners == {by_kind["email"]}


async def test_a_phone_given_in_any_format_elsewhere_meets_the_sms_sender(sms: Sms) -> None:
    from tests.conftest import post_inbound

    body = {
        "external_id": "form-1",
        "sender": {"address": "+1 (415) 555-0123", "kind": "phone", "name": "Ann"},
        "text": "Please text me",
    }
    assert (await post_inbound(sms.client, body)).status_code == 202
    await sms.text("Texting as asked")
    await sms.settle()
    owners = {(await sms.conversation(c["id"]))["contact"]["id"] for c in await sms.conversations()}
    assert len(owners) == 1


async def test_start_checks_the_account_credentials(sms_factory: SmsFactory) -> None:
    good = await sms_factory()
    await wait_for(lambda: good.health_says("sms", "credentials accepted"))
    wrong = await sms_factory(auth_token="not-the-token")
    await wait_for(lambda: wrong.health_says("sms", "Twilio refused the account credentials"))
    health = (await wrong.client.get("/healthz")).json()
    assert health["channels"]["sms"]["state"] == "failing"
    assert "not-the-token" not in json.dumps(health)
