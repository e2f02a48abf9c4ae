"""The worked drop-in example, ``channels/webform.py``, loaded from the folder
by the daemon like any drop-in, carrying a submission end to end: signed form
POST -> stored, classified, routed -> an agent's reply through the API -> an
e-mail at a local SMTP relay (aiosmtpd, the stand-in for the real one)."""

from __future__ import annotations

import asyncio
import email
import json
import time
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiosmtpd.smtp import SMTP

from omnidesk.app import Daemon
from omnidesk.store import conversations as convs
from omnidesk.store.inbound import count_pending
from tests.channels.webchat.conftest import wait_for
from tests.conftest import API_SECRET, REPO, admin_token

SECRET = "webform-secret-" + "z" * 16


class Relay:
    """An SMTP relay that keeps what it is given, and can refuse."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.tempfail = 0
        self.port = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.tempfail:
            self.tempfail -= 1
            return "451 4.3.0 queue full, try again later"
        mail = email.message_from_bytes(envelope.content, policy=policy.default)
        self.mails.append(mail)  # type: ignore[arg-type]
        return "250 2.0.0 queued"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(r, hostname="relay.test"), "127.0.0.1", 0)
    r.port = server.sockets[0].getsockname()[1]
    yield r
    server.close()
    await server.wait_closed()


@pytest.fixture
async def desk(config_factory: Any, daemon_factory: Any, relay: Relay) -> Daemon:
    cfg = config_factory(
        daemon={"channels_dir": str(REPO / "channels")},
        outbox={"backoff_base": 0.05, "backoff_max": 0.2},
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET},
            {
                "name": "contact",
                "type": "webform",
                "secret": SECRET,
                "from_address": "support@shop.example",
                "from_name": "Shop Support",
                "relay": {"host": "127.0.0.1", "port": relay.port, "tls": "none"},
            },
        ],
    )
    return await daemon_factory(cfg)  # type: ignore[no-any-return]


@pytest.fixture
async def http(desk: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{desk.web_port}", timeout=10) as c:
        yield c


def webform_module() -> Any:
    import sys

    return sys.modules["omnidesk_dropin_webform"]


async def submit(
    http: httpx.AsyncClient,
    fields: dict[str, str],
    *,
    as_json: bool = False,
    secret: str = SECRET,
    ts: int | None = None,
) -> httpx.Response:
    """What the website's server does with a submission."""
    if as_json:
        body, ctype = json.dumps(fields).encode(), "application/json"
    else:
        body, ctype = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    sig = webform_module().sign(secret, body, ts)
    return await http.post(
        "/webhooks/contact",
        content=body,
        headers={"Content-Type": ctype, "X-Webform-Signature": sig},
    )


async def conversations(desk: Daemon) -> list[dict[str, Any]]:
    def q(db: Any) -> list[dict[str, Any]]:
        rows = db.all("SELECT id FROM conversations WHERE channel = 'contact' ORDER BY id")
        return [convs.get_conversation_row(db, int(r["id"])) for r in rows]

    return await desk.store.read(q)


async def idle(desk: Daemon) -> None:
    await desk.intake.drain()

    async def nothing_pending() -> bool:
        return await desk.store.read(count_pending) == 0

    await wait_for(nothing_pending, what="the pipeline")


