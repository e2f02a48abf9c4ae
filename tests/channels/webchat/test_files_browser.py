"""In Chromium: an agent's files in the widget, the image shown inline and
the document as a download link, both from links signed for this visitor."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from tests.channels.webchat.conftest import Agent, channels
from tests.channels.webchat.test_browser import SHOTS, browser, shop  # noqa: F401
from tests.channels.webchat.test_files import PDF
from tests.channels.webchat.test_workday_browser import open_widget

pytestmark = pytest.mark.browser


def picture(width: int = 160, height: int = 90) -> bytes:
    """A small PNG with a colour gradient (a file the screenshot shows)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, 90, y * 255 // height)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_widget_shows_the_agents_files(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(channels=channels(allowed_origins=[shop["origin"]]))
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    page = await open_widget(browser, shop)
    await page.fill("#od-input", "What does the warranty cover?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="warranty").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor_token) or "")
        r = await http.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "text": "The terms, and where the serial number is.",
                "attachments": [
                    {
                        "filename": "serial.png",
                        "content_type": "image/png",
                        "data": base64.b64encode(picture()).decode(),
                    },
                    {
                        "filename": "warranty.pdf",
                        "content_type": "application/pdf",
                        "data": base64.b64encode(PDF).decode(),
                    },
                ],
            },
            headers=agent.auth,
        )
        assert r.status_code == 201, r.text
    answer = page.locator(".od-out", has_text="serial number")
    await answer.wait_for(timeout=10_000)
    img = answer.locator(".od-files img")
    await img.wait_for()
    loaded = await img.evaluate(
        "i => i.complete ? i.naturalWidth : new Promise(r => i.onload = () => r(i.naturalWidth))"
    )
    assert loaded == 160  # the picture came through the signed link
    link = answer.locator(".od-file", has_text="warranty.pdf")
    href = await link.get_attribute("href")
    assert href and href.startswith(shop["desk"] + "/webchat/site/files/")
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(href)).content == PDF
    await page.screenshot(path=str(SHOTS / "webchat-agent-files.png"))
    # A reload shows them again, from the history.
    await page.reload()
    await page.locator(".od-out .od-files img").wait_for(state="attached", timeout=10_000)
    assert await page.locator(".od-out .od-file", has_text="warranty.pdf").count() == 1
    assert not page.errors, page.errors
