"""Typed fields, companies and events through the API: values checked on
write, an order appended to a contact shows on its timeline (newest first,
paged), and rules use the purchase summary, the company's fields and typed
fields at the contact's next message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon
from tests.conftest import admin_token, message, post_inbound, settle
from tests.customers.helpers import FIELDS

RULES = """
[[rule]]
name = "open-order"
[rule.when]
contact.orders.open.at_least = 1
[rule.then]
tags = ["open-order"]

[[rule]]
name = "ordered-lately"
[rule.when]
contact.orders.days_since_last.at_most = 30
[rule.then]
tags = ["ordered-lately"]

[[rule]]
name = "enterprise"
[rule.when]
contact.company.plan = "enterprise"
[rule.then]
tags = ["enterprise"]

[[rule]]
name = "big-spender"
[rule.when]
contact.lifetime_value.above = 1000
[rule.then]
tags = ["big-spender"]
"""

RULE_TAGS = {"open-order", "ordered-lately", "enterprise", "big-spender"}


async def conversation(c: httpx.AsyncClient, auth: dict[str, str], thread: str) -> dict[str, Any]:
    items = (await c.get("/api/v1/conversations?limit=100", headers=auth)).json()["items"]
    for x in items:
        full = (await c.get(f"/api/v1/conversations/{x['id']}", headers=auth)).json()
        if any(m.get("text", "").endswith(thread) for m in full.get("messages", [])):
            return full  # type: ignore[no-any-return]
    raise AssertionError(f"no conversation for {thread}")


async def test_event_on_timeline_and_rules_use_it(
    config_factory: Any, daemon_factory: Any, rules_copy: Path
) -> None:
    (rules_copy / "70-customers.toml").write_text(RULES)
    daemon: Daemon = await daemon_factory(
        config_factory(customers=FIELDS, rules={"dir": str(rules_copy), "watch": False})
    )
    auth = await admin_token(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        r = await post_inbound(c, message("e-1", "Hello there, thread one", thread_key="one"))
        assert r.status_code == 202
        await settle(daemon)
        first = await conversation(c, auth, "thread one")
        assert not RULE_TAGS & set(first["tags"])  # nothing known about Ann yet
        cid = first["contact_id"]

        # Typed fields are checked on write; the error names the field and value.
        r = await c.put(
            f"/api/v1/contacts/{cid}/fields",
            json={"fields": {"lifetime_value": "lots"}},
            headers=auth,
        )
        assert r.status_code == 422 and "lifetime_value: 'lots' is not a number" in r.text
        r = await c.put(
            f"/api/v1/contacts/{cid}/fields",
            json={"fields": {"lifetime_value": "2,500", "segment": "Retail"}, "company": "Acme"},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["attributes"] == {"lifetime_value": 2500, "segment": "retail"}
        r = await c.put(
            "/api/v1/companies",
            json={"name": "acme", "fields": {"plan": "enterprise"}},
            headers=auth,
        )
        assert r.status_code == 200 and r.json()["outcome"] == "updated", r.text
        company_id = r.json()["id"]

        # An order through the API.
        order = {
            "kind": "order",
            "external_id": "1042",
            "amount": 99.5,
            "currency": "eur",
            "status": "paid",
            "items": [{"sku": "TENT-2", "qty": 1}],
        }
        r = await c.post(f"/api/v1/contacts/{cid}/events", json=order, headers=auth)
        assert r.status_code == 201 and r.json()["outcome"] == "created", r.text
        r = await c.post(f"/api/v1/contacts/{cid}/events", json=order, headers=auth)
        assert r.json()["outcome"] == "unchanged"  # the same order again: idempotent
        bad = {**order, "external_id": "x", "amount": -1}
        r = await c.post(f"/api/v1/contacts/{cid}/events", json=bad, headers=auth)
        assert r.status_code == 422

        tl = (await c.get(f"/api/v1/contacts/{cid}/timeline", headers=auth)).json()
        assert [i["type"] for i in tl["items"]][:2] == ["event", "message"]
        assert tl["items"][0]["external_id"] == "1042" and tl["items"][0]["currency"] == "EUR"
        page1 = (await c.get(f"/api/v1/contacts/{cid}/timeline?limit=1", headers=auth)).json()
        assert len(page1["items"]) == 1 and page1["next"]
        page2 = (
            await c.get(
                f"/api/v1/contacts/{cid}/timeline",
                params={"limit": 1, "before": page1["next"]},
                headers=auth,
            )
        ).json()
        assert page2["items"][0]["type"] == "message"

        view = (await c.get(f"/api/v1/contacts/{cid}/customer", headers=auth)).json()
        assert view["orders"]["count"] == 1 and view["orders"]["open"] == 1
        assert view["orders"]["total"] == 99.5 and view["company"]["name"] == "Acme"
        # The satisfaction figure takes the purchase frequency in.
        contact = (await c.get(f"/api/v1/contacts/{cid}", headers=auth)).json()
        assert contact["satisfaction"]["inputs"]["orders_last_year"] == 1

        # Ann writes again, on a new thread: every rule about her fires.
        await post_inbound(c, message("e-2", "Me again, thread two", thread_key="two"))
        await settle(daemon)
        second = await conversation(c, auth, "thread two")
        assert RULE_TAGS <= set(second["tags"]), second["tags"]

        # The order is delivered: no open order any more.
        r = await c.post(
            f"/api/v1/contacts/{cid}/events", json={**order, "status": "delivered"}, headers=auth
        )
        assert r.json()["outcome"] == "updated"
        await post_inbound(c, message("e-3", "And once more, thread three", thread_key="three"))
        await settle(daemon)
        third = await conversation(c, auth, "thread three")
        assert "open-order" not in third["tags"] and "ordered-lately" in third["tags"]

        # Search by typed field; the company page lists Ann and her conversations.
        found = (
            await c.get(
                "/api/v1/customers/find",
                params={"where": ["lifetime_value>1000", "segment=retail"]},
                headers=auth,
            )
        ).json()["items"]
        assert [x["id"] for x in found] == [cid]
        none = (
            await c.get(
                "/api/v1/customers/find", params={"where": "lifetime_value>3000"}, headers=auth
            )
        ).json()["items"]
        assert none == []
        page = (await c.get(f"/api/v1/companies/{company_id}", headers=auth)).json()
        assert [x["id"] for x in page["contacts"]] == [cid]
        assert {x["id"] for x in page["conversations"]} == {first["id"], second["id"], third["id"]}
        # Audited, with who.
        audit = contact["audit"]
        assert {"contact_fields_updated", "event_created", "contact_company_set"} <= {
            a["action"] for a in audit
        }
        assert all("admin" in a["actor"] for a in audit if a["action"] == "event_created")


async def test_bulk_upsert_api(daemon: Daemon, client: httpx.AsyncClient) -> None:
    auth = await admin_token(daemon)
    body = {
        "companies": [{"name": "Globex", "domain": "globex.example"}],
        "contacts": [
            {"name": "Zoe", "email": "zoe@example.com", "company": "Globex"},
            {"name": "Yan", "phone": "+44 20 7946 0000"},
            {"name": "Nobody"},
        ],
    }
    r = await client.post("/api/v1/contacts/bulk", json={**body, "dry_run": True}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["contacts"]["created"] == 2 and r.json()["contacts"]["invalid"] == 1
    r = await client.get("/api/v1/contacts", params={"q": "zoe@example.com"}, headers=auth)
    assert r.json()["items"] == []  # the dry run kept nothing
    r = await client.post("/api/v1/contacts/bulk", json=body, headers=auth)
    out = r.json()
    assert out["contacts"]["created"] == 2 and out["companies"][0]["outcome"] == "created"
    r = await client.post("/api/v1/contacts/bulk", json=body, headers=auth)
    assert r.json()["contacts"]["unchanged"] == 2
    assert r.json()["companies"][0]["outcome"] == "unchanged"


def test_rule_examples_give_the_contact_as_nested_tables(rules_copy: Path) -> None:
    """An example's ``contact = { company = { plan = ... }, orders = { open = 1 } }``
    is what a stored contact looks like to the rules; ``rules check`` runs it."""
    from omnidesk.rules import check_rules

    (rules_copy / "70-customers.toml").write_text(
        RULES
        + """
[[example]]
name = "an enterprise customer with an open order"
text = "Hello, a question about my order"
received_at = 2024-05-07T10:00:00Z
expect = { tags = ["open-order", "ordered-lately", "enterprise", "big-spender"] }
[example.contact]
lifetime_value = 1500
company = { plan = "enterprise" }
orders = { open = 1, days_since_last = 3 }

[[example]]
name = "nothing known"
text = "Hello, a question about my order"
received_at = 2024-05-07T10:00:00Z
contact = { company = { plan = "free" }, orders = { open = 0 } }
expect = { tags = [] }
"""
    )
    report = check_rules(rules_copy, None, strict=False)
    assert report.ok, report.format()
    bad = rules_copy / "70-customers.toml"
    bad.write_text(bad.read_text().replace("open = 1,", "open = 0,", 1))
    assert not check_rules(rules_copy, None, strict=False).ok
