"""The path of a message: intake -> pipeline -> store, through the API channel."""

from __future__ import annotations

import json
from typing import Any

from omnidesk.app import Daemon
from omnidesk.model import Envelope
from omnidesk.store.inbound import count_pending, get_quarantine, list_quarantine, retry_quarantine
from omnidesk.store.inbox import ConversationFilter, get_conversation_full, list_conversations
from tests.conftest import message, settle


async def accept(daemon: Daemon, body: dict[str, Any] | bytes, ext: str | None = None) -> bool:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ext = ext or (body["external_id"] if isinstance(body, dict) else "raw")
    return await daemon.intake.accept(Envelope("api", ext, raw, "application/json"))


async def conversations(daemon: Daemon) -> list[dict[str, Any]]:
    return await daemon.store.read(list_conversations, ConversationFilter(), limit=500)


async def test_message_is_stored_classified_and_routed(daemon: Daemon) -> None:
    await accept(
        daemon,
        message("e1", "I want a refund, this is the worst service ever!", subject="Broken blender"),
    )
    await settle(daemon)
    [conv] = await conversations(daemon)
    assert conv["category"] == "complaint"
    assert conv["status"] == "open"
    assert conv["team"] is not None
    full = await daemon.store.read(get_conversation_full, conv["id"])
    [msg] = full["messages"]
    assert msg["text"].startswith("I want a refund")
    assert msg["sender_address"] == "ann@example.com"
    assert full["decision"]["explanation"], "every decision keeps its explanation"
    actions = [a["action"] for a in full["audit"]]
    assert actions[:2] == ["classified", "routed"]


async def test_redelivered_message_is_stored_once(daemon: Daemon) -> None:
    body = message("dup-1", "Hello, where is my parcel?")
    assert await accept(daemon, body) is True
    await settle(daemon)
    assert await accept(daemon, body) is False
    await settle(daemon)
    convs = await conversations(daemon)
    assert len(convs) == 1
    full = await daemon.store.read(get_conversation_full, convs[0]["id"])
    assert len(full["messages"]) == 1


async def test_redo_after_crash_between_store_and_mark_is_idempotent(daemon: Daemon) -> None:
    """If the envelope is pending again although its message was stored (e.g. a
    crash in a later stage on another engine), the redo stores nothing twice."""
    await accept(daemon, message("redo-1", "Is the shop open on Sunday?"))
    await settle(daemon)

    def make_pending(db: Any) -> None:
        db.run("UPDATE inbound SET state = 'pending' WHERE external_id = 'redo-1'")

    await daemon.store.write(make_pending)
    await settle(daemon)
    convs = await conversations(daemon)
    full = await daemon.store.read(get_conversation_full, convs[0]["id"])
    assert len(convs) == 1 and len(full["messages"]) == 1


async def test_thread_key_joins_conversation_and_contact_is_reused(daemon: Daemon) -> None:
    await accept(daemon, message("t1", "Question about order 5", thread_key="order-5"))
    await accept(daemon, message("t2", "Any news?", thread_key="order-5"))
    await accept(daemon, message("t3", "Another topic entirely"))
    await settle(daemon)
    convs = await conversations(daemon)
    assert len(convs) == 2
    assert len({c["contact_id"] for c in convs}) == 1
    joined = next(c for c in convs if c["thread_key"] == "order-5")
    assert joined["message_count"] == 2


async def test_follow_up_complaint_escalates_and_reopens(daemon: Daemon) -> None:
    await accept(daemon, message("f1", "When do you open tomorrow?", thread_key="k"))
    await settle(daemon)
    [conv] = await conversations(daemon)
    assert conv["category"] == "inquiry"

    def resolve(db: Any) -> None:
        db.run("UPDATE conversations SET status = 'resolved', resolved_at = updated_at")

    await daemon.store.write(resolve)
    await accept(
        daemon,
        message(
            "f2",
            "Your staff was rude and the order is still missing. Terrible, I want a refund!",
            thread_key="k",
        ),
    )
    await settle(daemon)
    [conv] = await conversations(daemon)
    assert conv["status"] == "open"
    assert conv["category"] == "complaint"
    full = await daemon.store.read(get_conversation_full, conv["id"])
    assert {"reopened", "escalated"} <= {a["action"] for a in full["audit"]}


