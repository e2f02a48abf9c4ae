"""The web UI: server-rendered page shells, the login form, static files.

The pages are thin: each is an HTML shell whose script (``static/app.js``,
plain JavaScript, no build step) draws the inbox, contacts and admin screens
from the same HTTP API integrations use. Every value from the API is put into
the page as text (``textContent``), never as markup; customer HTML is shown
only inside a sandboxed frame (see ``GET /api/v1/messages/{id}/html``).

Every page carries a strict Content-Security-Policy: scripts and styles only
from this server (no inline script), images from this server or ``data:``
(remote tracking pixels never load), no plugins, not framable.
"""

from __future__ import annotations

import mimetypes
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import __version__
from .auth import SESSION_COOKIE, Principal, session_principal
from .deps import get_services
from .session import (
    attempt_login,
    clear_session_cookie,
    cookie_secure,
    end_session,
    set_session_cookie,
)

if TYPE_CHECKING:
    from .services import WebServices

HERE = Path(__file__).parent
# The web app manifest's own type (not every Python knows the extension).
mimetypes.add_type("application/manifest+json", ".webmanifest")
router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
LOGIN_CSRF_COOKIE = "omnidesk_login_csrf"

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-src 'self'; font-src 'self'; object-src 'none';"
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def page(html: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def _safe_next(target: str | None) -> str:
    """Only a path on this server: never ``//host`` or ``https://...``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/inbox"
    return target


async def _principal(request: Request, services: WebServices) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    return await session_principal(request, services, token) if token else None


def _login_page(
    request: Request,
    services: WebServices,
    *,
    error: str | None,
    next_url: str,
    status_code: int = 200,
) -> Response:
    csrf = secrets.token_urlsafe(24)
    html = templates.get_template("login.html").render(
        error=error, next=next_url, csrf=csrf, version=__version__
    )
    resp = page(html, status_code)
    # Double-submit: the form's hidden field must equal this cookie, which a
    # cross-site page can neither read nor set (login CSRF).
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, services),
    )
    return resp


@router.get("/sw.js")
async def service_worker() -> Response:
    """The service worker, served from the root so its scope is the whole
    app (installable inbox, notification clicks); see static/sw.js."""
    return Response(
        (HERE / "static" / "sw.js").read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/login")
async def login_form(
    request: Request, next: str | None = None, services: WebServices = Depends(get_services)
) -> Response:
    if await _principal(request, services) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, services, error=None, next_url=_safe_next(next))


@router.post("/login")
async def login_submit(request: Request, services: WebServices = Depends(get_services)) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))

    def field(name: str) -> str:
        return (form.get(name) or [""])[0]

    next_url = _safe_next(field("next"))
    sent, expected = field("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not secrets.compare_digest(sent, expected):
        return _login_page(
            request,
            services,
            error="The form expired. Please try again.",
            next_url=next_url,
            status_code=403,
        )
    result = await attempt_login(request, services, field("username"), field("password"))
    if not result.ok:
        status = 429 if result.retry_after else 401
        msg = "Wrong username or password."
        if result.retry_after and result.error and "too many" in result.error:
            msg = f"Too many failed logins. Try again in {int(result.retry_after) + 1} seconds."
        resp = _login_page(request, services, error=msg, next_url=next_url, status_code=status)
        if result.retry_after:
            resp.headers["Retry-After"] = str(int(result.retry_after) + 1)
        return resp
    assert result.token is not None
    resp = RedirectResponse(next_url, status_code=303)
    set_session_cookie(resp, request, services, result.token)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, services: WebServices = Depends(get_services)) -> Response:
    p = await _principal(request, services)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sent = (form.get("csrf_token") or [""])[0]
    if p is None or not secrets.compare_digest(sent, p.csrf_token or ""):
        # Logging out someone else (a CSRF logout) is refused; a stale page
        # just lands on the login form.
        return RedirectResponse("/login", status_code=303)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await end_session(services, token, p.username)
    resp = RedirectResponse("/login", status_code=303)
    clear_session_cookie(resp, request, services)
    return resp


async def _app_page(request: Request, services: WebServices, view: str) -> Response:
    p = await _principal(request, services)
    if p is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    # Every role has the settings page (an agent: their API tokens); the tabs
    # shown follow the role, and each API call checks it again.
    boot: dict[str, Any] = {
        "view": view,
        "csrf": p.csrf_token,
        "me": {
            "username": p.username,
            "name": p.name,
            "role": p.role,
            "teams": list(p.teams),
        },
        "version": __version__,
        # Each configured channel's type, for its icon beside the name.
        "channels": {c.name: c.type for c in services.config.channels},
    }
    html = templates.get_template("app.html").render(boot=boot, me=boot["me"], view=view)
    return page(html)


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/inbox", status_code=303)


@router.get("/inbox")
@router.get("/inbox/c/{conversation_id}")
async def inbox_page(request: Request, services: WebServices = Depends(get_services)) -> Response:
    return await _app_page(request, services, "inbox")


@router.get("/contacts")
@router.get("/contacts/{contact_id}")
async def contacts_page(
    request: Request, services: WebServices = Depends(get_services)
) -> Response:
    return await _app_page(request, services, "contacts")


@router.get("/admin")
@router.get("/admin/{section}")
async def admin_page(request: Request, services: WebServices = Depends(get_services)) -> Response:
    return await _app_page(request, services, "admin")
