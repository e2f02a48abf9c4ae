"""Every operation of the OpenAPI schema, called by every kind of caller.

The operations come from ``/openapi.json``, so a route added tomorrow is in
the matrix without anyone editing this file. What each caller should get
comes from the route itself, not from a list kept here:

* its **guard**, read off FastAPI's dependency tree: ``require_admin``,
  ``require_supervisor``, ``require_user`` (acts as an account),
  ``current_principal`` (any caller with a token or session), or none (public);
* its **path parameters**: ``conversation_id``, ``message_id``,
  ``attachment_id`` and ``contact_id`` name something of one team, which an
  agent of another team (or a token without a user, who has no team) must
  not reach; ``view_id`` and ``token_id`` name something one account owns.

Callers: anonymous, a token made without a user, an agent of another team,
a supervisor, an admin. Every answer is under 500, and no answer to an
agent of another team or a user-less token carries the customer's data. A
path parameter without a value here fails the test with its name: add the
value, and say in :data:`SCOPED` or :data:`OWNED` who may reach it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute

from omnidesk.store.tokens import create_token
from omnidesk.web.auth import current_principal, require_admin, require_supervisor, require_user
from tests.conftest import post_inbound, settle
from tests.web.conftest import Env

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The admin goes last: its calls change things.
CALLERS = ("anonymous", "userless", "other_team", "supervisor", "admin")
GUARDS: dict[Callable[..., Any], str] = {
    require_admin: "admin",
    require_supervisor: "supervisor",
    require_user: "account",
    current_principal: "authenticated",
}
SCOPED = {"conversation_id", "message_id", "attachment_id", "contact_id"}  # one team's
OWNED = {"view_id", "token_id"}  # one account's (alice's: none of the callers)
MARKERS = ("matrixsecret", "MATRIXSECRET")  # the support customer's address and words


def api_routes(routes: list[Any], prefix: str = "") -> dict[tuple[str, str], APIRoute]:
    """(full path, method) -> route, through included routers (FastAPI keeps
    them nested, each with its prefix)."""
    out: dict[tuple[str, str], APIRoute] = {}
    for r in routes:
        if hasattr(r, "original_router"):
            out |= api_routes(r.original_router.routes, prefix + (r.include_context.prefix or ""))
        elif isinstance(r, APIRoute):
            out |= {(prefix + r.path, m.lower()): r for m in r.methods}
    return out


def guard_of(route: APIRoute) -> str:
    """The strictest guard in the route's dependency tree."""
    found: set[str] = set()
    stack = [route.dependant]
    while stack:
        d = stack.pop()
        if d.call in GUARDS:
            found.add(GUARDS[d.call])  # type: ignore[index]
        stack.extend(d.dependencies)
    for level in ("admin", "supervisor", "account", "authenticated"):
        if level in found:
            return level
    return "public"


def expected(level: str, params: set[str], caller: str) -> str:
    """'allowed' (not 401/403), or the refusals that are right."""
    if level == "public":
        return "any"
    if caller == "anonymous":
        return "401"
    if level == "admin":
        return "allowed" if caller == "admin" else "403"  # admins manage anyone's
    if level == "supervisor" and caller not in ("admin", "supervisor"):
        return "403"
    if level == "account" and caller == "userless":
        return "403"
    if params & OWNED:
        return "403/404"
    if params & SCOPED and caller in ("other_team", "userless"):
        return "403/404"
    return "allowed"


