"""The signed API channel over real HTTP: inbound signatures and the reply path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from omnidesk.app import Daemon
from omnidesk.channels.api import SIGNATURE_HEADER, TOLERANCE, sign, verify
from omnidesk.store.inbound import count_pending
from tests.conftest import API_SECRET, admin_token, message, post_inbound, settle, signed


async def stored_count(daemon: Daemon) -> int:
    def q(db: Any) -> int:
        return int(db.val("SELECT COUNT(*) FROM inbound"))

    return await daemon.store.read(q)


async def test_valid_signature_is_accepted_and_processed(
    daemon: Daemon, client: httpx.AsyncClient
) -> None:
    r = await post_inbound(client, message("m1", "Do you deliver on Saturdays?"))
    assert r.status_code == 202
    assert r.json() == {"status": "accepted", "duplicate": False}
    r = await post_inbound(client, message("m1", "Do you deliver on Saturdays?"))
    assert r.json()["duplicate"] is True
    await settle(daemon)
    assert await stored_count(daemon) == 1


@pytest.mark.parametrize(
    "mutate",
    ["missing", "wrong-secret", "tampered-body", "stale", "future", "garbage-header"],
)
async def test_bad_signature_is_refused_and_nothing_stored(
    daemon: Daemon, client: httpx.AsyncClient, mutate: str
) -> None:
    body = message("bad-1", "hello")
    raw, headers = signed(body)
    if mutate == "missing":
        headers.pop(SIGNATURE_HEADER)
    elif mutate == "wrong-secret":
        headers[SIGNATURE_HEADER] = sign("not-the-secret", raw)
    elif mutate == "tampered-body":
        raw = raw.replace(b"hello", b"HELLO")
    elif mutate == "stale":
        # An hour beyond the tolerance: a slow request cannot bring it back in.
        headers[SIGNATURE_HEADER] = sign(API_SECRET, raw, int(time.time()) - TOLERANCE - 3600)
    elif mutate == "future":
        headers[SIGNATURE_HEADER] = sign(API_SECRET, raw, int(time.time()) + TOLERANCE + 3600)
    else:
        headers[SIGNATURE_HEADER] = "v1=deadbeef"
    r = await client.post("/api/v1/inbound/api", content=raw, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]
    assert await stored_count(daemon) == 0


def test_verify_accepts_any_of_several_v1_signatures() -> None:
    body = b"{}"
    t = int(time.time())
    good = sign("k", body, t).split(",")[1]
    assert verify("k", body, f"t={t},v1=00,{good}") is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (json.dumps({"sender": {"address": "a@b"}, "text": "x"}).encode(), "external_id"),
        (json.dumps({"external_id": "x", "text": "x"}).encode(), "sender"),
        (json.dumps({"external_id": "x", "sender": {"address": "a"}, "text": ""}).encode(), "text"),
        (
            json.dumps(
                {
                    "external_id": "x",
                    "sender": {"address": "a"},
                    "text": "t",
                    "attachments": [{"data": 5}],
                }
            ).encode(),
            "attachments[0]",
        ),
    ],
)
async def test_malformed_body_gets_clear_400(
    daemon: Daemon, client: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    raw, headers = signed(body)
    r = await client.post("/api/v1/inbound/api", content=raw, headers=headers)
    assert r.status_code == 400
    assert fragment in r.json()["error"]
    assert await stored_count(daemon) == 0


async def test_store_that_cannot_take_the_message_answers_503_with_retry_after(
    daemon: Daemon, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk or a restarting database: nothing stored, and the sender
    is told to come back (bench/faults.py meets the real thing)."""
    import sqlite3

    from omnidesk.store.inbound import insert_envelopes

    write = daemon.store.write

    async def full(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is insert_envelopes:
            raise sqlite3.OperationalError("database or disk is full")
        return await write(fn, *args, **kwargs)

    monkeypatch.setattr(daemon.store, "write", full)
    r = await post_inbound(client, message("full-1", "Where is my order?"))
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) > 0
    assert "try again" in r.json()["detail"]
    monkeypatch.setattr(daemon.store, "write", write)  # space is back: the retry is taken
    r = await post_inbound(client, message("full-1", "Where is my order?"))
    assert r.status_code == 202 and r.json()["duplicate"] is False
    assert await stored_count(daemon) == 1


async def test_unknown_channel_is_404(client: httpx.AsyncClient) -> None:
    r = await post_inbound(client, message("x", "hi"), channel="nope")
    assert r.status_code == 404


