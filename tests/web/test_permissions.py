"""Nobody reads or changes what their role does not allow.

The route walk covers every route the application has - including routes added
later - so a new endpoint that forgets its authentication fails here.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from tests.conftest import message, post_inbound, settle
from tests.web.conftest import Env, login

pytestmark = pytest.mark.asyncio(loop_scope="module")

COMPLAINT = "This is unacceptable. Terrible service, the worst experience ever."
# Public by design: health and readiness, the API schema and its docs, inbound channel
# endpoints (each checks its provider's signature), the login form and the
# password login API, logout (it only ever ends the caller's own session),
# static assets.
PUBLIC = re.compile(
    # sw.js: the inbox's service worker, a static script like /static/*
    r"^/(healthz|readyz|openapi\.json|docs.*|redoc|login|logout|static.*|sw\.js|webhooks/.*"
    r"|api/v1/inbound/.*|api/v1/session"
    # the customers' survey page: its signed, expiring token is the credential
    r"|survey/.*)$"
)


def _flatten(routes: list[Any], prefix: str = "") -> list[tuple[str, set[str]]]:
    """(path, methods) of every endpoint, through included routers (FastAPI
    keeps them as nested route objects) but not into mounted apps."""
    out: list[tuple[str, set[str]]] = []
    for r in routes:
        if isinstance(r, Mount):
            continue  # static files, channels' own endpoints (signed or public by design)
        if hasattr(r, "original_router"):  # an included router
            out += _flatten(r.original_router.routes, prefix + (r.include_context.prefix or ""))
            continue
        assert isinstance(r, APIRoute | Route), r
        out.append((prefix + r.path, set(r.methods or {"GET"})))
    return out


def all_routes(env: Env) -> list[tuple[str, str]]:
    app = env.daemon.web_server.config.app
    return [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for path, methods in _flatten(app.routes)
        for method in sorted(methods)
        if method != "HEAD"
    ]


async def test_no_route_answers_without_authentication(env: Env) -> None:
    routes = all_routes(env)
    assert len(routes) > 40  # the walk sees the whole app
    async with env.client() as c:
        for method, path in routes:
            if PUBLIC.match(path):
                continue
            r = await c.request(method, path, json={})
            if path == "/" or path.startswith(
                ("/inbox", "/contacts", "/admin", "/reports", "/privacy", "/companies")
            ):
                # UI pages send the browser to the login form and show nothing.
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith(("/login", "/inbox")), (method, path)
                continue
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            r = await c.request(method, path, headers={"Authorization": "Bearer odk_forged"})
            assert r.status_code == 401, (method, path, r.status_code)
    async with httpx.AsyncClient(base_url=env.base, cookies={"omnidesk_session": "forged"}) as c:
        for method, path in routes:
            if PUBLIC.match(path) or not path.startswith("/api/"):
                continue
            r = await c.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code)


async def test_state_changing_calls_with_a_session_need_the_csrf_token(env: Env) -> None:
    async with env.client() as c:
        csrf = await login(c, "root")
        for method, path in all_routes(env):
            if method == "GET" or PUBLIC.match(path):
                continue
            # A classic cross-site form post: the cookie rides along, no token.
            r = await c.request(
                method,
                path,
                content=b"text=hello&kind=reply",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
            assert "CSRF" in r.text
            # A wrong token, or a right token from a foreign origin, fail too.
            r = await c.request(method, path, json={}, headers={"X-CSRF-Token": "guess"})
            assert r.status_code == 403, (method, path)
        r = await c.post(
            "/api/v1/me/tokens",
            json={"name": "x"},
            headers={**csrf, "Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "cross-origin" in r.text
        # The same call with the token from this origin works.
        r = await c.post("/api/v1/me/tokens", json={"name": "x"}, headers=csrf)
        assert r.status_code == 201


async def test_logout_form_without_token_does_not_log_out(env: Env) -> None:
    async with env.client() as c:
        await login(c, "alice")
        r = await c.post("/logout", data={"csrf_token": "wrong"})
        assert r.status_code == 303
        assert (await c.get("/api/v1/me")).status_code == 200  # still logged in
        r = await c.post("/login", data={"username": "alice", "password": "x"})
        assert r.status_code == 403  # no login-form token: refused before any check


async def seed_two_teams(env: Env) -> tuple[dict[str, Any], dict[str, Any]]:
    async with env.client() as c:
        await post_inbound(
            c,
            message(
                "perm-complaint",
                COMPLAINT,
                address="grumpy@example.com",
                name="Grumpy",
                attachments=[
                    {"filename": "proof.txt", "content_type": "text/plain", "data": "aGk="}
                ],
                html="<p>see <b>this</b></p>",
            ),
        )
        await post_inbound(
            c, message("perm-inquiry", "What time do you open on Monday?", address="q@example.com")
        )
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
    complaint = next(x for x in items if x["contact_name"] == "Grumpy")
    inquiry = next(x for x in items if x["last_preview"].startswith("What time"))
    assert complaint["team"] == "complaints" and inquiry["team"] == "support"
    return complaint, inquiry


async def test_agent_sees_only_their_teams(env: Env) -> None:
    complaint, inquiry = await seed_two_teams(env)
    alice, carol = env.tokens["alice"], env.tokens["carol"]
    async with env.client() as c:
        listed = (await c.get("/api/v1/conversations?limit=500", headers=alice)).json()["items"]
        assert {x["team"] for x in listed} <= {"support"} and inquiry["id"] in {
            x["id"] for x in listed
        }
        full = await c.get(f"/api/v1/conversations/{complaint['id']}", headers=alice)
        assert full.status_code == 403
        assert (await c.get(f"/api/v1/conversations/{complaint['id']}", headers=carol)).is_success
        conv = (await c.get(f"/api/v1/conversations/{complaint['id']}", headers=carol)).json()
        msg = conv["messages"][0]
        att = msg["attachments"][0]
        for path in (
            f"/api/v1/contacts/{complaint['contact_id']}",
            f"/api/v1/attachments/{att['id']}",
            f"/api/v1/messages/{msg['id']}/html",
        ):
            assert (await c.get(path, headers=alice)).status_code == 403, path
            assert (await c.get(path, headers=carol)).status_code == 200, path
        for method, path, body in (
            ("POST", f"/api/v1/conversations/{complaint['id']}/messages", {"text": "hi"}),
            ("POST", f"/api/v1/conversations/{complaint['id']}/status", {"status": "resolved"}),
            ("POST", f"/api/v1/conversations/{complaint['id']}/assign", {"assignee": "alice"}),
            ("POST", f"/api/v1/conversations/{complaint['id']}/tags", {"add": ["x"]}),
            ("POST", f"/api/v1/conversations/{complaint['id']}/presence", {"state": "viewing"}),
            ("PATCH", f"/api/v1/contacts/{complaint['contact_id']}", {"attributes": {"a": "b"}}),
        ):
            r = await c.request(method, path, json=body, headers=alice)
            assert r.status_code == 403, (path, r.text)
        # Search does not reveal another team's customers.
        found = (await c.get("/api/v1/contacts?q=grumpy", headers=alice)).json()["items"]
        assert found == []
        assert (await c.get("/api/v1/contacts?q=grumpy", headers=carol)).json()["items"]


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"username": "mallory", "role": "admin"}),
        ("PATCH", "/api/v1/users/alice", {"role": "admin"}),
        ("PUT", "/api/v1/teams/support", {"members": ["alice"]}),
        ("DELETE", "/api/v1/teams/support", None),
        ("GET", "/api/v1/audit", None),
        ("GET", "/api/v1/corrections", None),
        ("GET", "/api/v1/rules", None),
        ("GET", "/api/v1/rules/50-routing.toml", None),
        ("PUT", "/api/v1/rules/50-routing.toml", {"text": ""}),
        ("GET", "/api/v1/quarantine", None),
        ("POST", "/api/v1/quarantine/1/retry", None),
        ("GET", "/api/v1/contact-merges", None),
        ("POST", "/api/v1/contact-merges/1/undo", None),
        ("POST", "/api/v1/canned", {"shortcut": "x", "title": "x", "body": "x"}),
    ],
)
async def test_agent_gets_403_from_admin_endpoints(
    env: Env, method: str, path: str, body: dict[str, Any] | None
) -> None:
    async with env.client() as c:
        r = await c.request(method, path, json=body, headers=env.tokens["alice"])
        assert r.status_code == 403, r.text
        if "canned" not in path:
            # Supervisors reassign and see everything, but are not admins.
            r = await c.request(method, path, json=body, headers=env.tokens["sue"])
            assert r.status_code == 403, r.text


async def test_agent_takes_and_releases_but_does_not_reassign(env: Env) -> None:
    _, inquiry = await seed_two_teams(env)
    cid = inquiry["id"]
    alice, bob, sue = env.tokens["alice"], env.tokens["bob"], env.tokens["sue"]
    async with env.client() as c:
        await c.post(f"/api/v1/conversations/{cid}/assign", json={"assignee": None}, headers=sue)
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign", json={"assignee": "bob"}, headers=alice
        )
        assert r.status_code == 403
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign", json={"assignee": "alice"}, headers=alice
        )
        assert r.status_code == 200 and r.json()["changed"]
        # Bob cannot take what Alice holds; Alice can give it back.
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign", json={"assignee": "bob"}, headers=bob
        )
        assert r.status_code == 403
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign",
            json={"assignee": "alice", "team": "complaints"},
            headers=alice,
        )
        assert r.status_code == 403  # moving teams is a supervisor's call
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign", json={"assignee": None}, headers=alice
        )
        assert r.status_code == 200
        r = await c.post(
            f"/api/v1/conversations/{cid}/assign",
            json={"assignee": "carol", "team": "complaints", "reason": "angry"},
            headers=sue,
        )
        assert r.status_code == 200
        conv = (await c.get(f"/api/v1/conversations/{cid}", headers=sue)).json()
        assert (conv["assignee"], conv["team"]) == ("carol", "complaints")
        last = [a for a in conv["audit"] if a["action"] == "assigned"][-1]
        assert last["actor"] == "supervisor:sue" and last["reason"] == "angry"
        # Alice lost sight of it with the move.
        assert (await c.get(f"/api/v1/conversations/{cid}", headers=alice)).status_code == 403


async def test_disabled_account_and_demoted_token(env: Env) -> None:
    root = env.tokens["root"]
    async with env.client() as c:
        r = await c.post(
            "/api/v1/users",
            json={"username": "temp", "role": "supervisor", "password": "temp-password-1"},
            headers=root,
        )
        assert r.status_code == 201
        session = httpx.AsyncClient(base_url=env.base)
        async with session:
            r = await session.post(
                "/api/v1/session", json={"username": "temp", "password": "temp-password-1"}
            )
            csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
            token = (
                await session.post("/api/v1/me/tokens", json={"name": "t"}, headers=csrf)
            ).json()
            bearer = {"Authorization": f"Bearer {token['token']}"}
            assert (await c.get("/api/v1/me", headers=bearer)).json()["role"] == "supervisor"
            # Demoted: the token follows the user down.
            await c.patch("/api/v1/users/temp", json={"role": "agent"}, headers=root)
            assert (await c.get("/api/v1/me", headers=bearer)).json()["role"] == "agent"
            # Disabled: the session and the token stop working at once.
            r = await c.patch("/api/v1/users/temp", json={"disabled": True}, headers=root)
            assert r.json()["disabled"] is True
            assert (await session.get("/api/v1/me")).status_code == 401
            assert (await c.get("/api/v1/me", headers=bearer)).status_code == 401
        r = await c.patch("/api/v1/users/root", json={"role": "agent"}, headers=root)
        assert r.status_code == 422 and "last active admin" in r.text
        audit = (await c.get("/api/v1/audit?actor=admin:root", headers=root)).json()["items"]
        changed = [a for a in audit if a["action"] == "user_updated"]
        assert changed[0]["detail"]["changed"]["disabled"] == {"from": False, "to": True}


async def test_contact_ratings_of_other_teams_stay_hidden(env: Env) -> None:
    """One customer, a complaint (complaints team) and an inquiry (support),
    each rated: an agent of support sees the contact with the inquiry's
    rating only, never the complaint's rating and comment."""
    async with env.client() as c:
        for ext, text in (("rated-c", COMPLAINT), ("rated-i", "Do you ship to Norway?")):
            await post_inbound(c, message(ext, text, address="rated@example.com", name="Rated"))
        await settle(env.daemon)
        items = (await c.get("/api/v1/conversations?limit=500", headers=env.tokens["root"])).json()[
            "items"
        ]
    mine = [x for x in items if x["contact_name"] == "Rated"]
    by_team = {x["team"]: x for x in mine}
    assert set(by_team) == {"complaints", "support"}

    def rate(db: Any) -> None:
        for team, x in by_team.items():
            db.run(
                "INSERT INTO surveys (conversation_id, contact_id, channel, resolved_at, state,"
                " scale, send_at, rating, comment, team, created_at)"
                " VALUES (?, ?, 'api', 1, 'answered', 5, 1, ?, ?, ?, 1)",
                (x["id"], x["contact_id"], 1 if team == "complaints" else 5, f"about {team}", team),
            )

    await env.daemon.store.write(rate)
    contact_id = mine[0]["contact_id"]
    async with env.client() as c:
        seen = (await c.get(f"/api/v1/contacts/{contact_id}", headers=env.tokens["alice"])).json()
        everything = (
            await c.get(f"/api/v1/contacts/{contact_id}", headers=env.tokens["root"])
        ).json()
    assert [s["comment"] for s in seen["surveys"]] == ["about support"]
    assert sorted(s["comment"] for s in everything["surveys"]) == [
        "about complaints",
        "about support",
    ]
