"""A running daemon as a channel test sees it: the inbox API with an admin
token, and the intake table of a channel (state, note, quarantine error)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.store.base import row_dict
from tests.conftest import API_SECRET, agent_api, agent_reply, settle, wait_delivery


class Desk:
    def __init__(self, daemon: Daemon, client: httpx.AsyncClient) -> None:
        self.daemon = daemon
        self.client = client  # with an admin token (tests.conftest.agent_api)

    async def settle(self) -> None:
        await settle(self.daemon)

    async def conversations(self, channel: str | None = None) -> list[dict[str, Any]]:
        params = {"channel": channel} if channel else {}
        r = await self.client.get("/api/v1/conversations", params=params)
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def conversation(self, conv_id: int) -> dict[str, Any]:
        conv: dict[str, Any] = (await self.client.get(f"/api/v1/conversations/{conv_id}")).json()
        return conv

    async def only_conversation(self) -> dict[str, Any]:
        await self.settle()
        convs = await self.conversations()
        assert len(convs) == 1, convs
        return await self.conversation(convs[0]["id"])

    async def reply(self, conv_id: int, text: str) -> dict[str, Any]:
        return await agent_reply(self.client, conv_id, text)

    async def message(self, conv_id: int, message_id: int) -> dict[str, Any]:
        conv = await self.conversation(conv_id)
        return next(m for m in conv["messages"] if m["id"] == message_id)

    async def delivery(self, conv_id: int, message_id: int, *states: str) -> dict[str, Any]:
        """Wait until the reply's delivery state is one of ``states``."""
        return await wait_delivery(self.client, conv_id, message_id, *states)

    async def inbound(self, channel: str) -> list[dict[str, Any]]:
        def q(db: Any) -> list[dict[str, Any]]:
            rows = db.all(
                "SELECT i.external_id, i.state, i.note, q.error FROM inbound i"
                " LEFT JOIN quarantine q ON q.inbound_id = i.id WHERE i.channel = ?"
                " ORDER BY i.id",
                (channel,),
            )
            return [d for d in map(row_dict, rows) if d is not None]

        return await self.daemon.store.read(q)

    async def health_says(self, channel: str, words: str) -> bool:
        """The channel's health detail on /healthz holds ``words``."""
        ch = (await self.client.get("/healthz")).json()["channels"][channel]
        return words in ch["detail"]

    async def retrying(self, conv_id: int, message_id: int) -> bool:
        """The reply's last attempt failed and another is scheduled."""
        msg = await self.message(conv_id, message_id)
        return "retrying" in (msg.get("delivery_error") or "")


# Fast retries, so a test sees a rate limit retried without waiting.
FAST_OUTBOX = {"backoff_base": 0.02, "backoff_max": 0.1, "max_attempts": 4}

StartDesk = Callable[..., Awaitable[tuple[Daemon, httpx.AsyncClient]]]


@pytest.fixture
async def start_desk(
    config_factory: Callable[..., Any], daemon_factory: Any
) -> AsyncIterator[StartDesk]:
    """Start a daemon with the API channel and ``channels``, fast retries
    (``outbox`` overrides them) and any other config ``sections``; returns it
    and an inbox API client with an admin token (closed afterwards)."""
    clients: list[httpx.AsyncClient] = []

    async def start(
        channels: list[dict[str, Any]], outbox: dict[str, Any] | None = None, **sections: Any
    ) -> tuple[Daemon, httpx.AsyncClient]:
        cfg = config_factory(
            channels=[{"name": "api", "type": "api", "secret": API_SECRET}, *channels],
            outbox={**FAST_OUTBOX, **(outbox or {})},
            **sections,
        )
        d = await daemon_factory(cfg)
        c = await agent_api(d)
        clients.append(c)
        return d, c

    yield start
    for c in clients:
        await c.aclose()
