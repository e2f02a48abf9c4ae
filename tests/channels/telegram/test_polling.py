"""Long polling through python-telegram-bot against the Bot API stand-in."""

from __future__ import annotations

import json
from typing import Any

from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from tests.conftest import conversations_full, wait_for
from tests.standins.telegram_api import TelegramStandIn

from .conftest import StartTg, inbound_rows, wait_stored


async def test_private_chat_messages_become_one_conversation(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    ann = tg.user(1001, "Ann", last_name="Lee", username="annlee", language_code="de")
    await tg.push_message("Hallo, wo ist meine Bestellung?", user=ann)
    await tg.push_message("Order 5521", user=ann)
    rows = await wait_stored(d, 2)
    assert [r["external_id"] for r in rows] == ["1001:1", "1001:2"]
    [conv] = await conversations_full(d)
    assert conv["thread_key"] == "1001"
    assert [m["text"] for m in conv["messages"]] == [
        "Hallo, wo ist meine Bestellung?",
        "Order 5521",
    ]
    first = conv["messages"][0]
    assert (first["sender_kind"], first["sender_address"]) == ("telegram", "1001")
    assert first["sender_name"] == "Ann Lee"
    contact = await d.store.read(get_contact, conv["contact_id"])
    [ident] = contact["identities"]
    assert ident["data"] == {"username": "annlee", "language_code": "de"}


async def test_offset_is_confirmed_only_after_the_updates_are_stored(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    real = d.intake.accept_many
    accepted: list[tuple[str, bool]] = []

    async def store_then_crash(envelopes: Any) -> list[bool]:
        result = await real(envelopes)
        accepted.extend(zip([e.external_id for e in envelopes], result, strict=True))
        if len(accepted) == 1:
            # Stored, but the poller dies before it can confirm the offset.
            raise RuntimeError("crash between store and confirm")
        return result

    d.intake.accept_many = store_then_crash  # type: ignore[method-assign]
    update = await tg.push_message("Is this stored once?")
    await wait_for(lambda: _confirmed(tg, update["update_id"]))
    # Telegram handed the same update out again; intake kept it once.
    assert accepted == [("1001:1", True), ("1001:1", False)]
    rows = await wait_stored(d, 1)
    assert len(rows) == 1
    [conv] = await conversations_full(d)
    assert len(conv["messages"]) == 1


async def _confirmed(tg: TelegramStandIn, update_id: int) -> bool:
    return any(c.params.get("offset") == update_id + 1 for c in tg.calls_to("getUpdates"))


async def test_groups_edits_and_attachments(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_tg()
    group = {"id": -1001309982000, "type": "supergroup", "title": "Acme customers"}
    bob = tg.user(2002, "Bob")
    jpeg = b"\xff\xd8\xff\xe0 fake jpeg"
    photo = tg.add_file(jpeg, path="photos/file_7.jpg")
    pdf = tg.add_file(b"%PDF-1.4 invoice", path="documents/file_8.pdf")
    first = tg.message("My invoice is wrong", user=bob, chat=group)
    await tg.push("message", first)
    await tg.push_message(
        None,
        user=bob,
        chat=group,
        caption="see the screenshot",
        photo=[
            {"file_id": "thumb-not-fetched", "file_unique_id": "t", "width": 90, "height": 90},
            {
                "file_id": photo,
                "file_unique_id": "p",
                "width": 800,
                "height": 600,
                "file_size": len(jpeg),
            },
        ],
    )
    await tg.push_message(
        None,
        user=bob,
        chat=group,
        document={
            "file_id": pdf,
            "file_unique_id": "d",
            "file_name": "inv.pdf",
            "mime_type": "application/pdf",
            "file_size": 16,
        },
    )
    edited = {**first, "text": "My invoice 77 is wrong", "edit_date": first["date"] + 5}
    await tg.push("edited_message", edited)
    rows = await wait_stored(d, 4)
    assert rows[3]["external_id"].startswith(f"{group['id']}:{first['message_id']}:edit:")
    [conv] = await conversations_full(d)
    assert conv["thread_key"] == str(group["id"])
    msgs = conv["messages"]
    assert [m["kind"] for m in msgs] == ["message", "message", "message", "edit"]
    assert msgs[1]["text"] == "see the screenshot"
    [att] = msgs[1]["attachments"]
    assert (att["content_type"], att["size"], att["ref"]) == ("image/jpeg", len(jpeg), photo)
    assert att["sha256"], "the file was downloaded at intake"
    [doc] = msgs[2]["attachments"]
    assert (doc["filename"], doc["content_type"], doc["size"]) == ("inv.pdf", "application/pdf", 16)
    assert msgs[3]["text"] == "My invoice 77 is wrong"
    assert msgs[3]["edit_of"] == msgs[0]["id"]
    getfile = [c.params["file_id"] for c in tg.calls_to("getFile")]
    assert sorted(getfile) == sorted([photo, pdf]), "thumbnails are not fetched"


async def test_file_that_cannot_be_fetched_keeps_its_reference(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    tg.too_big.add("BIG-FILE")
    await tg.push_message(
        "video attached",
        video={
            "file_id": "BIG-FILE",
            "file_unique_id": "v",
            "width": 1,
            "height": 1,
            "duration": 600,
        },
    )
    await wait_stored(d, 1)
    [conv] = await conversations_full(d)
    [msg] = conv["messages"]
    [att] = msg["attachments"]
    assert att["ref"] == "BIG-FILE" and att["sha256"] is None
    assert "file is too big" in msg["meta"]["telegram"]["file_errors"]["BIG-FILE"].lower()


async def test_own_phone_number_becomes_a_phone_identity(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    ann = tg.user(1001, "Ann")
    await tg.push_message(
        None,
        user=ann,
        contact={"phone_number": "4915123456789", "first_name": "Ann", "user_id": 1001},
    )
    # A contact card of somebody else is shown, never attached to Ann.
    await tg.push_message(
        None, user=ann, contact={"phone_number": "+14155550100", "first_name": "Taxi"}
    )
    await wait_stored(d, 2)
    [conv] = await conversations_full(d)
    assert conv["messages"][0]["text"] == "[contact] Ann 4915123456789"
    contact = await d.store.read(get_contact, conv["contact_id"])
    kinds = sorted((i["kind"], i["address"]) for i in contact["identities"])
    assert kinds == [("phone", "+4915123456789"), ("telegram", "1001")]


async def test_polling_survives_a_stand_in_restart(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_tg()
    await tg.push_message("before the outage")
    await wait_stored(d, 1)
    await tg.stop()

    async def unhealthy() -> bool:
        return not d.adapters["tg"].health().ok

    await wait_for(unhealthy)
    health = d.adapters["tg"].health()
    assert health.state in ("degraded", "failing")
    assert "getUpdates failed" in health.detail
    assert tg.token not in health.detail
    await tg.start()  # same port, state kept
    await tg.push_message("after the outage")
    await wait_stored(d, 2)

    async def healthy() -> bool:
        return d.adapters["tg"].health().state == "running"

    await wait_for(healthy)
    [conv] = await conversations_full(d)
    assert [m["text"] for m in conv["messages"]] == ["before the outage", "after the outage"]


async def test_refused_token_shows_failing_without_the_token(
    config_factory: Any, daemon_factory: Any, tg: TelegramStandIn
) -> None:
    from .conftest import channel

    bad = "7000001:WRONG-token"
    cfg = config_factory(channels=[channel(tg, token=bad)])
    d: Daemon = await daemon_factory(cfg)

    async def failing() -> bool:
        return d.adapters["tg"].health().state == "failing"

    await wait_for(failing)
    detail = d.adapters["tg"].health().detail
    assert "refused the bot token" in detail
    assert bad not in detail and "WRONG" not in detail
    resp = await _healthz(d)
    assert resp["channels"]["tg"]["ok"] is False


async def _healthz(d: Daemon) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        return json.loads((await c.get("/healthz")).content)


async def test_polling_deletes_a_stale_webhook_and_keeps_pending_updates(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    tg.webhook = {"url": "https://old.example/hook", "secret_token": None}
    tg.updates.append({"update_id": 499_999, "message": tg.message("waiting since yesterday")})
    d = await start_tg()
    await wait_stored(d, 1)
    [call] = tg.calls_to("deleteWebhook")
    assert str(call.params.get("drop_pending_updates")).lower() == "false"
    rows = await inbound_rows(d)
    assert json.loads(rows[0]["payload"])["update_id"] == 499_999


async def test_phone_already_owned_by_another_contact_is_not_taken(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_tg()
    for uid, name in ((1001, "Ann"), (2002, "Bob")):
        await tg.push_message(
            None,
            user=tg.user(uid, name),
            contact={"phone_number": "+4915123456789", "first_name": name, "user_id": uid},
        )
    await wait_stored(d, 2)
    ann, bob = sorted(await conversations_full(d), key=lambda c: c["id"])
    bob_contact = await d.store.read(get_contact, bob["contact_id"])
    assert [i["kind"] for i in bob_contact["identities"]] == ["telegram"]
    ann_contact = await d.store.read(get_contact, ann["contact_id"])
    assert "phone" in [i["kind"] for i in ann_contact["identities"]]

    def audit(db: Any) -> list[str]:
        return [
            r["reason"]
            for r in db.all(
                "SELECT reason FROM audit WHERE action = 'identity_in_use' AND contact_id = ?",
                (bob["contact_id"],),
            )
        ]

    assert await d.store.read(audit) == ["phone +4915123456789 already belongs to another contact"]
