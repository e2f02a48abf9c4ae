"""Fixtures for the Telegram channel: the Bot API stand-in and a daemon whose
``telegram`` channel talks to it through the real python-telegram-bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from omnidesk.app import Daemon
from tests.conftest import API_SECRET, free_port, wait_for
from tests.standins.telegram_api import TelegramStandIn

SECRET = "webhook-secret_0123456789"


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandIn]:
    s = TelegramStandIn()
    await s.start()
    yield s
    await s.stop()


def channel(tg: TelegramStandIn, **options: Any) -> dict[str, Any]:
    return {
        "name": "tg",
        "type": "telegram",
        "token": tg.token,
        "api_base_url": tg.url,
        "poll_timeout": 1,
        "retry_max": 0.5,
        **options,
    }


StartTg = Callable[..., Awaitable[Daemon]]


@pytest.fixture
def start_tg(tg: TelegramStandIn, config_factory: Any, daemon_factory: Any) -> StartTg:
    """A daemon with an API channel and the telegram channel ``tg``."""

    async def start(**options: Any) -> Daemon:
        port = free_port()
        cfg = config_factory(
            web={"port": port, "public_url": f"http://127.0.0.1:{port}"},
            channels=[
                {"name": "api", "type": "api", "secret": API_SECRET},
                channel(tg, **options),
            ],
            outbox={"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 4},
        )
        return await daemon_factory(cfg)  # type: ignore[no-any-return]

    return start


async def inbound_rows(daemon: Daemon) -> list[dict[str, Any]]:
    def q(db: Any) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in db.all(
                "SELECT id, external_id, state, note, payload, meta FROM inbound"
                " WHERE channel = 'tg' ORDER BY id"
            )
        ]

    return await daemon.store.read(q)


async def wait_stored(daemon: Daemon, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until ``n`` telegram envelopes were accepted and processed."""

    # The daemon's own pipeline does the work: draining from the test too
    # would run two batches at once and may store a chat's messages out of
    # order on PostgreSQL (reported; the core orders one worker's batches).
    async def done() -> bool:
        rows = await inbound_rows(daemon)
        return len(rows) >= n and all(r["state"] != "pending" for r in rows)

    await wait_for(done, timeout)
    return await inbound_rows(daemon)
