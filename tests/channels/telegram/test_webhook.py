"""Webhook mode over real HTTP: setWebhook on start, the secret token header,
replayed deliveries, and input that is not an update."""

from __future__ import annotations

import json

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.store.inbound import get_quarantine, list_quarantine
from tests.conftest import conversations_full, wait_for
from tests.standins.telegram_api import TelegramStandIn

from .conftest import SECRET, StartTg, inbound_rows, wait_stored


async def start_webhook(start_tg: StartTg, tg: TelegramStandIn) -> Daemon:
    d = await start_tg(mode="webhook", secret_token=SECRET)

    async def running() -> bool:
        return d.adapters["tg"].health().state == "running"

    await wait_for(running)
    return d


async def post(
    d: Daemon, body: bytes, secret: str | None = SECRET, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    url = f"http://127.0.0.1:{d.web_port}/webhooks/tg"
    if client is not None:
        return await client.post(url, content=body, headers=headers)
    async with httpx.AsyncClient() as c:
        return await c.post(url, content=body, headers=headers)


async def test_webhook_is_set_on_start_and_deliveries_are_stored(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    d = await start_webhook(start_tg, tg)
    [call] = tg.calls_to("setWebhook")
    assert call.params["url"] == f"http://127.0.0.1:{d.web_port}/webhooks/tg"
    assert call.params["secret_token"] == SECRET
    assert d.adapters["tg"].health().detail.startswith("webhook set to")
    await tg.push_message("Delivered by webhook")
    assert tg.webhook_deliveries[-1][1] == 200
    await wait_stored(d, 1)
    [conv] = await conversations_full(d)
    assert conv["messages"][0]["text"] == "Delivered by webhook"
    assert not tg.calls_to("getUpdates"), "webhook mode never polls"


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong-secret", 403), ("", 403)])
async def test_missing_or_wrong_secret_is_refused_and_nothing_stored(
    start_tg: StartTg, tg: TelegramStandIn, secret: str | None, status: int
) -> None:
    d = await start_webhook(start_tg, tg)
    update = {"update_id": 1, "message": tg.message("forged")}
    r = await post(d, json.dumps(update).encode(), secret=secret)
    assert r.status_code == status
    assert "Secret-Token" in r.json()["error"]
    assert await inbound_rows(d) == []


async def test_replayed_delivery_is_stored_once(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_webhook(start_tg, tg)
    body = json.dumps({"update_id": 42, "message": tg.message("Only once please")}).encode()
    first, again = await post(d, body), await post(d, body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    # The same message under another update id (a redelivery after the bot's
    # queue was reset) is still the same message.
    moved = json.loads(body)
    moved["update_id"] = 43
    assert (await post(d, json.dumps(moved).encode())).json()["duplicate"] is True
    rows = await wait_stored(d, 1)
    assert len(rows) == 1
    [conv] = await conversations_full(d)
    assert len(conv["messages"]) == 1


async def test_a_button_press_is_answered_once(start_tg: StartTg, tg: TelegramStandIn) -> None:
    """A press on an inline button is answered (answerCallbackQuery) once it is
    stored, so the customer's spinner stops; a redelivery is not answered again."""
    d = await start_webhook(start_tg, tg)
    press = {"id": "press-1", "from": tg.user(), "message": tg.message(None), "data": "survey:1:4"}
    update = await tg.push("callback_query", press)
    assert tg.webhook_deliveries[-1][1] == 200

    async def answered() -> bool:
        return tg.callback_queries.get("press-1") is True

    await wait_for(answered)
    again = await post(d, json.dumps(update).encode())
    assert again.json()["duplicate"] is True
    await wait_stored(d, 1)
    assert [c.params["callback_query_id"] for c in tg.calls_to("answerCallbackQuery")] == [
        "press-1"
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not JSON"),
        (b'{"message_id": 5, "text": "no update wrapper"}', "no integer update_id"),
        (b"[1, 2, 3]", "a JSON list"),
        (b'{"update_id": 7, "message": "text instead of an object"}', "'message' is not an object"),
        (b'{"update_id": 8, "message": {"message_id": 1, "chat": {"id": 5}}}', "neither 'from'"),
    ],
)
async def test_authenticated_garbage_is_kept_in_quarantine(
    start_tg: StartTg, tg: TelegramStandIn, body: bytes, error: str
) -> None:
    d = await start_webhook(start_tg, tg)
    r = await post(d, body)
    assert r.status_code == 200, "Telegram must not redeliver it forever"
    await wait_stored(d, 1)
    [q] = await d.store.read(list_quarantine)
    assert error in q["error"]
    full = await d.store.read(get_quarantine, q["id"])
    assert full["payload"] == body


async def test_oversized_body_is_refused(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_webhook(start_tg, tg)
    r = await post(d, b'{"update_id": 1, "x": "' + b"a" * (6 * 1024 * 1024) + b'"}')
    assert r.status_code == 413
    assert await inbound_rows(d) == []


async def test_polling_channel_takes_no_webhooks(start_tg: StartTg, tg: TelegramStandIn) -> None:
    d = await start_tg()
    r = await post(d, b'{"update_id": 1}')
    assert r.status_code == 404
    assert await inbound_rows(d) == []


async def test_failed_set_webhook_is_visible_and_retried(
    start_tg: StartTg, tg: TelegramStandIn
) -> None:
    tg.fail("setWebhook", 400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
    d = await start_tg(mode="webhook", secret_token=SECRET)

    async def failing() -> bool:
        return "setWebhook failed" in d.adapters["tg"].health().detail

    await wait_for(failing)
    assert "https url must be provided" in d.adapters["tg"].health().detail.lower()

    async def running() -> bool:
        return d.adapters["tg"].health().state == "running"

    await wait_for(running)
    assert len(tg.calls_to("setWebhook")) == 2
