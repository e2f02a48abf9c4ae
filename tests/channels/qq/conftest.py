"""Fixtures for the QQ channel: the OpenAPI stand-in, a daemon with a QQ
channel pointed at it, and callbacks signed as the platform signs them
(Ed25519 over timestamp + body with the key derived from the bot secret)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.channels.qq import SIGNATURE_HEADER, TIMESTAMP_HEADER, signing_key
from tests.channels import desk
from tests.channels.desk import Desk, StartDesk
from tests.standins.qq_api import QqApiStandIn

APP_ID = "102005999"
SECRET = "naOC0ocQE3shWLAfffVLB1rhYPG7"
OPENID = "E4F4AEA33253A2797FB897C50B81D7ED"

_ids = itertools.count(1)

start_desk = desk.start_desk  # the fixture, for this folder's tests


def c2c(
    content: str, *, msg_id: str | None = None, openid: str = OPENID, **d: Any
) -> dict[str, Any]:
    return {
        "op": 0,
        "id": f"C2C_MESSAGE_CREATE:{next(_ids)}",
        "t": "C2C_MESSAGE_CREATE",
        "d": {
            "author": {"user_openid": openid},
            "content": content,
            "id": msg_id or f"ROBOT1.0_msg{next(_ids)}",
            "timestamp": datetime.now(UTC).isoformat(),
            **d,
        },
    }


@pytest.fixture
async def qqapi() -> AsyncIterator[QqApiStandIn]:
    s = QqApiStandIn(APP_ID, SECRET)
    await s.start()
    yield s
    await s.stop()


class Qq(Desk):
    def __init__(self, daemon: Daemon, client: httpx.AsyncClient, api: QqApiStandIn) -> None:
        super().__init__(daemon, client)
        self.api = api

    async def deliver(
        self,
        payload: dict[str, Any] | bytes,
        *,
        secret: str = SECRET,
        ts: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        stamp = str(ts if ts is not None else int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "QQBot-Callback"}
        if signature != "":
            sig = signature or signing_key(secret).sign(stamp.encode() + raw).hex()
            headers |= {SIGNATURE_HEADER: sig, TIMESTAMP_HEADER: stamp}
        return await self.client.post("/webhooks/qq", content=raw, headers=headers)


QqFactory = Callable[..., Any]


@pytest.fixture
async def qq_factory(start_desk: StartDesk, qqapi: QqApiStandIn) -> QqFactory:
    async def start(outbox: Any = None, **extra: Any) -> Qq:
        channel = {
            "name": "qq",
            "type": "qq",
            "app_id": APP_ID,
            "app_secret": SECRET,
            "api_base_url": qqapi.base_url,
            "token_url": f"{qqapi.base_url}/app/getAppAccessToken",
            **extra,
        }
        d, c = await start_desk([channel], outbox)
        return Qq(d, c, qqapi)

    return start


@pytest.fixture
async def qq(qq_factory: QqFactory) -> Qq:
    started: Qq = await qq_factory()
    return started
