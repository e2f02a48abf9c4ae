"""Agent replies leave through chat.postMessage in the right thread; Slack's
errors are retried or shown on the message."""

from __future__ import annotations

from typing import Any

from omnidesk.app import Daemon
from omnidesk.model import Attachment
from omnidesk.outbox import queue_reply
from tests.conftest import agent_api, agent_reply, conversations_full, wait_delivery, wait_for
from tests.standins.slack_api import BOT_TOKEN, SlackStandIn, event_callback, message_event

from .conftest import StartSlack, post_event, processed


async def customer_writes(d: Daemon, slack: SlackStandIn, **event: Any) -> dict[str, Any]:
    slack.add_user()
    ev = message_event(event.pop("text", "My order is late"), **event)
    await post_event(d, event_callback(ev))
    await processed(d, 1)
    [conv] = await conversations_full(d)
    return {"conv": conv, "event": ev}


async def test_reply_in_a_shared_channel_goes_into_the_thread(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack, channel="C0SHARED", channel_type="channel")
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Sorry! <b>Fixed</b> & shipped > today")
        sent = await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    [call] = slack.calls_to("chat.postMessage")
    assert call.token == BOT_TOKEN
    assert call.params["channel"] == "C0SHARED"
    assert call.params["thread_ts"] == got["event"]["ts"]
    assert call.params["text"] == "Sorry! &lt;b&gt;Fixed&lt;/b&gt; &amp; shipped &gt; today"
    assert sent["provider_id"] == f"C0SHARED:{slack.posted[0]['ts']}"


async def test_reply_in_a_dm_is_a_plain_message_in_the_dm(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "On its way")
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    [call] = slack.calls_to("chat.postMessage")
    assert call.params["channel"] == "D0ANN"
    assert "thread_ts" not in call.params
    # Slack echoes our message as an event: recognised and skipped.
    echo = message_event("On its way", user="U0BOT", bot_id="B0BOT", ts=slack.posted[0]["ts"])
    await post_event(d, event_callback(echo))
    rows = await processed(d, 2)
    assert rows[1]["note"] == "skipped: our own bot's message"


async def test_rate_limit_is_retried_no_sooner_than_retry_after(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack)
    slack.fail("chat.postMessage", 429, "ratelimited", retry_after=1)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Thanks for waiting")
        await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    first, second = slack.calls_to("chat.postMessage")
    assert second.at - first.at >= 1.0, "the outbox waited as Slack asked"


async def test_server_errors_are_retried_until_sent(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack)
    slack.fail("chat.postMessage", 503, times=2)
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Here we go")
        sent = await wait_delivery(c, got["conv"]["id"], created["id"], "sent")
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert sent["delivery_error"] is None


async def test_refusal_fails_with_slacks_reason(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack, channel="C0GONE", channel_type="channel")
    slack.fail("chat.postMessage", 200, "is_archived")
    async with await agent_api(d) as c:
        created = await agent_reply(c, got["conv"]["id"], "Hello?")
        failed = await wait_delivery(c, got["conv"]["id"], created["id"], "failed")
    assert failed["delivery_error"] == "Slack refused: is_archived"
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_attachments_are_uploaded_into_the_thread(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_slack()
    got = await customer_writes(d, slack, channel="C0SHARED", channel_type="channel")
    pdf = b"%PDF-1.4 return label"
    await d.store.write(
        queue_reply,
        got["conv"]["id"],
        text="Your return label",
        author="alice",
        attachments=[Attachment("label.pdf", "application/pdf", data=pdf)],
    )
    d.outbox.wake()

    async def uploaded() -> bool:
        return bool(slack.calls_to("files.completeUploadExternal"))

    await wait_for(uploaded)
    [done] = slack.calls_to("files.completeUploadExternal")
    assert done.params["channel_id"] == "C0SHARED"
    assert done.params["thread_ts"] == got["event"]["ts"]
    assert list(slack.uploads.values()) == [pdf]
