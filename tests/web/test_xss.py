"""Nothing a customer sends can run script in an agent's browser.

Classic script and event-handler payloads go in every field a customer
controls - text, HTML body, display name, subject, attachment file name - on
both the normal path (HTML sanitized at intake) and a path where raw HTML
reached the database unsanitized (a careless drop-in channel). Chromium then
renders the inbox list, each conversation, each HTML body in its frame, and
the contact pages: no dialog opens, no marker variable is set, no injected
element exists, no script error or CSP complaint about script appears, and
no remote tracking pixel is fetched.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from omnidesk.store.base import Db
from tests.conftest import post_inbound, settle
from tests.web.conftest import Env, Watch, log_in

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

PIXEL = "http://127.0.0.1:9/pixel.gif"  # nothing listens there; the request itself is the leak

PAYLOADS = [
    "<script>window.__xss=1;alert(1)</script>",
    '<img src=x onerror="window.__xss=2;alert(2)">',
    '<svg onload="window.__xss=3;alert(3)">',
    '"><script>window.__xss=4;alert(4)</script>',
    "'-alert(5)-'",
    '<iframe src="javascript:window.top.__xss=6;alert(6)"></iframe>',
    '<a href="javascript:window.__xss=7;alert(7)" id="xss-link">click me</a>',
    '<body onload="window.__xss=8;alert(8)">',
    '<details open ontoggle="window.__xss=9;alert(9)">x</details>',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=10;alert(10)">',
    '<object data="javascript:window.__xss=11;alert(11)"></object>',
    '<form action="javascript:alert(12)"><button id="xss-btn">go</button></form>',
    '<input autofocus onfocus="window.__xss=13;alert(13)">',
    "<style>*{background:url('javascript:alert(14)')}</style>",
    f'<img src="{PIXEL}" width="1" height="1">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(15)">',
    "{{constructor.constructor('alert(16)')()}}",
    "<base href='javascript:alert(17)//'>",
    '<a href="&#106;avascript:alert(18)">entity</a>',
]
HOSTILE = "\n".join(PAYLOADS)
# Markup a payload could only have put there (the channel badges' own icons,
# drawn by channels.js, are the one svg the UI makes).
INJECTED = (
    "script:not([src]):not([type='application/json']), [onerror], [onload], [ontoggle],"
    " [onfocus], svg:not(.badge.channel > svg.channel-icon), object, embed,"
    " a[href^='javascript'], iframe:not([sandbox]),"
    " #xss-link, #xss-btn, meta[http-equiv]"
)


async def seed(env: Env) -> list[int]:
    async with env.client() as c:
        for i, payload in enumerate(PAYLOADS):
            r = await post_inbound(
                c,
                {
                    "external_id": f"xss-{i}",
                    "sender": {
                        "kind": "email",
                        "address": f"x{i}@example.com",
                        "name": payload[:120],
                    },
                    "subject": payload[:200],
                    "text": f"{HOSTILE}\nThis is unacceptable, terrible, the worst.",
                    "html": HOSTILE,
                    "attachments": [
                        {
                            "filename": payload[:100] + ".html",
                            "content_type": "text/html",
                            "data": base64.b64encode(HOSTILE.encode()).decode(),
                        }
                    ],
                },
            )
            assert r.status_code == 202, r.text
        await settle(env.daemon)

    def raw_html(db: Db) -> list[int]:
        # A channel that forgot to sanitize: the display path must still hold.
        db.run("UPDATE messages SET html = ? WHERE external_id LIKE 'xss-%'", (HOSTILE,))
        return [
            int(r["conversation_id"])
            for r in db.all("SELECT conversation_id FROM messages WHERE external_id LIKE 'xss-%'")
        ]

    return sorted(set(await env.daemon.store.write(raw_html)))


async def assert_inert(page: Any, watch: Watch, where: str) -> None:
    assert watch.dialogs == [], (where, watch.dialogs)
    assert watch.errors == [], (where, watch.errors)
    for frame in page.frames:
        marker = await frame.evaluate("() => window.__xss === undefined ? null : window.__xss")
        assert marker is None, (where, frame.url, marker)
    injected = await page.evaluate(
        "sel => Array.from(document.querySelectorAll(sel)).map(e => e.outerHTML.slice(0, 80))",
        INJECTED,
    )
    assert injected == [], (where, injected)
    scripty = [m for m in watch.console if "script" in m.lower() or "uncaught" in m.lower()]
    assert scripty == [], (where, scripty)
    assert not any(u.startswith(PIXEL) for u in watch.requests), where


async def test_hostile_messages_render_inert(env: Env, browser: Any) -> None:
    conv_ids = await seed(env)
    context = await browser.new_context(viewport={"width": 1500, "height": 950})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.goto(env.base + "/inbox?scope=all&status=&sort=newest")
    await page.wait_for_selector(".row")
    # The names and subjects show as the literal text the customer typed.
    assert await page.locator(".row .who", has_text="<script>window.__xss=1").count() == 1
    await assert_inert(page, watch, "inbox list")
    for cid in conv_ids[:6]:
        await page.goto(f"{env.base}/inbox/c/{cid}?scope=all&status=")
        await page.wait_for_selector("#thread article")
        await page.click("text=show formatted")
        frame_el = await page.wait_for_selector("article iframe")
        assert await frame_el.get_attribute("sandbox") == ""
        frame = await frame_el.content_frame()
        await frame.wait_for_load_state()
        body = await frame.evaluate("() => document.body.innerHTML")
        assert "onerror" not in body and "<script" not in body and "javascript:" not in body
        await page.hover(".msg .body")
        await page.keyboard.press("Tab")
        await assert_inert(page, watch, f"conversation {cid}")
    # The attachment with an .html name and text/html type downloads, never renders here.
    link = page.locator("a.att").first
    href = await link.get_attribute("href")
    async with env.client() as c:
        r = await c.get(href, headers=env.tokens["root"])
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
    await page.goto(f"{env.base}/contacts")
    await page.fill("#contact-search", "example.com")
    await page.wait_for_selector("#contact-results li")
    await page.locator("#contact-results li").first.click()
    await page.wait_for_selector("#contact")
    await assert_inert(page, watch, "contacts")
    await page.goto(f"{env.base}/admin/audit")
    await page.wait_for_selector("#audit-all")
    await assert_inert(page, watch, "audit")
    await context.close()


async def test_pages_carry_a_strict_content_security_policy(env: Env) -> None:
    async with env.client() as c:
        r = await c.get("/login")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        assert "img-src 'self' data:" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        conv = (await c.get("/api/v1/conversations?limit=1", headers=env.tokens["root"])).json()[
            "items"
        ]
        full = await c.get(f"/api/v1/conversations/{conv[0]['id']}", headers=env.tokens["root"])
        mid = full.json()["messages"][0]["id"]
        frame = await c.get(f"/api/v1/messages/{mid}/html", headers=env.tokens["root"])
        fcsp = frame.headers["content-security-policy"]
        assert "sandbox" in fcsp and "script-src" not in fcsp and "default-src 'none'" in fcsp
        assert "img-src data:;" in fcsp  # no remote images unless asked
        remote = await c.get(
            f"/api/v1/messages/{mid}/html?remote_images=true", headers=env.tokens["root"]
        )
        assert "https:" in remote.headers["content-security-policy"]
