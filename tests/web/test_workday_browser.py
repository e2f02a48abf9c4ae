"""The agent's workday in Chromium at a phone's size (390x844) and a
desktop's (1440x900): the inbox, a conversation and the contact page fit
the screen with no horizontal scroll, the phone's stacked views lead from
the list to the conversation to the contact and back, the app is
installable (manifest, icons, service worker), and a conversation newly
assigned to the agent raises a notification. Screenshots of each go to the
run's folder (``ws-*``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path, wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

SIZES = {"phone": (390, 844), "desktop": (1440, 900)}


async def no_horizontal_scroll(page: Any) -> None:
    width = await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth, "
        " [...document.querySelectorAll('body *')].filter(e => {"
        "   const r = e.getBoundingClientRect(); return r.width && r.right > window.innerWidth + 1"
        "   && getComputedStyle(e).position !== 'fixed' && e.offsetParent !== null"
        "   && !e.closest('.audit, table.grid, header nav, select'); })"
        "  .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)]"
    )
    scroll, inner, wide = width
    assert scroll <= inner, f"page is {scroll} px wide in a {inner} px window: {wide}"


async def seed(env: Env) -> int:
    async with env.client() as c:
        await post_inbound(
            c,
            message(
                "ws-1",
                "My order 5521 arrived damaged, the box was crushed and the lamp inside is"
                " broken. Can you send a replacement before Friday?",
                address="walt@example.com",
                name="Walter Longname-Withaverylongsurnamethatdoesnotwrap",
                subject="Damaged lamp in order 5521",
            ),
        )
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
    return int(next(x["id"] for x in items if x["subject"] == "Damaged lamp in order 5521"))


@pytest.mark.parametrize("size", list(SIZES))
async def test_inbox_conversation_and_contact_fit_the_screen(
    env: Env, browser: Any, size: str
) -> None:
    cid = await seed(env)
    w, h = SIZES[size]
    context = await browser.new_context(viewport={"width": w, "height": h})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.wait_for_selector(f'.row[data-id="{cid}"]')
    await no_horizontal_scroll(page)
    await page.screenshot(path=screenshot_path(f"ws-{size}-1-inbox"))
    if size == "phone":
        # One view at a time: the list, and no conversation pane beside it.
        assert await page.is_visible("#list") and not await page.is_visible("#conv")
        await page.click("#show-filters")
        assert await page.is_visible("#filters")
        await page.screenshot(path=screenshot_path(f"ws-{size}-1b-filters"))
        await page.click("#show-filters")
    await page.click(f'.row[data-id="{cid}"]')
    await page.wait_for_selector(".conv-head h2")
    await wait_for(lambda: page.is_visible("#reply-text"))
    await no_horizontal_scroll(page)
    await page.screenshot(path=screenshot_path(f"ws-{size}-2-conversation"))
    if size == "phone":
        assert not await page.is_visible("#list")
        await page.click("#to-contact")
        await page.wait_for_selector("#contact")
        assert await page.is_visible("#contact") and not await page.is_visible("#conv")
        await no_horizontal_scroll(page)
        await page.screenshot(path=screenshot_path(f"ws-{size}-3-contact-panel"))
        await page.click("#back-to-conv")
        assert await page.is_visible("#reply-text")
        await page.click("#back-to-list")
        assert await page.is_visible(f'.row[data-id="{cid}"]')
        assert "/inbox/c/" not in page.url
    else:
        # Side by side on a desktop: list, conversation and contact at once.
        for pane in ("#list", "#conv", "#contact"):
            assert await page.is_visible(pane)
        assert not await page.is_visible("#back-to-list")
    contact_id = await page.get_attribute("#contact", "data-contact-id")
    await page.goto(f"{env.base}/contacts/{contact_id}")
    await page.wait_for_selector("#contact")
    await no_horizontal_scroll(page)
    await page.screenshot(path=screenshot_path(f"ws-{size}-4-contact-page"))
    assert not watch.errors, watch.errors
    await context.close()


async def test_installable_and_notifies_new_assignments(env: Env, browser: Any) -> None:
    async with env.client() as c:
        manifest = (await c.get("/static/manifest.webmanifest")).json()
        assert manifest["start_url"] == "/inbox" and manifest["display"] == "standalone"
        for icon in manifest["icons"]:
            r = await c.get(icon["src"])
            assert r.status_code == 200 and r.content, icon
            if icon["type"] == "image/png":
                assert r.content.startswith(b"\x89PNG")
                side = int.from_bytes(r.content[16:20], "big")
                assert f"{side}x{side}" == icon["sizes"]
        sw = await c.get("/sw.js")
        assert sw.status_code == 200 and "javascript" in sw.headers["content-type"]

    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await context.grant_permissions(["notifications"], origin=env.base)
    # Record what the page asks the system to show.
    await context.add_init_script(
        "window.__notes = []; const N = window.Notification;"
        "window.Notification = class extends N { constructor(t, o) { super(t, o);"
        " window.__notes.push({title: t, body: o && o.body}); } };"
        "Object.defineProperty(window.Notification, 'permission', {get: () => N.permission});"
    )
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "alice")
    href = await page.get_attribute('link[rel="manifest"]', "href")
    assert href == "/static/manifest.webmanifest"
    await wait_for(
        lambda: page.evaluate(
            "navigator.serviceWorker.getRegistration('/').then(r => !!(r && r.active))"
        )
    )
    async with env.client() as c:
        # A new inquiry in alice's team: round robin gives it to her or bob.
        for n in range(2):
            await post_inbound(
                c, message(f"ws-n{n}", "Do you deliver to Tromsø?", address=f"n{n}@example.com")
            )
        await settle(env.daemon)
    notes = await wait_for(lambda: page.evaluate("window.__notes.length && window.__notes"))
    assert notes[0]["title"].startswith("omnidesk") and "Conversation #" in notes[0]["body"]
    await page.screenshot(path=screenshot_path("ws-phone-5-notified"))
    assert not watch.errors, watch.errors
    await context.close()
