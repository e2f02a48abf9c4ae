"""The web chat end to end over real HTTP: a visitor writes, the message is
stored, classified and routed; an agent's reply reaches the visitor's live
stream, or waits for them; receipts become delivery states."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from tests.channels.webchat.conftest import Agent, Stream, Visitor, idle, wait_for
from tests.conftest import message, post_inbound


async def test_visitor_message_is_stored_classified_and_routed(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    r = await v.say("My parcel arrived broken and nobody answers, this is unacceptable!")
    assert r.status_code == 202
    assert r.json() == {"status": "accepted", "duplicate": False}
    conv = await agent.conversation_of(v.visitor or "")
    assert conv["channel"] == "site"
    assert conv["thread_key"] == v.visitor
    assert conv["category"] == "complaint"
    assert conv["team"] and conv["assignee"]
    msgs = await agent.messages(conv["id"])
    assert msgs[0]["sender_kind"] == "webchat"
    assert msgs[0]["meta"]["webchat"]["user_agent"]
    # The widget's history shows the visitor their own message.
    hist = await v.history()
    assert [(m["direction"], m["text"]) for m in hist] == [
        ("in", "My parcel arrived broken and nobody answers, this is unacceptable!")
    ]


async def test_same_client_id_is_stored_once(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    first = await v.say("Do you ship to Norway?", client_id="c-0000001")
    again = await v.say("Do you ship to Norway?", client_id="c-0000001")
    assert first.json()["duplicate"] is False
    assert again.status_code == 202 and again.json()["duplicate"] is True
    await v.say("And to Iceland?", client_id="c-0000002")
    conv = await agent.conversation_of(v.visitor or "")
    await idle(chat)
    texts = [m["text"] for m in await agent.messages(conv["id"])]
    assert texts == ["Do you ship to Norway?", "And to Iceland?"]


async def test_reply_reaches_the_live_stream_and_receipts_move_the_state(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    await v.say("Hello, is the blue jacket in stock?")
    conv = await agent.conversation_of(v.visitor or "")
    stream = Stream(http, v)
    try:
        await stream.ready()
        assert stream.status == 200
        reply = await agent.reply(conv["id"], "Yes, sizes S to XL.")
        got = await wait_for(lambda: _found(stream.events, reply["id"]), what="reply on the stream")
        assert got["text"] == "Yes, sizes S to XL." and got["direction"] == "out"
        await agent.wait_state(conv["id"], reply["id"], "sent")
        r = await v.receipts(delivered=[reply["id"]])
        assert r.status_code == 202 and r.json() == {"accepted": 1, "pending": []}
        await agent.wait_state(conv["id"], reply["id"], "delivered")
        await v.receipts(read=[reply["id"]])
        await agent.wait_state(conv["id"], reply["id"], "read")
        # A late 'delivered' never undoes 'read'.
        await v.receipts(delivered=[reply["id"]])
        await idle(chat)
        assert await agent.delivery_state(conv["id"], reply["id"]) == "read"
    finally:
        await stream.close()


async def _found(events: list[dict[str, Any]], message_id: int) -> dict[str, Any] | None:
    return _event(events, "id", message_id)


def _event(events: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any] | None:
    return next((e for e in events if e.get(key) == value), None)


async def test_reply_to_an_absent_visitor_waits_for_them(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    await v.say("Can I change my delivery address?")
    conv = await agent.conversation_of(v.visitor or "")
    reply = await agent.reply(conv["id"], "Sure, send us the new one.")
    # No stream is open: the reply is handed over (stored for pickup).
    await agent.wait_state(conv["id"], reply["id"], "sent")
    hist = await v.history()
    assert [m["text"] for m in hist] == [
        "Can I change my delivery address?",
        "Sure, send us the new one.",
    ]
    assert hist[1]["state"] == "sent"
    # A stream opened later catches up from the store ...
    stream = Stream(http, v)
    try:
        got = await wait_for(lambda: _found(stream.events, reply["id"]), what="catch-up")
        assert got["text"] == "Sure, send us the new one."
    finally:
        await stream.close()
    # ... but not with what the widget already has (after=).
    later = Stream(http, v, after=reply["id"])
    try:
        await later.ready()
        await asyncio.sleep(0.2)
        assert later.events == []
    finally:
        await later.close()


async def test_notes_never_reach_the_visitor(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    await v.say("Where is order 5521?")
    conv = await agent.conversation_of(v.visitor or "")
    stream = Stream(http, v)
    try:
        await stream.ready()
        await agent.reply(conv["id"], "internal: customer is grumpy", kind="note")
        reply = await agent.reply(conv["id"], "It ships today.")
        await wait_for(lambda: _found(stream.events, reply["id"]), what="the reply")
        texts = [e["text"] for e in stream.events]
        assert "internal: customer is grumpy" not in texts
    finally:
        await stream.close()
    assert "internal: customer is grumpy" not in [m["text"] for m in await v.history()]


async def test_receipts_for_someone_elses_reply_change_nothing(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    ann = await Visitor(http).start()
    bob = await Visitor(http).start()
    await ann.say("Question from Ann")
    conv = await agent.conversation_of(ann.visitor or "")
    reply = await agent.reply(conv["id"], "Answer for Ann")
    await agent.wait_state(conv["id"], reply["id"], "sent")
    r = await bob.receipts(delivered=[reply["id"]], read=[reply["id"]])
    assert r.status_code == 202 and r.json()["accepted"] == 0
    await idle(chat)
    assert await agent.delivery_state(conv["id"], reply["id"]) == "sent"
    # Bob does not see Ann's conversation either.
    assert await bob.history() == []


async def test_other_tabs_of_the_visitor_see_what_they_wrote(
    chat: Daemon, http: httpx.AsyncClient
) -> None:
    v = await Visitor(http).start()
    stream = Stream(http, v)
    try:
        await stream.ready()
        await v.say("typed in another tab", client_id="tab-2-msg-1")
        got = await wait_for(
            lambda: _by_client(stream.events, "tab-2-msg-1"), what="echo to other tabs"
        )
        assert got["direction"] == "in" and got["text"] == "typed in another tab"
    finally:
        await stream.close()


async def _by_client(events: list[dict[str, Any]], cid: str) -> dict[str, Any] | None:
    return _event(events, "client_id", cid)


async def test_identified_visitor_meets_their_email(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    r = await http.post(
        "/webchat/site/identify",
        json={"name": "Ann Lee", "email": "Ann.Lee@Example.com"},
        headers=v.headers(),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Ann Lee", "email": "Ann.Lee@Example.com", "email_linked": "added"}
    await v.say("Hi, I wrote by chat")
    conv = await agent.conversation_of(v.visitor or "")
    # Later she writes through another channel with that address: same contact.
    await post_inbound(http, message("mail-1", "Following up by e-mail", "ann.lee@example.com"))
    await idle(chat)
    contact = await chat.store.read(get_contact, conv["contact_id"])
    assert contact is not None
    assert contact["name"] == "Ann Lee"
    kinds = {(i["kind"], i["address"]) for i in contact["identities"]}
    assert kinds == {("webchat", v.visitor), ("email", "ann.lee@example.com")}
    assert {c["channel"] for c in contact["conversations"]} == {"site", "api"}


async def test_email_of_another_contact_is_not_taken_over(
    chat: Daemon, http: httpx.AsyncClient
) -> None:
    await post_inbound(http, message("mail-2", "I am the real Bob", "bob@example.com"))
    await idle(chat)
    v = await Visitor(http).start()
    r = await http.post(
        "/webchat/site/identify", json={"email": "bob@example.com"}, headers=v.headers()
    )
    assert r.status_code == 200 and r.json()["email_linked"] == "other"


async def test_stop_ends_open_streams(config_factory: Any, daemon_factory: Any) -> None:
    from tests.channels.webchat.conftest import channels

    d = await daemon_factory(config_factory(channels=channels()))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=5) as c:
        v = await Visitor(c).start()
        stream = Stream(c, v)
        await stream.ready()
        assert d.adapters["site"].connected == 1
        await asyncio.wait_for(d.stop(), 5)
        await asyncio.wait_for(_until(lambda: stream.done), 5)
        await stream.close()
    assert d.adapters["site"].connected == 0


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.02)


async def test_auto_acknowledgement_reaches_the_widget(
    config_factory: Any, daemon_factory: Any
) -> None:
    from tests.channels.webchat.conftest import channels

    d = await daemon_factory(
        config_factory(channels=channels(auto_acknowledge="Thanks {name}, ref #{conversation_id}."))
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=5) as c:
        v = await Visitor(c).start()
        stream = Stream(c, v)
        try:
            await stream.ready()
            await v.say("Hello there", name="Ola")

            async def ack() -> dict[str, Any] | None:
                return _event(stream.events, "auto", True)

            got = await wait_for(ack, what="the auto-acknowledgement")
            assert got["text"].startswith("Thanks Ola, ref #")
        finally:
            await stream.close()
