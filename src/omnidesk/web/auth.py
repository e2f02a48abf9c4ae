"""Who is calling: a bearer API token or a browser session cookie.

Roles: ``admin`` (everything), ``supervisor`` (every conversation, reassigns),
``agent`` (the conversations of their teams and those assigned to them).

* **Bearer tokens** (``Authorization: Bearer odk_...``) are for integrations.
  A token made for a user acts as that user: never with more than the user's
  current role, and not at all once the account is disabled. Bearer calls
  need no CSRF token: a browser never adds that header on its own.
* **Session cookies** come from the login page. Every state-changing request
  made with one must carry the session's CSRF token (header ``X-CSRF-Token``
  or form field ``csrf_token``) and, when the browser sends ``Origin``, come
  from this server's own origin.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from ..store.base import Db
from ..store.sessions import lookup_session, touch_session
from ..store.tokens import Owner, lookup_token
from ..store.users import ROLE_RANK, teams_of

if TYPE_CHECKING:
    from .services import WebServices

SESSION_COOKIE = "omnidesk_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="API token from `omnidesk tokens create`")
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="browser session from the login page; state-changing calls also need the "
    "X-CSRF-Token header",
)


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    username: str | None
    teams: tuple[str, ...] = field(default=())
    display_name: str | None = None
    via: str = "token"  # token | session
    csrf_token: str | None = None  # sessions only
    token_id: str | None = None  # the bearer token's public id (tokens only)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.username}" if self.username else f"token:{self.role}"

    @property
    def name(self) -> str:
        return self.display_name or self.username or self.role

    def sees_all(self) -> bool:
        return self.role in ("admin", "supervisor")

    def at_least(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]

    def token_owner(self) -> Owner:
        """The API tokens this caller manages as its own: its user's, or, for
        a token made without a user, that token alone."""
        if self.username is not None:
            return Owner.user(self.username)
        assert self.token_id is not None, "a principal without a user is a token"
        return Owner.token(self.token_id)


def _from_token(db: Db, token: str) -> dict[str, Any] | None:
    row = lookup_token(db, token)
    if row is None:
        return None
    username = row["username"]
    role = row["role"]
    display_name = None
    if username:
        user = db.one(
            "SELECT role, display_name, disabled FROM users WHERE username = ?", (username,)
        )
        if user is not None:
            if user["disabled"]:
                return None
            # A token never outranks its user (the user may have been demoted since).
            if ROLE_RANK.get(user["role"], 0) < ROLE_RANK.get(role, 0):
                role = user["role"]
            display_name = user["display_name"]
    return {
        "role": role,
        "username": username,
        "display_name": display_name,
        "teams": teams_of(db, username),
        "token_id": row["id"],
    }


def _from_session(
    db: Db, token: str, idle_seconds: float, max_seconds: float
) -> dict[str, Any] | None:
    s = lookup_session(db, token, idle_seconds=idle_seconds, max_seconds=max_seconds)
    if s is None:
        return None
    s["teams"] = teams_of(db, s["username"])
    return s


def _same_origin(request: Request, services: WebServices) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        # Browsers send Origin on every cross-site POST; its absence with a
        # valid CSRF token is a same-site request from an older browser.
        return True
    allowed = {
        urlsplit(services.config.public_url)._replace(path="", query="", fragment="").geturl()
    }
    host = request.headers.get("host")
    if host:
        allowed.add(f"{request.url.scheme}://{host}")
    return origin.rstrip("/") in allowed


async def _csrf_value(request: Request) -> str | None:
    sent = request.headers.get(CSRF_HEADER)
    if sent:
        return sent
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        body = await request.body()  # cached by Starlette for the endpoint
        values = parse_qs(body.decode("utf-8", "replace")).get("csrf_token")
        return values[0] if values else None
    return None


async def session_principal(
    request: Request, services: WebServices, token: str
) -> Principal | None:
    cfg = services.config
    idle, most = cfg.session_idle_hours * 3600, cfg.session_max_days * 86400
    s = await services.store.read(_from_session, token, idle, most)
    if s is None:
        return None
    if s["touch"]:
        await services.store.write(touch_session, s["id_hash"], s["new_expiry"])
    return Principal(
        role=s["role"],
        username=s["username"],
        teams=tuple(s["teams"]),
        display_name=s["display_name"],
        via="session",
        csrf_token=s["csrf_token"],
    )


async def current_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(bearer),
    cookie: str | None = Depends(session_cookie),
) -> Principal:
    services: WebServices = request.app.state.services
    if creds is not None and creds.credentials:
        if creds.scheme.lower() != "bearer":
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
        row = await services.store.read(_from_token, creds.credentials)
        if row is None:
            raise HTTPException(401, "invalid or revoked token", {"WWW-Authenticate": "Bearer"})
        return Principal(
            role=row["role"],
            username=row["username"],
            teams=tuple(row["teams"]),
            display_name=row["display_name"],
            token_id=row["token_id"],
        )
    if cookie:
        p = await session_principal(request, services, cookie)
        if p is None:
            raise HTTPException(
                401, "session expired: log in again", {"WWW-Authenticate": "Bearer"}
            )
        if request.method not in SAFE_METHODS:
            sent = await _csrf_value(request)
            if not sent or not hmac.compare_digest(sent, p.csrf_token or ""):
                raise HTTPException(403, "CSRF token missing or wrong")
            if not _same_origin(request, services):
                raise HTTPException(403, "cross-origin request refused")
        return p
    raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})


async def require_user(p: Principal = Depends(current_principal)) -> Principal:
    """Callers that act as an account (saved views, making tokens): a token
    made without a user has none."""
    if p.username is None:
        raise HTTPException(403, "this token belongs to no user")
    return p


async def require_admin(p: Principal = Depends(current_principal)) -> Principal:
    if p.role != "admin":
        raise HTTPException(403, "admins only")
    return p


async def require_supervisor(p: Principal = Depends(current_principal)) -> Principal:
    if not p.at_least("supervisor"):
        raise HTTPException(403, "supervisors and admins only")
    return p
