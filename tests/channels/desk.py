"""A running daemon as a channel test sees it: the inbox API with an admin
token, and the intake table of a channel (state, note, quarantine error)."""

from __future__ import annotations

from typing import Any

import httpx

from omnidesk.app import Daemon
from omnidesk.store.base import row_dict
from tests.conftest import agent_reply, settle, wait_delivery


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
