"""Password login, session cookies and login throttling.

The cookie is ``HttpOnly`` (no script can read it), ``SameSite=Lax`` (not
sent on cross-site POSTs; a link from an e-mail still opens the inbox logged
in), and ``Secure`` when the server is reached over HTTPS: ``cookie_secure =
"auto"`` decides from ``public_url`` and, behind a TLS proxy with
``trust_proxy``, from ``X-Forwarded-Proto``.

Failed logins are counted per client address and per username; past the
allowance each failure doubles a lockout (``login_lockout_after``,
``login_lockout_max_minutes``). While locked, no password is checked at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ..accounts import hash_password, needs_rehash, verify_password
from ..events import Event
from ..store import assignment
from ..store.audit import add_audit
from ..store.base import Db
from ..store.sessions import (
    ThrottlePolicy,
    clear_failures,
    create_session,
    delete_session,
    record_failure,
    throttle_status,
)
from ..store.users import password_hash, touch_login, update_user
from .auth import SESSION_COOKIE, Principal, current_principal, session_cookie
from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1", tags=["session"])


def cookie_secure(request: Request, services: WebServices) -> bool:
    mode = services.config.cookie_secure
    if mode != "auto":
        return mode == "always"
    return services.config.public_url.startswith("https://") or request.url.scheme == "https"


def set_session_cookie(
    response: Response, request: Request, services: WebServices, token: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services.config.session_max_days * 86400),
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, services),
    )


def clear_session_cookie(response: Response, request: Request, services: WebServices) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, services),
    )


def client_ip(request: Request) -> str:
    # With trust_proxy, uvicorn has already put X-Forwarded-For's client here.
    return request.client.host if request.client else "unknown"


def _policies(services: WebServices) -> tuple[ThrottlePolicy, ThrottlePolicy]:
    cfg = services.config
    cap = cfg.login_lockout_max_minutes * 60
    user = ThrottlePolicy(free=cfg.login_lockout_after, base=30.0, cap=cap, forget=3600.0)
    # One address may hold many people (an office behind NAT): more allowance.
    ip = ThrottlePolicy(free=cfg.login_lockout_after * 4, base=30.0, cap=cap, forget=3600.0)
    return user, ip


@dataclass(slots=True)
class LoginResult:
    ok: bool
    token: str | None = None
    csrf: str | None = None
    error: str | None = None
    retry_after: float | None = None


async def attempt_login(
    request: Request, services: WebServices, username: str, password: str
) -> LoginResult:
    username = username.strip()
    ip = client_ip(request)
    keys = [f"ip:{ip}", f"user:{username.lower()}"]
    wait = await services.store.read(throttle_status, keys)
    if wait > 0:
        return LoginResult(False, error="too many failed logins: try again later", retry_after=wait)
    found = await services.store.read(password_hash, username) if username else None
    stored, disabled = found if found is not None else (None, True)
    ok = await asyncio.to_thread(verify_password, stored, password) and not disabled
    user_policy, ip_policy = _policies(services)
    if not ok:

        def fail(db: Db) -> float | None:
            a = record_failure(db, keys[0], ip_policy)
            b = record_failure(db, keys[1], user_policy)
            add_audit(
                db,
                f"ip:{ip}",
                "login_failed",
                detail={"username": username[:64]},
            )
            return max(a or 0.0, b or 0.0) or None

        lock = await services.store.write(fail)
        log.info("login_failed", username=username[:64], ip=ip, locked_for=lock)
        return LoginResult(False, error="wrong username or password", retry_after=lock)
    rehash = hash_password(password) if stored and needs_rehash(stored) else None
    idle = services.config.session_idle_hours * 3600
    agent = request.headers.get("user-agent")

    policy = services.config.assignment

    def succeed(db: Db) -> tuple[str, str, list[Event]]:
        clear_failures(db, keys[1])
        touch_login(db, username)
        if rehash:
            update_user(db, username, password_hash=rehash)
        add_audit(db, f"user:{username}", "login", detail={"ip": ip})
        token, csrf = create_session(db, username, idle_seconds=idle, ip=ip, user_agent=agent)
        # Signing in is coming online (store/assignment.py).
        events = assignment.set_status(
            db, username, "online", policy, actor=f"user:{username}", reason="signed in"
        )
        return token, csrf, events

    token, csrf, events = await services.store.write(succeed)
    services.publish(events)
    log.info("login", username=username, ip=ip)
    return LoginResult(True, token=token, csrf=csrf)


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


async def end_session(services: WebServices, cookie: str, username: str | None) -> None:
    """Log out one session; the agent's last one takes them offline."""
    policy = services.config.assignment

    def end(db: Db) -> list[Event]:
        delete_session(db, cookie)
        return assignment.signed_out(db, username, policy) if username else []

    services.publish(await services.store.write(end))


@router.post("/session")
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Log in with a password: sets the session cookie and returns the CSRF
    token to send as ``X-CSRF-Token`` on state-changing calls. (A JSON body
    cannot be posted cross-site without CORS, which this server never allows.)"""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(415, "send JSON")
    result = await attempt_login(request, services, body.username, body.password)
    if not result.ok:
        headers = {"Retry-After": str(int(result.retry_after) + 1)} if result.retry_after else None
        raise HTTPException(429 if result.retry_after else 401, result.error, headers)
    assert result.token is not None
    set_session_cookie(response, request, services, result.token)
    return {"username": body.username.strip(), "csrf_token": result.csrf}


@router.delete("/session")
async def logout(
    request: Request,
    response: Response,
    p: Principal = Depends(current_principal),
    cookie: str | None = Depends(session_cookie),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """End this browser session."""
    if p.via == "session" and cookie:
        await end_session(services, cookie, p.username)
    clear_session_cookie(response, request, services)
    return {"logged_out": True}