class Callback:
    """A stand-in for the customer's system receiving replies."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []  # responses to give, in order
        self.event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        problem = verify(API_SECRET, raw, request.headers.get(SIGNATURE_HEADER))
        self.received.append(
            {
                "body": json.loads(raw),
                "problem": problem,
                "idempotency": request.headers.get("Idempotency-Key"),
            }
        )
        status, headers = self.script.pop(0) if self.script else (200, {})
        self.event.set()
        if status == 200:
            return web.json_response({"id": f"cb-{len(self.received)}"})
        return web.Response(status=status, text="nope", headers=headers)


@pytest.fixture
async def callback() -> AsyncIterator[tuple[Callback, str]]:
    cb = Callback()
    app = web.Application()
    app.router.add_post("/replies", cb.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield cb, f"http://127.0.0.1:{port}/replies"
    await runner.cleanup()


async def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def reply_state(
    client: httpx.AsyncClient, headers: dict[str, str], conv_id: int, message_id: int
) -> dict[str, Any]:
    conv = (await client.get(f"/api/v1/conversations/{conv_id}", headers=headers)).json()
    return next(m for m in conv["messages"] if m["id"] == message_id)


async def start_with_callback(daemon_factory: Any, config_factory: Any, url: str) -> Daemon:
    cfg = config_factory(
        channels=[{"name": "api", "type": "api", "secret": API_SECRET, "callback_url": url}],
        outbox={"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 3},
    )
    return await daemon_factory(cfg)  # type: ignore[no-any-return]


async def test_agent_reply_reaches_callback_signed(
    daemon_factory: Any, config_factory: Any, callback: tuple[Callback, str]
) -> None:
    cb, url = callback
    d = await start_with_callback(daemon_factory, config_factory, url)
    auth = await admin_token(d)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        await post_inbound(c, message("in-1", "Can I pay by invoice?", thread_key="order-9"))
        await settle(d)
        conv_id = (await c.get("/api/v1/conversations", headers=auth)).json()["items"][0]["id"]
        r = await c.post(
            f"/api/v1/conversations/{conv_id}/messages",
            headers=auth,
            json={"text": "Yes, invoices are fine.", "kind": "reply"},
        )
        assert r.status_code == 201
        created = r.json()
        assert created["delivery_state"] == "queued"

        async def delivered() -> bool:
            m = await reply_state(c, auth, conv_id, created["id"])
            return m["delivery_state"] == "sent"

        await wait_for(delivered)
    [got] = cb.received
    assert got["problem"] is None, "the callback is signed with the channel secret"
    assert got["body"]["text"] == "Yes, invoices are fine."
    assert got["body"]["in_reply_to"] == "in-1"
    assert got["body"]["thread_key"] == "order-9"
    assert got["body"]["recipient"] == {"kind": "email", "address": "ann@example.com"}
    assert got["idempotency"]


async def test_callback_errors_are_retried_then_succeed(
    daemon_factory: Any, config_factory: Any, callback: tuple[Callback, str]
) -> None:
    cb, url = callback
    cb.script = [(503, {}), (429, {"Retry-After": "0"})]
    d = await start_with_callback(daemon_factory, config_factory, url)
    auth = await admin_token(d)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        await post_inbound(c, message("in-1", "Hello?"))
        await settle(d)
        conv_id = (await c.get("/api/v1/conversations", headers=auth)).json()["items"][0]["id"]
        created = (
            await c.post(
                f"/api/v1/conversations/{conv_id}/messages", headers=auth, json={"text": "Hi!"}
            )
        ).json()

        async def sent() -> bool:
            return (await reply_state(c, auth, conv_id, created["id"]))["delivery_state"] == "sent"

        await wait_for(sent)
    assert len(cb.received) == 3
    assert len({r["idempotency"] for r in cb.received}) == 1, "same key on every attempt"


async def test_permanent_callback_error_shows_failed_with_reason(
    daemon_factory: Any, config_factory: Any, callback: tuple[Callback, str]
) -> None:
    cb, url = callback
    cb.script = [(400, {})]
    d = await start_with_callback(daemon_factory, config_factory, url)
    auth = await admin_token(d)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        await post_inbound(c, message("in-1", "Hello?"))
        await settle(d)
        conv_id = (await c.get("/api/v1/conversations", headers=auth)).json()["items"][0]["id"]
        created = (
            await c.post(
                f"/api/v1/conversations/{conv_id}/messages", headers=auth, json={"text": "Hi!"}
            )
        ).json()

        async def failed() -> bool:
            m = await reply_state(c, auth, conv_id, created["id"])
            return m["delivery_state"] == "failed"

        await wait_for(failed)
        m = await reply_state(c, auth, conv_id, created["id"])
        assert "400" in m["delivery_error"]
        conv = (await c.get(f"/api/v1/conversations/{conv_id}", headers=auth)).json()
        assert "delivery_failed" in [a["action"] for a in conv["audit"]]


async def test_unreachable_callback_exhausts_retries_and_fails_visibly(
    daemon_factory: Any, config_factory: Any
) -> None:
    d = await start_with_callback(daemon_factory, config_factory, "http://127.0.0.1:9/x")
    auth = await admin_token(d)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        await post_inbound(c, message("in-1", "Hello?"))
        await settle(d)
        conv_id = (await c.get("/api/v1/conversations", headers=auth)).json()["items"][0]["id"]
        created = (
            await c.post(
                f"/api/v1/conversations/{conv_id}/messages", headers=auth, json={"text": "Hi!"}
            )
        ).json()

        async def failed() -> bool:
            m = await reply_state(c, auth, conv_id, created["id"])
            return m["delivery_state"] == "failed"

        await wait_for(failed)
        m = await reply_state(c, auth, conv_id, created["id"])
        assert "unreachable" in m["delivery_error"]
    assert await d.store.read(count_pending) == 0
