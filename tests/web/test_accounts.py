"""Password login, session cookies, login throttling, the agents CLI, users and
teams managed by admins (and routing that follows the teams in the database)."""

from __future__ import annotations

import re

import httpx
import pytest

from omnidesk.store.users import get_user, list_teams
from tests.conftest import message, post_inbound, settle
from tests.web.conftest import USERS, Env, login

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def form_login(c: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await c.get("/login?next=/contacts")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return await c.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": token.group(1),
            "next": "/contacts",
        },
    )


async def test_login_form_sets_a_safe_session_cookie(env: Env) -> None:
    async with env.client() as c:
        r = await form_login(c, "alice", USERS["alice"][2])
        assert r.status_code == 303 and r.headers["location"] == "/contacts"
        cookie = r.headers["set-cookie"]
        assert "omnidesk_session=" in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain http here; https below
        page = await c.get("/inbox")
        assert page.status_code == 200 and "Alice" in page.text
        me = (await c.get("/api/v1/me")).json()
        assert me["username"] == "alice" and me["teams"] == ["support"] and me["via"] == "session"
        # Logging out ends the session on the server, not only in the browser.
        old = c.cookies.get("omnidesk_session")
        r = await c.post("/logout", data={"csrf_token": me["csrf_token"]})
        assert r.status_code == 303
    async with httpx.AsyncClient(base_url=env.base, cookies={"omnidesk_session": old}) as c2:
        assert (await c2.get("/api/v1/me")).status_code == 401


async def test_next_never_leaves_the_site(env: Env) -> None:
    async with env.client() as c:
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            page = await c.get("/login", params={"next": evil})
            assert 'name="next" value="/inbox"' in page.text


async def test_secure_cookie_behind_tls(env: Env) -> None:
    cfg = env.daemon.config
    old = cfg.public_url
    cfg.public_url = "https://desk.example.com"
    try:
        async with env.client() as c:
            r = await c.post(
                "/api/v1/session", json={"username": "bob", "password": USERS["bob"][2]}
            )
            assert "Secure" in r.headers["set-cookie"]
    finally:
        cfg.public_url = old


