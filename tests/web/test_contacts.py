"""Contacts: search by name, e-mail, phone or handle; attribute edits; merges
that move everything and that an admin undoes exactly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import post_inbound, settle
from tests.web.conftest import Env

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def inbound(
    c: httpx.AsyncClient,
    ext: str,
    kind: str,
    address: str,
    name: str,
    text: str,
    channel: str = "api",
) -> None:
    r = await post_inbound(
        c,
        {
            "external_id": ext,
            "sender": {"kind": kind, "address": address, "name": name},
            "text": text,
        },
        channel=channel,
    )
    assert r.status_code == 202, r.text


async def contact_named(c: httpx.AsyncClient, env: Env, q: str) -> list[dict[str, Any]]:
    r = await c.get("/api/v1/contacts", params={"q": q}, headers=env.tokens["root"])
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


async def test_search_by_name_email_phone_and_handle(env: Env) -> None:
    async with env.client() as c:
        await inbound(c, "ct-1", "email", "Maria.Lopez@Example.org", "María López", "Hola?")
        await inbound(c, "ct-2", "phone", "+44 20 7946 0958", "Tom Baker", "Is it ready?", "shop")
        await inbound(c, "ct-3", "telegram", "tg-77123", "@zed_bot_fan", "hi there")
        await settle(env.daemon)
        assert [x["name"] for x in await contact_named(c, env, "maría")] == ["María López"]
        assert [x["name"] for x in await contact_named(c, env, "maria.lopez@example")] == [
            "María López"
        ]
        assert [x["name"] for x in await contact_named(c, env, "7946 0958")] == ["Tom Baker"]
        assert [x["name"] for x in await contact_named(c, env, "tg-77123")] == ["@zed_bot_fan"]
        assert await contact_named(c, env, "nobody-like-this") == []
        r = await c.get("/api/v1/contacts", params={"q": ""}, headers=env.tokens["root"])
        assert r.status_code == 422


async def test_edit_attributes_is_recorded(env: Env) -> None:
    async with env.client() as c:
        await inbound(c, "attr-1", "email", "vip@example.com", "Vera", "Where is my parcel?")
        await settle(env.daemon)
        [vera] = await contact_named(c, env, "vip@example.com")
        root = env.tokens["root"]
        r = await c.patch(
            f"/api/v1/contacts/{vera['id']}",
            json={"attributes": {"tier": "gold", "company": "Acme", "language": "es"}},
            headers=root,
        )
        assert r.json()["attributes"] == {"tier": "gold", "company": "Acme", "language": "es"}
        r = await c.patch(
            f"/api/v1/contacts/{vera['id']}",
            json={"name": "Vera Vip", "attributes": {"language": None}},
            headers=root,
        )
        assert r.json() == {
            "id": vera["id"],
            "name": "Vera Vip",
            "attributes": {"tier": "gold", "company": "Acme"},
        }
        r = await c.patch(
            f"/api/v1/contacts/{vera['id']}", json={"attributes": {"x": {"a": 1}}}, headers=root
        )
        assert r.status_code == 422
        full = (await c.get(f"/api/v1/contacts/{vera['id']}", headers=root)).json()
        changes = [a for a in full["audit"] if a["action"] == "contact_updated"]
        assert changes[0]["detail"]["changed"]["(name)"] == {"from": "Vera", "to": "Vera Vip"}
        assert changes[1]["detail"]["changed"]["tier"] == {"from": None, "to": "gold"}
        # The rules see the attribute from the next message on.
        assert full["attributes"]["tier"] == "gold"


async def test_merge_moves_everything_and_undo_restores_exactly(env: Env) -> None:
    root = env.tokens["root"]
    async with env.client() as c:
        await inbound(c, "mg-1", "email", "pat@example.com", "Pat", "Question about my bill")
        await inbound(c, "mg-2", "phone", "+1 202 555 0143", "Patricia", "Call me", "shop")
        await inbound(c, "mg-3", "telegram", "tg-90210", "pat_tg", "hello from telegram")
        await settle(env.daemon)
        [mail] = await contact_named(c, env, "pat@example.com")
        [phone] = await contact_named(c, env, "202 555 0143")
        [tg] = await contact_named(c, env, "tg-90210")
        await c.patch(
            f"/api/v1/contacts/{phone['id']}",
            json={"attributes": {"tier": "silver", "company": "Pat Co"}},
            headers=root,
        )
        await c.patch(
            f"/api/v1/contacts/{mail['id']}", json={"attributes": {"tier": "gold"}}, headers=root
        )
        before = (await c.get(f"/api/v1/contacts/{phone['id']}", headers=root)).json()

        r = await c.post(
            f"/api/v1/contacts/{mail['id']}/merge",
            json={"source_id": phone["id"], "reason": "same person"},
            headers=root,
        )
        assert r.status_code == 200, r.text
        merge = r.json()
        merged = (await c.get(f"/api/v1/contacts/{mail['id']}", headers=root)).json()
        assert {i["address"] for i in merged["identities"]} == {"pat@example.com", "+12025550143"}
        assert {x["channel"] for x in merged["conversations"]} == {"api", "shop"}
        assert merged["attributes"] == {"tier": "gold", "company": "Pat Co"}  # target wins
        gone = (await c.get(f"/api/v1/contacts/{phone['id']}", headers=root)).json()
        assert gone["merged_into"] == mail["id"] and gone["conversations"] == []
        # The merged-away contact is not found; its identities lead to the survivor.
        assert [x["id"] for x in await contact_named(c, env, "Patricia")] == [mail["id"]]
        # New mail from the merged phone number lands on the surviving contact.
        await inbound(c, "mg-4", "phone", "+1 202 555 0143", "Patricia", "me again", "shop")
        await settle(env.daemon)
        again = (await c.get(f"/api/v1/contacts/{mail['id']}", headers=root)).json()
        assert len(again["conversations"]) >= 2
        # Merging twice, or into itself, is refused.
        r = await c.post(
            f"/api/v1/contacts/{mail['id']}/merge", json={"source_id": phone["id"]}, headers=root
        )
        assert r.status_code == 422
        r = await c.post(
            f"/api/v1/contacts/{mail['id']}/merge", json={"source_id": mail["id"]}, headers=root
        )
        assert r.status_code == 422
        # A later merge must be undone first.
        r = await c.post(
            f"/api/v1/contacts/{tg['id']}/merge", json={"source_id": mail["id"]}, headers=root
        )
        assert r.status_code == 200
        later = r.json()["merge_id"]
        r = await c.post(f"/api/v1/contact-merges/{merge['merge_id']}/undo", headers=root)
        assert r.status_code == 409 and str(later) in r.text
        r = await c.post(f"/api/v1/contact-merges/{later}/undo", headers=root)
        assert r.status_code == 200
        # Only an admin undoes.
        r = await c.post(
            f"/api/v1/contact-merges/{merge['merge_id']}/undo", headers=env.tokens["sue"]
        )
        assert r.status_code == 403
        r = await c.post(f"/api/v1/contact-merges/{merge['merge_id']}/undo", headers=root)
        assert r.status_code == 200, r.text
        assert (
            await c.post(f"/api/v1/contact-merges/{merge['merge_id']}/undo", headers=root)
        ).status_code == 409
        after = (await c.get(f"/api/v1/contacts/{phone['id']}", headers=root)).json()
        assert after["merged_into"] is None
        assert after["identities"] == before["identities"]
        assert {x["id"] for x in before["conversations"]} <= {
            x["id"] for x in after["conversations"]
        }
        target = (await c.get(f"/api/v1/contacts/{mail['id']}", headers=root)).json()
        assert target["attributes"] == {"tier": "gold"}
        assert {i["address"] for i in target["identities"]} == {"pat@example.com"}
        history = (await c.get("/api/v1/contact-merges", headers=root)).json()["items"]
        assert all(m["undone_at"] for m in history if m["id"] in (merge["merge_id"], later))
        audit = [a["action"] for a in target["audit"]]
        assert "contacts_merged" in audit and "merge_undone" in audit


async def test_agent_merges_only_contacts_they_can_see(env: Env) -> None:
    async with env.client() as c:
        await inbound(c, "am-1", "email", "sam@example.com", "Sam", "What are your hours?")
        await inbound(
            c,
            "am-2",
            "email",
            "sam2@example.com",
            "Sam Two",
            "This is unacceptable. Terrible service, the worst.",
        )
        await settle(env.daemon)
        [a] = await contact_named(c, env, "sam@example.com")
        [b] = await contact_named(c, env, "sam2@example.com")
        r = await c.post(
            f"/api/v1/contacts/{a['id']}/merge",
            json={"source_id": b["id"]},
            headers=env.tokens["alice"],
        )
        assert r.status_code == 403  # the complaint went to another team
