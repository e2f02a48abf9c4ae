"""Accounts API: the caller, their API tokens, users and teams (admins), the
audit trail and classifier corrections (admins)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from ..accounts import PasswordError, check_password_rules, hash_password
from ..store import jsoncol
from ..store.actions import list_corrections
from ..store.audit import add_audit
from ..store.base import Db, row_dict
from ..store.tokens import Owner, create_token, list_tokens, lookup_token, revoke_token
from ..store.users import (
    ROLE_RANK,
    AccountError,
    create_user,
    delete_team,
    get_user,
    list_teams,
    list_users,
    save_team,
    update_user,
)
from .auth import Principal, current_principal, require_admin, require_user
from .deps import DB_INT_MAX, get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["accounts"])

Role = Literal["agent", "supervisor", "admin"]


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str | None
    email: str | None
    role: str
    disabled: bool
    teams: list[str]
    created_at: float
    updated_at: float
    last_login_at: float | None


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: Role = "agent"
    display_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    password: str | None = Field(None, description="omit to create an account without one")
    teams: list[str] = []


class UserPatch(BaseModel):
    role: Role | None = None
    display_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    password: str | None = None
    disabled: bool | None = None
    teams: list[str] | None = None
    reason: str | None = Field(None, max_length=1000)


class TeamIn(BaseModel):
    members: list[str] | None = None
    strategy: Literal["round_robin", "least_loaded", "manual"] | None = None
    max_open_per_agent: int | None = Field(None, ge=1, le=100_000)
    sticky: bool | None = None
    reason: str | None = Field(None, max_length=1000)


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="what the token is for")
    role: Role | None = Field(None, description="at most your own role (default: yours)")


# -- the caller ----------------------------------------------------------------


@router.get("/me")
async def me(p: Principal = Depends(current_principal)) -> dict[str, Any]:
    """Who is calling, with role and teams (and the CSRF token for a session)."""
    return {
        "username": p.username,
        "display_name": p.display_name,
        "role": p.role,
        "teams": list(p.teams),
        "via": p.via,
        "csrf_token": p.csrf_token,
    }


class TokenOut(BaseModel):
    id: str = Field(description="the token's public id (`tok_...`): revoke it by this")
    role: str
    name: str | None
    username: str | None = Field(description="the user it acts as; null: made without a user")
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class TokenList(BaseModel):
    items: list[TokenOut]


class NewTokenOut(BaseModel):
    id: str = Field(description="the token's public id")
    token: str = Field(description="the secret: shown this once, never again")
    role: str
    name: str


TokenId = Annotated[
    str, Path(pattern=r"^tok_[0-9a-f]{24}$", description="a token's public id (`tok_...`)")
]


@router.get("/me/tokens", response_model=TokenList)
async def my_tokens(
    p: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Your API tokens; a token made without a user sees only itself."""
    return {"items": await services.store.read(list_tokens, p.token_owner())}


