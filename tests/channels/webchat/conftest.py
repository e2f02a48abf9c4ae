"""A daemon with a web chat channel, and a visitor that talks to it over HTTP
the way the widget does."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.store import conversations as convs
from omnidesk.store.inbound import count_pending
from tests.conftest import API_SECRET, admin_token

WEBCHAT_SECRET = "webchat-secret-" + "y" * 16
SITE = "http://shop.example.test"
CHAT = "/webchat/site"


def webchat_channel(**options: Any) -> dict[str, Any]:
    return {
        "name": "site",
        "type": "webchat",
        "secret": WEBCHAT_SECRET,
        "allowed_origins": [SITE],
        "title": "Shop help",
        "greeting": "Hello! Ask us anything.",
        **options,
    }


def channels(**options: Any) -> list[dict[str, Any]]:
    return [{"name": "api", "type": "api", "secret": API_SECRET}, webchat_channel(**options)]


@pytest.fixture
async def chat(config_factory: Callable[..., Any], daemon_factory: Any) -> Daemon:
    return await daemon_factory(config_factory(channels=channels()))  # type: ignore[no-any-return]


@pytest.fixture
async def http(chat: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{chat.web_port}", timeout=10) as c:
        yield c


class Visitor:
    """One browser's worth of web chat: a token, messages, the live stream."""

    def __init__(self, http: httpx.AsyncClient, origin: str | None = SITE) -> None:
        self.http = http
        self.origin = origin
        self.token: str | None = None
        self.visitor: str | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        h = dict(extra)
        if self.origin:
            h["Origin"] = self.origin
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def start(self) -> Visitor:
        r = await self.http.post(f"{CHAT}/session", json={}, headers=self.headers())
        assert r.status_code == 200, r.text
        self.token, self.visitor = r.json()["token"], r.json()["visitor"]
        return self

    async def say(self, text: str, client_id: str | None = None, **extra: Any) -> httpx.Response:
        body = {"client_id": client_id or uuid.uuid4().hex, "text": text, **extra}
        return await self.http.post(f"{CHAT}/messages", json=body, headers=self.headers())

    async def history(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{CHAT}/messages", headers=self.headers())
        assert r.status_code == 200, r.text
        return r.json()["messages"]  # type: ignore[no-any-return]

    async def receipts(self, **ids: list[int]) -> httpx.Response:
        return await self.http.post(f"{CHAT}/receipts", json=ids, headers=self.headers())


class Stream:
    """The visitor's SSE stream, read in the background."""

    def __init__(self, http: httpx.AsyncClient, visitor: Visitor, after: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.comments = 0
        self._ready = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(http, visitor, after))

    async def _run(self, http: httpx.AsyncClient, visitor: Visitor, after: int) -> None:
        params = {"token": visitor.token or "", "after": str(after)}
        headers = {"Origin": visitor.origin} if visitor.origin else {}
        async with http.stream(
            "GET", f"{CHAT}/events", params=params, headers=headers, timeout=None
        ) as r:
            self.status = r.status_code
            self._ready.set()
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))
                elif line.startswith(":"):
                    self.comments += 1

    async def ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, httpx.HTTPError):
            pass

    @property
    def done(self) -> bool:
        return self._task.done()


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 5.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def idle(daemon: Daemon) -> None:
    """Wait until the daemon's pipeline has processed everything accepted."""

    async def nothing_pending() -> bool:
        return await daemon.store.read(count_pending) == 0

    await daemon.intake.drain()
    await wait_for(nothing_pending, what="the pipeline to finish")


class Agent:
    """An agent working through the HTTP API."""

    def __init__(self, daemon: Daemon, http: httpx.AsyncClient) -> None:
        self.daemon = daemon
        self.http = http
        self.auth: dict[str, str] = {}

    async def login(self) -> Agent:
        self.auth = await admin_token(self.daemon)
        return self

    async def conversation_of(self, visitor: str) -> dict[str, Any]:
        """The visitor's conversation row, once the pipeline stored it."""

        # Polls rather than settle(): draining beside the daemon's own worker
        # would be a second concurrent pipeline, not what production runs.
        async def find() -> dict[str, Any] | None:
            return await self.daemon.store.read(convs.find_by_thread_key, "site", visitor)

        return await wait_for(find, what=f"conversation of {visitor}")  # type: ignore[no-any-return]

    async def messages(self, conv_id: int) -> list[dict[str, Any]]:
        return await self.daemon.store.read(convs.message_rows, conv_id)

    async def reply(self, conv_id: int, text: str, kind: str = "reply") -> dict[str, Any]:
        r = await self.http.post(
            f"/api/v1/conversations/{conv_id}/messages",
            json={"text": text, "kind": kind},
            headers=self.auth,
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def delivery_state(self, conv_id: int, message_id: int) -> str | None:
        return next(
            m["delivery_state"] for m in await self.messages(conv_id) if m["id"] == message_id
        )

    async def wait_state(self, conv_id: int, message_id: int, state: str) -> None:
        async def check() -> bool:
            return await self.delivery_state(conv_id, message_id) == state

        await wait_for(check, what=f"message {message_id} {state}")


@pytest.fixture
async def agent(chat: Daemon, http: httpx.AsyncClient) -> Agent:
    return await Agent(chat, http).login()
