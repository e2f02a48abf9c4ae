"""The inbox in a real browser (Debian's Chromium driven by Playwright).

An admin logs in, watches a new message arrive without reloading, opens it,
sees the contact's history across two channels, replies and watches the
delivery state move from queued to sent, reassigns the conversation, and
merges two contacts. Screenshots of each step go to the folder printed at the
end of the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path, wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


async def conversation_of(env: Env, preview: str) -> dict[str, Any]:
    async with env.client() as c:
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
    return next(x for x in items if (x["last_preview"] or "").startswith(preview))


async def test_agent_workday_in_chromium(env: Env, browser: Any) -> None:
    async with env.client() as c:
        # Ann wrote weeks ago through the shop's channel, by e-mail address.
        await post_inbound(
            c,
            message("b-old", "Do you ship to Norway?", address="ann@example.com", name="Ann Lee"),
            channel="shop",
        )
        # The same person, also known by phone (a separate contact until merged).
        await post_inbound(
            c,
            {
                "external_id": "b-phone",
                "sender": {"kind": "phone", "address": "+1 555 010 9999", "name": "Ann L."},
                "text": "Hi it's Ann again, from my phone",
            },
            channel="shop",
        )
        await settle(env.daemon)

    context = await browser.new_context(viewport={"width": 1500, "height": 950})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.evaluate("window.__sameDocument = 1")
    await page.screenshot(path=screenshot_path("01-inbox"))

    # A new message arrives: it shows up in the open list without a reload.
    async with env.client() as c:
        r = await post_inbound(
            c,
            message(
                "b-new",
                "Where is my order 1042? It was due yesterday.",
                address="ann@example.com",
                name="Ann Lee",
                subject="Order 1042",
            ),
        )
        assert r.status_code == 202
    row = page.locator(".row", has_text="Where is my order 1042")
    await row.wait_for(timeout=10_000)
    assert await page.evaluate("window.__sameDocument") == 1
    await page.screenshot(path=screenshot_path("02-new-message-arrived-live"))

    # Open it: the thread, why it was routed, and Ann's history on both channels.
    await row.click()
    await page.wait_for_selector("#thread >> text=Where is my order 1042")
    conv = await conversation_of(env, "Where is my order 1042")
    history = page.locator("#history li")
    await wait_for(lambda: _count_at_least(history, 2))
    text = await page.locator("#history").inner_text()
    assert "shop" in text and "api" in text and "Norway" in text
    assert "Why:" in await page.locator("#why").inner_text()
    await page.screenshot(path=screenshot_path("03-conversation-and-contact-history"))

    # Reply: queued first (the channel holds its answer back), then sent, live.
    env.callback.hold = asyncio.Event()
    try:
        await page.fill("#reply-text", "Hi Ann, it left our warehouse this morning.")
        await page.click("#send")
        state = page.locator("article.out .delivery-state").last
        await page.wait_for_selector("article.out .delivery-state[data-state=queued]")
        await page.screenshot(path=screenshot_path("04-reply-queued"))
    finally:
        env.callback.hold.set()
        env.callback.hold = None
    await page.wait_for_selector("article.out .delivery-state[data-state=sent]", timeout=10_000)
    assert await state.get_attribute("data-state") == "sent"
    assert env.callback.received[-1]["text"].startswith("Hi Ann, it left")
    await page.screenshot(path=screenshot_path("05-reply-sent"))

    # Snooze until tomorrow morning, then open it again.
    await page.select_option("#conv-status", "snoozed")
    await page.click("#snooze-box >> text=tomorrow 9:00")
    await page.wait_for_selector(".conv-head .snoozed-until")
    assert await page.locator("#snooze-box").is_hidden()
    async with env.client() as c:
        snoozed = (
            await c.get(f"/api/v1/conversations/{conv['id']}", headers=env.tokens["root"])
        ).json()
    assert snoozed["status"] == "snoozed", snoozed["status"]
    assert snoozed["snoozed_until"] > time.time() + 3600, snoozed["snoozed_until"] - time.time()
    await page.screenshot(path=screenshot_path("05b-snoozed-until-tomorrow"))
    await page.select_option("#conv-status", "open")
    await page.wait_for_selector(".conv-head .snoozed-until", state="detached")

    # Reassign to Bob.
    await page.select_option("#conv-assignee", "bob")

    async def reassigned() -> bool:
        async with env.client() as c:
            got = await c.get(f"/api/v1/conversations/{conv['id']}", headers=env.tokens["root"])
            return bool(got.json()["assignee"] == "bob")

    await wait_for(reassigned)
    await page.wait_for_selector("#audit >> text=assigned", state="attached")
    await page.screenshot(path=screenshot_path("06-reassigned-to-bob"))

    # Merge the phone contact into Ann's.
    watch.accept_dialogs = True
    await page.click("text=Open contact, merge")
    await page.wait_for_selector("#merge-search")
    await page.fill("#merge-search", "555 010")
    merge_button = page.locator("#merge-results button.merge")
    await merge_button.wait_for()
    await page.screenshot(path=screenshot_path("07-merge-candidate"))
    await merge_button.click()
    await page.wait_for_selector("#merges")
    identities = await page.locator("#identities").inner_text()
    assert "+15550109999" in identities and "ann@example.com" in identities
    await page.screenshot(path=screenshot_path("08-contacts-merged"))
    assert watch.errors == [] and watch.console == []
    await context.close()


async def _count_at_least(locator: Any, n: int) -> bool:
    return bool(await locator.count() >= n)


async def test_collision_presence_and_admin_pages_in_chromium(env: Env, browser: Any) -> None:
    """Alice (an agent) works a support conversation while Bob types in it and
    the customer writes again: she sees Bob live, and her stale reply asks for
    confirmation. Then the admin pages, as an admin."""
    async with env.client() as c:
        await post_inbound(
            c,
            message(
                "b-coll-1",
                "Can I pick up my order at the store?",
                address="kim@example.com",
                name="Kim",
                thread_key="kim-chat",
            ),
        )
        await settle(env.daemon)
    conv = await conversation_of(env, "Can I pick up my order")
    assert conv["team"] == "support"
    context = await browser.new_context(viewport={"width": 1500, "height": 950})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "alice")
    await page.goto(f"{env.base}/inbox/c/{conv['id']}?scope=teams&status=open")
    await page.wait_for_selector("#thread >> text=pick up my order")
    # Alice only sees her team's conversations.
    teams = await page.locator(".row .badge").all_inner_texts()
    assert not any(t.startswith("complaints") for t in teams)

    async with env.client() as c:
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/presence",
            json={"state": "typing"},
            headers=env.tokens["bob"],
        )
        assert r.status_code == 200
    await page.wait_for_selector("#presence >> text=Bob is typing")
    await page.fill("#reply-text", "Yes, any day after 10.")
    async with env.client() as c:
        await post_inbound(
            c,
            message(
                "b-coll-2",
                "Actually, can my brother pick it up?",
                address="kim@example.com",
                name="Kim",
                thread_key="kim-chat",
            ),
        )
        await settle(env.daemon)
    await page.screenshot(path=screenshot_path("09-presence-bob-typing"))
    await page.click("#send")
    await page.wait_for_selector("#conflict >> text=my brother")
    await page.screenshot(path=screenshot_path("10-stale-reply-needs-confirmation"))
    await page.click("#send-anyway")
    await page.wait_for_selector("article.out >> text=any day after 10")
    assert await page.locator("#conflict").is_hidden()
    # Full-text search over what Alice may see, hits marked in their snippets.
    await page.fill("#message-search", "brother")
    await page.press("#message-search", "Enter")
    await page.wait_for_selector(".row .snippet mark >> text=brother")
    await page.screenshot(path=screenshot_path("10b-message-search"))
    # An agent's settings: only their own API tokens.
    await page.click("text=Settings")
    await page.wait_for_selector("[data-tab=tokens].on")
    assert await page.locator(".tabs button").count() == 1
    await page.fill("#token-name", "my script")
    await page.click("text=Create")
    await page.wait_for_selector("#token-shown code")
    assert (await page.locator("#token-shown code").inner_text()).startswith("odk_")
    await context.close()

    # A failing channel shows as a banner on every page.
    shop = env.daemon.adapters["shop"]
    shop.set_health(False, "failing", "callback refused the login")
    context = await browser.new_context(viewport={"width": 1500, "height": 950})
    page = await context.new_page()
    admin_watch = Watch(page)
    try:
        await log_in(page, env, "root")
        await page.wait_for_selector(
            "#banner >> text=channel shop: inbound (connection or poll) failing"
        )
        await page.screenshot(path=screenshot_path("11-banner-channel-failing"))
    finally:
        shop.set_health(True, "running", "accepting signed messages")
    for tab, selector in (
        ("users", "#users"),
        ("teams", "#teams"),
        ("rules", "#rules-text"),
        ("channels", "#channels"),
        ("audit", "#audit-all"),
    ):
        await page.goto(f"{env.base}/admin/{tab}")
        await page.wait_for_selector(selector)
        await page.screenshot(path=screenshot_path(f"11-admin-{tab}"))
    # An invalid rules edit is refused with its problems shown.
    await page.goto(f"{env.base}/admin/rules")
    # (wait_for_function would need 'unsafe-eval', which the page's CSP refuses)
    await wait_for(lambda: page.locator("#rules-text").input_value())
    await page.fill("#rules-text", "this is [not toml")
    await page.click("#rules-save")
    await page.wait_for_selector("#rules-problems")
    await page.screenshot(path=screenshot_path("12-admin-rules-refused"))
    assert watch.errors == admin_watch.errors == []
    # The refused reply (409) and rules (422) were expected answers, which the
    # browser logs as failed loads; nothing else may be in the console.
    assert [m for m in watch.console if "status of 409" not in m] == []
    assert [m for m in admin_watch.console if "status of 422" not in m] == []
    await context.close()
