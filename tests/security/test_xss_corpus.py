"""A corpus of script-injection payloads (``xss_payloads.txt``) in every
field a customer or a staff member can fill, rendered in Chromium: nothing
runs.

Customers write the sender name, subject, text, HTML body and attachment
names (one customer per payload, and the whole corpus in every text and
HTML body). Staff write notes, tags, canned replies, saved views, contact
attributes, display names, token names and the reasons the audit trail
keeps. Chromium then draws the inbox list, every conversation (and each
HTML body in its sandboxed frame), the contact pages and every admin tab;
``assert_inert`` (tests/web/test_xss.py) checks each: no dialog, no marker
set by a payload, no injected element, no script error, no remote pixel.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path
from tests.web.test_xss import assert_inert

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

PAYLOADS = [
    line.replace("{n}", str(i))
    for i, line in enumerate(
        (
            x
            for x in (Path(__file__).parent / "xss_payloads.txt").read_text().splitlines()
            if x and not x.startswith("#")
        ),
        start=100,
    )
]
CORPUS = "\n".join(PAYLOADS)
ADMIN_TABS = ("users", "teams", "canned", "alltokens", "tokens", "audit", "quarantine")


async def seed(env: Env) -> dict[str, Any]:
    root = env.tokens["root"]
    accepted: dict[str, int] = {}

    async def staff(c: httpx.AsyncClient, what: str, method: str, path: str, body: Any) -> None:
        r = await c.request(method, path, json=body, headers=root)
        assert r.status_code < 500, (what, r.status_code, r.text[:200])
        accepted[what] = accepted.get(what, 0) + r.is_success

    async with env.client() as c:
        for i, payload in enumerate(PAYLOADS):
            r = await post_inbound(
                c,
                {
                    "external_id": f"corpus-{i}",
                    "sender": {
                        "kind": "email",
                        "address": f"corpus{i}@example.com",
                        "name": payload[:120],
                    },
                    "subject": payload[:200],
                    "text": f"{CORPUS}\nplease help",
                    "html": CORPUS,
                    "attachments": [
                        {
                            "filename": payload[:100],
                            "content_type": "text/html",
                            "data": base64.b64encode(payload.encode()).decode(),
                        }
                    ],
                },
            )
            assert r.status_code == 202, r.text
        await settle(env.daemon)
        convs = (await c.get("/api/v1/conversations?limit=500", headers=root)).json()["items"]
        ours = [x for x in convs if str(x.get("contact_name") or "") in {p[:120] for p in PAYLOADS}]
        assert len(ours) >= len(PAYLOADS) * 0.9
        first = ours[0]
        for i, payload in enumerate(PAYLOADS):
            cid = ours[i % len(ours)]["id"]
            await staff(c, "tag", "POST", f"/api/v1/conversations/{cid}/tags", {"add": [payload]})
            await staff(
                c,
                "canned",
                "POST",
                "/api/v1/canned",
                {"shortcut": f"xss{i}", "title": payload[:200], "body": payload},
            )
            await staff(c, "view", "POST", "/api/v1/views", {"name": payload[:80]})
            await staff(
                c,
                "user",
                "POST",
                "/api/v1/users",
                {"username": f"xss{i}", "display_name": payload[:200]},
            )
            await staff(c, "token", "POST", "/api/v1/me/tokens", {"name": payload[:100]})
            await staff(
                c,
                "attribute",
                "PATCH",
                f"/api/v1/contacts/{first['contact_id']}",
                {"attributes": {f"a{i}": payload}},
            )
        await staff(
            c,
            "note",
            "POST",
            f"/api/v1/conversations/{first['id']}/messages",
            {"text": CORPUS, "kind": "note"},
        )
        await staff(
            c,
            "reason",
            "POST",
            f"/api/v1/conversations/{first['id']}/status",
            {"status": "pending", "reason": CORPUS[:1000]},
        )
    for what in ("tag", "canned", "view", "user", "token", "attribute", "note", "reason"):
        assert accepted.get(what, 0) > 0, f"no {what} took a payload: {accepted}"
    return {"conversations": [x["id"] for x in ours], "contact": first["contact_id"]}


async def test_the_corpus_renders_inert_everywhere(env: Env, browser: Any) -> None:
    seeded = await seed(env)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    try:
        await log_in(page, env, "root")
        await page.goto(env.base + "/inbox?scope=all&status=&sort=newest")
        await page.wait_for_selector(".row")
        await assert_inert(page, watch, "inbox list")
        await page.screenshot(path=screenshot_path("security-xss-corpus-inbox"))
        for cid in seeded["conversations"]:
            # Opened as a click in the list would (no page load per conversation).
            await page.evaluate("id => openConversation(id, true)", cid)
            await page.locator(".conv-head h2 .muted", has_text=f"#{cid}").wait_for()
            await page.wait_for_selector("#thread article")
            await assert_inert(page, watch, f"conversation {cid}")
        # The HTML bodies, each in its sandboxed frame.
        await page.goto(f"{env.base}/inbox/c/{seeded['conversations'][0]}?scope=all&status=")
        await page.wait_for_selector("#thread article")
        for button in await page.locator("text=show formatted").all():
            await button.click()
        for frame_el in await page.locator("article iframe").element_handles():
            assert await frame_el.get_attribute("sandbox") == ""
            frame = await frame_el.content_frame()
            await frame.wait_for_load_state()
        await page.select_option(".composer select[name='canned']", index=1)
        await assert_inert(page, watch, "formatted bodies and canned replies")
        await page.screenshot(path=screenshot_path("security-xss-corpus-conversation"))
        await page.goto(f"{env.base}/contacts/{seeded['contact']}")
        await page.wait_for_selector("#contact")
        await assert_inert(page, watch, "contact page")
        for tab in ADMIN_TABS:
            await page.goto(f"{env.base}/admin/{tab}")
            await page.wait_for_selector("#admin-body .card")
            await assert_inert(page, watch, f"admin {tab}")
        await page.screenshot(path=screenshot_path("security-xss-corpus-admin-tokens"))
    finally:
        await context.close()
