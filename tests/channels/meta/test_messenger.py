"""Messenger and Instagram end to end: a customer's message lands in a
conversation, an agent's reply reaches the Graph API stand-in as the right Send
API call, receipts move the reply's delivery state, echoes are told apart, and
Meta's errors are retried or shown to the agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from omnidesk.channels.meta.messenger import ECHO_MARK
from omnidesk.store.conversations import update_conversation
from tests.channels.meta.conftest import (
    ACCESS_TOKEN,
    IG_ID,
    PAGE_ID,
    Meta,
    fb_echo,
    fb_message,
    fb_receipt,
    now_ms,
    page_delivery,
)


async def wait_for(pred: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def customer_writes(meta: Meta, channel: str = "fb", psid: str = "7001", **kw: Any) -> int:
    page = IG_ID if channel == "ig" else PAGE_ID
    obj = "instagram" if channel == "ig" else "page"
    mid = kw.pop("mid", f"m_{psid}_{time.monotonic_ns()}")
    text = kw.pop("text", "Hello, is the shop open on Sunday?")
    r = await meta.deliver(
        channel, page_delivery(fb_message(mid, psid, text, page=page, **kw), page=page, obj=obj)
    )
    assert r.status_code == 200
    await meta.settle()
    convs = await meta.conversations(channel)
    return int(convs[0]["id"])


async def delivery_state(meta: Meta, conv_id: int, message_id: int, state: str) -> None:
    async def reached() -> bool:
        return (await meta.message(conv_id, message_id))["delivery_state"] == state

    await wait_for(reached)


async def test_customer_message_becomes_a_conversation(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001", mid="m_first")
    conv = await meta.conversation(conv_id)
    assert conv["thread_key"] == f"{PAGE_ID}:7001"
    [msg] = conv["messages"]
    assert msg["text"] == "Hello, is the shop open on Sunday?"
    assert (msg["sender_kind"], msg["sender_address"]) == ("messenger", "7001")
    assert msg["external_id"] == "m_first"
    assert abs(msg["sent_at"] - time.time()) < 60, "Meta's millisecond timestamp"
    # The same customer again joins the same conversation.
    await customer_writes(meta, psid="7001", text="And on Monday?")
    assert len((await meta.conversation(conv_id))["messages"]) == 2


async def test_agent_reply_is_a_send_api_call(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    reply = await meta.reply(conv_id, "Yes, from 10 to 16.")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    [call] = meta.graph.sends()
    assert call.version == "v21.0"
    assert call.path == f"{PAGE_ID}/messages"
    assert call.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "access_token" not in call.query, "the token stays out of URLs and logs"
    assert call.body == {
        "recipient": {"id": "7001"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Yes, from 10 to 16.", "metadata": ECHO_MARK},
    }
    sent = await meta.message(conv_id, reply["id"])
    assert sent["provider_id"].startswith("m_standin")


async def test_receipts_move_the_reply_forward(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    reply = await meta.reply(conv_id, "We will check.")
    assert reply["delivery_state"] == "queued"
    await delivery_state(meta, conv_id, reply["id"], "sent")
    mid = (await meta.message(conv_id, reply["id"]))["provider_id"]
    await meta.deliver("fb", page_delivery(fb_receipt("delivery", "7001", mids=[mid])))
    await meta.settle()
    assert (await meta.message(conv_id, reply["id"]))["delivery_state"] == "delivered"
    # "read" names no message: a watermark covering everything sent before it.
    await meta.deliver("fb", page_delivery(fb_receipt("read", "7001")))
    await meta.settle()
    assert (await meta.message(conv_id, reply["id"]))["delivery_state"] == "read"
    # A late delivery receipt never moves it back.
    late = page_delivery(fb_receipt("delivery", "7001", mids=[mid]))
    late["entry"][0]["messaging"][0]["delivery"]["watermark"] += 1
    await meta.deliver("fb", late)
    await meta.settle()
    assert (await meta.message(conv_id, reply["id"]))["delivery_state"] == "read"


async def test_read_watermark_only_covers_that_customers_thread(meta: Meta) -> None:
    a = await customer_writes(meta, psid="7001")
    await customer_writes(meta, psid="7002")
    b = next(c["id"] for c in await meta.conversations("fb") if c["id"] != a)
    ra, rb = await meta.reply(a, "to a"), await meta.reply(b, "to b")
    await delivery_state(meta, a, ra["id"], "sent")
    await delivery_state(meta, b, rb["id"], "sent")
    await meta.deliver("fb", page_delivery(fb_receipt("read", "7002")))
    await meta.settle()
    assert (await meta.message(a, ra["id"]))["delivery_state"] == "sent"
    assert (await meta.message(b, rb["id"]))["delivery_state"] == "read"


async def test_echoes_of_our_replies_are_skipped(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    reply = await meta.reply(conv_id, "Thanks for writing!")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    mid = (await meta.message(conv_id, reply["id"]))["provider_id"]
    # Meta echoes our message with the metadata we set.
    await meta.deliver(
        "fb", page_delivery(fb_echo(mid, "7001", "Thanks for writing!", metadata=ECHO_MARK))
    )
    await meta.settle()
    assert len((await meta.conversation(conv_id))["messages"]) == 2
    [row] = [r for r in await meta.inbound("fb") if r["external_id"] == mid]
    assert row["state"] == "done" and "echo of a reply sent by omnidesk" in row["note"]


async def test_page_inbox_message_is_recorded_as_outbound(meta: Meta) -> None:
    """A person answering from the Page inbox (outside omnidesk) told the
    customer something: it belongs in the conversation, as sent by the page."""
    conv_id = await customer_writes(meta, psid="7001")
    echo = fb_echo("m_from_inbox", "7001", "Hi! I answered from the Page inbox.")
    await meta.deliver("fb", page_delivery(echo))
    await meta.settle()
    msgs = (await meta.conversation(conv_id))["messages"]
    assert [m["direction"] for m in msgs] == ["in", "out"]
    out = msgs[1]
    assert out["text"] == "Hi! I answered from the Page inbox."
    assert out["delivery_state"] == "sent"
    assert out["meta"]["sent_outside_omnidesk"] is True
    assert meta.graph.sends() == [], "never sent again by us"
    # Its read receipt applies to it like to our own replies.
    await meta.deliver("fb", page_delivery(fb_receipt("delivery", "7001", mids=["m_from_inbox"])))
    await meta.settle()
    assert (await meta.message(conv_id, out["id"]))["delivery_state"] == "delivered"
    # Redelivered echo: still one row.
    await meta.deliver("fb", page_delivery(echo))
    await meta.settle()
    assert len((await meta.conversation(conv_id))["messages"]) == 2


async def test_echo_to_someone_without_a_conversation_is_not_recorded(meta: Meta) -> None:
    await meta.deliver("fb", page_delivery(fb_echo("m_cold", "7999", "Our newsletter")))
    await meta.settle()
    assert await meta.conversations("fb") == []
    [row] = await meta.inbound("fb")
    assert row["state"] == "done" and "no conversation" in row["note"]


async def test_message_for_another_page_is_skipped_with_reason(meta: Meta) -> None:
    other = page_delivery(fb_message("m_other", "7001", "hi", page="999"), page="999")
    await meta.deliver("fb", other)
    await meta.settle()
    assert await meta.conversations("fb") == []
    [row] = await meta.inbound("fb")
    assert f"this channel serves page {PAGE_ID}" in row["note"]


async def test_reaction_is_shown_but_does_not_reopen(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    now = time.time()
    await meta.daemon.store.write(
        update_conversation, conv_id, status="resolved", resolved_at=now, updated_at=now
    )
    reaction = {
        "sender": {"id": "7001"},
        "recipient": {"id": PAGE_ID},
        "timestamp": now_ms(),
        "reaction": {"mid": "m_x", "action": "react", "emoji": "\u2764", "reaction": "love"},
    }
    await meta.deliver("fb", page_delivery(reaction))
    await meta.settle()
    conv = await meta.conversation(conv_id)
    assert conv["messages"][-1]["text"] == "\u2764"
    assert conv["messages"][-1]["auto"] == "reaction"
    assert conv["status"] == "resolved"


async def test_closed_window_fails_with_a_reason_the_agent_can_act_on(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    meta.graph.window_closed.add("7001")
    reply = await meta.reply(conv_id, "Sorry for the late answer")
    await delivery_state(meta, conv_id, reply["id"], "failed")
    failed = await meta.message(conv_id, reply["id"])
    assert "outside the 24-hour messaging window" in failed["delivery_error"]
    assert "2018278" in failed["delivery_error"]
    assert len(meta.graph.sends()) == 1, "not retried: it cannot succeed"


async def test_human_agent_tag_answers_after_the_window(meta_factory: Any) -> None:
    meta = await meta_factory(fb={"human_agent_tag": True})
    conv_id = await customer_writes(meta, psid="7001")
    meta.graph.window_closed.add("7001")
    reply = await meta.reply(conv_id, "Sorry for the late answer")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    first, second = meta.graph.sends()
    assert first.status == 400 and first.body["messaging_type"] == "RESPONSE"
    assert second.body["messaging_type"] == "MESSAGE_TAG"
    assert second.body["tag"] == "HUMAN_AGENT"


async def test_rate_limits_and_server_errors_are_retried(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    meta.graph.fail_next(429, 613, "Calls to this api have exceeded the rate limit.")
    meta.graph.fail_next(400, 4, "(#4) Application request limit reached")
    meta.graph.fail_next(
        500, 2, "An unexpected error has occurred. Please retry your request later."
    )
    meta.graph.fail_next(503, 1, "Service temporarily unavailable")
    reply = await meta.reply(conv_id, "Eventually delivered")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    assert [c.status for c in meta.graph.sends()] == [429, 400, 500, 503, 200]
    assert len({str(c.body) for c in meta.graph.sends()}) == 1, "the same message every time"


async def test_rejected_token_fails_the_reply_and_the_channel_health(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    meta.graph.fail_next(401, 190, "Error validating access token: Session has expired")
    reply = await meta.reply(conv_id, "hello")
    await delivery_state(meta, conv_id, reply["id"], "failed")
    failed = await meta.message(conv_id, reply["id"])
    assert "access token was rejected" in failed["delivery_error"]
    assert "access_token" in failed["delivery_error"], "says what to change"
    health = (await meta.client.get("/healthz")).json()["channels"]["fb"]
    assert health["ok"] is False and "token" in health["detail"]


async def test_long_reply_is_split_to_fit_messenger(meta: Meta) -> None:
    conv_id = await customer_writes(meta, psid="7001")
    text = "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(12))
    reply = await meta.reply(conv_id, text)
    await delivery_state(meta, conv_id, reply["id"], "sent")
    parts = [c.body["message"]["text"] for c in meta.graph.sends()]
    assert len(parts) > 1
    assert all(len(p) <= 2000 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


async def test_instagram_message_and_reply(meta: Meta) -> None:
    conv_id = await customer_writes(meta, "ig", psid="8001", mid="aWdfZAG1faXRlbTo")
    conv = await meta.conversation(conv_id)
    [msg] = conv["messages"]
    assert (msg["sender_kind"], msg["sender_address"]) == ("instagram", "8001")
    assert conv["thread_key"] == f"{IG_ID}:8001"
    reply = await meta.reply(conv_id, "Hi from the shop")
    await delivery_state(meta, conv_id, reply["id"], "sent")
    [call] = meta.graph.sends()
    assert call.path == f"{IG_ID}/messages"
    assert call.body["message"] == {"text": "Hi from the shop"}
    # Instagram echoes carry no metadata: the echo is matched by its mid.
    mid = (await meta.message(conv_id, reply["id"]))["provider_id"]
    await meta.deliver(
        "ig",
        page_delivery(
            fb_echo(mid, "8001", "Hi from the shop", page=IG_ID), page=IG_ID, obj="instagram"
        ),
    )
    await meta.settle()
    assert len((await meta.conversation(conv_id))["messages"]) == 2


async def test_instagram_unsent_message_is_kept_as_an_edit(meta: Meta) -> None:
    conv_id = await customer_writes(meta, "ig", psid="8001", mid="ig_mid_1", text="oops")
    unsent = fb_message("ig_mid_1", "8001", "", page=IG_ID)
    unsent["message"] = {"mid": "ig_mid_1", "is_deleted": True}
    await meta.deliver("ig", page_delivery(unsent, page=IG_ID, obj="instagram"))
    await meta.settle()
    msgs = (await meta.conversation(conv_id))["messages"]
    assert [m["text"] for m in msgs] == ["oops", "[the customer unsent this message]"]
    assert msgs[1]["kind"] == "edit" and msgs[1]["edit_of"] == msgs[0]["id"]


async def test_survey_goes_out_with_quick_replies_and_a_tap_is_the_answer(
    tmp_path: Any, config_factory: Any, daemon_factory: Any, graph: Any
) -> None:
    """Messenger: the rating and the 0-10 loyalty question (eleven choices fit
    Meta's thirteen) go out with quick replies; a tap comes back as the
    message's quick_reply payload and is taken as the answer."""
    import httpx

    from tests.channels.meta.conftest import Meta, meta_channels
    from tests.conftest import admin_token, wait_for
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
        cid = await customer_writes(meta, text="My order is late again")
        await answer_and_resolve(d, cid, "It ships today, sorry.")
        await d.scheduler.tick()

        def asked(word: str) -> Callable[[], Awaitable[Any]]:
            async def find() -> Any:
                return next(
                    (
                        s
                        for s in graph.sends()
                        if word in s.body.get("message", {}).get("text", "")
                        and s.body["message"].get("quick_replies")
                    ),
                    None,
                )

            return find

        await wait_for(asked("How would you rate"), 15)
        rating = (await asked("How would you rate")()).body["message"]["quick_replies"]
        sid = (await rows(d, "SELECT id FROM surveys"))[0]["id"]
        assert [q["payload"] for q in rating] == [f"survey:{sid}:{n}" for n in (5, 4, 3, 2, 1)]

        async def tap(mid: str, value: int) -> None:
            r = await meta.deliver(
                "fb",
                page_delivery(
                    fb_message(
                        mid,
                        "7001",
                        str(rating[0]["title"]),
                        quick_reply={"payload": f"survey:{sid}:{value}"},
                    )
                ),
            )
            assert r.status_code == 200

        await tap("m_tap_1", 4)

        async def rated() -> bool:
            return (await rows(d, "SELECT rating FROM surveys"))[0]["rating"] == 4

        await wait_for(rated, 30)
        await wait_for(asked("recommend"), 15)
        loyalty = (await asked("recommend")()).body["message"]["quick_replies"]
        assert [q["payload"] for q in loyalty] == [f"survey:{sid}:{n}" for n in range(11)]
        await tap("m_tap_2", 9)

        async def loyal() -> bool:
            return (await rows(d, "SELECT loyalty_score FROM surveys"))[0]["loyalty_score"] == 9

        await wait_for(loyal, 30)
        assert [x["status"] for x in await rows(d, "SELECT status FROM conversations")] == [
            "resolved"
        ]