def matches(outcome: str, status: int) -> bool:
    if status >= 500:
        return False
    if outcome == "any":
        return True
    if outcome == "allowed":
        return status not in (401, 403)
    return str(status) in outcome.split("/")


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """The smallest value the schema accepts (required fields only)."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], components)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example(props[k], components) for k in schema.get("required", [])}
    if kind == "array":
        n = schema.get("minItems", 0)
        return [example(schema.get("items", {}), components) for _ in range(n)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if schema.get("format") == "date-time":
        return "2030-01-01T00:00:00Z"
    return "x" * max(1, schema.get("minLength", 1))


async def seed(env: Env) -> dict[str, Any]:
    """One support conversation with an attachment, and what alice owns."""
    root, alice = env.tokens["root"], env.tokens["alice"]
    async with env.client() as c:
        r = await post_inbound(
            c,
            {
                "external_id": "matrix-1",
                "sender": {"kind": "email", "address": "matrixsecret@example.com"},
                "text": "MATRIXSECRET: when do you open?",
                "attachments": [
                    {
                        "filename": "m.txt",
                        "content_type": "text/plain",
                        "data": base64.b64encode(b"MATRIXSECRET").decode(),
                    }
                ],
            },
        )
        assert r.status_code == 202
        await settle(env.daemon)
        convs = (await c.get("/api/v1/conversations?limit=500", headers=root)).json()["items"]
        conv = next(x for x in convs if x["last_preview"].startswith("MATRIXSECRET"))
        assert conv["team"] == "support"
        full = (await c.get(f"/api/v1/conversations/{conv['id']}", headers=root)).json()
        message = full["messages"][0]
        canned = await c.post(
            "/api/v1/canned",
            json={"shortcut": "mx", "title": "mx", "body": "hello", "team": "support"},
            headers=root,
        )
        view = await c.post("/api/v1/views", json={"name": "mine"}, headers=alice)
        token = await c.post("/api/v1/me/tokens", json={"name": "matrix"}, headers=alice)
    userless = await env.daemon.store.write(create_token, "agent", name="userless")
    return {
        "values": {
            "conversation_id": conv["id"],
            "message_id": message["id"],
            "attachment_id": message["attachments"][0]["id"],
            "contact_id": conv["contact_id"],
            "canned_id": canned.json()["id"],
            "view_id": view.json()["id"],
            "token_id": token.json()["id"],
            "username": "alice",
            "qid": 1,
            "merge_id": 1,
            "channel": "api",
            "company_id": 1,
            "policy": "no-such-policy",
        },
        "names": {
            "/api/v1/teams/{name}": "matrix-team",
            "/api/v1/rules/{name}": "50-routing.toml",
            "/api/v1/rules/{name}/check": "50-routing.toml",
            "/api/v1/rules/{name}/try": "50-routing.toml",
            "/api/v1/reports/{name}": "volume",
        },
        "headers": {
            "anonymous": {},
            "userless": {"Authorization": f"Bearer {userless}"},
            "other_team": env.tokens["carol"],
            "supervisor": env.tokens["sue"],
            "admin": root,
        },
    }


async def test_every_operation_for_every_caller(env: Env) -> None:
    fixtures = await seed(env)
    app = env.daemon.web_server.config.app
    routes = api_routes(app.routes)
    async with env.client() as c:
        schema = (await c.get("/openapi.json")).json()
        components = schema.get("components", {}).get("schemas", {})
        failures: list[str] = []
        calls = 0
        for path, ops in schema["paths"].items():
            for method, op in ops.items():
                route = routes[(path, method)]
                level = guard_of(route)
                params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                url = path
                for name in params:
                    value = fixtures["names"].get(path) if name == "name" else None
                    value = value or fixtures["values"].get(name)
                    assert value is not None, f"{path}: no value for path parameter {name!r}"
                    url = url.replace("{" + name + "}", str(value))
                query = {
                    p["name"]: example(p["schema"], components)
                    for p in op.get("parameters", [])
                    if p["in"] == "query" and p.get("required")
                }
                body_schema = (
                    op.get("requestBody", {})
                    .get("content", {})
                    .get("application/json", {})
                    .get("schema")
                )
                body = example(body_schema, components) if body_schema else None
                for caller in CALLERS:
                    outcome = expected(level, params, caller)
                    async with c.stream(
                        method.upper(),
                        url,
                        params=query,
                        json=body,
                        headers=fixtures["headers"][caller],
                    ) as r:
                        streaming = r.headers.get("content-type", "").startswith(
                            "text/event-stream"
                        )
                        text = "" if streaming else (await r.aread()).decode(errors="replace")
                    calls += 1
                    if not matches(outcome, r.status_code):
                        failures.append(
                            f"{method.upper()} {url} as {caller} ({level}): expected {outcome},"
                            f" got {r.status_code} {text[:120]}"
                        )
                    if caller in ("other_team", "userless") and any(m in text for m in MARKERS):
                        failures.append(f"{method.upper()} {url} as {caller}: customer data leaked")
        assert not failures, "\n".join(failures)
        assert calls >= 5 * 50  # the whole schema was walked
