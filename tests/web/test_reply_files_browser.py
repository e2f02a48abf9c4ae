"""The inbox's reply box in Chromium: files attached as removable chips
with their size, sent with the reply, shown in the thread; a file over the
limit is refused and the refusal shown beside the reply box."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path, wait_for
from tests.web.test_inbox_api import PNG

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


async def test_agent_attaches_files_in_the_reply_box(env: Env, browser: Any) -> None:
    async with env.client() as c:
        await post_inbound(
            c,
            message("rb-1", "Could you send me a photo of the label?", address="lab@example.com"),
        )
        await settle(env.daemon)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.locator(".row", has_text="photo of the label").click()
    await page.wait_for_selector("#thread >> text=photo of the label")

    await page.set_input_files(
        "#reply-file",
        [
            {"name": "label.png", "mimeType": "image/png", "buffer": PNG},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"x" * 3000},
            {"name": "wrong.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4"},
        ],
    )
    chips = page.locator("#reply-files .chip")
    assert await chips.count() == 3
    assert "3 KB" in await chips.nth(1).inner_text()
    await page.click("#reply-files .chip[data-name='wrong.pdf'] .remove")
    assert await chips.count() == 2
    await page.fill("#reply-text", "Here is the label, and my notes.")
    await page.screenshot(path=screenshot_path("reply-files-chosen"))

    before = len(env.callback.received)
    await page.click("#send")
    sent = page.locator("article.out .atts a", has_text="label.png")
    await sent.wait_for(timeout=10_000)
    assert await page.locator("#reply-files .chip").count() == 0
    assert await page.locator("article.out .atts a", has_text="notes.txt").count() == 1

    async def delivered() -> Any:
        return len(env.callback.received) > before and env.callback.received[-1]

    got = await wait_for(delivered)
    assert [a["filename"] for a in got["attachments"]] == ["label.png", "notes.txt"]
    await page.screenshot(path=screenshot_path("reply-files-sent"))

    # Over the limit: refused, said beside the box, the files kept to fix.
    cfg = env.daemon.config
    saved = cfg.reply_attachment_max
    cfg.reply_attachment_max = 1024
    try:
        await page.set_input_files(
            "#reply-file", [{"name": "big.txt", "mimeType": "text/plain", "buffer": b"y" * 5000}]
        )
        await page.fill("#reply-text", "And the big one.")
        await page.click("#send")
        refusal = page.locator("#reply-error")
        try:
            await refusal.wait_for(state="visible")
        except Exception as exc:
            # Say what the page showed instead (a toast, a conflict, an error).
            shown = await page.evaluate(
                "() => [...document.querySelectorAll('.toast, #conflict, #reply-error')]"
                ".map(e => e.id + ':' + (e.hidden ? 'hidden:' : '') + e.textContent)"
            )
            raise AssertionError(f"no refusal shown; the page showed {shown}") from exc
        text = await refusal.inner_text()
        assert "big.txt" in text and "max_reply_attachment_kb" in text
        assert await page.locator("#reply-files .chip").count() == 1
        await page.screenshot(path=screenshot_path("reply-files-refused"))
    finally:
        cfg.reply_attachment_max = saved
    assert not watch.errors, watch.errors
    await context.close()