async def reply(desk: Daemon, http: httpx.AsyncClient, conv_id: int, text: str) -> int:
    r = await http.post(
        f"/api/v1/conversations/{conv_id}/messages",
        json={"text": text},
        headers=await admin_token(desk),
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def message_row(desk: Daemon, conv_id: int, mid: int) -> dict[str, Any]:
    rows = await desk.store.read(convs.message_rows, conv_id)
    return next(m for m in rows if m["id"] == mid)


async def test_the_example_is_loaded_from_the_channels_folder(desk: Daemon) -> None:
    adapter = desk.adapters["contact"]
    assert adapter.type == "webform"
    assert type(adapter).__module__ == "omnidesk_dropin_webform"
    assert adapter.health().ok and adapter.health().state == "running"


async def test_submission_to_email_reply_end_to_end(
    desk: Daemon, http: httpx.AsyncClient, relay: Relay
) -> None:
    r = await submit(
        http,
        {
            "name": "Lena Ortiz",
            "email": "Lena.Ortiz@Example.org",
            "subject": "Broken zipper",
            "message": "The zipper broke on day one. This is unacceptable, I want a refund!",
            "phone": "+49 30 1234567",
            "page": "https://shop.example/contact",
            "website": "",
        },
    )
    assert r.status_code == 202 and r.json() == {"status": "accepted", "duplicate": False}
    await idle(desk)
    [conv] = await conversations(desk)
    assert conv["subject"] == "Broken zipper"
    assert conv["category"] == "complaint"
    assert conv["team"] and conv["assignee"]
    [inbound] = await desk.store.read(convs.message_rows, conv["id"])
    assert (inbound["sender_kind"], inbound["sender_address"]) == (
        "email",
        "lena.ortiz@example.org",
    )
    assert inbound["sender_name"] == "Lena Ortiz"
    assert inbound["meta"]["webform"] == {
        "phone": "+49 30 1234567",
        "page": "https://shop.example/contact",
    }

    mid = await reply(desk, http, conv["id"], "So sorry, Lena. A replacement is on its way.")
    mail = await wait_for(lambda: _first(relay.mails), what="the reply at the relay")
    assert mail["To"] == "Lena Ortiz <lena.ortiz@example.org>"
    assert mail["From"] == "Shop Support <support@shop.example>"
    assert mail["Subject"] == "Re: Broken zipper"
    assert "replacement is on its way" in mail.get_content()
    msgid = mail["Message-ID"].strip("<>")

    async def sent() -> bool:
        return (await message_row(desk, conv["id"], mid))["delivery_state"] == "sent"

    await wait_for(sent, what="the reply marked sent")
    row = await message_row(desk, conv["id"], mid)
    assert row["provider_id"] == f"mid:{msgid}"
    # The customer's e-mail answer to that reply will find this conversation.
    found = await desk.store.read(convs.find_by_keys, [f"mid:{msgid}"])
    assert found is not None and found["id"] == conv["id"]


async def _first(items: list[Any]) -> Any:
    return items[0] if items else None


async def test_json_submission_and_redelivery(desk: Daemon, http: httpx.AsyncClient) -> None:
    fields = {
        "email": "kai@example.org",
        "message": "Do you ship to Norway?",
        "submission_id": "42",
    }
    assert (await submit(http, fields, as_json=True)).json()["duplicate"] is False
    # The website retried the forward: stored once.
    assert (await submit(http, fields, as_json=True)).json()["duplicate"] is True
    # Without an id, the same body is recognised by its hash.
    plain = {"email": "kai@example.org", "message": "And to Iceland?"}
    assert (await submit(http, plain)).json()["duplicate"] is False
    assert (await submit(http, plain)).json()["duplicate"] is True
    await idle(desk)
    found = await conversations(desk)
    assert [c["subject"] for c in found] == ["Contact form", "Contact form"]
    assert found[0]["category"] == "inquiry"


@pytest.mark.parametrize("forgery", ["wrong-secret", "stale", "missing"])
async def test_forged_or_stale_submissions_are_refused(
    desk: Daemon, http: httpx.AsyncClient, forgery: str
) -> None:
    fields = {"email": "eve@example.org", "message": "hello"}
    if forgery == "missing":
        r = await http.post(
            "/webhooks/contact",
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        r = await submit(
            http,
            fields,
            secret="not-the-secret" if forgery == "wrong-secret" else SECRET,
            ts=int(time.time()) - 3600 if forgery == "stale" else None,
        )
    assert r.status_code == 401 and r.json()["error"]
    await idle(desk)
    assert await conversations(desk) == []


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"message": "no address"}, "'email'"),
        ({"email": "not an address", "message": "x"}, "'email'"),
        ({"email": "a@example.org", "message": "   "}, "'message'"),
    ],
)
async def test_incomplete_submissions_get_the_reason(
    desk: Daemon, http: httpx.AsyncClient, fields: dict[str, str], fragment: str
) -> None:
    r = await submit(http, fields)
    assert r.status_code == 400 and fragment in r.json()["error"]


async def test_wrong_content_type_is_refused(http: httpx.AsyncClient) -> None:
    body = b"email=a@example.org&message=hi"
    r = await http.post(
        "/webhooks/contact",
        content=body,
        headers={
            "Content-Type": "text/plain",
            "X-Webform-Signature": webform_module().sign(SECRET, body),
        },
    )
    assert r.status_code == 400 and "content type" in r.json()["error"]


async def test_honeypot_submissions_are_accepted_and_skipped(
    desk: Daemon, http: httpx.AsyncClient
) -> None:
    r = await submit(
        http, {"email": "bot@spam.example", "message": "cheap pills", "website": "http://x"}
    )
    assert r.status_code == 202  # the bot learns nothing
    await idle(desk)
    assert await conversations(desk) == []

    def note(db: Any) -> str:
        return str(db.val("SELECT note FROM inbound WHERE channel = 'contact'"))

    assert "honeypot" in await desk.store.read(note)


async def test_refused_recipient_fails_visibly(
    desk: Daemon, http: httpx.AsyncClient, relay: Relay
) -> None:
    relay.refuse.add("ghost@example.org")
    await submit(http, {"email": "ghost@example.org", "message": "Where is my order?"})
    await idle(desk)
    [conv] = await conversations(desk)
    mid = await reply(desk, http, conv["id"], "It ships today.")

    async def failed() -> dict[str, Any] | None:
        row = await message_row(desk, conv["id"], mid)
        return row if row["delivery_state"] == "failed" else None

    row = await wait_for(failed, what="the reply marked failed")
    assert "refused the recipient" in row["delivery_error"] and "550" in row["delivery_error"]
    assert relay.mails == []


async def test_temporary_relay_failure_is_retried(
    desk: Daemon, http: httpx.AsyncClient, relay: Relay
) -> None:
    relay.tempfail = 2
    await submit(http, {"email": "june@example.org", "message": "Do you have gift cards?"})
    await idle(desk)
    [conv] = await conversations(desk)
    mid = await reply(desk, http, conv["id"], "Yes, from 10 to 200 euros.")

    async def sent() -> bool:
        return (await message_row(desk, conv["id"], mid))["delivery_state"] == "sent"

    await wait_for(sent, what="the reply delivered after retries")
    assert len(relay.mails) == 1 and relay.tempfail == 0
