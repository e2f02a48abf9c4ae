"""The QQ channel end to end: callbacks signed as the QQ bot open platform
signs them (Ed25519) into a running daemon, passive replies to the local
stand-in of its OpenAPI, the reply window and count, and a restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from omnidesk.channels.qq import COUNT_REASON, signing_key
from tests.channels.qq.conftest import OPENID, SECRET, Qq, QqFactory, c2c
from tests.conftest import wait_for
from tests.standins.qq_api import QqApiStandIn


def test_key_derivation_matches_the_platforms_published_example() -> None:
    # The callback validation example of the platform's documentation.
    key = signing_key("DG5g3B4j9X2KOErG")
    assert key.sign(b"1725442341Arq0D5A61EgUu4OxUvOp").hex() == (
        "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d0"
        "1bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706"
    )


# -- the URL check and signatures ---------------------------------------------------


async def test_validation_op13_is_answered_with_the_bots_signature(qq: Qq) -> None:
    d = {"plain_token": "Arq0D5A61EgUu4OxUvOp", "event_ts": "1725442341"}
    r = await qq.client.post("/webhooks/qq", json={"op": 13, "d": d})
    assert r.status_code == 200
    expected = signing_key(SECRET).sign(b"1725442341Arq0D5A61EgUu4OxUvOp").hex()
    assert r.json() == {"plain_token": "Arq0D5A61EgUu4OxUvOp", "signature": expected}
    # Signed by the platform it is answered too; signed by someone else, refused.
    assert (await qq.deliver({"op": 13, "d": d})).status_code == 200
    assert (await qq.deliver({"op": 13, "d": d}, secret="another-bots-secret")).status_code == 403


async def test_validation_never_signs_what_could_pass_for_a_delivery(qq: Qq) -> None:
    # Signing event_ts + plain_token is signing with the delivery key: a token
    # shaped like a body would give an attacker a valid delivery signature.
    forged = '{"op":0,"t":"C2C_MESSAGE_CREATE","d":{}}'
    d = {"plain_token": forged, "event_ts": str(int(time.time()))}
    r = await qq.client.post("/webhooks/qq", json={"op": 13, "d": d})
    assert r.status_code == 400 and "signature" not in r.json()
    # A signed body that is not a JSON object is never stored.
    assert (await qq.deliver(b"Arq0D5A61EgUu4OxUvOp")).status_code == 400
    await qq.settle()
    assert await qq.inbound("qq") == []


async def test_missing_wrong_tampered_or_stale_signatures_are_refused(qq: Qq) -> None:
    body = c2c("forged?")
    assert (await qq.deliver(body, signature="")).status_code == 401
    assert (await qq.deliver(body, secret="another-bots-secret")).status_code == 403
    assert (await qq.deliver(body, signature="zz" * 64)).status_code == 403
    good = await qq.deliver(b'{"op": 0, "t": "FRIEND_ADD", "d": {}}', ts=1_900_000_000)
    assert good.status_code == 403  # far in the future
    stale = await qq.deliver(body, ts=int(time.time()) - 3600)
    assert stale.status_code == 403 and "stale" in stale.json()["error"]
    await qq.settle()
    assert await qq.inbound("qq") == []


async def test_valid_message_becomes_a_conversation_and_a_redelivery_is_stored_once(
    qq: Qq,
) -> None:
    first = c2c("你好，我的订单还没到", msg_id="ROBOT1.0_abc")
    r = await qq.deliver(first)
    assert r.status_code == 200 and r.json() == {"op": 12}
    again = c2c("你好，我的订单还没到", msg_id="ROBOT1.0_abc")  # pushed again, new event id
    assert (await qq.deliver(again)).status_code == 200
    assert (await qq.deliver(first)).status_code == 200  # replayed while fresh
    conv = await qq.only_conversation()
    assert [m["text"] for m in conv["messages"]] == ["你好，我的订单还没到"]
    ident = conv["contact"]["identities"][0]
    assert (ident["kind"], ident["address"]) == ("qq", OPENID)


async def test_attachments_and_other_events(qq: Qq) -> None:
    atts = [
        {"content_type": "image/png", "filename": "a.png", "url": "multimedia.nt.qq.com.cn/a"},
        {"content_type": "voice", "filename": "v.amr", "url": "https://grouptalk.c2c.qq.com/v"},
    ]
    await qq.deliver(c2c("", attachments=atts))
    await qq.deliver({"op": 0, "id": "FRIEND_ADD:1", "t": "FRIEND_ADD", "d": {"openid": OPENID}})
    await qq.deliver(
        {"op": 0, "id": "G:1", "t": "GROUP_AT_MESSAGE_CREATE", "d": {"id": "g1", "content": "hi"}}
    )
    conv = await qq.only_conversation()
    msg = conv["messages"][0]
    assert msg["text"] == "[picture] [voice message]"
    assert [a["content_type"] for a in msg["attachments"]] == ["image/png", "audio/silk"]
    notes = [r["note"] for r in await qq.inbound("qq")]
    assert "skipped: the user added the bot" in notes
    assert any("GROUP_AT_MESSAGE_CREATE event: this channel takes one-to-one" in n for n in notes)


# -- replies ------------------------------------------------------------------------


async def test_replies_answer_the_customers_message_with_counting_msg_seq(
    qq: Qq, qqapi: QqApiStandIn
) -> None:
    await qq.deliver(c2c("help", msg_id="ROBOT1.0_m1"))
    conv = await qq.only_conversation()
    for i, text in enumerate(["one", "two"], 1):
        out = await qq.reply(conv["id"], text)
        sent = await qq.delivery(conv["id"], out["id"], "sent")
        assert sent["provider_id"].startswith("ROBOT1.0_standin")
        call = qqapi.delivered()[-1]
        assert call.path == f"/v2/users/{OPENID}/messages"
        assert call.body == {"content": text, "msg_type": 0, "msg_id": "ROBOT1.0_m1", "msg_seq": i}
        assert call.authorization.startswith("QQBot token-")
    tokens = [c for c in qqapi.calls if c.path == "/app/getAppAccessToken"]
    assert len(tokens) == 1  # cached


async def test_the_sixth_reply_to_one_message_fails_before_reaching_qq(
    qq: Qq, qqapi: QqApiStandIn
) -> None:
    await qq.deliver(c2c("tell me", msg_id="ROBOT1.0_m2"))
    conv = await qq.only_conversation()
    for i in range(5):
        out = await qq.reply(conv["id"], f"part {i}")
        await qq.delivery(conv["id"], out["id"], "sent")
    sixth = await qq.reply(conv["id"], "one too many")
    failed = await qq.delivery(conv["id"], sixth["id"], "failed")
    assert failed["delivery_error"] == COUNT_REASON
    assert len(qqapi.sends()) == 5


async def test_after_sixty_minutes_the_reply_fails_with_the_reason(
    qq: Qq, qqapi: QqApiStandIn
) -> None:
    old = (datetime.now(UTC) - timedelta(minutes=61)).isoformat()
    await qq.deliver(c2c("an hour ago", timestamp=old))
    conv = await qq.only_conversation()
    out = await qq.reply(conv["id"], "sorry for the wait")
    failed = await qq.delivery(conv["id"], out["id"], "failed")
    assert "60-minute reply window" in failed["delivery_error"]
    assert qqapi.sends() == []


async def test_rate_limit_is_retried_and_an_expired_token_is_renewed(
    qq: Qq, qqapi: QqApiStandIn
) -> None:
    await qq.deliver(c2c("hi"))
    conv = await qq.only_conversation()
    qqapi.fail_next(200, 22009, "msg limit exceed")
    out = await qq.reply(conv["id"], "after the limit")
    await qq.delivery(conv["id"], out["id"], "sent")
    qqapi.revoke_tokens()
    second = await qq.reply(conv["id"], "with a new token")
    await qq.delivery(conv["id"], second["id"], "sent")
    assert len([c for c in qqapi.calls if c.path == "/app/getAppAccessToken"]) == 2
    assert [c.status for c in qqapi.sends()] == [200, 200, 401, 200]


async def test_a_refusal_fails_the_reply_with_qqs_reason(qq: Qq, qqapi: QqApiStandIn) -> None:
    await qq.deliver(c2c("hi", msg_id="ROBOT1.0_gone"))
    conv = await qq.only_conversation()
    qqapi.expired.add("ROBOT1.0_gone")  # the platform's clock says the window is over
    out = await qq.reply(conv["id"], "too late")
    failed = await qq.delivery(conv["id"], out["id"], "failed")
    assert "passive reply window expired" in failed["delivery_error"]
    assert "40034103" in failed["delivery_error"]


async def test_a_retry_after_a_lost_answer_is_not_sent_twice(qq: Qq, qqapi: QqApiStandIn) -> None:
    await qq.deliver(c2c("hi", msg_id="ROBOT1.0_lost"))
    conv = await qq.only_conversation()
    # The platform took msg_seq 1 but its answer never arrived: the retry
    # sends the same msg_seq, the platform says duplicate, the reply is sent.
    qqapi.sent[("ROBOT1.0_lost", 1)] = "ROBOT1.0_earlier"
    out = await qq.reply(conv["id"], "only once")
    await qq.delivery(conv["id"], out["id"], "sent")
    assert [c.body["msg_seq"] for c in qqapi.sends()] == [1]
    assert len([k for k in qqapi.sent if k[0] == "ROBOT1.0_lost"]) == 1


async def test_wrong_secret_fails_the_reply_and_the_channel_health(
    qq_factory: QqFactory, qqapi: QqApiStandIn
) -> None:
    good = await qq_factory()
    await wait_for(lambda: good.health_says("qq", "credentials accepted"))
    qqapi.secret = "rotated-at-the-platform"
    qqapi.revoke_tokens()  # resetting the secret ends the tokens it gave
    qq = await qq_factory()
    await wait_for(lambda: qq.health_says("qq", "refused the AppID and secret"))  # at start
    await qq.deliver(c2c("hi"))
    conv = await qq.only_conversation()
    out = await qq.reply(conv["id"], "will not pass")
    failed = await qq.delivery(conv["id"], out["id"], "failed")
    assert "refused the AppID and secret" in failed["delivery_error"]
    health = (await qq.client.get("/healthz")).json()
    assert health["channels"]["qq"]["state"] == "failing"


async def test_restart_loses_and_duplicates_nothing(
    qq_factory: QqFactory, qqapi: QqApiStandIn
) -> None:
    qq = await qq_factory(outbox={"backoff_base": 1.0, "backoff_max": 1.0})
    first = c2c("before the restart")
    await qq.deliver(first)
    conv = await qq.only_conversation()
    qqapi.fail_next(503, 500, "down", times=1000)
    out = await qq.reply(conv["id"], "queued across the restart")
    await wait_for(lambda: qq.retrying(conv["id"], out["id"]))
    await qq.daemon.stop()

    qqapi.script.clear()
    qq2 = await qq_factory(check_credentials=False)
    assert (await qq2.deliver(first)).status_code == 200  # pushed again
    await qq2.deliver(c2c("after the restart"))
    await qq2.settle()
    conv2 = await qq2.conversation(conv["id"])
    inbound = [m["text"] for m in conv2["messages"] if m["direction"] == "in"]
    assert inbound == ["before the restart", "after the restart"]
    await qq2.delivery(conv["id"], out["id"], "sent")
    assert [c.body["content"] for c in qqapi.delivered()] == ["queued across the restart"]
    # The second daemon (no start-up check) used the token the first one
    # kept in the channel state: no second token was asked for.
    assert len([c for c in qqapi.calls if c.path == "/app/getAppAccessToken"]) == 1
