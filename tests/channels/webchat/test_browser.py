"""The widget in a real Chromium, embedded on a page of another origin: the
visitor writes, an agent answers through the API, the answer appears in the
widget (as text, never as HTML), is confirmed read, and survives a reload."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from tests.channels.webchat.conftest import Agent, channels, wait_for
from tests.conftest import REPO, require_service

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("OMNIDESK_CHROMIUM", "/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example Shop</title>
<style>body {{ font-family: serif; background: #fafafa }} button {{ color: red }}</style>
</head><body>
<h1>Example Shop</h1><p>Jackets, shoes and more.</p>
<script src="{desk}/webchat/site/widget.js" async></script>
</body></html>"""


@pytest.fixture
async def shop() -> AsyncIterator[dict[str, Any]]:
    """The customer's website: another origin than the desk. The desk's
    address is filled in once the daemon runs."""
    state: dict[str, Any] = {"desk": ""}

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(desk=state["desk"]), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["origin"] = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_service(
        Path(CHROMIUM).exists(),
        f"Chromium at {CHROMIUM}",
        "apt-get install -y chromium, or set OMNIDESK_CHROMIUM",
    )
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        await b.close()


async def test_visitor_and_agent_talk_through_the_widget(
    shop: dict[str, Any],
    browser: Any,
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(channels=channels(allowed_origins=[shop["origin"]]))
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()

        await page.goto(shop["origin"] + "/")
        launcher = page.locator("#od-launcher")
        await launcher.wait_for()
        await launcher.click()
        panel = page.locator("#od-panel")
        await panel.wait_for(state="visible")
        assert await page.locator("#od-title").text_content() == "Shop help"
        assert "Hello! Ask us anything." in await page.locator("#od-log").inner_text()

        # The visitor leaves a name and address, then writes.
        await page.fill("#od-name", "Mia Visitor")
        await page.fill("#od-email", "mia@example.org")
        await page.click("#od-profile-save")
        await page.locator("#od-profile").wait_for(state="hidden")
        await page.fill("#od-input", "Do you have the blue jacket in size M?")
        await page.keyboard.press("Enter")
        mine = page.locator(".od-in", has_text="blue jacket in size M")
        await mine.wait_for()

        visitor = await page.evaluate(
            "() => { for (const k of Object.keys(localStorage))"
            " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
        )
        assert visitor, "the visitor token is kept in localStorage"
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor) or "")
        assert conv["channel"] == "site" and conv["team"]
        contact = await daemon.store.read(get_contact, conv["contact_id"])
        assert contact is not None and contact["name"] == "Mia Visitor"
        assert ("email", "mia@example.org") in {
            (i["kind"], i["address"]) for i in contact["identities"]
        }

        hostile = 'Yes! <img src=x onerror="window.__pwned=1"><b>Size M</b> is in stock.'
        reply = await agent.reply(conv["id"], hostile)
        answer = page.locator(".od-out", has_text="Size M")
        await answer.wait_for(timeout=10_000)
        assert (await answer.locator(".od-text").text_content()) == hostile
        assert await page.evaluate("() => window.__pwned") is None
        assert await page.locator("#od-log img").count() == 0
        await page.screenshot(path=str(SHOTS / "webchat-reply.png"))

        # The panel is open and the page visible: the reply is confirmed read.
        await agent.wait_state(conv["id"], reply["id"], "read")

        # A reload keeps the conversation (token in localStorage, history
        # from the desk) and the open panel.
        await page.reload()
        await page.locator(".od-out", has_text="Size M").wait_for()
        await page.locator(".od-in", has_text="blue jacket in size M").wait_for()
        assert await page.locator("#od-panel").is_visible()
        assert await page.locator(".od-out", has_text="Size M").count() == 1

        # Closed panel: a new reply shows as an unread badge.
        await page.click("#od-panel header button")
        second = await agent.reply(conv["id"], "We can also reserve it for you.")
        badge = page.locator("#od-badge")
        await badge.wait_for(state="visible")
        assert await badge.text_content() == "1"
        await agent.wait_state(conv["id"], second["id"], "delivered")
        await page.screenshot(path=str(SHOTS / "webchat-badge.png"))
        await launcher.click()
        await agent.wait_state(conv["id"], second["id"], "read")

        async def no_badge() -> bool:
            return not await badge.is_visible()

        await wait_for(no_badge, what="badge cleared")
    await context.close()
    assert errors == []
