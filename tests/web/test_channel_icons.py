"""Each channel's badge shows a small icon of its type beside its name
(issue 24 item 6): the page's boot data maps every configured channel to its
type, and in Chromium the list, the conversation header, each message and
the contact's history show the type's icon, labelled with the type's name; a
channel no longer configured gets the generic icon. Screenshots at 1440 and
390 pixels wide."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from omnidesk.app import Daemon
from tests.channels.meta.conftest import (
    IG_ID,
    PAGE_ID,
    PHONE_NUMBER_ID,
    fb_message,
    page_delivery,
    wa_text,
)
from tests.conftest import API_SECRET, make_config, message, post_inbound, settle
from tests.web.conftest import (
    USERS,
    CallbackServer,
    Env,
    Watch,
    add_users,
    log_in,
    screenshot_path,
    wait_for,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module")]

META = {
    "app_secret": "s3cret-app",
    "verify_token": "verify",
    "access_token": "token",
    "api_base_url": "http://127.0.0.1:9",  # never called: nothing is sent here
    "check_token": False,
}
# channel name -> (type, the icon's label)
CHANNELS = {
    "api": ("api", "HTTP API"),
    "support-wa": ("whatsapp", "WhatsApp"),
    "fb-page": ("messenger", "Messenger"),
    "insta": ("instagram", "Instagram"),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    module_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    callback = CallbackServer()
    await callback.start()
    cfg = make_config(
        tmp_path_factory.mktemp("icons-daemon"),
        module_store_url,
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET, "callback_url": callback.url},
            {"name": "support-wa", "type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, **META},
            {"name": "fb-page", "type": "messenger", "page_id": PAGE_ID, **META},
            {"name": "insta", "type": "instagram", **META},
        ],
    )
    daemon = Daemon(cfg)
    await daemon.start()
    tokens = await add_users(daemon)
    try:
        await customers_write(daemon, f"http://127.0.0.1:{daemon.web_port}")
        yield Env(daemon, f"http://127.0.0.1:{daemon.web_port}", callback, tokens)
    finally:
        await daemon.stop()
        await callback.stop()


async def customers_write(daemon: Daemon, base: str) -> None:
    """One conversation a channel, as each channel's webhook would store it,
    and one on a channel since removed from the configuration."""
    import httpx

    bodies = {
        "support-wa": wa_text("wamid.icons1", "4915112345678", "Parcel on WhatsApp?", "Wanda"),
        "fb-page": page_delivery(fb_message("m_icons1", "7001", "Parcel on Messenger?")),
        "insta": page_delivery(
            fb_message("m_icons2", "8001", "Parcel on Instagram?", page=IG_ID),
            page=IG_ID,
            obj="instagram",
        ),
    }
    for name, body in bodies.items():
        envelopes = daemon.adapters[name].envelopes(json.dumps(body).encode())  # type: ignore[attr-defined]
        await daemon.intake.accept_many(envelopes)
    async with httpx.AsyncClient(base_url=base) as c:
        await post_inbound(c, message("icons-api", "Parcel by API?", address="api@example.com"))
        await post_inbound(c, message("icons-old", "Parcel on a closed channel?"))
    await settle(daemon)

    def retire(db: Any) -> None:
        # A channel removed from the configuration since it brought this one.
        cid = db.val("SELECT conversation_id FROM messages WHERE external_id = ?", ("icons-old",))
        db.run("UPDATE conversations SET channel = 'retired-shop' WHERE id = ?", (cid,))
        db.run("UPDATE messages SET channel = 'retired-shop' WHERE conversation_id = ?", (cid,))

    await daemon.store.write(retire)


async def icons(page: Any, selector: str) -> list[tuple[str, str, str]]:
    """(the badge's channel name, the icon it shows, the icon's label) for every
    channel badge under ``selector``."""
    found: list[list[str]] = await page.eval_on_selector_all(
        selector + " .badge.channel",
        """els => els.map(b => {
            const svg = b.querySelector('svg.channel-icon');
            return [b.innerText.trim(), svg ? svg.dataset.icon : '',
                    svg ? svg.getAttribute('aria-label') : ''];
        })""",
    )
    return [(a, b, c) for a, b, c in found]


async def test_boot_data_names_each_channels_type(env: Env) -> None:
    async with env.client() as c:
        r = await c.post("/api/v1/session", json={"username": "root", "password": USERS["root"][2]})
        assert r.status_code == 200, r.text
        page = (await c.get("/inbox")).text
    boot = json.loads(page.split('id="boot">', 1)[1].split("</script>", 1)[0])
    assert boot["channels"] == {name: t for name, (t, _) in CHANNELS.items()}
    assert '<script src="/static/channels.js" defer></script>' in page
    async with env.client() as c:
        r = await c.get("/static/channels.js")
    assert r.status_code == 200 and "function channelIcon" in r.text


async def test_icons_per_type_in_list_conversation_and_history(env: Env, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.wait_for_selector("#list .row[data-id]")
    await wait_for(lambda: page.eval_on_selector_all("#list .row[data-id]", "r => r.length >= 5"))
    in_list = {name: (icon, label) for name, icon, label in await icons(page, "#list")}
    for name, (t, label) in CHANNELS.items():
        assert in_list[name] == (t, label), name
    assert in_list["retired-shop"] == ("other", "channel")
    await page.screenshot(path=str(screenshot_path("channel-icons-list-1440")), full_page=False)

    # The WhatsApp conversation: header, each message, the contact's history.
    row = page.locator("#list .row[data-id]", has_text="Parcel on WhatsApp?")
    await row.click()
    await page.wait_for_selector("#conv .conv-head .badge.channel svg")
    assert await icons(page, "#conv .conv-head") == [("support-wa", "whatsapp", "WhatsApp")]
    await page.wait_for_selector("#conv article[data-message-id] .badge.channel")
    assert set(await icons(page, "#conv article[data-message-id]")) == {
        ("support-wa", "whatsapp", "WhatsApp")
    }
    await page.wait_for_selector("#history .badge.channel")
    assert ("support-wa", "whatsapp", "WhatsApp") in await icons(page, "#history")
    # The icon's name is its tooltip too.
    title = await page.eval_on_selector(
        "#conv .conv-head .badge.channel svg title", "t => t.textContent"
    )
    assert title == "WhatsApp"
    await page.screenshot(path=str(screenshot_path("channel-icons-conversation-1440")))

    # Instagram and the retired channel in the conversation view.
    await page.locator("#list .row[data-id]", has_text="Parcel on Instagram?").click()
    await wait_for(
        lambda: page.eval_on_selector_all(
            "#conv .conv-head .badge.channel", "b => b.length && b[0].innerText.trim() === 'insta'"
        )
    )
    assert await icons(page, "#conv .conv-head") == [("insta", "instagram", "Instagram")]
    await page.locator("#list .row[data-id]", has_text="closed channel").click()
    await wait_for(
        lambda: page.eval_on_selector_all(
            "#conv .conv-head .badge.channel",
            "b => b.length && b[0].innerText.trim() === 'retired-shop'",
        )
    )
    assert await icons(page, "#conv .conv-head") == [("retired-shop", "other", "channel")]
    # Every type has its own mark; a drop-in type gets the generic one, named.
    marks = await page.evaluate(
        """() => ['smtp', 'imap', 'telegram', 'slack', 'messenger', 'instagram', 'whatsapp',
                  'webchat', 'api', 'wechat', 'wechat_kf', 'x', 'sms', 'qq', 'webform']
                 .map(t => channelIcon(t))
                 .map((svg, n) => [n, svg.dataset.icon, svg.getAttribute('aria-label')])"""
    )
    types = ["smtp", "imap", "telegram", "slack", "messenger", "instagram", "whatsapp"]
    types += ["webchat", "api", "wechat", "wechat_kf", "x", "sms", "qq", "webform"]
    assert {types[n]: (i, lbl) for n, i, lbl in marks} == {
        "smtp": ("email", "Email"),
        "imap": ("email", "Email"),
        "telegram": ("telegram", "Telegram"),
        "slack": ("slack", "Slack"),
        "messenger": ("messenger", "Messenger"),
        "instagram": ("instagram", "Instagram"),
        "whatsapp": ("whatsapp", "WhatsApp"),
        "webchat": ("webchat", "Website chat"),
        "api": ("api", "HTTP API"),
        "wechat": ("wechat", "WeChat Official Account"),
        "wechat_kf": ("wechat_kf", "WeChat customer service"),
        "x": ("x", "X"),
        "sms": ("sms", "SMS"),
        "qq": ("qq", "QQ"),
        "webform": ("other", "webform channel"),
    }
    # The contact's page: its timeline of messages on every channel.
    async with env.client() as c:
        convs = (await c.get("/api/v1/conversations", headers=env.tokens["root"])).json()["items"]
    contact = next(x["contact_id"] for x in convs if x["channel"] == "fb-page")
    await page.goto(f"{env.base}/contacts/{contact}")
    await page.wait_for_selector("li.tl-message .badge.channel svg")
    assert await icons(page, "li.tl-message") == [("fb-page", "messenger", "Messenger")]
    assert watch.errors == [] and watch.console == []
    await context.close()


async def test_icons_fit_a_phone_screen(env: Env, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.wait_for_selector("#list .row[data-id] .badge.channel svg")
    # The icon sits inside its badge, on one line with the name, not over it.
    boxes = await page.eval_on_selector_all(
        "#list .row[data-id] .badge.channel",
        """bs => bs.map(b => {
            const r = b.getBoundingClientRect(), i = b.querySelector('svg').getBoundingClientRect();
            return [i.width, i.height, i.left >= r.left, i.right <= r.right,
                    i.top >= r.top - 1, i.bottom <= r.bottom + 1, r.right <= window.innerWidth];
        })""",
    )
    assert boxes and all(b == [12, 12, True, True, True, True, True] for b in boxes), boxes
    await page.screenshot(path=str(screenshot_path("channel-icons-list-390")))
    await page.locator("#list .row[data-id]", has_text="Parcel on Messenger?").click()
    await page.wait_for_selector("#conv .conv-head .badge.channel svg")
    assert await icons(page, "#conv .conv-head") == [("fb-page", "messenger", "Messenger")]
    await page.screenshot(path=str(screenshot_path("channel-icons-conversation-390")))
    assert watch.errors == [] and watch.console == []
    await context.close()
