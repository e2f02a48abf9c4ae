"""The contact page in Chromium with customer data: typed fields edited on
the panel, the company and its page, the timeline (messages, a note, a
status change, orders), the export downloaded and the contact erased.
Screenshots of each step (customers-*.png)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from omnidesk.app import Daemon
from omnidesk.store.base import Db
from tests.conftest import make_config, message, post_inbound, settle
from tests.customers.helpers import FIELDS
from tests.web.conftest import Env, add_users, log_in, screenshot_path, wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    module_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    cfg = make_config(
        tmp_path_factory.mktemp("customers"),
        module_store_url,
        customers=FIELDS,
        privacy={"retention": {"old_api": {"days": 30, "action": "redact", "channels": ["api"]}}},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    tokens = await add_users(daemon)
    try:
        yield Env(daemon, f"http://127.0.0.1:{daemon.web_port}", None, tokens)  # type: ignore[arg-type]
    finally:
        await daemon.stop()


async def seed(env: Env) -> tuple[int, int]:
    auth = env.tokens["root"]
    async with env.client() as c:
        for ext, text, key in (
            ("cb-1", "Where is my tent? Order 1042.", "a"),
            ("cb-2", "Also: can I return the stove?", "b"),
        ):
            r = await post_inbound(
                c, message(ext, text, name="Ann Lee", subject=text[:20], thread_key=key)
            )
            assert r.status_code == 202
        await settle(env.daemon)
        found = await c.get("/api/v1/contacts", params={"q": "ann@example.com"}, headers=auth)
        cid = found.json()["items"][0]["id"]
        contact = (await c.get(f"/api/v1/contacts/{cid}", headers=auth)).json()
        conv = contact["conversations"][-1]["id"]
        for path, body in (
            (
                "PUT",
                (
                    "/api/v1/companies",
                    {"name": "Acme Outdoor", "fields": {"plan": "enterprise", "seats": 40}},
                ),
            ),
            (
                "PUT",
                (
                    f"/api/v1/contacts/{cid}/fields",
                    {
                        "fields": {
                            "lifetime_value": 1250,
                            "segment": "retail",
                            "customer_since": "2021-03-04",
                            "newsletter": True,
                        },
                        "company": "Acme Outdoor",
                    },
                ),
            ),
            (
                "POST",
                (
                    f"/api/v1/contacts/{cid}/events",
                    {
                        "kind": "order",
                        "external_id": "1042",
                        "amount": 349.0,
                        "currency": "EUR",
                        "status": "shipped",
                        "items": [{"sku": "TENT-2"}],
                        "occurred_at": 1_700_000_000,
                    },
                ),
            ),
            (
                "POST",
                (
                    f"/api/v1/contacts/{cid}/events",
                    {
                        "kind": "order",
                        "external_id": "0977",
                        "amount": 59.9,
                        "currency": "EUR",
                        "status": "delivered",
                        "occurred_at": 1_650_000_000,
                    },
                ),
            ),
            (
                "POST",
                (
                    f"/api/v1/contacts/{cid}/events",
                    {"kind": "newsletter_signup", "occurred_at": 1_600_000_000},
                ),
            ),
            (
                "POST",
                (
                    f"/api/v1/conversations/{conv}/messages",
                    {"text": "Called her: tent is in Hamburg.", "kind": "note"},
                ),
            ),
            ("POST", (f"/api/v1/conversations/{conv}/status", {"status": "resolved"})),
        ):
            url, body_json = body
            r = await c.request(path, url, json=body_json, headers=auth)
            assert r.status_code in (200, 201), (url, r.text)
    return cid, conv


async def test_contact_page_fields_company_timeline_export_erase(env: Env, browser: Any) -> None:
    cid, conv = await seed(env)
    context = await browser.new_context(
        viewport={"width": 1500, "height": 2300}, accept_downloads=True
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, env, "root")

    await page.goto(f"{env.base}/contacts/{cid}")
    await page.wait_for_selector("#customer #fields")
    await page.wait_for_selector("#timeline li[data-type=event]")
    assert await page.input_value("#field-lifetime_value") == "1250"
    assert await page.input_value("#field-company") == "Acme Outdoor"
    assert "1 open" in await page.inner_text("#purchases")
    kinds = await page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.type)")
    assert {"message", "note", "status", "event"} <= set(kinds)
    await page.screenshot(path=screenshot_path("customers-01-contact-page"), full_page=True)

    # Edit a typed field on the panel.
    await page.fill("#field-lifetime_value", "3100")
    await page.select_option("#field-segment", "wholesale")
    await page.click("#fields-save")

    async def saved() -> dict[str, Any] | None:
        async with env.client() as c:
            r = await c.get(f"/api/v1/contacts/{cid}", headers=env.tokens["root"])
        attrs: dict[str, Any] = r.json()["attributes"]
        return attrs if attrs.get("lifetime_value") == 3100 else None

    attrs = await wait_for(saved)
    assert attrs["lifetime_value"] == 3100 and attrs["segment"] == "wholesale"
    await page.screenshot(path=screenshot_path("customers-02-fields-saved"), full_page=True)

    # Find contacts by a typed field on the contacts page.
    await page.goto(f"{env.base}/contacts")
    await page.wait_for_selector("#find-field option[value=lifetime_value]", state="attached")
    await page.select_option("#find-field", "lifetime_value")
    await page.select_option("#find-op", ">")
    await page.fill("#find-value", "3000")
    await page.click("#find-go")
    await page.wait_for_selector(f"#find-results li[data-contact-id='{cid}']")
    await page.fill("#find-value", "5000")
    await page.click("#find-go")
    await page.wait_for_selector("#find-results li.muted")
    await page.fill("#find-value", "3000")
    await page.click("#find-go")
    await page.wait_for_selector(f"#find-results li[data-contact-id='{cid}']")
    await page.screenshot(path=screenshot_path("customers-03a-find-by-field"))

    # The same panel beside the conversation in the inbox.
    await page.goto(f"{env.base}/inbox/c/{conv}")
    await page.wait_for_selector("#contact-panel #customer #fields")
    await page.screenshot(path=screenshot_path("customers-03-inbox-panel"))

    # The company page.
    await page.goto(f"{env.base}/contacts/{cid}")
    await page.click("#company-link")
    await page.wait_for_selector("#company-contacts li")
    assert "enterprise" in await page.inner_text("#company-fields")
    assert await page.locator("#company-conversations tr").count() == 2
    await page.screenshot(path=screenshot_path("customers-04-company-page"), full_page=True)

    # Export: the archive holds the messages.
    await page.goto(f"{env.base}/contacts/{cid}")
    await page.wait_for_selector("#export-link")
    async with page.expect_download() as info:
        await page.click("#export-link")
    download = await info.value
    archive = Path(await download.path()).read_bytes()
    data = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read("contact.json"))
    texts = [m["text"] for x in data["conversations"] for m in x["messages"]]
    assert "Where is my tent? Order 1042." in texts
    await page.screenshot(path=screenshot_path("customers-05-export"), full_page=True)

    # Erase, with the id typed into the confirmation.
    dialogs: list[str] = []

    async def answer(d: Any) -> None:
        dialogs.append(d.message)
        await d.accept(str(cid))

    page.on("dialog", answer)
    await page.click("#erase")
    await page.wait_for_selector("#erased")
    assert dialogs and "cannot be undone" in dialogs[0]
    await page.screenshot(path=screenshot_path("customers-06-erased"), full_page=True)
    async with env.client() as c:
        r = await c.get(
            "/api/v1/contacts", params={"q": "ann@example.com"}, headers=env.tokens["root"]
        )
        assert r.json()["items"] == []
    assert not errors, errors
    await context.close()


async def test_who_may_see_and_change_customer_data(env: Env) -> None:
    """Agents see and edit the customer data of contacts whose conversations
    they see; appending events takes a supervisor; erasing, an admin."""
    async with env.client() as c:
        r = await post_inbound(c, message("perm-1", "Hello from Bea", address="bea@example.com"))
        assert r.status_code == 202
        await settle(env.daemon)
        root = env.tokens["root"]
        found = await c.get("/api/v1/contacts", params={"q": "bea@example.com"}, headers=root)
        cid = found.json()["items"][0]["id"]
        team = (await c.get(f"/api/v1/contacts/{cid}", headers=root)).json()["conversations"][0]
        assert team["team"] == "support"
        alice, carol, sue = env.tokens["alice"], env.tokens["carol"], env.tokens["sue"]
        # alice (support) sees the timeline and edits fields; carol (complaints) does not.
        r = await c.get(f"/api/v1/contacts/{cid}/timeline", headers=alice)
        assert r.status_code == 200 and r.json()["items"][0]["text"] == "Hello from Bea"
        assert (await c.get(f"/api/v1/contacts/{cid}/timeline", headers=carol)).status_code == 403
        r = await c.put(
            f"/api/v1/contacts/{cid}/fields",
            json={"fields": {"notes": "likes tents"}},
            headers=alice,
        )
        assert r.status_code == 200
        r = await c.put(
            f"/api/v1/contacts/{cid}/fields", json={"fields": {"notes": "x"}}, headers=carol
        )
        assert r.status_code == 403
        order = {"kind": "order", "external_id": "B-1", "amount": 1}
        r = await c.post(f"/api/v1/contacts/{cid}/events", json=order, headers=alice)
        assert r.status_code == 403
        r = await c.post(f"/api/v1/contacts/{cid}/events", json=order, headers=sue)
        assert r.status_code == 201
        assert (await c.get(f"/api/v1/contacts/{cid}/export", headers=alice)).status_code == 403
        assert (await c.get(f"/api/v1/contacts/{cid}/export", headers=sue)).status_code == 200
        r = await c.delete(f"/api/v1/contacts/{cid}", params={"confirm": cid}, headers=sue)
        assert r.status_code == 403
        r = await c.delete(f"/api/v1/contacts/{cid}", params={"confirm": cid}, headers=root)
        assert r.status_code == 200


async def test_retention_page_dry_run_then_run(env: Env, browser: Any) -> None:
    async with env.client() as c:
        r = await post_inbound(c, message("old-1", "An old question", address="old@example.com"))
        assert r.status_code == 202
        await settle(env.daemon)

    def age(db: Db) -> int:
        conv = int(
            db.val(
                "SELECT c.id FROM conversations c JOIN identities i ON i.contact_id = c.contact_id"
                " WHERE i.address = 'old@example.com'"
            )
        )
        db.run(
            "UPDATE conversations SET created_at = 1000, last_message_at = 1000 WHERE id = ?",
            (conv,),
        )
        return conv

    conv = await env.daemon.store.write(age)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await log_in(page, env, "root")
    await page.goto(f"{env.base}/privacy")
    await page.wait_for_selector("#retention-policies .dry-run")
    await page.click("#retention-policies .dry-run")
    await page.wait_for_selector(".run-result")
    assert "would redact 1 conversation, 1 message" in await page.inner_text("#retention-report")
    assert await page.locator(f"#retention-report a[href='/inbox/c/{conv}']").count() == 1
    await page.screenshot(path=screenshot_path("customers-07-retention-dry-run"))
    await page.click("#retention-policies .run-now")
    await page.wait_for_selector("text=redacted 1 conversation, 1 message")
    await page.wait_for_selector("#retention-runs tr:nth-child(3)")
    await page.screenshot(path=screenshot_path("customers-08-retention-run"))

    def text(db: Db) -> str:
        return str(db.val("SELECT text FROM messages WHERE conversation_id = ?", (conv,)))

    assert await env.daemon.store.read(text) == "[redacted by retention]"
    await context.close()
