"""Availability and fair assignment (issue 25 item 2), on each store engine:
only online agents get new work, a freed place takes the team's oldest
waiting conversation (priority, then age), idling turns an agent away and
activity brings them back, signing out of the last session is offline, and
supervisors see each agent's state and load. On PostgreSQL two instances
draining one team at once never fill one place twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.accounts import hash_password
from omnidesk.app import Daemon
from omnidesk.config import AssignmentConfig
from omnidesk.model import now_ts
from omnidesk.store import assignment, open_store
from omnidesk.store.users import create_user, save_team
from tests.conftest import admin_token, message, post_inbound, settle

PASSWORDS = {"alice": "alice-password-123", "bob": "bob-password-1234"}


@pytest.fixture
async def desk(config_factory: Any, daemon_factory: Any) -> AsyncIterator[Daemon]:
    cfg = config_factory(
        assignment={"only_online": True, "idle_away_minutes": 10},
        teams=[
            {
                "name": "support",
                "members": ["alice", "bob"],
                "strategy": "least_loaded",
                "max_open_per_agent": 1,
                "sticky": False,
            }
        ],
    )
    d = await daemon_factory(cfg)
    for name, pw in PASSWORDS.items():
        await d.store.write(
            create_user,
            name,
            role="agent",
            password_hash=hash_password(pw),
            display_name=name.capitalize(),
            teams=["support"],
        )
    yield d


def web(d: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10)


async def sign_in(c: httpx.AsyncClient, who: str) -> dict[str, str]:
    r = await c.post("/api/v1/session", json={"username": who, "password": PASSWORDS[who]})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


async def arrive(d: Daemon, c: httpx.AsyncClient, ext: str, address: str) -> int:
    r = await post_inbound(c, message(ext, f"Where is my parcel {ext}?", address=address))
    assert r.status_code in (200, 202), r.text
    await settle(d)
    cid = await d.store.read(
        lambda db: db.val(
            "SELECT m.conversation_id FROM messages m WHERE m.sender_address = ?"
            " ORDER BY m.id DESC LIMIT 1",
            (address,),
        )
    )
    return int(cid)


async def assignee(d: Daemon, cid: int) -> str | None:
    return await d.store.read(
        lambda db: db.val("SELECT assignee FROM conversations WHERE id = ?", (cid,))
    )


async def test_only_online_agents_get_new_work(desk: Daemon) -> None:
    async with web(desk) as api, web(desk) as alice:
        first = await arrive(desk, api, "a1", "p1@example.com")
        assert await assignee(desk, first) is None  # nobody online: it waits
        await sign_in(alice, "alice")
        # Signing in is coming online: alice takes the waiting conversation.
        assert await assignee(desk, first) == "alice"
        second = await arrive(desk, api, "a2", "p2@example.com")
        # alice is at her cap of 1 and bob is offline: the second one waits.
        assert await assignee(desk, second) is None
        why = await desk.store.read(
            lambda db: db.val(
                "SELECT reason FROM audit WHERE conversation_id = ? AND action = 'routed'",
                (second,),
            )
        )
        assert "at the cap" in why


async def test_freed_place_takes_the_oldest_waiting(desk: Daemon) -> None:
    async with web(desk) as api, web(desk) as alice:
        csrf = await sign_in(alice, "alice")
        c1 = await arrive(desk, api, "f1", "q1@example.com")
        c2 = await arrive(desk, api, "f2", "q2@example.com")
        c3 = await arrive(desk, api, "f3", "q3@example.com")
        assert [await assignee(desk, c) for c in (c1, c2, c3)] == ["alice", None, None]
        # Resolving frees alice's place: the oldest waiting (c2) takes it.
        r = await alice.post(
            f"/api/v1/conversations/{c1}/status", json={"status": "resolved"}, headers=csrf
        )
        assert r.status_code == 200, r.text
        assert await assignee(desk, c2) == "alice"
        assert await assignee(desk, c3) is None
        # Away: a freed place is not filled, and a newer arrival waits too.
        r = await alice.put("/api/v1/me/availability", json={"status": "away"}, headers=csrf)
        assert r.json()["state"] == "away"
        await alice.post(
            f"/api/v1/conversations/{c2}/status", json={"status": "resolved"}, headers=csrf
        )
        c4 = await arrive(desk, api, "f4", "q4@example.com")
        assert await assignee(desk, c3) is None and await assignee(desk, c4) is None
        # A higher priority jumps the queue: c4 is raised to urgent.
        await desk.store.write(
            lambda db: db.run("UPDATE conversations SET priority_rank = 3 WHERE id = ?", (c4,))
        )
        # Coming back online fills the freed place with the queue's head.
        r = await alice.put("/api/v1/me/availability", json={"status": "online"}, headers=csrf)
        assert r.json()["state"] == "online"
        assert await assignee(desk, c4) == "alice"
        assert await assignee(desk, c3) is None
        # Releasing a conversation puts it back in the queue, waiting for
        # someone to take it; the place it frees goes to the next in line.
        r = await alice.post(
            f"/api/v1/conversations/{c4}/assign", json={"assignee": None}, headers=csrf
        )
        assert r.status_code == 200, r.text
        assert await assignee(desk, c4) is None
        assert await assignee(desk, c3) == "alice"  # the place went to the next in line
        audit = await desk.store.read(
            lambda db: db.one(
                "SELECT actor, detail FROM audit WHERE conversation_id = ? AND action = 'routed'"
                " ORDER BY id DESC LIMIT 1",
                (c3,),
            )
        )
        assert audit["actor"] == "routing" and json.loads(audit["detail"])["from_queue"] is True


async def test_idle_turns_away_and_activity_brings_back(desk: Daemon) -> None:
    async with web(desk) as api, web(desk) as bob:
        csrf = await sign_in(bob, "bob")
        assert (await bob.get("/api/v1/me/availability")).json()["state"] == "online"
        # Eleven minutes without a sign of life (idle_away_minutes = 10).
        await desk.store.write(
            lambda db: db.run(
                "UPDATE agent_status SET last_active_at = ? WHERE username = 'bob'",
                (now_ts() - 660,),
            )
        )
        assert (await bob.get("/api/v1/me/availability")).json()["state"] == "away"
        waiting = await arrive(desk, api, "i1", "r1@example.com")
        assert await assignee(desk, waiting) is None
        # The browser reports activity: bob is back and takes the waiting one.
        r = await bob.post("/api/v1/me/activity", headers=csrf)
        assert r.json()["state"] == "online"
        assert await assignee(desk, waiting) == "bob"


async def test_last_session_ending_is_offline_and_supervisors_see_it(desk: Daemon) -> None:
    admin = await admin_token(desk)
    async with web(desk) as api, web(desk) as one, web(desk) as two:
        csrf1 = await sign_in(one, "alice")
        csrf2 = await sign_in(two, "alice")
        await arrive(desk, api, "o1", "s1@example.com")
        board = (await api.get("/api/v1/agents/availability", headers=admin)).json()["agents"]
        rows = {a["username"]: a for a in board}
        assert rows["alice"]["state"] == "online" and rows["alice"]["load"] == 1
        assert rows["alice"]["cap"] == 1 and rows["alice"]["teams"] == ["support"]
        assert rows["bob"]["state"] == "offline" and rows["bob"]["load"] == 0
        await one.delete("/api/v1/session", headers=csrf1)
        # One session left: still online.
        assert (await two.get("/api/v1/me/availability")).json()["state"] == "online"
        await two.delete("/api/v1/session", headers=csrf2)
        board = (await api.get("/api/v1/agents/availability", headers=admin)).json()["agents"]
        assert {a["username"]: a["state"] for a in board}["alice"] == "offline"
        # An agent may not read the board.
        csrf = await sign_in(two, "bob")
        assert (await two.get("/api/v1/agents/availability", headers=csrf)).status_code == 403


@pytest.mark.postgres
async def test_two_instances_never_fill_one_place_twice(pg_url: str, tmp_path: Path) -> None:
    """Two stores on one PostgreSQL database drain the same team at once,
    many times over: each place is filled once (the team lock holds the
    second drain until the first commits, and it then sees the load)."""
    policy = AssignmentConfig(only_online=False)
    a, b = open_store(pg_url), open_store(pg_url)
    await a.open()
    await b.open()
    try:
        await a.write(
            save_team,
            "support",
            members=["alice", "bob"],
            strategy="least_loaded",
            max_open_per_agent=2,
            create=True,
        )

        def queue(db: Any, n: int) -> None:
            now = now_ts()
            cid = db.val(
                "INSERT INTO contacts (name, created_at, updated_at)"
                " VALUES ('x', ?, ?) RETURNING id",
                (now, now),
            )
            for i in range(n):
                db.run(
                    "INSERT INTO conversations (contact_id, channel, status, team, created_at,"
                    " updated_at) VALUES (?, 'api', 'open', 'support', ?, ?)",
                    (cid, now + i, now + i),
                )

        await a.write(queue, 10)
        for _ in range(5):
            await asyncio.gather(
                a.write(assignment.drain_teams, ["support"], policy),
                b.write(assignment.drain_teams, ["support"], policy),
            )
        loads = await a.read(
            lambda db: {
                r["assignee"]: int(r["n"])
                for r in db.all(
                    "SELECT assignee, COUNT(*) AS n FROM conversations"
                    " WHERE assignee IS NOT NULL GROUP BY assignee"
                )
            }
        )
        assert loads == {"alice": 2, "bob": 2}
        oldest = await a.read(
            lambda db: [
                r["assignee"]
                for r in db.all("SELECT assignee FROM conversations ORDER BY created_at, id")
            ]
        )
        assert all(x is not None for x in oldest[:4]) and all(x is None for x in oldest[4:])
    finally:
        await a.close()
        await b.close()