async def test_broken_input_goes_to_quarantine_and_does_not_block(daemon: Daemon) -> None:
    raw = b'{"external_id": "broken-1", "sender": 17, "text": '  # truncated JSON
    await accept(daemon, raw, ext="broken-1")
    await accept(daemon, message("ok-1", "Hello there, do you ship to Norway?"))
    await settle(daemon)
    assert len(await conversations(daemon)) == 1
    [q] = await daemon.store.read(list_quarantine)
    assert q["external_id"] == "broken-1"
    full = await daemon.store.read(get_quarantine, q["id"])
    assert full["payload"] == raw, "raw bytes are kept"
    assert "JSON" in full["error"]
    assert await daemon.store.read(count_pending) == 0


async def test_quarantine_retry_reprocesses_after_fix(
    config_factory: Any, daemon_factory: Any, tmp_path: Any
) -> None:
    # A message for a channel that is not configured yet lands in quarantine...
    cfg = config_factory()
    d = await daemon_factory(cfg)
    await d.intake.accept(
        Envelope(
            "partner",
            "p-1",
            json.dumps(message("p-1", "Hi, can I change my delivery address?")).encode(),
        )
    )
    await settle(d)
    [q] = await d.store.read(list_quarantine)
    assert "partner" in q["error"]
    await d.stop()
    # ...the admin adds the channel, and the retry processes it.
    fixed = config_factory(
        channels=[
            {"name": "api", "type": "api", "secret": "x" * 20},
            {"name": "partner", "type": "api", "secret": "y" * 20},
        ]
    )
    d2 = await daemon_factory(fixed)
    assert await d2.store.write(retry_quarantine, [q["id"]]) == [q["id"]]
    await settle(d2)
    assert (await d2.store.read(get_quarantine, q["id"]))["state"] == "resolved"
    [conv] = await conversations(d2)
    assert conv["channel"] == "partner"


async def test_auto_acknowledgement_queued_for_new_conversations_only(
    config_factory: Any, daemon_factory: Any
) -> None:
    cfg = config_factory(
        channels=[
            {
                "name": "api",
                "type": "api",
                "secret": "s" * 20,
                "auto_acknowledge": "Thanks {name}, ref #{conversation_id}",
            }
        ]
    )
    d = await daemon_factory(cfg)
    await d.intake.accept(
        Envelope(
            "api",
            "a1",
            json.dumps(
                message("a1", "Hello, what are your opening hours?", thread_key="z")
            ).encode(),
        )
    )
    await d.intake.accept(
        Envelope(
            "api", "a2", json.dumps(message("a2", "And on holidays?", thread_key="z")).encode()
        )
    )
    await settle(d)
    [conv] = await d.store.read(list_conversations, ConversationFilter())
    full = await d.store.read(get_conversation_full, conv["id"])
    outs = [m for m in full["messages"] if m["direction"] == "out"]
    assert len(outs) == 1
    assert outs[0]["text"] == f"Thanks Ann, ref #{conv['id']}"
    assert outs[0]["auto"] == "auto-acknowledgement"


async def test_message_without_sender_address_is_quarantined(store: Any) -> None:
    """Whatever the channel, a message with nobody to answer is held for an admin."""
    from omnidesk.channels.base import ChannelAdapter, ChannelContext
    from omnidesk.config import ChannelConfig, Options
    from omnidesk.intake import Intake
    from omnidesk.model import Identity, Message
    from omnidesk.pipeline import PipelineContext, process_batch
    from omnidesk.rules import load_rules
    from tests.conftest import RULES

    class NoSender(ChannelAdapter):
        type = "nosender"

        def normalize(self, envelope: Envelope) -> Message:
            return Message(
                channel="x",
                external_id=envelope.external_id,
                sender=Identity("email", ""),
                text="hello",
            )

        async def send(self, message: Any) -> Any:
            raise NotImplementedError

    intake = Intake(store)
    opts = Options({}, file=None, prefix="channels[0]", base_dir=RULES)
    adapter = NoSender(ChannelContext("x", ChannelConfig("x", "nosender", opts), intake))
    await intake.accept(Envelope("x", "e1", b"raw bytes"))
    rules = load_rules(RULES)
    ctx = PipelineContext(adapters={"x": adapter}, rules=lambda: rules)
    res = await store.write(process_batch, ctx, 10)
    assert (res.quarantined, res.stored) == (1, 0)
    [q] = await store.read(list_quarantine)
    assert q["error"] == "message has no sender address"
