"""Every request body is read here, through one capped reader, before any
route, dependency or channel looks at it.

Without this, Starlette reads a body whole into memory on the first
``await request.body()`` and only then can anyone check its size: one
chunked 200 MB POST to the login API held 400 MB in the daemon, a few to the
inbound API over a gigabyte. Here:

* **Per-route caps.** :func:`route_limits` gives each path its largest
  acceptable body: a few KB for a login, a channel's own ``max_body`` for its
  webhook or inbound endpoint (a provider's largest delivery), 8 MB for a
  rules file, 2 MB for the rest of the API. A ``Content-Length`` above the
  cap is refused with 413 before a byte is read; a chunked body is counted as
  it arrives and refused the moment it passes the cap. Nothing past the cap
  is ever held. A body that ends soon after the cap (a declared length up to
  twice the cap, a chunked body within 1 MB) is read and dropped, so that an
  ordinary client (which sends everything before it reads) sees the 413; a
  longer one gets it with a closed connection.
* **A shared budget.** The bytes all requests hold at once beyond their first
  :data:`FREE_BYTES` come out of one budget (``[web] body_memory_mb``). When
  it is spent, a new large body gets 503 with ``Retry-After`` instead of
  memory. The first 64 KB of every body are free: the server already buffers
  that much per connection, so small requests (a login, a chat message, an
  agent's reply) are never turned away while large uploads queue.
* **A minimum pace.** A body must keep arriving: after a 10 s grace, at least
  16 KB a second on average, or 408. A sender trickling bytes cannot hold a
  share of the budget for ever.
* **Text a database can store.** JSON bodies whose strings hold NUL or a
  lone UTF-16 surrogate (``"\\u0000"``, ``"\\ud800"``), and paths or query
  strings holding NUL, are refused (422 on the API, 400 on channel
  endpoints) before they reach a handler: neither PostgreSQL nor SQLite's
  UTF-8 encoding accepts them, and they would surface as a 500 or a
  quarantined delivery far from their cause.

A route then sees the whole body at once (one ``http.request`` message), so
``request.body()`` and ``request.json()`` cost no further waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import validation_error

log = structlog.get_logger(__name__)

KB = 1024
MB = 1024 * KB
FREE_BYTES = 64 * KB  # per request, never counted against the budget
GRACE_SECONDS = 10.0
MIN_RATE = 16 * KB  # bytes per second after the grace period
DRAIN_BYTES = 1 * MB  # a refused body's rest read and dropped rather than hung up on
LOGIN_MAX = 16 * KB
RULES_MAX = 8 * MB
API_MAX = 2 * MB
OTHER_MAX = 64 * KB


class HasMaxBody(Protocol):
    """A channel adapter as the limits see it."""

    @property
    def type(self) -> str: ...
    @property
    def max_body(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Limit:
    """A route's cap and how its refusals read: ``api`` routes answer like
    FastAPI (422 bodies as its validation errors); channel endpoints plainly."""

    max_bytes: int
    api: bool
    channel: bool = False  # customers' text: NUL is cleaned later, not refused


def reply_cap(attachments_total: int) -> int:
    """The cap of an agent's reply or note: the API's, plus its files as
    base64 (4 bytes for every 3) up to ``[inbox]
    max_reply_attachments_total_kb``."""
    return API_MAX + (attachments_total + 2) // 3 * 4


_REPLY_PATH = re.compile(r"/api/v1/conversations/[^/]+/messages/?")


def route_limits(
    adapters: Mapping[str, HasMaxBody], reply_max: int = API_MAX
) -> Callable[[str], Limit]:
    """The cap for a request path, from the route table and the channels'
    declared ``max_body`` (``reply_max``: an agent's reply with its files)."""

    def channel(name: str, of_type: str | None = None) -> Limit:
        adapter = adapters.get(name)
        if adapter is None or (of_type is not None and adapter.type != of_type):
            return Limit(LOGIN_MAX, api=False, channel=True)  # answered 404 anyway
        return Limit(adapter.max_body, api=False, channel=True)

    def limit_for(path: str) -> Limit:
        parts = path.strip("/").split("/")
        if path.startswith("/api/v1/inbound/") and len(parts) == 4:
            # A signed API for integrations: NUL is refused there (400), not cleaned.
            return dataclasses.replace(channel(parts[3], "api"), channel=False)
        if path in ("/api/v1/session", "/login", "/logout"):
            return Limit(LOGIN_MAX, api=path.startswith("/api/"))
        if path.startswith("/api/v1/rules/"):
            return Limit(RULES_MAX, api=True)
        if _REPLY_PATH.fullmatch(path):
            return Limit(max(API_MAX, reply_max), api=True)
        if path.startswith("/api/"):
            return Limit(API_MAX, api=True)
        if path.startswith("/webhooks/") and len(parts) == 2:
            return channel(parts[1])
        if len(parts) >= 2 and parts[1] in adapters:  # an adapter's own mount
            upload = getattr(adapters[parts[1]], "max_upload", None)
            if upload and parts[2:] == ["attachments"] and adapters[parts[1]].type == parts[0]:
                # A file upload route (the web chat's): its own, larger cap.
                return Limit(int(upload), api=False, channel=True)
            return channel(parts[1], parts[0])
        return Limit(OTHER_MAX, api=False)

    return limit_for


def body_budget(
    configured_mb: float, adapters: Mapping[str, HasMaxBody], reply_max: int = API_MAX
) -> int:
    """The budget in bytes: as configured, but never below what the largest
    single body needs (else that channel's largest delivery could never pass)."""
    budget = int(configured_mb * MB)
    largest = [max(a.max_body, int(getattr(a, "max_upload", 0))) for a in adapters.values()]
    need = max([API_MAX, RULES_MAX, reply_max, *largest]) - FREE_BYTES
    if budget < need:
        log.info("body_memory_raised", configured_mb=configured_mb, mb=round(need / MB, 1))
    return max(budget, need)


class Budget:
    """Bytes that request bodies may hold at once, shared by all requests."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


class Refused(Exception):
    def __init__(self, status: int, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


# A JSON escape of NUL or of a UTF-16 surrogate half. The pattern starts with
# a literal, so the search skips ahead fast; whether the backslash is itself
# escaped (JSON "\\u0000" is a backslash and the text "u0000") is checked per match.
_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_LOW_HALF = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
BACKSLASH = 0x5C


def unstorable_json_text(body: bytes, *, allow_nul: bool = False) -> str | None:
    """Why a JSON body's strings cannot be stored, or None. A surrogate
    escape is fine only as a high half directly followed by a low half."""
    if b"\\" not in body:  # one byte: a memchr, and most bodies end here
        return None
    pos = 0
    while (m := _ESCAPE.search(body, pos)) is not None:
        before = m.start()
        while before > 0 and body[before - 1] == BACKSLASH:
            before -= 1
        if (m.start() - before) % 2:  # an escaped backslash, then plain text
            pos = m.start() + 1
            continue
        code = int(m.group(1), 16)
        if code == 0:
            if allow_nul:
                pos = m.end()
                continue
            return "text must not contain NUL (\\u0000)"
        if code >= 0xDC00:
            return "text must not contain a lone UTF-16 surrogate"
        if not _LOW_HALF.match(body, m.end()):
            return "text must not contain a lone UTF-16 surrogate"
        pos = m.end() + 6
    return None


def _unstorable_target(scope: Scope) -> str | None:
    """NUL in the path or query: no route takes one, a database stores none."""
    if "\x00" in scope.get("path", ""):
        return "the path must not contain NUL"
    qs: bytes = scope.get("query_string", b"")
    if b"%00" in qs or b"\x00" in qs:
        return "the query must not contain NUL (%00)"
    return None


class BodyLimits:
    """ASGI middleware: the capped, budgeted body reader described above."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit_for: Callable[[str], Limit],
        budget_bytes: int,
        grace: float = GRACE_SECONDS,
        min_rate: float = MIN_RATE,
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.budget = Budget(budget_bytes)
        self.grace = grace
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        held = 0  # bytes of this request counted against the budget
        try:
            problem = _unstorable_target(scope)
            if problem is not None:
                raise Refused(422 if limit.api else 400, problem)
            if not _has_body(scope):  # a GET, say: nothing to read or hold
                await self.app(scope, receive, send)
                return
            body, held = await self._read(scope, receive, limit)
            if body and (problem := unstorable_body(scope, body, limit.channel)) is not None:
                raise Refused(422 if limit.api else 400, problem)
        except Refused as exc:
            self.budget.give(held)
            close = exc.status == 408 or (
                exc.status in (413, 503) and not await self._drain(scope, receive, limit)
            )
            await _refuse(send, exc, close=close)
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.budget.give(held)

    async def _read(self, scope: Scope, receive: Receive, limit: Limit) -> tuple[bytes, int]:
        """The whole body, or :class:`Refused`; also the bytes it holds of the budget."""
        cap = limit.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            raise Refused(413, f"request body larger than {cap} bytes")
        held = 0
        if declared is not None and declared > FREE_BYTES:
            # Known up front: the whole share at once, or a 503 before reading.
            if not self.budget.take(declared - FREE_BYTES):
                raise _busy()
            held = declared - FREE_BYTES
        chunks: list[bytes] = []
        size = 0
        start = time.monotonic()
        more = True
        try:
            while more:
                allowed = start + self.grace + size / self.min_rate - time.monotonic()
                try:
                    async with asyncio.timeout(max(allowed, 0.001)):
                        message = await receive()
                except TimeoutError:
                    raise Refused(408, "request body arrived too slowly") from None
                if message["type"] == "http.disconnect":
                    raise Refused(400, "client disconnected")  # nobody reads the answer
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                size += len(chunk)
                if size > cap or (declared is not None and size > declared):
                    raise Refused(413, f"request body larger than {cap} bytes")
                need = max(size - FREE_BYTES, 0) - held
                if need > 0:
                    if not self.budget.take(need):
                        raise _busy()
                    held += need
                if chunk:
                    chunks.append(chunk)
        except Refused:
            # Free the bytes with their share of the budget: the exception's
            # traceback keeps this frame (and the list) alive while the
            # refusal is drained and sent.
            chunks.clear()
            self.budget.give(held)
            raise
        return b"".join(chunks), held

    async def _drain(self, scope: Scope, receive: Receive, limit: Limit) -> bool:
        """Read and drop the rest of a refused body when it ends soon: within
        another cap's worth when its length is declared, within
        :data:`DRAIN_BYTES` when chunked; whether it did.
        Ordinary clients send a whole body before they read the answer:
        hanging up on them mid-body resets the connection and they never see
        the 413. A body that goes on past that is not worth reading: hang up."""
        declared = _content_length(scope)
        # A declared length says where the body ends; a chunked one may never.
        most = DRAIN_BYTES if declared is None else max(DRAIN_BYTES, limit.max_bytes)
        if declared is not None and declared > limit.max_bytes + most:
            return False
        dropped = 0
        start = time.monotonic()
        try:
            while dropped <= most:
                allowed = start + self.grace + dropped / self.min_rate - time.monotonic()
                async with asyncio.timeout(max(allowed, 0.001)):
                    message = await receive()
                if message["type"] != "http.request":
                    return False
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
        except TimeoutError:
            pass
        return False


def _busy() -> Refused:
    return Refused(503, "the server is busy receiving other uploads: retry", retry_after=1)


def _has_body(scope: Scope) -> bool:
    """HTTP/1.1: a request has a body only with a Content-Length above 0 or a
    Transfer-Encoding."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return None
            return n if n >= 0 else None
    return None


def unstorable_body(scope: Scope, body: bytes, channel: bool) -> str | None:
    """Why a JSON or form body holds text no database stores, or None.
    Channels' deliveries may hold NUL: customers' text is cleaned of control
    characters where it is normalized (omnidesk/textcap.py); the API refuses it."""
    ctype = b""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            ctype = value.split(b";")[0].strip().lower()
            break
    if ctype == b"application/x-www-form-urlencoded":
        return "the form must not contain NUL (%00)" if not channel and b"%00" in body else None
    if ctype.startswith(b"multipart/"):
        return None  # files: bytes, not text
    # JSON, or a channel's delivery whatever the sender calls it.
    return unstorable_json_text(body, allow_nul=channel)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # only http.disconnect is left to come

    return replay


async def _refuse(send: Send, exc: Refused, *, close: bool) -> None:
    detail: Any = exc.detail
    if exc.status == 422:
        detail = [validation_error(exc.detail)]  # the shape the OpenAPI schema declares
    payload = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if close:
        # The rest of the body is never read: end the connection so the
        # sender stops (and the server does not read it to discard it).
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
