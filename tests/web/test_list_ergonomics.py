"""The inbox list for a working day (issue 25 items 3 and 4): the preview is
the customer's latest words (not our acknowledgement or answer), each agent
has their own new/unread markers, bulk changes are all-or-nothing and
audited, conversations without a subject are titled by their first words,
a nameless chat visitor has a readable alias, agents show by display name;
and in Chromium the keyboard shortcuts work but never fire while typing,
bulk selection changes several conversations at once, and a new
conversation announces itself without moving the rows being read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path, wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module")]


async def conv_by_text(env: Env, text: str, who: str = "root") -> dict[str, Any]:
    async with env.client() as c:
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens[who])).json()[
            "items"
        ]
    return next(x for x in items if (x["last_preview"] or "").startswith(text))


async def visitor_writes(env: Env, c: Any, ext: str, text: str) -> None:
    """A chat visitor known only by a random id writes (one thread)."""
    sender = {"kind": "webchat", "address": "9f" * 16}
    body = {"external_id": ext, "sender": sender, "text": text, "thread_key": "visit-9f"}
    await post_inbound(c, body)
    await settle(env.daemon)


async def test_preview_title_names_and_unread(env: Env) -> None:
    async with env.client() as c:
        await visitor_writes(
            env, c, "le-1", "hello is anyone there? my parcel never came and I need it today"
        )
        conv = await conv_by_text(env, "hello is anyone there", "alice")
        cid = conv["id"]
        # No subject: titled by the first words; no name: an alias and the channel.
        assert conv["title"] == "hello is anyone there? my parcel never came …"
        assert conv["contact_label"].endswith("(api)") and "9f9f" not in conv["contact_label"]
        assert conv["new"] is True and conv["unread"] is True
        # An agent answers: the list still shows what the customer asked.
        r = await c.post(
            f"/api/v1/conversations/{cid}/messages",
            json={"text": "We are on it"},
            headers=env.tokens["alice"],
        )
        assert r.status_code == 201, r.text
        conv = await conv_by_text(env, "hello is anyone there", "alice")
        assert conv["last_preview"].startswith("hello is anyone there")
        # Alice reads it: not new, not unread for her; still new for bob.
        r = await c.post(f"/api/v1/conversations/{cid}/read", headers=env.tokens["alice"])
        assert r.status_code == 200
        conv = await conv_by_text(env, "hello is anyone there", "alice")
        assert (conv["new"], conv["unread"]) == (False, False)
        bobs = await conv_by_text(env, "hello is anyone there", "bob")
        assert bobs["new"] is True
        # The customer writes again: unread for alice, preview is the new words.
        await visitor_writes(env, c, "le-2", "still waiting...")
        conv = await conv_by_text(env, "still waiting", "alice")
        assert conv["id"] == cid and (conv["new"], conv["unread"]) == (False, True)
        # The agent's name on their reply, not "agent:alice".
        full = (await c.get(f"/api/v1/conversations/{cid}", headers=env.tokens["alice"])).json()
        mine = [m for m in full["messages"] if m["text"] == "We are on it"]
        assert mine[0]["author"] == "agent:alice" and mine[0]["author_name"] == "Alice"
        assert full["title"].startswith("hello is anyone there")


async def test_bulk_changes_are_checked_and_audited(env: Env) -> None:
    async with env.client() as c:
        for n in range(3):
            await post_inbound(
                c, message(f"bulk-{n}", f"bulk question {n} about my order", f"b{n}@example.com")
            )
        await settle(env.daemon)
        ids = [(await conv_by_text(env, f"bulk question {n}"))["id"] for n in range(3)]
        # An agent may not assign many at once.
        r = await c.post(
            "/api/v1/conversations/bulk",
            json={"ids": ids, "assignee": "bob"},
            headers=env.tokens["alice"],
        )
        assert r.status_code == 403
        # Nothing to change is refused; an unknown conversation changes nothing.
        r = await c.post("/api/v1/conversations/bulk", json={"ids": ids}, headers=env.tokens["sue"])
        assert r.status_code == 422
        r = await c.post(
            "/api/v1/conversations/bulk",
            json={"ids": [*ids, 10**9], "status": "resolved"},
            headers=env.tokens["sue"],
        )
        assert r.status_code == 404
        assert (await conv_by_text(env, "bulk question 0"))["status"] == "open"
        r = await c.post(
            "/api/v1/conversations/bulk",
            json={
                "ids": ids[:2],
                "status": "pending",
                "assignee": "carol",
                "add_tags": ["batch"],
                "reason": "waiting on the warehouse",
            },
            headers=env.tokens["sue"],
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"changed": 2, "conversations": 2}
        for cid in ids[:2]:
            full = (await c.get(f"/api/v1/conversations/{cid}", headers=env.tokens["sue"])).json()
            assert (full["status"], full["assignee"], "batch" in full["tags"]) == (
                "pending",
                "carol",
                True,
            )
            actions = {a["action"]: a for a in full["audit"]}
            assert actions["status_changed"]["actor"] == "supervisor:sue"
            assert actions["status_changed"]["reason"] == "bulk: waiting on the warehouse"
            assert actions["assigned"]["reason"].startswith("bulk")
        assert (await conv_by_text(env, "bulk question 2"))["status"] == "open"
        audit = (await c.get("/api/v1/audit?limit=200", headers=env.tokens["root"])).json()
        entries = [a for a in audit["items"] if a["action"] == "bulk_action"]
        detail = entries[0]["detail"]
        detail = json.loads(detail) if isinstance(detail, str) else detail
        assert detail["conversations"] == ids[:2] and detail["change"]["status"] == "pending"


@pytest.mark.browser
async def test_shortcuts_bulk_and_arrivals_in_chromium(env: Env, browser: Any) -> None:
    async with env.client() as c:
        for n in range(4):
            await post_inbound(
                c, message(f"kb-{n}", f"keyboard case {n}: where is it?", f"k{n}@example.com")
            )
        await settle(env.daemon)
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "sue")
    await page.wait_for_selector("#list .row[data-id]")
    await page.keyboard.press("j")
    first = await page.get_attribute("#list .row.cursor", "data-id")
    await page.keyboard.press("j")
    second = await page.get_attribute("#list .row.cursor", "data-id")
    assert first != second
    await page.keyboard.press("k")
    assert await page.get_attribute("#list .row.cursor", "data-id") == first
    await page.keyboard.press("Enter")
    await wait_for(lambda: page.evaluate(f"location.pathname === '/inbox/c/{first}'"))
    await page.wait_for_selector("#reply-text")
    # r: straight into the reply box; typing there is text, not shortcuts.
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "reply-text"
    await page.keyboard.type("jjk e a?")
    assert await page.input_value("#reply-text") == "jjk e a?"
    assert await page.get_attribute("#list .row.cursor", "data-id") == first
    assert await page.is_hidden("#shortcuts") if await page.query_selector("#shortcuts") else True
    status = await page.input_value("#conv-status")
    assert status != "resolved"
    await page.fill("#reply-text", "")
    # n: a private note.
    await page.click(".conv-head h2")
    await page.keyboard.press("n")
    assert await page.input_value("#reply-kind") == "note"
    await page.click(".conv-head h2")
    # ?: the help; Esc closes it.
    await page.keyboard.press("?")
    assert await page.is_visible("#shortcuts")
    await page.screenshot(path=screenshot_path("ws-desktop-6-shortcuts-help"))
    await page.keyboard.press("Escape")
    assert await page.is_hidden("#shortcuts")
    # e: resolve the open conversation.
    await page.keyboard.press("e")
    await wait_for(
        lambda: page.evaluate("document.querySelector('#conv-status').value === 'resolved'")
    )
    # /: the search box.
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "message-search"
    await page.click(".conv-head h2")

    # Bulk: pick two rows, set their status (once the resolved one left the
    # open list).
    await wait_for(
        lambda: page.evaluate(f"!document.querySelector('#list .row[data-id=\"{first}\"]')")
    )
    picked = await page.evaluate(
        "[...document.querySelectorAll('#list .row[data-id]')].slice(0, 2).map(r => r.dataset.id)"
    )
    for cid in picked:
        await page.locator(f'#list .row[data-id="{cid}"] .pick').check()
    assert "2 selected" in await page.inner_text("#bulk-bar")
    await page.screenshot(path=screenshot_path("ws-desktop-7-bulk-selected"))
    await page.select_option("#bulk-status", "pending")
    async with env.client() as c:

        async def both_pending() -> bool:
            out = []
            for cid in picked:
                full = await c.get(f"/api/v1/conversations/{cid}", headers=env.tokens["root"])
                out.append(full.json()["status"] == "pending")
            return all(out)

        await wait_for(both_pending)

    # A new conversation while the agent reads further down: the rows stay
    # put and a pill says something arrived above.
    await page.select_option("select[name=status]", "")
    await page.wait_for_timeout(300)
    await page.evaluate("document.getElementById('list').style.maxHeight = '200px'")
    await page.eval_on_selector("#list", "el => el.scrollTop = el.scrollHeight")
    before = await page.eval_on_selector("#list", "el => el.scrollTop")
    anchor = await page.evaluate(
        "(() => { const l = document.getElementById('list');"
        " const t = l.getBoundingClientRect().top; const r = [...l.querySelectorAll('.row')]"
        " .find(x => x.getBoundingClientRect().bottom > t);"
        " return [r.dataset.id, r.getBoundingClientRect().top]; })()"
    )
    await page.select_option("select[name=sort]", "newest")
    await page.wait_for_timeout(300)
    await page.eval_on_selector("#list", "el => el.scrollTop = el.scrollHeight")
    anchor = await page.evaluate(
        "(() => { const l = document.getElementById('list');"
        " const t = l.getBoundingClientRect().top; const r = [...l.querySelectorAll('.row')]"
        " .find(x => x.getBoundingClientRect().bottom > t);"
        " return [r.dataset.id, Math.round(r.getBoundingClientRect().top)]; })()"
    )
    assert before >= 0
    async with env.client() as c:
        await post_inbound(c, message("kb-new", "brand new arrival here", "new@example.com"))
        await settle(env.daemon)
    await page.wait_for_selector("#arrivals")
    now = await page.evaluate(
        f"Math.round(document.querySelector('#list .row[data-id=\"{anchor[0]}\"]')"
        ".getBoundingClientRect().top)"
    )
    assert abs(now - anchor[1]) <= 2, (now, anchor)
    await page.screenshot(path=screenshot_path("ws-desktop-8-new-arrival-pill"))
    await page.click("#arrivals")
    assert await page.eval_on_selector("#list", "el => el.scrollTop") == 0
    assert not watch.errors, watch.errors
    await context.close()
