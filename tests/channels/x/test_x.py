"""The X channel end to end: Account Activity deliveries signed as X signs
them into a running daemon, replies through X's SDK (xdk) to the local
stand-in of the v2 DM API, with OAuth 1.0a signatures checked there."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from omnidesk.channels.x import split_delivery
from tests.channels.x.conftest import (
    CONSUMER_SECRET,
    CUSTOMER_ID,
    OUR_ID,
    X,
    XFactory,
    delivery,
    dm,
    now_ms,
    x_channel,
)
from tests.conftest import wait_for
from tests.standins.x_api import XApiStandIn

# -- the CRC check and signatures ----------------------------------------------------


async def test_crc_challenge_is_answered_with_the_hmac_of_the_token(x: X) -> None:
    r = await x.client.get("/webhooks/x", params={"crc_token": "challenge-123"})
    assert r.status_code == 200
    digest = hmac.new(CONSUMER_SECRET.encode(), b"challenge-123", hashlib.sha256).digest()
    assert r.json() == {"response_token": "sha256=" + base64.b64encode(digest).decode()}
    assert (await x.client.get("/webhooks/x")).status_code == 400


async def test_the_crc_answer_never_signs_what_could_pass_for_a_delivery(x: X) -> None:
    # The CRC answer and the delivery signature are the same HMAC: a token
    # shaped like a body would hand an attacker a valid signature for it.
    forged = json.dumps(delivery(dm("forged via the CRC check")))
    r = await x.client.get("/webhooks/x", params={"crc_token": forged})
    assert r.status_code == 400 and "response_token" not in r.json()
    token = "Zm9yZ2VkLXRva2Vu"
    answer = (await x.client.get("/webhooks/x", params={"crc_token": token})).json()
    replayed = await x.deliver(token.encode(), signature=answer["response_token"])
    assert replayed.status_code == 400
    await x.settle()
    assert await x.inbound("x") == []


async def test_missing_wrong_or_tampered_signature_is_refused_and_nothing_stored(x: X) -> None:
    body = json.dumps(delivery(dm("forged?"))).encode()
    assert (await x.deliver(body, signature="")).status_code == 401
    assert (await x.deliver(body, secret="another-apps-secret")).status_code == 403
    assert (await x.deliver(body, signature="sha1=abc")).status_code == 403
    good = (await x.deliver(b"{}")).request.headers["x-twitter-webhooks-signature"]
    assert (await x.deliver(body, signature=good)).status_code == 403  # signs other bytes
    await x.settle()
    assert [r["external_id"] for r in await x.inbound("x")] == [
        "body:" + hashlib.sha256(b"{}").hexdigest()
    ]


async def test_replayed_delivery_is_stored_once(x: X) -> None:
    body = delivery(dm("Where is my order?"))
    first = (await x.deliver(body)).json()
    again = (await x.deliver(body)).json()
    assert (first["stored"], first["duplicates"]) == (1, 0)
    assert (again["stored"], again["duplicates"]) == (0, 1)
    conv = await x.only_conversation()
    assert [m["text"] for m in conv["messages"]] == ["Where is my order?"]


async def test_stale_delivery_keeps_its_time_and_is_still_stored_once(x: X) -> None:
    # X's retries and its replay of missed activity deliver events days late;
    # the signature has no time, the event id decides.
    three_days_ago = int((time.time() - 3 * 86400) * 1000)
    body = delivery(dm("sent while the desk was down", ts=str(three_days_ago)))
    assert (await x.deliver(body)).json()["stored"] == 1
    assert (await x.deliver(body)).json()["duplicates"] == 1
    conv = await x.only_conversation()
    msg = conv["messages"][0]
    assert abs(msg["sent_at"] - three_days_ago / 1000) < 1


# -- what arrives ---------------------------------------------------------------------


async def test_dm_becomes_a_conversation_with_the_x_user_as_contact(x: X) -> None:
    event = dm(
        "Hello &amp; thanks, see https://t.co/abc",
        entities={
            "urls": [{"url": "https://t.co/abc", "expanded_url": "https://shop.example/o/1"}]
        },
    )
    assert (await x.deliver(delivery(event))).status_code == 200
    conv = await x.only_conversation()
    msg = conv["messages"][0]
    assert msg["text"] == "Hello & thanks, see https://shop.example/o/1"
    ident = conv["contact"]["identities"][0]
    assert (ident["kind"], ident["address"]) == ("x", CUSTOMER_ID)
    assert conv["contact"]["name"] == "Ann Customer"


async def test_media_is_kept_as_a_reference_and_its_link_removed(x: X) -> None:
    photo = dm(
        "look https://t.co/pic",
        attachment={
            "type": "media",
            "media": {
                "id_str": "99",
                "type": "photo",
                "url": "https://t.co/pic",
                "media_url_https": "https://ton.twitter.com/1.1/ton/data/dm/1/2/abc.jpg",
            },
        },
    )
    video = dm(
        "https://t.co/vid",
        attachment={
            "type": "media",
            "media": {
                "type": "video",
                "url": "https://t.co/vid",
                "media_url_https": "https://pbs.twimg.com/thumb.jpg",
                "video_info": {
                    "variants": [
                        {
                            "bitrate": 256000,
                            "content_type": "video/mp4",
                            "url": "https://v/low.mp4",
                        },
                        {"bitrate": 832000, "content_type": "video/mp4", "url": "https://v/hi.mp4"},
                        {"content_type": "application/x-mpegURL", "url": "https://v/p.m3u8"},
                    ]
                },
            },
        },
    )
    await x.deliver(delivery(photo, video))
    conv = await x.only_conversation()
    first, second = conv["messages"]
    assert first["text"] == "look"
    assert first["attachments"][0]["content_type"] == "image/jpeg"
    assert second["text"] == "[video]"
    assert second["attachments"][0]["filename"] == "hi.mp4"


async def test_typing_is_not_stored_and_other_activity_is_skipped_with_a_reason(x: X) -> None:
    typing = {
        "direct_message_indicate_typing_events": [
            {
                "created_timestamp": now_ms(),
                "sender_id": CUSTOMER_ID,
                "target": {"recipient_id": OUR_ID},
            }
        ]
    }
    answer = (await x.deliver(delivery(**typing))).json()
    assert answer == {"stored": 0, "duplicates": 0, "typing": 1}
    await x.deliver(delivery(favorite_events=[{"id": "1", "favorited_status": {}}]))
    await x.deliver(delivery(dm("not for us"), for_user_id="999"))
    await x.deliver(delivery(dm("neither party is us", sender="1", recipient="2")))
    await x.deliver(
        delivery(dm("quick", quick_reply_response={"type": "options", "metadata": "opt-2"}))
    )
    assert (await x.deliver(b"not json at all")).status_code == 400  # never stored
    await x.deliver(b'{"for_user_id": "835740314006511618", "direct_message_ev')
    await x.settle()
    rows = {r["external_id"].split(":")[0]: r for r in await x.inbound("x")}
    notes = [r["note"] or r["error"] for r in await x.inbound("x")]
    assert any("favorite_events: not direct messages" in n for n in notes)
    assert any("for the X account 999" in n for n in notes)
    assert any("between 1 and 2" in n for n in notes)
    assert rows["body"]["state"] == "quarantined" and "not JSON" in rows["body"]["error"]
    conv = await x.only_conversation()
    assert conv["messages"][0]["meta"]["x"]["quick_reply"] == "opt-2"


async def test_invalid_sender_id_is_quarantined_with_the_reason(x: X) -> None:
    await x.deliver(delivery(dm("Hello World", sender="272953qwe809")))
    await x.settle()
    (row,) = await x.inbound("x")
    assert row["state"] == "quarantined" and "not an X user id" in row["error"]


# -- replies ---------------------------------------------------------------------------


async def test_reply_is_a_signed_v2_dm_and_its_echo_and_read_receipt_are_understood(
    x: X, xapi: XApiStandIn
) -> None:
    await x.deliver(delivery(dm("Hi, is anyone there?")))
    conv = await x.only_conversation()
    out = await x.reply(conv["id"], "Yes, how can we help?")
    sent = await x.delivery(conv["id"], out["id"], "sent")
    call = (await xapi.wait_sends(1))[0]
    assert call.signed  # the stand-in verified the SDK's OAuth 1.0a signature
    assert call.path == f"/2/dm_conversations/with/{CUSTOMER_ID}/messages"
    assert call.body == {"text": "Yes, how can we help?"}
    event_id = sent["provider_id"]
    # X echoes our own DM back: recognised as the reply, not stored again.
    echo = dm("Yes, how can we help?", sender=OUR_ID, recipient=CUSTOMER_ID, event_id=event_id)
    await x.deliver(delivery(echo))
    # A DM someone sent from the X app is part of what the customer was told.
    await x.deliver(delivery(dm("(sent from the app)", sender=OUR_ID, recipient=CUSTOMER_ID)))
    read = {
        "direct_message_mark_read_events": [
            {
                "created_timestamp": str(int(time.time() * 1000) + 1000),
                "sender_id": CUSTOMER_ID,
                "target": {"recipient_id": OUR_ID},
                "last_read_event_id": event_id,
            }
        ]
    }
    await x.deliver(delivery(**read))
    await x.settle()
    conv = await x.conversation(conv["id"])
    outs = [m for m in conv["messages"] if m["direction"] == "out"]
    assert [m["text"] for m in outs] == ["Yes, how can we help?", "(sent from the app)"]
    assert outs[0]["delivery_state"] == "read"
    notes = [r["note"] for r in await x.inbound("x")]
    assert any("echo of a reply sent by omnidesk" in (n or "") for n in notes)


async def test_rate_limit_is_retried_after_the_reset(x: X, xapi: XApiStandIn) -> None:
    await x.deliver(delivery(dm("Hi")))
    conv = await x.only_conversation()
    reset = str(int(time.time()))
    xapi.fail_next(429, "Too Many Requests", "Too Many Requests", **{"x-rate-limit-reset": reset})
    out = await x.reply(conv["id"], "after the limit")
    await x.delivery(conv["id"], out["id"], "sent")
    assert [c.status for c in xapi.sends()] == [429, 201]


async def test_refusals_fail_the_reply_with_xs_reason(x: X, xapi: XApiStandIn) -> None:
    await x.deliver(delivery(dm("Hi")))
    conv = await x.only_conversation()
    xapi.closed_dms.add(CUSTOMER_ID)
    out = await x.reply(conv["id"], "blocked?")
    failed = await x.delivery(conv["id"], out["id"], "failed")
    assert "not permitted to send direct messages" in failed["delivery_error"]
    assert "HTTP 403" in failed["delivery_error"]
    assert len(xapi.sends()) == 1  # not retried


async def test_wrong_credentials_fail_the_reply_and_the_channel_health(
    x_factory: XFactory, xapi: XApiStandIn
) -> None:
    x = await x_factory(access_token_secret="wrong-secret")
    await x.deliver(delivery(dm("Hi")))
    conv = await x.only_conversation()
    out = await x.reply(conv["id"], "will not pass")
    failed = await x.delivery(conv["id"], out["id"], "failed")
    assert "refused the credentials" in failed["delivery_error"]
    health = (await x.client.get("/healthz")).json()
    assert health["channels"]["x"]["state"] == "failing"
    assert "wrong-secret" not in json.dumps(health)


async def test_long_reply_is_split_at_ten_thousand_characters(x: X, xapi: XApiStandIn) -> None:
    await x.deliver(delivery(dm("Tell me everything")))
    conv = await x.only_conversation()
    text = " ".join(["everything"] * 1500)  # 16,499 characters
    out = await x.reply(conv["id"], text)
    await x.delivery(conv["id"], out["id"], "sent")
    bodies = [c.body["text"] for c in xapi.delivered()]
    assert len(bodies) == 2 and all(len(b) <= 10_000 for b in bodies)
    assert " ".join(bodies) == text


async def test_restart_loses_and_duplicates_nothing(x_factory: XFactory, xapi: XApiStandIn) -> None:
    # Retries a second apart: the reply waits in the outbox, not in a send.
    x = await x_factory(outbox={"backoff_base": 1.0, "backoff_max": 1.0})
    first = delivery(dm("before the restart"))
    await x.deliver(first)
    conv = await x.only_conversation()
    xapi.fail_next(503, "Service Unavailable", "down", times=1000)
    out = await x.reply(conv["id"], "queued across the restart")
    # Stopped once the failed attempt is recorded (not while a send is in
    # flight, whose lease would hold the reply for two minutes).
    await x.delivery(conv["id"], out["id"], "queued")
    await wait_for(lambda: x.retrying(conv["id"], out["id"]))
    await x.daemon.stop()

    xapi.script.clear()
    x2 = await x_factory()
    assert (await x2.deliver(first)).json()["duplicates"] == 1  # X retrying
    await x2.deliver(delivery(dm("after the restart")))
    await x2.settle()
    conv2 = await x2.conversation(conv["id"])
    inbound = [m["text"] for m in conv2["messages"] if m["direction"] == "in"]
    assert inbound == ["before the restart", "after the restart"]
    await x2.delivery(conv["id"], out["id"], "sent")
    assert [c.body["text"] for c in xapi.delivered()] == ["queued across the restart"]


def test_split_names_each_event_by_its_id_and_leaves_typing_out() -> None:
    body = delivery(
        dm("a", event_id="11"),
        dm("b", event_id="12"),
        direct_message_indicate_typing_events=[{"sender_id": "1"}, {"sender_id": "2"}],
    )
    items, typing = split_delivery(json.dumps(body).encode())
    assert [ext for ext, _ in items] == ["11", "12"] and typing == 2


async def test_two_channels_do_not_take_each_others_deliveries(
    x_factory: XFactory, xapi: XApiStandIn
) -> None:
    x = await x_factory(
        [x_channel(xapi.base_url), x_channel(xapi.base_url, name="x2", consumer_secret="other")]
    )
    body = delivery(dm("for the first"))
    assert (await x.deliver(body, channel="x2")).status_code == 403
    assert (await x.deliver(body, channel="x2", secret="other")).status_code == 200


async def test_start_checks_whose_token_it_is(x_factory: XFactory, xapi: XApiStandIn) -> None:
    good = await x_factory()
    await wait_for(lambda: good.health_says("x", "credentials accepted"))
    other = await x_factory(
        [x_channel(xapi.base_url, name="x", user_id="999")]  # not the token's account
    )
    await wait_for(lambda: other.health_says("x", "belongs to the X account " + OUR_ID))
    wrong = await x_factory([x_channel(xapi.base_url, consumer_secret="rotated")])
    await wait_for(lambda: wrong.health_says("x", "refused the credentials check"))