async def test_failed_logins_lock_the_username_out_with_backoff(env: Env) -> None:
    # login_lockout_after = 3 in this module's config.
    async with env.client() as c:
        for _ in range(3):
            r = await c.post("/api/v1/session", json={"username": "carol", "password": "nope"})
            assert r.status_code == 401
        r = await c.post("/api/v1/session", json={"username": "carol", "password": "nope"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 30
        # Locked: even the right password is not checked now.
        r = await c.post(
            "/api/v1/session", json={"username": "carol", "password": USERS["carol"][2]}
        )
        assert r.status_code == 429
        r = await form_login(c, "carol", USERS["carol"][2])
        assert r.status_code == 429 and "Too many failed logins" in r.text
        # An unknown user gets the same answer as a wrong password.
        r = await c.post("/api/v1/session", json={"username": "nobody-x", "password": "nope"})
        assert r.status_code in (401, 429)
    audit = await env.daemon.store.read(
        lambda db: db.all("SELECT detail FROM audit WHERE action = 'login_failed'")
    )
    assert any("carol" in r["detail"] for r in audit)
    # Let the rest of the module log in from this address again.
    await env.daemon.store.write(lambda db: db.run("DELETE FROM login_throttle"))


async def test_json_login_needs_json(env: Env) -> None:
    async with env.client() as c:
        r = await c.post(
            "/api/v1/session",
            content=b'{"username": "bob", "password": "bob-password-1234"}',
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code in (415, 422)


async def test_admin_manages_users_and_the_audit_records_it(env: Env) -> None:
    root = env.tokens["root"]
    async with env.client() as c:
        r = await c.post(
            "/api/v1/users",
            json={
                "username": "dora",
                "role": "agent",
                "display_name": "Dora",
                "password": "short",
                "teams": ["support"],
            },
            headers=root,
        )
        assert r.status_code == 422 and "at least 10" in r.text
        r = await c.post(
            "/api/v1/users",
            json={"username": "dora", "password": "dora-password-1", "teams": ["nosuch"]},
            headers=root,
        )
        assert r.status_code == 422 and "no team" in r.text
        r = await c.post(
            "/api/v1/users",
            json={"username": "dora", "password": "dora-password-1", "teams": ["support"]},
            headers=root,
        )
        assert r.status_code == 201 and r.json()["teams"] == ["support"]
        assert "password" not in r.text
        dup = await c.post("/api/v1/users", json={"username": "dora"}, headers=root)
        assert dup.status_code == 422
        r = await c.patch(
            "/api/v1/users/dora",
            json={"teams": ["support", "billing"], "reason": "covers billing"},
            headers=root,
        )
        assert r.json()["teams"] == ["billing", "support"]
        assert (await c.patch("/api/v1/users/ghost", json={}, headers=root)).status_code == 404
        users = (await c.get("/api/v1/users", headers=root)).json()
        assert {u["username"] for u in users} >= {"root", "alice", "dora"}
        assert all("password_hash" not in u for u in users)
        audit = (await c.get("/api/v1/audit?limit=20", headers=root)).json()["items"]
        upd = next(a for a in audit if a["action"] == "user_updated")
        assert upd["reason"] == "covers billing" and upd["actor"] == "admin:root"
        assert upd["detail"]["changed"]["teams"]["to"] == ["billing", "support"]


async def test_teams_live_in_the_database_and_routing_follows_them(env: Env) -> None:
    root = env.tokens["root"]
    teams = await env.daemon.store.read(list_teams)
    assert {t["name"] for t in teams} >= {"support", "complaints", "billing"}  # seeded
    async with env.client() as c:
        r = await c.put(
            "/api/v1/teams/complaints",
            json={"members": ["dora"], "strategy": "round_robin", "reason": "carol on leave"},
            headers=root,
        )
        assert r.status_code == 200 and r.json()["members"] == ["dora"]
        await post_inbound(
            c,
            message(
                "teams-1",
                "This is unacceptable. Terrible service, the worst.",
                address="t1@example.com",
            ),
        )
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=root)).json()["items"]
        conv = next(x for x in items if x["contact_name"] == "Ann" and x["team"] == "complaints")
        assert conv["assignee"] == "dora"
        # Dora's principal now includes the team; Carol's no longer does.
        dora = httpx.AsyncClient(base_url=env.base)
        async with dora:
            await dora.post(
                "/api/v1/session", json={"username": "dora", "password": "dora-password-1"}
            )
            assert "complaints" in (await dora.get("/api/v1/me")).json()["teams"]
        carol = (await c.get("/api/v1/me", headers=env.tokens["carol"])).json()
        assert carol["teams"] == []
        r = await c.put("/api/v1/teams/complaints", json={"members": ["carol"]}, headers=root)
        assert r.json()["members"] == ["carol"]
        carol = (await c.get("/api/v1/me", headers=env.tokens["carol"])).json()
        assert carol["teams"] == ["complaints"]
        r = await c.put("/api/v1/teams/newteam", json={"members": ["alice"]}, headers=root)
        assert r.status_code == 200
        assert (await c.delete("/api/v1/teams/newteam", headers=root)).status_code == 200
        assert (await c.delete("/api/v1/teams/newteam", headers=root)).status_code == 404


async def test_my_tokens_act_as_me(env: Env) -> None:
    async with env.client() as c:
        csrf = await login(c, "alice")
        r = await c.post("/api/v1/me/tokens", json={"name": "zap", "role": "admin"}, headers=csrf)
        assert r.status_code == 403
        r = await c.post("/api/v1/me/tokens", json={"name": "zap"}, headers=csrf)
        token = r.json()["token"]
        listed = (await c.get("/api/v1/me/tokens")).json()["items"]
        assert any(t["name"] == "zap" for t in listed) and token not in str(listed)
        bearer = {"Authorization": f"Bearer {token}"}
        me = (await c.get("/api/v1/me", headers=bearer)).json()
        assert me == {**me, "username": "alice", "role": "agent", "teams": ["support"]}
        tid = next(t["id"] for t in listed if t["name"] == "zap")
        assert (await c.delete(f"/api/v1/me/tokens/{tid}", headers=csrf)).status_code == 200
        assert (await c.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_user_row_has_argon2_hash(env: Env) -> None:
    row = await env.daemon.store.read(
        lambda db: db.val("SELECT password_hash FROM users WHERE username = 'alice'")
    )
    assert row.startswith("$argon2id$")
    assert (await env.daemon.store.read(get_user, "alice"))["teams"] == ["support"]
