"""Fixtures for the agent inbox: one daemon per test module (on each store
engine) with accounts in several roles and teams, a stand-in for the API
channel's reply callback, logged-in HTTP clients, and the screenshot folder
that the browser tests fill (its path is printed at the end of the run)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from omnidesk.accounts import hash_password
from omnidesk.app import Daemon
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user
from tests.conftest import API_SECRET, PG_URL, REPO, engines, make_config, require_service

SCREENSHOTS = Path(os.environ.get("OMNIDESK_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
CHROMIUM = os.environ.get("OMNIDESK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# name -> (role, teams, password)
USERS: dict[str, tuple[str, list[str], str]] = {
    "root": ("admin", [], "root-password-123"),
    "sue": ("supervisor", [], "sue-password-123"),
    "alice": ("agent", ["support"], "alice-password-123"),
    "bob": ("agent", ["support"], "bob-password-1234"),
    "carol": ("agent", ["complaints"], "carol-password-123"),
}

_shots: set[Path] = set()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _shots:
        terminalreporter.write_sep("-", "inbox screenshots")
        terminalreporter.write_line(f"{len(_shots)} screenshots in {SCREENSHOTS}")


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    _shots.add(path)
    return path


@dataclass
class CallbackServer:
    """Receives the API channel's signed reply POSTs. ``hold`` keeps answers
    back until released (to watch 'queued' turn into 'sent'); ``status`` is
    what it answers."""

    status: int = 200
    hold: asyncio.Event | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/replies", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/replies"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.received.append(body)
        if self.hold is not None:
            await self.hold.wait()
        if self.status >= 400:
            return web.json_response({"error": "recipient unknown"}, status=self.status)
        return web.json_response({"id": f"cb-{len(self.received)}"})


@dataclass
class Env:
    daemon: Daemon
    base: str
    callback: CallbackServer
    tokens: dict[str, dict[str, str]]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10)


@pytest.fixture(scope="module", params=engines())
def module_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('inbox') / 'omnidesk.db'}"
        return
    from tests.postgres.pgtools import pg_available, temp_schema

    require_service(
        pg_available(PG_URL),
        f"PostgreSQL at {PG_URL}",
        "start it or set OMNIDESK_TEST_PG=postgresql://user@host:port/db",
    )
    with ExitStack() as stack:
        yield stack.enter_context(temp_schema(PG_URL))


async def add_users(daemon: Daemon) -> dict[str, dict[str, str]]:
    tokens = {}
    for name, (role, teams, password) in USERS.items():
        await daemon.store.write(
            create_user,
            name,
            role=role,
            password_hash=hash_password(password),
            display_name=name.capitalize(),
            teams=teams,
        )
        token = await daemon.store.write(create_token, role, name="tests", username=name)
        tokens[name] = {"Authorization": f"Bearer {token}"}
    return tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    module_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    callback = CallbackServer()
    await callback.start()
    tmp = tmp_path_factory.mktemp("inbox-daemon")
    cfg = make_config(
        tmp,
        module_store_url,
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET, "callback_url": callback.url},
            {"name": "shop", "type": "api", "secret": API_SECRET, "callback_url": callback.url},
        ],
        outbox={"max_attempts": 1},
        web={"login_lockout_after": 3},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    tokens = await add_users(daemon)
    try:
        yield Env(daemon, f"http://127.0.0.1:{daemon.web_port}", callback, tokens)
    finally:
        await daemon.stop()
        await callback.stop()


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Log ``client`` in with a password; returns the CSRF header for its session."""
    r = await client.post(
        "/api/v1/session", json={"username": username, "password": USERS[username][2]}
    )
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    require_service(
        Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK),
        f"Chromium at {CHROMIUM}",
        "apt-get install chromium (or set OMNIDESK_CHROMIUM)",
    )
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Watch:
    """What a page did that a test must know: dialogs, script errors, console errors."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        self.requests: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("request", lambda r: self.requests.append(r.url))
        self.accept_dialogs = False

    async def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        await (d.accept() if self.accept_dialogs else d.dismiss())


async def log_in(page: Any, env: Env, username: str) -> None:
    await page.goto(env.base + "/inbox")
    assert "/login" in page.url  # not logged in yet: sent to the login form
    await page.fill("#username", username)
    await page.fill("#password", USERS[username][2])
    await page.click("#login-submit")
    await page.wait_for_url("**/inbox*")
    await page.wait_for_selector("#live-status.on")
