"""Fixtures for the Meta channels: the Graph API stand-in, a daemon with a
Messenger, an Instagram and a WhatsApp channel pointed at it, signed webhook
deliveries and payload builders in Meta's documented shapes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.channels.meta.webhook import SIGNATURE_HEADER, sign
from omnidesk.store.base import row_dict
from tests.conftest import API_SECRET, admin_token
from tests.standins.graph_api import GraphApiStandIn

APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "meta-verify-token"
ACCESS_TOKEN = "meta-access-token"
PAGE_ID = "1122334455"
IG_ID = "17841400000000"
PHONE_NUMBER_ID = "109876543210"
BUSINESS_PHONE = "15550001111"


@pytest.fixture
async def graph() -> AsyncIterator[GraphApiStandIn]:
    g = GraphApiStandIn(ACCESS_TOKEN)
    await g.start()
    yield g
    await g.stop()


def meta_channels(base_url: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    common = {
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "access_token": ACCESS_TOKEN,
        "api_base_url": base_url,
    }
    return [
        {"name": "api", "type": "api", "secret": API_SECRET},
        {"name": "fb", "type": "messenger", "page_id": PAGE_ID, **common, **extra.get("fb", {})},
        {"name": "ig", "type": "instagram", **common, **extra.get("ig", {})},
        {
            "name": "wa",
            "type": "whatsapp",
            "phone_number_id": PHONE_NUMBER_ID,
            **common,
            **extra.get("wa", {}),
        },
    ]


class Meta:
    """A running daemon with the three Meta channels, and an HTTP client."""

    def __init__(self, daemon: Daemon, client: httpx.AsyncClient, graph: GraphApiStandIn):
        self.daemon = daemon
        self.client = client
        self.graph = graph
        self.auth: dict[str, str] = {}

    async def deliver(
        self, channel: str, payload: dict[str, Any] | bytes, secret: str = APP_SECRET
    ) -> httpx.Response:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.client.post(
            f"/webhooks/{channel}",
            content=raw,
            headers={SIGNATURE_HEADER: sign(secret, raw), "Content-Type": "application/json"},
        )

    async def settle(self) -> None:
        await self.daemon.intake.drain()
        await self.daemon.pipeline.drain()

    async def conversations(self, channel: str | None = None) -> list[dict[str, Any]]:
        params = {"channel": channel} if channel else {}
        r = await self.client.get("/api/v1/conversations", headers=self.auth, params=params)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def conversation(self, conv_id: int) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/conversations/{conv_id}", headers=self.auth)
        assert r.status_code == 200, r.text
        conv: dict[str, Any] = r.json()
        return conv

    async def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message of every conversation on ``channel``, oldest first."""
        out: list[dict[str, Any]] = []
        for c in await self.conversations(channel):
            out.extend((await self.conversation(c["id"]))["messages"])
        return sorted(out, key=lambda m: m["id"])

    async def reply(self, conv_id: int, text: str) -> dict[str, Any]:
        r = await self.client.post(
            f"/api/v1/conversations/{conv_id}/messages",
            headers=self.auth,
            json={"text": text, "kind": "reply"},
        )
        assert r.status_code == 201, r.text
        msg: dict[str, Any] = r.json()
        return msg

    async def message(self, conv_id: int, message_id: int) -> dict[str, Any]:
        conv = await self.conversation(conv_id)
        return next(m for m in conv["messages"] if m["id"] == message_id)

    async def inbound(self, channel: str) -> list[dict[str, Any]]:
        def q(db: Any) -> list[dict[str, Any]]:
            rows = db.all(
                "SELECT i.external_id, i.state, i.note, i.payload, q.error FROM inbound i"
                " LEFT JOIN quarantine q ON q.inbound_id = i.id WHERE i.channel = ?"
                " ORDER BY i.id",
                (channel,),
            )
            return [d for d in map(row_dict, rows) if d is not None]

        return await self.daemon.store.read(q)


@pytest.fixture
async def meta_factory(
    config_factory: Callable[..., Any], daemon_factory: Any, graph: GraphApiStandIn
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def start(**extra: Any) -> Meta:
        outbox = extra.pop("outbox", {"backoff_base": 0.02, "backoff_max": 0.1, "max_attempts": 6})
        cfg = config_factory(channels=meta_channels(graph.base_url, **extra), outbox=outbox)
        d = await daemon_factory(cfg)
        c = httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10)
        clients.append(c)
        m = Meta(d, c, graph)
        m.auth = await admin_token(d)
        return m

    yield start
    for c in clients:
        await c.aclose()


@pytest.fixture
async def meta(meta_factory: Callable[..., Any]) -> Meta:
    m: Meta = await meta_factory()
    return m


# -- payload builders (Meta's documented shapes) ---------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def page_delivery(*items: dict[str, Any], page: str = PAGE_ID, obj: str = "page") -> dict[str, Any]:
    """One entry per item, as Meta does when it batches."""
    return {
        "object": obj,
        "entry": [{"id": page, "time": now_ms(), "messaging": [item]} for item in items],
    }


def fb_message(
    mid: str, psid: str, text: str, *, page: str = PAGE_ID, **message: Any
) -> dict[str, Any]:
    return {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": now_ms(),
        "message": {"mid": mid, "text": text, **message},
    }


def fb_echo(
    mid: str, psid: str, text: str, *, page: str = PAGE_ID, metadata: str | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {"is_echo": True, "app_id": 1517776481860111, "mid": mid, "text": text}
    if metadata is not None:
        msg["metadata"] = metadata
    return {
        "sender": {"id": page},
        "recipient": {"id": psid},
        "timestamp": now_ms(),
        "message": msg,
    }


def fb_receipt(
    kind: str, psid: str, *, mids: list[str] | None = None, page: str = PAGE_ID
) -> dict[str, Any]:
    receipt: dict[str, Any] = {"watermark": now_ms()}
    if mids is not None:
        receipt["mids"] = mids
    return {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": now_ms(),
        kind: receipt,
    }


def wa_delivery(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS_PHONE, "phone_number_id": number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def wa_message(
    wamid: str, wa_id: str, mtype: str = "text", body: Any = None, ts: float | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(ts if ts is not None else time.time())),
        "type": mtype,
    }
    if mtype == "text":
        msg["text"] = {"body": body}
    elif body is not None:
        msg[mtype] = body
    return msg


def wa_text(
    wamid: str, wa_id: str, text: str, name: str = "Ann Customer", ts: float | None = None
) -> dict[str, Any]:
    return wa_delivery(
        messages=[wa_message(wamid, wa_id, "text", text, ts)],
        contacts=[{"profile": {"name": name}, "wa_id": wa_id}],
    )


def wa_status(
    wamid: str, status: str, wa_id: str, errors: list[Any] | None = None
) -> dict[str, Any]:
    st: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": wa_id,
    }
    if errors is not None:
        st["errors"] = errors
    return wa_delivery(statuses=[st])
