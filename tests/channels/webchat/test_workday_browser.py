"""The web chat on an agent's working day (issue 25 item 5), in Chromium:
with no agent online the widget is an offline form whose message becomes a
conversation with the visitor's e-mail; an agent's reply shows their name
and an avatar of their initials."""

from __future__ import annotations

from typing import Any

import httpx

from omnidesk.accounts import hash_password
from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user
from tests.channels.webchat.conftest import Agent, channels
from tests.channels.webchat.test_browser import SHOTS, browser, shop  # noqa: F401

OPEN_WIDGET = "#od-launcher"


async def open_widget(browser: Any, shop: dict[str, Any]) -> Any:  # noqa: F811
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    await page.goto(shop["origin"] + "/")
    await page.locator(OPEN_WIDGET).click()
    await page.locator("#od-panel").wait_for(state="visible")
    return page


async def test_offline_form_when_no_agent_is_online(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=channels(allowed_origins=[shop["origin"]]),
            assignment={"only_online": True},
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await open_widget(browser, shop)
    # Nobody is signed in: the panel is an offline form.
    assert await page.locator("#od-panel.od-offline").count() == 1
    assert "offline" in (await page.locator("#od-profile").inner_text()).lower()
    # A message without an e-mail is not sent: the e-mail comes first.
    await page.fill("#od-input", "Is the green tent waterproof?")
    await page.keyboard.press("Enter")
    assert "e-mail" in await page.locator("#od-notice").inner_text()
    assert await page.locator(".od-in").count() == 0
    await page.fill("#od-name", "Ola Hiker")
    await page.fill("#od-email", "ola@example.org")
    await page.click("#od-send")
    await page.locator(".od-in", has_text="green tent").wait_for()
    await page.locator("#od-notice", has_text="by e-mail to ola@example.org").wait_for()
    await page.screenshot(path=str(SHOTS / "webchat-offline-form.png"))
    token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(token) or "")
        contact = await daemon.store.read(get_contact, conv["contact_id"])
        assert ("email", "ola@example.org") in {
            (i["kind"], i["address"]) for i in contact["identities"]
        }
        first = (await agent.messages(conv["id"]))[0]
        assert first["meta"]["webchat"]["offline_form"] is True
    assert not page.errors, page.errors


async def test_replies_show_the_agent_name_and_avatar(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(channels=channels(allowed_origins=[shop["origin"]]))
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    await daemon.store.write(
        create_user,
        "nora",
        role="agent",
        password_hash=hash_password("nora-password-123"),
        display_name="Nora Lind",
        teams=["support"],
    )
    token = await daemon.store.write(create_token, "agent", username="nora")
    page = await open_widget(browser, shop)
    # Agents count as online here (only_online is off in the tests' config).
    assert await page.locator("#od-panel.od-offline").count() == 0
    await page.fill("#od-input", "Hello, do you ship to Iceland?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="Iceland").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = Agent(daemon, http)
        agent.auth = {"Authorization": f"Bearer {token}"}
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor_token) or "")
        await agent.reply(conv["id"], "Yes, we ship to Iceland.")
    answer = page.locator(".od-out", has_text="ship to Iceland")
    await answer.wait_for(timeout=10_000)
    assert await answer.locator(".od-agent-name").inner_text() == "Nora Lind"
    assert await answer.locator(".od-avatar").inner_text() == "NL"
    await page.screenshot(path=str(SHOTS / "webchat-agent-name.png"))
    assert not page.errors, page.errors
