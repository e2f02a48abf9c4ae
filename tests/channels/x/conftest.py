"""Fixtures for the X channel: the stand-in of X's API v2, a daemon with an X
channel pointed at it, Account Activity deliveries signed as X signs them,
and payload builders in X's documented shapes."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.channels.x import SIGNATURE_HEADER, sign
from tests.channels import desk
from tests.channels.desk import Desk, StartDesk
from tests.standins.x_api import XApiStandIn

CONSUMER_KEY = "x-consumer-key"
CONSUMER_SECRET = "x-consumer-secret-0123456789"
ACCESS_TOKEN = "1234567890-x-access-token"
ACCESS_SECRET = "x-access-token-secret"
OUR_ID = "835740314006511618"
CUSTOMER_ID = "272953809"

_ids = itertools.count(1_500_000_000_000_000_000)

start_desk = desk.start_desk  # the fixture, for this folder's tests


def now_ms() -> str:
    return str(int(time.time() * 1000))


def dm(
    text: str,
    *,
    sender: str = CUSTOMER_ID,
    recipient: str = OUR_ID,
    event_id: str | None = None,
    ts: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    return {
        "type": "message_create",
        "id": event_id or str(next(_ids)),
        "created_timestamp": ts or now_ms(),
        "message_create": {
            "target": {"recipient_id": recipient},
            "sender_id": sender,
            "message_data": {"text": text, "entities": {"urls": []}, **data},
        },
    }


USERS = {
    CUSTOMER_ID: {"id": CUSTOMER_ID, "name": "Ann Customer", "screen_name": "ann"},
    OUR_ID: {"id": OUR_ID, "name": "Example Support", "screen_name": "examplesupport"},
}


def delivery(*events: dict[str, Any], for_user_id: str = OUR_ID, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"for_user_id": for_user_id}
    if events:
        body["direct_message_events"] = list(events)
        body["users"] = USERS
    body.update(more)
    return body


@pytest.fixture
async def xapi() -> AsyncIterator[XApiStandIn]:
    s = XApiStandIn(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_SECRET, OUR_ID)
    await s.start()
    yield s
    await s.stop()


def x_channel(base_url: str, name: str = "x", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "x",
        "user_id": OUR_ID,
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "access_token": ACCESS_TOKEN,
        "access_token_secret": ACCESS_SECRET,
        "api_base_url": base_url,
        **extra,
    }


class X(Desk):
    def __init__(self, daemon: Daemon, client: httpx.AsyncClient, api: XApiStandIn) -> None:
        super().__init__(daemon, client)
        self.api = api

    async def deliver(
        self,
        payload: dict[str, Any] | bytes,
        *,
        secret: str = CONSUMER_SECRET,
        channel: str = "x",
        signature: str | None = None,
    ) -> httpx.Response:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature != "":
            headers[SIGNATURE_HEADER] = signature or sign(secret, raw)
        return await self.client.post(f"/webhooks/{channel}", content=raw, headers=headers)


XFactory = Callable[..., Any]


@pytest.fixture
async def x_factory(start_desk: StartDesk, xapi: XApiStandIn) -> XFactory:
    async def start(
        channels: list[dict[str, Any]] | None = None, outbox: Any = None, **extra: Any
    ) -> X:
        chans = channels if channels is not None else [x_channel(xapi.base_url, **extra)]
        d, c = await start_desk(chans, outbox)
        return X(d, c, xapi)

    return start


@pytest.fixture
async def x(x_factory: XFactory) -> X:
    started: X = await x_factory()
    return started
