"""The inbox banner in Chromium: when replies on a channel keep failing past
the channel's [health] threshold, every page names the problem (an admin
also gets a link to the details), and the banner goes once replies leave
again. Screenshots: health-banner-problem, health-banner-agent,
health-banner-cleared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omnidesk.app import Daemon
from tests.conftest import (
    API_SECRET,
    agent_api,
    agent_reply,
    make_config,
    message,
    post_inbound,
    settle,
)
from tests.web.conftest import (
    CallbackServer,
    Env,
    Watch,
    add_users,
    log_in,
    screenshot_path,
    wait_for,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


async def test_banner_names_a_failing_channel_and_goes_when_it_works(
    browser: Any, tmp_path: Path
) -> None:
    callback = CallbackServer(status=503)  # the shop's reply endpoint is down
    await callback.start()
    cfg = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'omnidesk.db'}",
        channels=[
            {"name": "shop", "type": "api", "secret": API_SECRET, "callback_url": callback.url}
        ],
        health={"channel_failure_seconds": 0.3, "check_interval": 0.1},
        outbox={"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 1000},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    try:
        env = Env(daemon, f"http://127.0.0.1:{daemon.web_port}", callback, await add_users(daemon))
        async with env.client() as c:
            r = await post_inbound(c, message("banner-1", "Is my order on its way?"), "shop")
            assert r.status_code == 202
        await settle(daemon)
        [conv] = await daemon.store.read(lambda db: db.all("SELECT id FROM conversations"))

        context = await browser.new_context(viewport={"width": 1400, "height": 800})
        page = await context.new_page()
        watch = Watch(page)
        await log_in(page, env, "root")
        banner = page.locator("#banner")
        assert await banner.is_hidden()

        api = await agent_api(daemon)
        async with api, env.client() as c:
            await agent_reply(api, conv[0], "Yes, it ships today.")

            async def unready() -> bool:
                return (await c.get("/readyz")).status_code == 503

            await wait_for(unready)
            # app.js looks every 20 s; look now rather than wait.
            await page.evaluate("checkHealth()")
            await page.wait_for_selector(
                "#banner.bad >> text=channel shop: outbound delivery failing"
            )
            text = await banner.inner_text()
            assert text.startswith("Not working:")
            assert "callback answered 503" in text
            assert await banner.locator("a[href='/admin/channels']").count() == 1
            await page.screenshot(path=screenshot_path("health-banner-problem"))

            # An agent sees it too (their replies are what fails), without the link.
            agent_page = await context.browser.new_context(viewport={"width": 1400, "height": 800})
            alice = await agent_page.new_page()
            await log_in(alice, env, "alice")
            await alice.wait_for_selector("#banner.bad >> text=channel shop")
            assert await alice.locator("#banner a").count() == 0
            assert not (await alice.locator("#banner").inner_text()).endswith("null")
            await alice.screenshot(path=screenshot_path("health-banner-agent"))
            await agent_page.close()

            callback.status = 200  # the shop's endpoint is back

            async def ready() -> bool:
                return (await c.get("/readyz")).status_code == 200

            await wait_for(ready)
        await page.evaluate("checkHealth()")
        await page.wait_for_selector("#banner", state="hidden")
        assert await page.get_attribute("#banner", "data-ready") == "yes"
        await page.screenshot(path=screenshot_path("health-banner-cleared"))
        # Chromium logs each 503 of /readyz as a failed resource; nothing else.
        assert watch.errors == []
        assert [m for m in watch.console if "503" not in m] == []
        await context.close()
    finally:
        await daemon.stop()
        await callback.stop()
