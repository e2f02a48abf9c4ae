"""WhatsApp Cloud API end to end: message types, identity in E.164, status
webhooks moving a reply queued -> sent -> delivered -> read (or failed with
the reason), the reply call itself, and the 24-hour customer-service window."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.meta.graph import WHATSAPP_WINDOW_REASON
from omnidesk.channels.meta.whatsapp import WhatsAppChannel
from omnidesk.config import parse_config
from omnidesk.model import Direction, Message, MessageKind, StatusUpdate
from tests.channels.meta.conftest import (
    ACCESS_TOKEN,
    PHONE_NUMBER_ID,
    Meta,
    wa_delivery,
    wa_message,
    wa_status,
    wa_text,
)
from tests.channels.meta.test_messenger import delivery_state
from tests.conftest import post_inbound, wait_for

CUSTOMER = "4915112345678"  # a German mobile number, as WhatsApp sends it (no '+')


def adapter(**opts: Any) -> WhatsAppChannel:
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "wa",
                    "type": "whatsapp",
                    "app_secret": "s",
                    "verify_token": "v",
                    "access_token": "t",
                    "phone_number_id": PHONE_NUMBER_ID,
                    **opts,
                }
            ]
        }
    )
    return WhatsAppChannel(ChannelContext(name="wa", config=cfg.channels[0], intake=None))  # type: ignore[arg-type]


def normalized(msg: dict[str, Any], **contact: Any) -> Any:
    a = adapter()
    card = {"profile": {"name": "Ann"}, **contact}
    if "from" in msg:
        card["wa_id"] = msg["from"]
    body = wa_delivery(messages=[msg], contacts=[card])
    [env] = a.envelopes(json.dumps(body).encode())
    return a.normalize(env)


MEDIA = [
    (
        "image",
        {"id": "1001", "mime_type": "image/jpeg", "sha256": "x", "caption": "my receipt"},
        "my receipt",
        "image/jpeg",
        None,
    ),
    (
        "document",
        {"id": "1002", "mime_type": "application/pdf", "filename": "invoice.pdf"},
        "[document: invoice.pdf]",
        "application/pdf",
        "invoice.pdf",
    ),
    (
        "audio",
        {"id": "1003", "mime_type": "audio/ogg; codecs=opus", "voice": True},
        "[voice message]",
        "audio/ogg",
        None,
    ),
    ("video", {"id": "1004", "mime_type": "video/mp4"}, "[video]", "video/mp4", None),
    (
        "sticker",
        {"id": "1005", "mime_type": "image/webp", "animated": False},
        "[sticker]",
        "image/webp",
        None,
    ),
]


@pytest.mark.parametrize(("mtype", "body", "text", "mime", "filename"), MEDIA)
def test_media_keeps_the_reference_mime_type_and_caption(
    mtype: str, body: dict[str, Any], text: str, mime: str, filename: str | None
) -> None:
    m = normalized(wa_message("wamid.media", CUSTOMER, mtype, body))
    assert isinstance(m, Message)
    assert m.text == text
    [att] = m.attachments
    assert att.ref == f"whatsapp-media:{body['id']}"
    assert att.content_type == mime
    assert att.filename == filename
    assert att.data is None, "downloading needs Graph calls: not done at intake"
    assert m.meta["media"]["id"] == body["id"]


def test_location_contacts_and_interactive_replies() -> None:
    loc = normalized(
        wa_message(
            "wamid.loc",
            CUSTOMER,
            "location",
            {"latitude": 52.52, "longitude": 13.405, "name": "Shop", "address": "Main St 1"},
        )
    )
    assert loc.text == "[location: Shop, Main St 1 - 52.52, 13.405]"
    assert loc.meta["location"]["latitude"] == 52.52

    card = wa_message("wamid.card", CUSTOMER, "contacts")
    card["contacts"] = [
        {"name": {"formatted_name": "Chandler Bing"}, "phones": [{"phone": "+1 555-555-5555"}]}
    ]
    assert normalized(card).text == "[shared contact: Chandler Bing +1 555-555-5555]"

    button = normalized(
        wa_message(
            "wamid.btn",
            CUSTOMER,
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "yes-1", "title": "Yes"}},
        )
    )
    assert button.text == "Yes"
    assert button.meta["interactive"]["button_reply"]["id"] == "yes-1"

    listed = normalized(
        wa_message(
            "wamid.list",
            CUSTOMER,
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {"id": "opt-2", "title": "Refund", "description": "Money back"},
            },
        )
    )
    assert listed.text == "Refund (Money back)"

    quick = wa_message(
        "wamid.quick", CUSTOMER, "button", {"payload": "STOP", "text": "Stop promotions"}
    )
    assert normalized(quick).text == "Stop promotions"


def test_referral_reaction_edit_revoke_and_unsupported() -> None:
    ad = wa_message("wamid.ad", CUSTOMER, "text", "I saw your ad")
    ad["referral"] = {"source_type": "ad", "source_id": "ADID", "headline": "Sale"}
    m = normalized(ad)
    assert m.text == "I saw your ad" and m.meta["referral"]["source_id"] == "ADID"

    reaction = normalized(
        wa_message(
            "wamid.r", CUSTOMER, "reaction", {"message_id": "wamid.ours", "emoji": "\U0001f44d"}
        )
    )
    assert reaction.text == "\U0001f44d" and reaction.auto == "reaction"

    edit = normalized(
        wa_message(
            "wamid.e",
            CUSTOMER,
            "edit",
            {
                "original_message_id": "wamid.orig",
                "message": {"type": "text", "text": {"body": "fixed"}},
            },
        )
    )
    assert (edit.kind, edit.edit_of, edit.text) == (MessageKind.EDIT, "wamid.orig", "fixed")

    revoke = normalized(
        wa_message("wamid.del", CUSTOMER, "revoke", {"original_message_id": "wamid.orig"})
    )
    assert revoke.kind == MessageKind.EDIT and "deleted" in revoke.text

    poll = wa_message("wamid.poll", CUSTOMER, "unsupported")
    poll["errors"] = [{"code": 131051, "title": "Message type unknown"}]
    assert "Message type unknown" in normalized(poll).text


def test_identity_is_e164_with_profile_name_and_bsuid() -> None:
    m = normalized(wa_message("wamid.id", CUSTOMER, "text", "hi"), user_id="DE.1234567")
    assert (m.sender.kind, m.sender.address) == ("phone", "+4915112345678")
    assert m.sender.display_name == "Ann"
    assert m.sender.data["user_id"] == "DE.1234567"
    assert m.thread_key == f"{PHONE_NUMBER_ID}:+4915112345678"
    # A username user whose number is hidden: reachable by BSUID only.
    hidden = {
        "from_user_id": "US.13491208655302741918",
        "id": "wamid.h",
        "type": "text",
        "timestamp": str(int(time.time())),
        "text": {"body": "hi"},
    }
    m = normalized(hidden, user_id="US.13491208655302741918")
    assert (m.sender.kind, m.sender.address) == ("whatsapp", "US.13491208655302741918")


def test_statuses_and_their_failure_reasons() -> None:
    a = adapter()
    failed = wa_status(
        "wamid.out",
        "failed",
        CUSTOMER,
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "error_data": {"details": "More than 24 hours have passed"},
            }
        ],
    )
    [env] = a.envelopes(json.dumps(failed).encode())
    st = a.normalize(env)
    assert isinstance(st, StatusUpdate)
    assert st.provider_id == "wamid.out" and st.state == "failed"
    assert WHATSAPP_WINDOW_REASON in (st.reason or "")
    assert env.external_id == "status:wamid.out:failed"


async def customer_writes(
    meta: Meta, text: str = "Where is my parcel?", ts: float | None = None, wamid: str | None = None
) -> int:
    wamid = wamid or f"wamid.in{time.monotonic_ns()}"
    r = await meta.deliver("wa", wa_text(wamid, CUSTOMER, text, ts=ts))
    assert r.status_code == 200
    await meta.settle()
    return int((await meta.conversations("wa"))[0]["id"])


async def test_reply_is_a_cloud_api_call_quoting_the_customer(meta: Meta) -> None:
    conv_id = await customer_writes(meta, wamid="wamid.customer1")
    reply = await meta.reply(conv_id, "It left our warehouse today.")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    [call] = meta.graph.sends()
    assert (call.version, call.path) == ("v21.0", f"{PHONE_NUMBER_ID}/messages")
    assert call.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "It left our warehouse today.", "preview_url": False},
        "context": {"message_id": "wamid.customer1"},
    }
    assert (await meta.message(conv_id, reply["id"]))["provider_id"].startswith("wamid.STANDIN")


async def test_statuses_move_the_reply_queued_sent_delivered_read(meta: Meta) -> None:
    conv_id = await customer_writes(meta)
    reply = await meta.reply(conv_id, "On its way")
    assert reply["delivery_state"] == "queued"
    await delivery_state(meta, conv_id, reply["id"], "sent")
    wamid = (await meta.message(conv_id, reply["id"]))["provider_id"]
    seen = []
    for status in ("sent", "delivered", "read", "delivered"):  # the last one arrives late
        await meta.deliver("wa", wa_status(wamid, status, CUSTOMER))
        await meta.settle()
        seen.append((await meta.message(conv_id, reply["id"]))["delivery_state"])
    assert seen == ["sent", "delivered", "read", "read"]
    # The same status twice is one envelope.
    r = await meta.deliver("wa", wa_status(wamid, "read", CUSTOMER))
    assert r.json() == {"stored": 0, "duplicates": 1}


async def test_failed_status_shows_the_reason(meta: Meta) -> None:
    conv_id = await customer_writes(meta)
    reply = await meta.reply(conv_id, "Here is your code")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    wamid = (await meta.message(conv_id, reply["id"]))["provider_id"]
    errors = [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "error_data": {"details": "Receiver is incapable of receiving this message"},
        }
    ]
    await meta.deliver("wa", wa_status(wamid, "failed", CUSTOMER, errors))
    await meta.settle()
    m = await meta.message(conv_id, reply["id"])
    assert m["delivery_state"] == "failed"
    assert "Message undeliverable: Receiver is incapable" in m["delivery_error"]
    assert "131026" in m["delivery_error"]


async def test_outside_the_window_the_reply_fails_clearly_and_is_never_sent(meta: Meta) -> None:
    conv_id = await customer_writes(meta, ts=time.time() - 25 * 3600)
    reply = await meta.reply(conv_id, "Sorry for the wait!")
    await delivery_state(meta, conv_id, reply["id"], "failed")
    m = await meta.message(conv_id, reply["id"])
    assert m["delivery_error"].startswith("outside WhatsApp's 24-hour window")
    assert "approved template" in m["delivery_error"]
    assert meta.graph.sends() == []
    # The customer writes again: the window is open, a new reply goes out.
    await customer_writes(meta, "Hello?")
    again = await meta.reply(conv_id, "Sorry for the wait!")
    await delivery_state(meta, conv_id, again["id"], "sent")


async def test_metas_own_window_refusal_is_shown_the_same_way(meta: Meta) -> None:
    conv_id = await customer_writes(meta)
    meta.graph.window_closed.add(CUSTOMER)  # Meta disagrees with our clock
    reply = await meta.reply(conv_id, "hello")
    await delivery_state(meta, conv_id, reply["id"], "failed")
    m = await meta.message(conv_id, reply["id"])
    assert m["delivery_error"].startswith("outside WhatsApp's 24-hour window")
    assert "131047" in m["delivery_error"]
    assert len(meta.graph.sends()) == 1


async def test_configured_template_goes_out_after_the_window(meta_factory: Any) -> None:
    meta = await meta_factory(
        wa={"window_template": "support_reply", "window_template_language": "de"}
    )
    conv_id = await customer_writes(meta, ts=time.time() - 30 * 3600)
    reply = await meta.reply(conv_id, "Your refund\n\nwas    approved.")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    [call] = meta.graph.sends()
    assert call.body["type"] == "template"
    assert call.body["template"] == {
        "name": "support_reply",
        "language": {"code": "de"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Your refund was approved."}]}
        ],
    }


async def test_rate_limit_and_server_errors_are_retried(meta: Meta) -> None:
    conv_id = await customer_writes(meta)
    meta.graph.fail_next(400, 130429, "(#130429) Rate limit hit")
    meta.graph.fail_next(429, 80007, "(#80007) Rate limit issues", headers={"Retry-After": "0"})
    meta.graph.fail_next(502, 131000, "Something went wrong")
    reply = await meta.reply(conv_id, "Try again")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    assert [c.status for c in meta.graph.sends()] == [400, 429, 502, 200]


async def test_whatsapp_and_api_channel_contacts_with_the_same_phone_are_one(meta: Meta) -> None:
    await post_inbound(
        meta.client,
        {
            "external_id": "web-1",
            "sender": {"kind": "phone", "address": "+49 151 1234 5678", "name": "Ann"},
            "text": "I ordered on the website",
        },
    )
    await customer_writes(meta, "And now I write on WhatsApp")
    [web] = await meta.conversations("api")
    [wa] = await meta.conversations("wa")
    assert web["contact_id"] == wa["contact_id"]

    def identities(db: Any) -> list[tuple[str, str]]:
        rows = db.all(
            "SELECT kind, address FROM identities WHERE contact_id = ?", (wa["contact_id"],)
        )
        return [(r["kind"], r["address"]) for r in rows]

    assert await meta.daemon.store.read(identities) == [("phone", "+4915112345678")]


async def test_business_app_message_is_recorded_as_outbound(meta: Meta) -> None:
    conv_id = await customer_writes(meta)
    echo = wa_delivery(contacts=[{"profile": {"name": "Ann"}, "wa_id": CUSTOMER}])
    value = echo["entry"][0]["changes"][0]
    value["field"] = "smb_message_echoes"
    value["value"]["message_echoes"] = [
        {
            "from": "15550001111",
            "to": CUSTOMER,
            "id": "wamid.fromphone",
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "Sent from my phone"},
        }
    ]
    await meta.deliver("wa", echo)
    await meta.settle()
    msgs = (await meta.conversation(conv_id))["messages"]
    assert [(m["direction"], m["text"]) for m in msgs][-1] == ("out", "Sent from my phone")
    assert msgs[-1]["sender_name"] == "WhatsApp Business app"


async def test_reply_to_a_username_user_goes_to_the_bsuid(meta: Meta) -> None:
    bsuid = "US.13491208655302741918"
    msg = {
        "from_user_id": bsuid,
        "id": "wamid.bs",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "hi, no number"},
    }
    await meta.deliver(
        "wa", wa_delivery(messages=[msg], contacts=[{"profile": {"name": "X"}, "user_id": bsuid}])
    )
    await meta.settle()
    [conv] = await meta.conversations("wa")
    reply = await meta.reply(conv["id"], "hello")
    await delivery_state(meta, conv["id"], reply["id"], "sent")
    [call] = meta.graph.sends()
    assert call.body["recipient"] == bsuid and "to" not in call.body


def test_outbound_echo_is_a_message_with_direction_out() -> None:
    a = adapter()
    body = wa_delivery()
    body["entry"][0]["changes"][0]["value"]["message_echoes"] = [
        {"from": "1555", "to": CUSTOMER, "id": "wamid.e", "type": "text", "text": {"body": "x"}}
    ]
    [env] = a.envelopes(json.dumps(body).encode())
    m = a.normalize(env)
    assert isinstance(m, Message) and m.direction == Direction.OUTBOUND
    assert m.recipients[0].address == "+4915112345678"


def test_survey_choices_become_buttons_or_a_list_within_whatsapps_limits() -> None:
    from omnidesk.channels.meta.whatsapp import survey_interactive
    from tests.standins.graph_api import _invalid_interactive

    def survey(n: int, low: int = 1, **kw: Any) -> dict[str, Any]:
        values = range(low, low + n)
        return {
            "id": 9,
            "min": low,
            "max": low + n - 1,
            **kw,
            "choices": [{"value": v, "label": f"label {v} " * 4} for v in values],
        }

    three = survey_interactive("How was it?", survey(3))
    assert three is not None and three["interactive"]["type"] == "button"
    ids = [b["reply"]["id"] for b in three["interactive"]["action"]["buttons"]]
    assert ids == ["survey:9:3", "survey:9:2", "survey:9:1"]
    five = survey_interactive("How was it?", survey(5))
    assert five is not None and five["interactive"]["type"] == "list"
    assert five["interactive"]["action"]["button"] == "1–5"
    for msg in (three, five):
        assert _invalid_interactive(msg["interactive"]) is None  # long labels were cut
    # Eleven choices (0-10), an over-long question, or no survey: plain text.
    assert survey_interactive("How likely?", survey(11, low=0)) is None
    assert survey_interactive("x" * 1025, survey(5)) is None
    assert survey_interactive("Hello", None) is None


async def test_survey_goes_out_as_a_list_and_the_choice_is_the_rating(
    tmp_path: Any, config_factory: Any, daemon_factory: Any, graph: Any
) -> None:
    from tests.channels.meta.conftest import Meta, meta_channels
    from tests.conftest import admin_token
    from tests.email_channels.conftest import rows
    from tests.service.test_surveys import answer_and_resolve, survey_rules

    cfg = config_factory(
        channels=meta_channels(graph.base_url),
        rules={"dir": str(survey_rules(tmp_path)), "watch": False},
        outbox={"backoff_base": 0.02, "backoff_max": 0.1, "max_attempts": 6},
    )
    d = await daemon_factory(cfg)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as c:
        meta = Meta(d, c, graph)
        meta.auth = await admin_token(d)
        cid = await customer_writes(meta, "My order arrived damaged")
        await answer_and_resolve(d, cid, "A new one is on its way.")
        await d.scheduler.tick()

        async def asked() -> Any:
            return next((s for s in graph.sends() if s.body.get("type") == "interactive"), None)

        await wait_for(asked, 15)
        call = await asked()
        sid = (await rows(d, "SELECT id FROM surveys"))[0]["id"]
        it = call.body["interactive"]
        assert it["type"] == "list" and "How would you rate" in it["body"]["text"]
        row_ids = [r["id"] for r in it["action"]["sections"][0]["rows"]]
        assert row_ids == [f"survey:{sid}:{n}" for n in (5, 4, 3, 2, 1)]
        reply = {"type": "list_reply", "list_reply": {"id": f"survey:{sid}:4", "title": "4 · Good"}}
        r = await meta.deliver(
            "wa",
            wa_delivery(
                messages=[wa_message("wamid.answer1", CUSTOMER, "interactive", reply)],
                contacts=[{"profile": {"name": "Ann Customer"}, "wa_id": CUSTOMER}],
            ),
        )
        assert r.status_code == 200

        async def rated() -> bool:
            return (await rows(d, "SELECT rating FROM surveys"))[0]["rating"] == 4

        await wait_for(rated, 30)
        assert [x["status"] for x in await rows(d, "SELECT status FROM conversations")] == [
            "resolved"
        ]

        # The loyalty question (0-10) goes as text: eleven choices fit no list.
        async def loyalty() -> Any:
            return next((s for s in graph.sends() if "recommend" in json.dumps(s.body)), None)

        await wait_for(loyalty, 15)
        assert (await loyalty()).body["type"] == "text"
