"""An agent's reply leaves through sendMessage, and provider errors are
retried or shown on the message, never dropped."""

from __future__ import annotations

from typing import Any

from omnidesk.app import Daemon
from omnidesk.model import Attachment
from omnidesk.outbox import queue_reply
from tests.conftest import agent_api, agent_reply, conversations_full, wait_delivery, wait_for
from tests.standins.telegram_api import TelegramStandIn

from .conftest import StartTg, wait_stored


async def customer_writes(
    d: Daemon, tg: TelegramStandIn, text: str = "Where is my parcel?", **kw: Any
) -> dict[str, Any]:
    update = await tg.push_message(text, **kw)
    await wait_stored(d, 1)
    [conv] = await conversations_full(d)
    return {"conv": conv, "update": update}


async def test_reply_answers_the_customers_message(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    customer_msg = got["update"]["message"]["message_id"]
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "It left our warehouse today.")
        assert created["delivery_state"] == "queued"
        sent = await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    [call] = tg.calls_to("sendMessage")
    assert call.params["chat_id"] == "1001"
    assert call.params["text"] == "It left our warehouse today."
    assert call.params["reply_parameters"] == {
        "message_id": customer_msg,
        "allow_sending_without_reply": True,
    }
    assert sent["delivery_error"] is None


async def test_reply_in_a_forum_topic_goes_to_that_topic(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    forum = {"id": -1005550001, "type": "supergroup", "title": "Support", "is_forum": True}
    got = await customer_writes(
        d, tg, "Topic question", chat=forum, message_thread_id=77, is_topic_message=True
    )
    assert got["conv"]["thread_key"] == f"{forum['id']}:77"
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Answer in the topic")
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    [call] = tg.calls_to("sendMessage")
    assert (call.params["chat_id"], call.params["message_thread_id"]) == (str(forum["id"]), "77")


async def test_rate_limit_is_retried_no_sooner_than_retry_after(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    tg.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Thanks for waiting")
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    first, second = tg.calls_to("sendMessage")
    assert second.at - first.at >= 1.0, "the outbox waited as Telegram asked"


async def test_server_errors_are_retried_until_sent(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    tg.fail("sendMessage", 500, "Internal Server Error", times=2)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Here we go")
        sent = await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    assert len(tg.calls_to("sendMessage")) == 3
    assert sent["delivery_error"] is None


async def test_blocked_bot_fails_with_the_reason_shown(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    tg.block(1001)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Are you still there?")
        failed = await wait_delivery(c, got["conv"]["id"], created["id"], "failed")
    assert "blocked by the user" in failed["delivery_error"]
    assert len(tg.calls_to("sendMessage")) == 1, "a refusal is not retried"


async def test_long_reply_is_split_and_only_the_first_part_quotes(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    text = ("A long explanation sentence. " * 150).strip() + "\n\n" + "Second part. " * 100
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], text)
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    calls = tg.calls_to("sendMessage")
    assert len(calls) == 2
    assert all(len(x.params["text"]) <= 4096 for x in calls)
    assert "reply_parameters" in calls[0].params and "reply_parameters" not in calls[1].params
    assert " ".join(x.params["text"] for x in calls).split() == text.split()


async def test_attachments_leave_as_photo_and_document(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    got = await customer_writes(d, tg)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    pdf = b"%PDF-1.4 label"
    await d.store.write(
        queue_reply,
        got["conv"]["id"],
        text="Your label and a photo",
        author="alice",
        attachments=[
            Attachment("label.pdf", "application/pdf", data=pdf),
            Attachment("box.png", "image/png", data=png),
        ],
    )
    d.outbox.wake()

    async def sent_all() -> bool:
        return bool(tg.calls_to("sendDocument") and tg.calls_to("sendPhoto"))

    await wait_for(sent_all)
    assert tg.calls_to("sendDocument")[0].files["document"] == pdf
    assert tg.calls_to("sendPhoto")[0].files["photo"] == png
    assert len(tg.calls_to("sendMessage")) == 1


async def test_group_upgraded_to_supergroup_gets_the_reply_at_its_new_id(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    group = {"id": -4001, "type": "group", "title": "Old group"}
    got = await customer_writes(d, tg, "hi from the group", chat=group)
    tg.fail("sendMessage", 400, "Bad Request: group chat was upgraded", migrate_to_chat_id=-100400)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Hello group")
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    first, second = tg.calls_to("sendMessage")
    assert (first.params["chat_id"], second.params["chat_id"]) == ("-4001", "-100400")
