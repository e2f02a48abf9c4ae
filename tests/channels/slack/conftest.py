"""Fixtures for the Slack channel: the Web API / Socket Mode stand-in and a
daemon whose ``slack`` channel uses the real slack-bolt and slack_sdk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from tests.conftest import API_SECRET, wait_for
from tests.standins.slack_api import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, sign


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    s = SlackStandIn()
    await s.start()
    yield s
    await s.stop()


def channel(slack: SlackStandIn, **options: Any) -> dict[str, Any]:
    return {
        "name": "sl",
        "type": "slack",
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
        "api_base_url": slack.api_url,
        "file_hosts": ["127.0.0.1"],  # the stand-in serves the private files
        "retry_max": 0.5,
        **options,
    }


StartSlack = Callable[..., Awaitable[Daemon]]


@pytest.fixture
def start_slack(slack: SlackStandIn, config_factory: Any, daemon_factory: Any) -> StartSlack:
    async def start(**options: Any) -> Daemon:
        cfg = config_factory(
            channels=[
                {"name": "api", "type": "api", "secret": API_SECRET},
                channel(slack, **options),
            ],
            outbox={"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 4},
        )
        d: Daemon = await daemon_factory(cfg)
        if options.get("mode", "events") == "events":
            await wait_for(lambda: _running(d))
        return d

    return start


async def _running(d: Daemon) -> bool:
    return d.adapters["sl"].health().state == "running"


async def post_event(
    d: Daemon,
    payload: dict[str, Any] | bytes,
    *,
    headers: dict[str, str] | None = None,
    retry: int | None = None,
    client: httpx.AsyncClient | None = None,
    **sign_kw: Any,
) -> httpx.Response:
    """POST a payload to the channel's webhook, signed like Slack does."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    h = sign(body, **sign_kw) if headers is None else headers
    if retry is not None:
        h = {**h, "X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    url = f"http://127.0.0.1:{d.web_port}/webhooks/sl"
    if client is not None:
        return await client.post(url, content=body, headers=h)
    async with httpx.AsyncClient() as c:
        return await c.post(url, content=body, headers=h)


async def inbound_rows(d: Daemon) -> list[dict[str, Any]]:
    def q(db: Any) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in db.all(
                "SELECT id, external_id, state, note, payload, meta FROM inbound"
                " WHERE channel = 'sl' ORDER BY id"
            )
        ]

    return await d.store.read(q)


async def processed(d: Daemon, n: int) -> list[dict[str, Any]]:
    """Wait until ``n`` slack envelopes were stored and processed."""

    # The daemon's own pipeline does the work: draining from the test too
    # would run two batches at once and may store a chat's messages out of
    # order on PostgreSQL (reported; the core orders one worker's batches).
    async def done() -> bool:
        rows = await inbound_rows(d)
        return len(rows) >= n and all(r["state"] != "pending" for r in rows)

    await wait_for(done, timeout=30)  # generous: a loaded CI machine, not a speed check
    return await inbound_rows(d)