@router.post("/me/tokens", status_code=201, response_model=NewTokenOut)
async def new_token(
    body: TokenIn,
    p: Principal = Depends(require_user),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Create an API token acting as you (shown once)."""
    role = body.role or p.role
    if ROLE_RANK[role] > ROLE_RANK[p.role]:
        raise HTTPException(403, "a token cannot outrank its user")

    def make(db: Db) -> dict[str, Any]:
        token = create_token(db, role, name=body.name, username=p.username)
        made = lookup_token(db, token)
        assert made is not None
        add_audit(
            db, p.actor, "token_created", detail={"id": made["id"], "name": body.name, "role": role}
        )
        return {"id": made["id"], "token": token, "role": role, "name": body.name}

    return await services.store.write(make)


async def _revoke(
    services: WebServices, p: Principal, token_id: str, owner: Owner
) -> dict[str, Any]:
    def drop(db: Db) -> dict[str, Any] | None:
        gone = revoke_token(db, token_id, owner)
        if gone is not None:
            add_audit(
                db,
                p.actor,
                "token_revoked",
                detail={"id": token_id, "name": gone["name"], "username": gone["username"]},
            )
        return gone

    if await services.store.write(drop) is None:
        raise HTTPException(404, "no such live token" + ("" if owner.everyone else " of yours"))
    return {"revoked": token_id}


@router.delete("/me/tokens/{token_id}")
async def drop_token(
    token_id: TokenId,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Revoke one of your tokens (a token made without a user: only itself).
    Admins revoke anyone's with ``DELETE /api/v1/tokens/{id}``."""
    return await _revoke(services, p, token_id, p.token_owner())


# -- every token (admins) -------------------------------------------------------


@router.get("/tokens", response_model=TokenList, tags=["admin"])
async def all_tokens(
    _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Every API token, live and revoked (never a secret)."""
    return {"items": await services.store.read(list_tokens, Owner.anyone())}


@router.delete("/tokens/{token_id}", tags=["admin"])
async def revoke_any_token(
    token_id: TokenId,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Revoke any token (recorded in the audit trail)."""
    return await _revoke(services, p, token_id, Owner.anyone())


# -- users (admins) ------------------------------------------------------------


async def _hash(password: str | None, username: str) -> str | None:
    if password is None:
        return None
    try:
        check_password_rules(password, username)
    except PasswordError as exc:
        raise HTTPException(422, str(exc)) from None
    return await asyncio.to_thread(hash_password, password)


@router.get("/users", response_model=list[UserOut])
async def users(
    _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> list[dict[str, Any]]:
    return await services.store.read(list_users)


@router.get("/agents")
async def agents(
    _: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Who can be assigned: active accounts and team members (names only)."""

    def load(db: Db) -> list[dict[str, Any]]:
        people: dict[str, dict[str, Any]] = {}
        for r in db.all("SELECT username, display_name, role FROM users WHERE disabled = 0"):
            people[r["username"]] = {**dict(row_dict(r) or {}), "teams": []}
        for r in db.all(
            "SELECT tm.team, tm.username FROM team_members tm"
            " LEFT JOIN users u ON u.username = tm.username WHERE COALESCE(u.disabled, 0) = 0"
        ):
            people.setdefault(
                r["username"], {"username": r["username"], "display_name": None, "role": "agent"}
            ).setdefault("teams", []).append(r["team"])
        return sorted(people.values(), key=lambda x: x["username"])

    return {"items": await services.store.read(load)}


@router.post("/users", status_code=201, response_model=UserOut)
async def add_user(
    body: UserIn,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    pw = await _hash(body.password, body.username)

    def make(db: Db) -> dict[str, Any]:
        u = create_user(
            db,
            body.username,
            role=body.role,
            password_hash=pw,
            display_name=body.display_name,
            email=body.email,
            teams=body.teams,
        )
        add_audit(
            db,
            p.actor,
            "user_created",
            detail={"username": u["username"], "role": u["role"], "teams": u["teams"]},
        )
        return u

    try:
        return await services.store.write(make)
    except AccountError as exc:
        raise HTTPException(422, str(exc)) from None


@router.patch("/users/{username}", response_model=UserOut)
async def edit_user(
    username: str,
    body: UserPatch,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Change role, name, e-mail, teams or password, or disable the account
    (which ends its sessions and revokes its tokens)."""
    fields = body.model_dump(exclude_unset=True, exclude={"password", "reason"})
    if body.password is not None:
        fields["password_hash"] = await _hash(body.password, username)

    def change(db: Db) -> dict[str, Any]:
        before = get_user(db, username)
        after = update_user(db, username, **fields)
        assert before is not None
        diff = {
            k: {"from": before.get(k), "to": after.get(k)}
            for k in ("role", "display_name", "email", "disabled", "teams")
            if before.get(k) != after.get(k)
        }
        if "password_hash" in fields:
            diff["password"] = {"from": "***", "to": "*** (changed)"}
        add_audit(
            db,
            p.actor,
            "user_updated",
            reason=body.reason,
            detail={"username": username, "changed": diff},
        )
        return after

    try:
        return await services.store.write(change)
    except AccountError as exc:
        raise HTTPException(404 if "no user" in str(exc) else 422, str(exc)) from None


# -- teams ---------------------------------------------------------------------


@router.get("/teams")
async def teams(
    _: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    return {"items": await services.store.read(list_teams)}


@router.put("/teams/{name}")
async def put_team(
    name: str,
    body: TeamIn,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Create or change a team (members in round-robin order, strategy, cap)."""

    def change(db: Db) -> dict[str, Any]:
        before = next((t for t in list_teams(db) if t["name"] == name), None)
        team = save_team(
            db,
            name,
            members=body.members,
            strategy=body.strategy,
            max_open_per_agent=body.max_open_per_agent,
            sticky=body.sticky,
            create=before is None,
        )
        add_audit(
            db,
            p.actor,
            "team_created" if before is None else "team_updated",
            reason=body.reason,
            detail={"team": name, "before": before, "after": team},
        )
        return team

    try:
        return await services.store.write(change)
    except AccountError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/teams/{name}")
async def remove_team(
    name: str, p: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Delete a team (its conversations keep the name and wait for a supervisor).
    A team still listed in ``[[teams]]`` comes back at the next start."""

    def drop(db: Db) -> bool:
        ok = delete_team(db, name)
        if ok:
            add_audit(db, p.actor, "team_deleted", detail={"team": name})
        return ok

    if not await services.store.write(drop):
        raise HTTPException(404, "no such team")
    return {"deleted": name}


# -- audit and corrections (admins) --------------------------------------------


def _audit(
    db: Db,
    limit: int,
    before: int | None,
    actor: str | None,
    action: str | None = None,
    conversation_id: int | None = None,
) -> list[dict[str, Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for col, value in (
        ("id < ?", before),
        ("actor = ?", actor),
        ("action = ?", action),
        ("conversation_id = ?", conversation_id),
    ):
        if value is not None:
            clauses.append(col)
            params.append(value)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    out = []
    for r in db.all(
        "SELECT id, at, actor, action, conversation_id, contact_id, message_id, reason, detail"
        f" FROM audit{where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    ):
        d = row_dict(r)
        assert d is not None
        d["detail"] = jsoncol.loads(d["detail"], {})
        out.append(d)
    return out


@router.get("/audit", tags=["admin"])
async def audit(
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, le=DB_INT_MAX),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=100, description="e.g. assigned, routed"),
    conversation_id: int | None = Query(None, ge=1, le=DB_INT_MAX),
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """The audit trail, newest first: who did what, when, and why; filtered
    by who (``actor``), what (``action``) and which conversation."""
    items = await services.store.read(_audit, limit, before, actor, action, conversation_id)
    return {"items": items}


@router.get("/corrections", tags=["admin"])
async def corrections(
    after: int = Query(0, ge=0, le=DB_INT_MAX),
    limit: int = Query(1000, ge=1, le=10000),
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Agents' category and priority corrections with the customer's text:
    material to teach the classifier."""
    return {"items": await services.store.read(list_corrections, limit=limit, after=after)}
