"""The inbox API: lists and filters, urgency order, SLA, replies with delivery
state, collision detection, status and snooze, corrections, tags, canned
replies, retrying a failed reply, attachments, saved views, presence and the
live feed."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from omnidesk.snooze import snooze_waker
from omnidesk.store.actions import wake_snoozed
from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, login, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def new_conversation(
    env: Env, ext: str, text: str, address: str, **extra: Any
) -> dict[str, Any]:
    async with env.client() as c:
        r = await post_inbound(c, message(ext, text, address=address, **extra))
        assert r.status_code == 202, r.text
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
    return next(x for x in items if (x["last_preview"] or "").startswith(text[:30]))


async def get(c: httpx.AsyncClient, env: Env, cid: int, who: str = "root") -> dict[str, Any]:
    r = await c.get(f"/api/v1/conversations/{cid}", headers=env.tokens[who])
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_sla_due_in_business_hours_breached_then_met_late(env: Env) -> None:
    conv = await new_conversation(
        env, "sla-1", "What time do you open on Monday, please?", "sla@example.com"
    )
    assert conv["priority"] == "normal"
    d = env.daemon
    await d.scheduler.tick()
    # rules/20-service.toml "standard": normal = 8 business hours in the team's
    # calendar (the default: 10-settings.toml's business hours).
    cal = d.rules.current.service.calendar_for(conv["team"])
    root = env.tokens["root"]
    async with env.client() as c:
        full = await get(c, env, conv["id"])
        assert full["sla"]["policy"] == "standard"
        first = next(t for t in full["sla"]["targets"] if t["target"] == "first_response")
        assert first["due_at"] == pytest.approx(cal.add(full["created_at"], 8 * 3600))
        assert full["sla_due_at"] == pytest.approx(first["due_at"])
        assert first["business_seconds_left"] == pytest.approx(
            cal.between(time.time(), first["due_at"]), abs=5
        )
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/classification",
            json={"priority": "urgent", "reason": "VIP"},
            headers=root,
        )
        assert r.json()["changed"]
        await d.scheduler.tick()
        moved = await get(c, env, conv["id"])
        # urgent = 30 business minutes from the same start.
        assert moved["sla_due_at"] == pytest.approx(cal.add(full["created_at"], 1800))

        # Opened five days ago: overdue, flagged, filterable, and the policy's
        # breach actions ran once. (The service counts from a week ago, so the
        # breach is not one from before it started, which is only noted.)
        def backdate(db: Any) -> None:
            db.run(
                "UPDATE conversations SET created_at = created_at - 5 * 86400,"
                " updated_at = updated_at + 1 WHERE id = ?",
                (conv["id"],),
            )
            db.run(
                "UPDATE channel_state SET value = ? WHERE channel = 'service'"
                " AND key = 'reports_from'",
                (repr(time.time() - 7 * 86400),),
            )

        await d.store.write(backdate)
        await d.scheduler.prepare()
        await d.scheduler.tick(sweep=True)
        await d.scheduler.tick(sweep=True)
        overdue = (
            await c.get("/api/v1/conversations?breached=true&limit=500", headers=root)
        ).json()["items"]
        assert conv["id"] in {x["id"] for x in overdue}
        assert all(x["sla_breached"] and x["sla_business_seconds_left"] < 0 for x in overdue)
        late = await get(c, env, conv["id"])
        breaches = [a["reason"] for a in late["audit"] if a["action"] == "sla_breach"]
        # One for each clock that ran out: first response and (urgent: 8 h) resolution.
        assert sorted(r.split(" target")[0] for r in breaches) == ["first response", "resolution"]
        assert "sla-breached" in late["tags"]
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "We open at 9.", "kind": "reply"},
            headers=root,
        )
        assert r.status_code == 201
        await d.scheduler.tick()
        after = await get(c, env, conv["id"])
        assert after["first_response_at"] is not None
        first = next(t for t in after["sla"]["targets"] if t["target"] == "first_response")
        assert first["done_at"] == after["first_response_at"] and first["breached"]
        assert [a for a in after["audit"] if a["action"] == "sla_breached"]
        # The resolution clock still runs: it is the due time the inbox shows now.
        resolution = next(t for t in after["sla"]["targets"] if t["target"] == "resolution")
        assert after["sla_due_at"] == pytest.approx(resolution["due_at"])


async def test_urgency_order_and_cursor_pages(env: Env) -> None:
    root = env.tokens["root"]
    for i, text in enumerate(
        (
            "This is unacceptable. Terrible service, the worst.",
            "Love the new app, great work",
            "Where can I find my invoice?",
            "The courier was rude and the parcel arrived broken, unacceptable",
            "Do you have a store in Oslo?",
        )
    ):
        await new_conversation(env, f"urg-{i}", text, f"urg{i}@example.com")
    async with env.client() as c:
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = "/api/v1/conversations?status=open&sort=urgency&limit=3"
            r = await c.get(q + (f"&cursor={cursor}" if cursor else ""), headers=root)
            page = r.json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        keys = [
            (-x["priority_rank"], x["sla_due_at"] if x["sla_due_at"] is not None else 1e18, x["id"])
            for x in seen
        ]
        assert keys == sorted(keys) and len({x["id"] for x in seen}) == len(seen) >= 3
        everything = (
            await c.get("/api/v1/conversations?status=open&limit=500", headers=root)
        ).json()["items"]
        assert len(seen) == len(everything)
        bad = await c.get("/api/v1/conversations?sort=urgency&cursor=junk", headers=root)
        assert bad.status_code == 422


async def test_scopes_and_filters(env: Env) -> None:
    await new_conversation(env, "scope-1", "Do you sell gift cards?", "scope1@example.com")
    await new_conversation(
        env, "scope-2", "This is unacceptable. Terrible service, the worst.", "scope2@example.com"
    )
    async with env.client() as c:
        alice = env.tokens["alice"]

        async def ids(q: str, who: dict[str, str] = alice) -> set[int]:
            r = await c.get(f"/api/v1/conversations?limit=500&{q}", headers=who)
            assert r.status_code == 200, r.text
            return {x["id"] for x in r.json()["items"]}

        mine, teams, unassigned, everything = (
            await ids("scope=mine"),
            await ids("scope=teams"),
            await ids("scope=unassigned"),
            await ids("scope=all"),
        )
        assert mine and mine <= everything and teams <= everything
        items = (await c.get("/api/v1/conversations?limit=500", headers=alice)).json()["items"]
        assert all(x["assignee"] == "alice" for x in items if x["id"] in mine)
        assert all(x["assignee"] is None for x in items if x["id"] in unassigned)
        root = env.tokens["root"]
        for q, check in (
            ("priority=high", lambda x: x["priority"] == "high"),
            ("category=complaint", lambda x: x["category"] == "complaint"),
            ("channel=api", lambda x: x["channel"] == "api"),
        ):
            got = (await c.get(f"/api/v1/conversations?limit=500&{q}", headers=root)).json()
            assert got["items"] and all(check(x) for x in got["items"]), q
        assert (await c.get("/api/v1/conversations?status=bogus", headers=root)).status_code == 422


async def test_reply_shows_delivery_state_and_failed_reply_can_be_retried(env: Env) -> None:
    conv = await new_conversation(
        env, "deliv-1", "Can I change my delivery address?", "deliv@example.com"
    )
    root = env.tokens["root"]
    async with env.client() as c:
        env.callback.status = 400
        try:
            r = await c.post(
                f"/api/v1/conversations/{conv['id']}/messages",
                json={"text": "Yes, tell us the new one.", "kind": "reply"},
                headers=root,
            )
            assert r.status_code == 201
            msg = r.json()
            assert msg["delivery_state"] == "queued" and msg["direction"] == "out"

            async def state() -> Any:
                full = await get(c, env, conv["id"])
                m = next(x for x in full["messages"] if x["id"] == msg["id"])
                return m if m["delivery_state"] == "failed" else None

            failed = await wait_for(state)
            assert "400" in failed["delivery_error"] or "recipient" in failed["delivery_error"]
        finally:
            env.callback.status = 200
        r = await c.post(f"/api/v1/messages/{msg['id']}/retry", headers=root)
        assert r.status_code == 200 and r.json()["delivery_state"] == "queued"

        async def sent() -> Any:
            full = await get(c, env, conv["id"])
            m = next(x for x in full["messages"] if x["id"] == msg["id"])
            return m["delivery_state"] == "sent"

        await wait_for(sent)
        again = await c.post(f"/api/v1/messages/{msg['id']}/retry", headers=root)
        assert again.status_code == 409  # only failed replies
        actions = [a["action"] for a in (await get(c, env, conv["id"]))["audit"]]
        assert "delivery_failed" in actions and "reply_retried" in actions
        # A private note never reaches the channel.
        n = len(env.callback.received)
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "customer sounded worried", "kind": "note"},
            headers=root,
        )
        assert r.json()["kind"] == "note" and r.json()["delivery_state"] is None
        await asyncio.sleep(0.3)
        assert len(env.callback.received) == n


async def test_stale_reply_needs_confirmation(env: Env) -> None:
    conv = await new_conversation(
        env, "coll-1", "Is the store open today?", "coll@example.com", thread_key="coll-chat"
    )
    root, sue = env.tokens["root"], env.tokens["sue"]
    async with env.client() as c:
        seen = max(m["id"] for m in (await get(c, env, conv["id"]))["messages"])
        # Meanwhile the customer writes again and a colleague answers.
        await post_inbound(
            c,
            message(
                "coll-2", "Hello?? anyone?", address="coll@example.com", thread_key="coll-chat"
            ),
        )
        await settle(env.daemon)
        full = await get(c, env, conv["id"])
        if not any(m["text"].startswith("Hello??") for m in full["messages"]):
            pytest.fail("the follow-up did not join the conversation")
        await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "Yes, until 6 pm.", "last_seen_message_id": seen, "force": True},
            headers=sue,
        )
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "We are open!", "last_seen_message_id": seen},
            headers=root,
        )
        assert r.status_code == 409
        new = r.json()["new_messages"]
        assert [m["direction"] for m in new] == ["in", "out"]
        assert new[1]["author"] == "supervisor:sue"
        # Seen now: no conflict. Forcing also works.
        latest = max(m["id"] for m in (await get(c, env, conv["id"]))["messages"])
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "We are open!", "last_seen_message_id": latest},
            headers=root,
        )
        assert r.status_code == 201
        # The agent's own earlier reply is not a conflict for them.
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "Come by!", "last_seen_message_id": latest},
            headers=root,
        )
        assert r.status_code == 201


async def test_status_snooze_and_wake_up(env: Env) -> None:
    conv = await new_conversation(env, "snz-1", "Please call me back next week", "snz@example.com")
    root = env.tokens["root"]
    async with env.client() as c:
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/status", json={"status": "snoozed"}, headers=root
        )
        assert r.status_code == 422  # needs a time
        until = datetime.now(UTC) + timedelta(hours=2)
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/status",
            json={"status": "snoozed", "snoozed_until": until.isoformat(), "reason": "next week"},
            headers=root,
        )
        assert r.json()["changed"]
        full = await get(c, env, conv["id"])
        assert full["status"] == "snoozed" and abs(full["snoozed_until"] - until.timestamp()) < 1
        # Two hours later the waker opens it again.
        events = await env.daemon.store.write(wake_snoozed, time.time() + 7201)
        assert {"type": "conversation.updated", "conversation_id": conv["id"]}.items() <= next(
            e for e in events if e["conversation_id"] == conv["id"]
        ).items()
        full = await get(c, env, conv["id"])
        assert full["status"] == "open" and full["snoozed_until"] is None
        assert any(a["action"] == "woke_up" and a["actor"] == "system" for a in full["audit"])
        for status in ("pending", "resolved", "open"):
            r = await c.post(
                f"/api/v1/conversations/{conv['id']}/status", json={"status": status}, headers=root
            )
            assert r.status_code == 200
        full = await get(c, env, conv["id"])
        assert [a["detail"]["to"] for a in full["audit"] if a["action"] == "status_changed"] == [
            "snoozed",
            "pending",
            "resolved",
            "open",
        ]


async def test_snooze_waker_task_wakes_on_time(env: Env) -> None:
    conv = await new_conversation(env, "snz-2", "Remind me about the invoice", "snz2@example.com")
    async with env.client() as c:
        until = datetime.now(UTC) + timedelta(seconds=0.6)
        await c.post(
            f"/api/v1/conversations/{conv['id']}/status",
            json={"status": "snoozed", "snoozed_until": until.isoformat()},
            headers=env.tokens["root"],
        )
        published: list[dict[str, Any]] = []
        task = asyncio.ensure_future(snooze_waker(env.daemon.store, published.extend, interval=0.2))
        try:
            await wait_for(
                lambda: _async(any(e["conversation_id"] == conv["id"] for e in published)), 5
            )
        finally:
            task.cancel()
        assert (await get(c, env, conv["id"]))["status"] == "open"


async def _async(value: Any) -> Any:
    return value


async def test_corrections_are_recorded_for_the_classifier(env: Env) -> None:
    conv = await new_conversation(
        env, "corr-1", "The app is nice but the font is tiny", "corr@example.com"
    )
    alice = env.tokens["alice"] if conv["team"] == "support" else env.tokens["root"]
    async with env.client() as c:
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/classification",
            json={"category": "complaint", "priority": "high", "reason": "tiny font is a bug"},
            headers=alice,
        )
        assert r.status_code == 200 and r.json()["changed"]
        full = await get(c, env, conv["id"])
        assert (full["category"], full["priority"], full["confidence"]) == (
            "complaint",
            "high",
            1.0,
        )
        fields = {k["field"]: k for k in full["corrections"]}
        assert fields["category"]["old_value"] == conv["category"]
        assert fields["category"]["new_value"] == "complaint"
        assert fields["category"]["reason"] == "tiny font is a bug"
        assert fields["priority"]["new_value"] == "high"
        audit = [a["action"] for a in full["audit"]]
        assert "category_corrected" in audit and "priority_corrected" in audit
        export = (await c.get("/api/v1/corrections", headers=env.tokens["root"])).json()["items"]
        mine = [x for x in export if x["conversation_id"] == conv["id"]]
        assert mine and mine[0]["text"].startswith("The app is nice")
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/classification",
            json={"category": "rant"},
            headers=env.tokens["root"],
        )
        assert r.status_code == 422


async def test_tags_canned_replies_and_saved_views(env: Env) -> None:
    conv = await new_conversation(
        env, "tag-1", "Do you deliver on Sundays?", "tag@example.com", name="Tina Turner"
    )
    root, sue, alice = env.tokens["root"], env.tokens["sue"], env.tokens["alice"]
    async with env.client() as c:
        # The rules' own tags ("out-of-hours" after 17:30 UTC) stay as they are.
        before = (await get(c, env, conv["id"]))["tags"]
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/tags",
            json={"add": ["delivery", "weekend"]},
            headers=root,
        )
        assert r.json()["changed"]
        await c.post(
            f"/api/v1/conversations/{conv['id']}/tags", json={"remove": ["weekend"]}, headers=root
        )
        assert sorted((await get(c, env, conv["id"]))["tags"]) == sorted([*before, "delivery"])
        tagged = (await c.get("/api/v1/conversations?tag=delivery&limit=500", headers=root)).json()[
            "items"
        ]
        assert [x["id"] for x in tagged] == [conv["id"]]
        r = await c.post(
            "/api/v1/canned",
            json={
                "shortcut": "sunday",
                "title": "Sunday delivery",
                "body": "Hi {contact.first_name}, I'm {agent.name}. Re #{conversation.id}: "
                "no Sunday deliveries. {unknown.thing}",
            },
            headers=sue,
        )
        assert r.status_code == 201
        canned_id = r.json()["id"]
        listed = (await c.get("/api/v1/canned", headers=alice)).json()
        assert "contact.name" in listed["placeholders"]
        r = await c.get(f"/api/v1/conversations/{conv['id']}/canned/{canned_id}", headers=root)
        assert r.json()["text"] == (
            f"Hi Tina, I'm Root. Re #{conv['id']}: no Sunday deliveries. {{unknown.thing}}"
        )
        dup = await c.post(
            "/api/v1/canned", json={"shortcut": "sunday", "title": "x", "body": "y"}, headers=sue
        )
        assert dup.status_code == 422
        # Saved views are per user.
        csrf = await login(c, "alice")
        r = await c.post(
            "/api/v1/views",
            json={"name": "my urgent", "filters": {"scope": "mine", "priority": "urgent"}},
            headers=csrf,
        )
        assert r.status_code == 201
        bad = await c.post(
            "/api/v1/views", json={"name": "x", "filters": {"evil": "1"}}, headers=csrf
        )
        assert bad.status_code == 422
        views = (await c.get("/api/v1/views")).json()["items"]
        assert [v["name"] for v in views] == ["my urgent"]
        assert (await c.get("/api/v1/views", headers=env.tokens["bob"])).json()["items"] == []
        r = await c.delete(f"/api/v1/views/{views[0]['id']}", headers=env.tokens["bob"])
        assert r.status_code == 404
        assert (await c.delete(f"/api/v1/views/{views[0]['id']}", headers=csrf)).status_code == 200


async def test_attachments_download_with_safe_headers(env: Env) -> None:
    async with env.client() as c:
        await post_inbound(
            c,
            message(
                "att-1",
                "Here is the photo and the invoice",
                address="att@example.com",
                attachments=[
                    {
                        "filename": "photo.png",
                        "content_type": "image/png",
                        "data": base64.b64encode(PNG).decode(),
                    },
                    {
                        "filename": "Rechnung März.pdf",
                        "content_type": "application/pdf",
                        "data": base64.b64encode(b"%PDF-1.4 fake").decode(),
                    },
                    {
                        "filename": "evil.svg",
                        "content_type": "image/svg+xml",
                        "data": base64.b64encode(b"<svg onload='alert(1)'/>").decode(),
                    },
                ],
            ),
        )
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
        conv = next(x for x in items if (x["last_preview"] or "").startswith("Here is the photo"))
        atts = {
            a["filename"]: a for a in (await get(c, env, conv["id"]))["messages"][0]["attachments"]
        }
        r = await c.get(
            f"/api/v1/attachments/{atts['photo.png']['id']}", headers=env.tokens["root"]
        )
        assert r.content == PNG and r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"].startswith("inline;")
        r = await c.get(
            f"/api/v1/attachments/{atts['Rechnung März.pdf']['id']}", headers=env.tokens["root"]
        )
        assert r.headers["content-disposition"].startswith("attachment;")
        assert "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf" in r.headers["content-disposition"]
        r = await c.get(f"/api/v1/attachments/{atts['evil.svg']['id']}", headers=env.tokens["root"])
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert (
            await c.get("/api/v1/attachments/999999", headers=env.tokens["root"])
        ).status_code == 404


async def test_live_feed_and_presence(env: Env) -> None:
    """Two agents: Alice (support) and Carol (complaints). Each stream carries
    only what its reader may see; presence shows who is in a conversation."""
    got: dict[str, list[dict[str, Any]]] = {"alice": [], "carol": []}

    async def follow(who: str, ready: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=env.base, timeout=None) as c:
            async with c.stream("GET", "/api/v1/events", headers=env.tokens[who]) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        data = json.loads(line[5:])
                        if "user" in data:
                            ready.set()
                        else:
                            got[who].append(data)

    ready_a, ready_c = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.ensure_future(follow("alice", ready_a)),
        asyncio.ensure_future(follow("carol", ready_c)),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(ready_a.wait(), ready_c.wait()), 5)
        inquiry = await new_conversation(env, "live-1", "Do you have size 44?", "live@example.com")
        complaint = await new_conversation(
            env, "live-2", "This is unacceptable. Terrible service, the worst.", "lv@example.com"
        )
        assert inquiry["team"] == "support" and complaint["team"] == "complaints"
        async with env.client() as c:
            r = await c.post(
                f"/api/v1/conversations/{inquiry['id']}/presence",
                json={"state": "typing"},
                headers=env.tokens["bob"],
            )
            assert r.json()["presence"][0]["username"] == "bob"
            full = await get(c, env, inquiry["id"], "alice")
            assert {"username": "bob", "name": "Bob", "state": "typing"} in full["presence"]

        def convs(who: str) -> set[int]:
            return {e.get("conversation_id") for e in got[who] if e.get("conversation_id")}

        await wait_for(lambda: _async(inquiry["id"] in convs("alice")))
        await wait_for(lambda: _async(complaint["id"] in convs("carol")))
        await wait_for(lambda: _async(any(e["type"] == "presence" for e in got["alice"])))
        await asyncio.sleep(0.3)
        assert complaint["id"] not in convs("alice")
        assert inquiry["id"] not in convs("carol")
        kinds = {e["type"] for e in got["alice"] if e.get("conversation_id") == inquiry["id"]}
        assert {"conversation.created", "message.created", "presence"} <= kinds
        async with env.client() as c:
            await c.post(
                f"/api/v1/conversations/{inquiry['id']}/presence",
                json={"state": "left"},
                headers=env.tokens["bob"],
            )
            assert (await get(c, env, inquiry["id"], "alice"))["presence"] == []
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_openapi_documents_the_inbox(env: Env) -> None:
    async with env.client() as c:
        spec = (await c.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/conversations/{conversation_id}/assign",
        "/api/v1/conversations/{conversation_id}/status",
        "/api/v1/conversations/{conversation_id}/classification",
        "/api/v1/contacts/{contact_id}/merge",
        "/api/v1/contact-merges/{merge_id}/undo",
        "/api/v1/rules/{name}",
        "/api/v1/events",
        "/api/v1/users",
        "/api/v1/teams/{name}",
    ):
        assert path in paths, path
    post = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MessageOut"
    )
    assert "delivery_state" in spec["components"]["schemas"]["MessageOut"]["properties"]
    assert "409" in post["responses"]
