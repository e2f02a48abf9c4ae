"""The website chat: an embeddable widget and the endpoints it talks to.

A site embeds one script tag::

    <script src="https://desk.example.com/webchat/site/widget.js" async></script>

and gets a launcher button that opens a chat panel (vanilla JavaScript in a
shadow root, no build step, nothing from a third-party CDN; the script is
``web/static/webchat/widget.js``). Endpoints, mounted at
``/webchat/{channel}`` through :meth:`ChannelAdapter.routes`:

=======================  ================================================
``GET  widget.js``       the script
``GET  config``          title, greeting, colour, limits for the widget
``POST session``         a signed visitor token (new, or refreshed)
``POST messages``        the visitor writes; ``202`` once durably accepted
``GET  messages``        the visitor's current conversation (reload, return)
``GET  events``          live replies (Server-Sent Events)
``POST receipts``        the widget confirms it displayed (``delivered``)
                         or the visitor saw (``read``) a reply
``POST identify``        the visitor's name and e-mail address
``GET  files/{m}/{n}``   the ``n``-th file of our reply ``m``, with the
                         signed ``?t=`` the reply carried (bound to the
                         visitor and the reply: nobody else can fetch it)
``GET  /``               a test page with the widget on it
=======================  ================================================

Visitors are anonymous: a random visitor id, signed with the channel's
``secret`` (itsdangerous) and kept in the page's ``localStorage``, is the
identity ``webchat:<visitor id>`` and the conversation's thread key. An
e-mail address the visitor gives also becomes an ``email`` identity of the
same contact (unless another contact already has it), so a later e-mail from
that address lands in the same contact's history.

Replies: ``send()`` hands the reply to every open stream of the visitor and
reports it ``sent``; the message row is the copy kept for pickup, so a visitor
who was away finds it when they come back (``GET messages``, or the stream's
catch-up). The widget's receipts go through the intake like any inbound item
and become ``delivered``/``read`` states of the reply.

Browser requests must come from an ``allowed_origins`` page (the ``Origin``
header is checked and answered with CORS headers); requests without an
``Origin`` (curl, a server) are let through, since anything but a browser can
forge one. Each visitor and each client IP is rate limited.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..email.headers import message_id_key
from ..identity import normalize_identity
from ..model import (
    Attachment,
    DeliveryState,
    Envelope,
    Identity,
    Message,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
    StatusUpdate,
)
from .base import INLINE_IMAGES, ChannelAdapter, ChannelContext, content_disposition

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

STATIC_DIR = Path(__file__).resolve().parents[1] / "web" / "static" / "webchat"
KIND = "webchat"
MAX_BODY = 64 * 1024  # a chat message, not a file upload
MAX_NAME = 100
MAX_EMAIL = 254
MAX_PAGE = 500
MAX_RECEIPTS = 200  # ids per receipts request
MAX_FILENAME = 200
CODE_MINUTES = 15  # a code sent to confirm an e-mail address is valid this long
TYPING_TTL = 6.0  # seconds a "typing" shows without being renewed
# The types a visitor may send, each with how its first bytes must look
# (None: text, which must be UTF-8).
ATTACHMENT_TYPES: dict[str, tuple[bytes, ...] | None] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
    "text/plain": None,
}
STREAMS_PER_VISITOR = 10  # open tabs
KEEPALIVE = 20.0  # seconds between SSE comments (proxies drop idle streams)
VISITOR_ID = re.compile(r"^[0-9a-f]{32}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased, or None if it has none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def clean_text(text: str) -> str:
    """Visitor text as stored: control characters other than newline and tab
    removed (NUL cannot be stored by PostgreSQL; the rest only hides text),
    newlines unified, surrounding blank space trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    return text.strip()


class RateLimiter:
    """Token buckets per key: ``per_minute`` requests, refilled evenly, with
    a burst of the same size. Remembers at most ``max_keys`` keys (the least
    recently seen are forgotten, which only ever errs towards allowing)."""

    def __init__(self, per_minute: int, max_keys: int = 20_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Take one token: None when allowed, else seconds until one is free."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = None
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass(slots=True)
class _Visit:
    """One request's visitor, once the token checked out."""

    visitor: str


class _Refused(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers or {}


def _code_hash(visitor: str, code: str) -> str:
    """What the confirm token carries of the code: never the code itself."""
    return hashlib.sha256(f"{visitor}:{code}".encode()).hexdigest()


def public_message(m: dict[str, Any], visitor: str) -> dict[str, Any] | None:
    """What the widget may show of a stored message: never notes, never a
    reply that has not been handed to the channel yet (or failed)."""
    if m["kind"] == "note":
        return None
    if m["direction"] == "in":
        ext = m.get("external_id") or ""
        prefix = f"{visitor}:"
        return {
            "id": m["id"],
            "direction": "in",
            "text": m["text"],
            "at": m["created_at"],
            "client_id": ext[len(prefix) :] if ext.startswith(prefix) else None,
        }
    if m.get("delivery_state") in (None, "queued", "failed"):
        return None
    out = {
        "id": m["id"],
        "direction": "out",
        "text": m["text"],
        "at": m["created_at"],
        "state": m["delivery_state"],
        "auto": bool(m.get("auto")),
        # Who answered: the agent's display name (the widget draws their initials).
        "agent": None if m.get("auto") else m.get("author_name"),
    }
    survey = (m.get("meta") or {}).get("survey")
    if isinstance(survey, dict):
        out["survey"] = survey  # the widget shows its choices as buttons
    return out


class WebchatChannel(ChannelAdapter):
    type = "webchat"
    capabilities: ClassVar[frozenset[str]] = frozenset({"delivery_receipts"})
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.secret = o.secret("secret")
        if not self.secret or len(self.secret.reveal()) < 16:
            raise o.error("secret", "must be at least 16 characters (it signs visitor tokens)")
        self.title: str = o.string("title", "Chat with us")
        self.greeting: str = o.string("greeting", "Hi! How can we help?")
        own = origin_of(ctx.public_url)
        origins = o.strings("allowed_origins", [own] if own else [])
        self.any_origin = "*" in origins
        self.allowed_origins: set[str] = set()
        for raw in origins:
            if raw == "*":
                continue
            origin = origin_of(raw)
            if origin is None or urlsplit(raw.strip()).path not in ("", "/"):
                raise o.error(
                    "allowed_origins",
                    f'{raw!r} is not an origin like https://www.example.com (or "*")',
                )
            self.allowed_origins.add(origin)
        self.max_message_chars: int = o.integer("max_message_chars", 4000, min=1)
        self.rate_limit: int = o.integer("rate_limit", 20, min=1)
        self.ip_rate_limit: int = o.integer("ip_rate_limit", 120, min=1)
        self.ask_email: bool = o.boolean("ask_email", True)
        self.visitor_days: int = o.integer("visitor_days", 365, min=1)
        self.max_connections: int = o.integer("max_connections", 1000, min=1)
        # Files a visitor may send: at most this big, of these types (checked
        # against the file's first bytes too, not only its declared type).
        self.max_upload: int = o.integer("max_attachment_kb", 5120, min=1) * 1024
        self.attachment_types: list[str] = o.strings("attachment_types", list(ATTACHMENT_TYPES))
        unknown = [t for t in self.attachment_types if t not in ATTACHMENT_TYPES]
        if unknown:
            raise o.error(
                "attachment_types",
                f"{unknown[0]!r} is not one of {', '.join(ATTACHMENT_TYPES)}",
            )
        # The e-mail channel (smtp or imap, with a relay) that sends a visitor
        # the transcript they ask for; none: no transcripts.
        self.email_channel: str | None = o.string("email_channel", None)
        self.color: str = o.string("color", "#1f6feb")
        if not COLOR.match(self.color):
            raise o.error("color", "must be a colour like #1f6feb")
        o.check_unused()
        self._tokens = URLSafeTimedSerializer(
            self.secret.reveal(), salt=f"omnidesk.webchat.visitor:{self.name}"
        )
        self._codes = URLSafeTimedSerializer(
            self.secret.reveal(), salt=f"omnidesk.webchat.confirm:{self.name}"
        )
        # An agent's files: links signed for one visitor and one reply.
        self._files = URLSafeTimedSerializer(
            self.secret.reveal(), salt=f"omnidesk.webchat.file:{self.name}"
        )
        self._visitor_limit = RateLimiter(self.rate_limit)
        self._ip_limit = RateLimiter(self.ip_rate_limit)
        self._streams: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self._closing = False
        self._script: bytes | None = None
        # Another instance's outbox may deliver a reply: then only polling
        # the store finds it, so poll more often.
        self.poll_interval = 2.0 if ctx.multi_instance else KEEPALIVE

    def check_peers(self, peers: Mapping[str, ChannelAdapter]) -> None:
        """``email_channel`` names an enabled e-mail channel with a relay."""
        from .mailout import EmailChannel

        name = self.email_channel
        if name is None:
            return
        peer = peers.get(name)
        o = self.ctx.options
        if peer is None:
            raise o.error("email_channel", f"no enabled [[channels]] entry named {name!r}")
        if not isinstance(peer, EmailChannel):
            raise o.error(
                "email_channel",
                f"{name!r} is a channel of type {peer.type}, not an e-mail channel (smtp or imap)",
            )
        if peer.relay is None or not peer.from_address:
            raise o.error("email_channel", f"the e-mail channel {name!r} has no relay to send with")

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        self._closing = False
        self.set_health(True, "running", "serving the widget")

    async def stop(self) -> None:
        self._closing = True
        for queues in self._streams.values():
            for q in queues:
                q.put_nowait(None)
        self.set_health(True, "stopped")

    @property
    def connected(self) -> int:
        """Open live streams (for tests and metrics)."""
        return sum(len(qs) for qs in self._streams.values())

    # -- tokens -----------------------------------------------------------
    def issue_token(self, visitor: str | None = None) -> tuple[str, str]:
        """(token, visitor id): a new visitor, or a fresh token for one."""
        vid = visitor or secrets.token_hex(16)
        return self._tokens.dumps(vid), vid

    def visitor_of(self, token: str | None) -> str | None:
        """The visitor id a token was issued for, or None (forged, expired,
        another channel's)."""
        if not token:
            return None
        try:
            vid = self._tokens.loads(token, max_age=self.visitor_days * 86400)
        except (BadSignature, SignatureExpired):
            return None
        return vid if isinstance(vid, str) and VISITOR_ID.match(vid) else None

    # -- HTTP helpers -----------------------------------------------------
    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser's cross-origin request
        return self.any_origin or origin_of(origin) in self.allowed_origins

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or not self.origin_allowed(origin):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            # The widget reads the rate-limit hint.
            "Access-Control-Expose-Headers": "Retry-After",
        }

    def _json(
        self, request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(
            body,
            status_code=status,
            headers={**self._cors(request), "Cache-Control": "no-store", **(headers or {})},
        )

    def _check_origin(self, request: Request) -> None:
        if not self.origin_allowed(request.headers.get("origin")):
            raise _Refused(403, "this page's origin may not use this chat (allowed_origins)")

    def _client_ip(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _limit(self, limiter: RateLimiter, key: str) -> None:
        wait = limiter.hit(key)
        if wait is not None:
            secs = max(1, int(wait + 0.999))
            raise _Refused(
                429,
                "too many messages, please wait a moment",
                {"Retry-After": str(secs)},
            )

    def _visit(self, request: Request, *, query_token: bool = False) -> _Visit:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        if not token and query_token:
            # EventSource cannot send headers: the stream takes ?token=.
            token = request.query_params.get("token", "")
        vid = self.visitor_of(token.strip())
        if vid is None:
            raise _Refused(401, "missing, invalid or expired visitor token: start a new session")
        return _Visit(vid)

    async def _read_json(self, request: Request) -> dict[str, Any]:
        raw = await request.body()  # at most max_body (web/limits.py)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Refused(400, "body must be JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "body must be a JSON object")
        return data

    def _guard(self, handler: Any) -> Any:
        """Turn :class:`_Refused` into a JSON error with CORS headers, so the
        widget can read why."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as exc:
                if exc.status != 429:
                    self.log.info("webchat_refused", status=exc.status, reason=exc.error)
                return self._json(request, {"error": exc.error}, exc.status, exc.headers)

        return endpoint

    # -- routes -----------------------------------------------------------
    def routes(self) -> Sequence[BaseRoute]:
        from starlette.routing import Route

        g = self._guard
        return [
            Route("/", g(self.page), methods=["GET"]),
            Route("/widget.js", g(self.script), methods=["GET"]),
            Route("/config", g(self.widget_config), methods=["GET"]),
            Route("/session", g(self.session), methods=["POST"]),
            Route("/messages", g(self.post_message), methods=["POST"]),
            Route("/messages", g(self.history), methods=["GET"]),
            Route("/events", g(self.events), methods=["GET"]),
            Route("/receipts", g(self.receipts), methods=["POST"]),
            Route("/identify", g(self.identify), methods=["POST"]),
            Route("/confirm", g(self.confirm), methods=["POST"]),
            Route("/attachments", g(self.upload), methods=["POST"]),
            Route("/files/{message_id:int}/{index:int}", g(self.file), methods=["GET"]),
            Route("/typing", g(self.typing), methods=["POST"]),
            Route("/transcript", g(self.transcript), methods=["POST"]),
            Route("/{path:path}", g(self.preflight), methods=["OPTIONS"]),
        ]

    async def preflight(self, request: Request) -> Response:
        from starlette.responses import Response

        self._check_origin(request)
        return Response(
            status_code=204,
            headers={
                **self._cors(request),
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )

    async def script(self, request: Request) -> Response:
        from starlette.responses import Response

        if self._script is None:
            self._script = (STATIC_DIR / "widget.js").read_bytes()
        return Response(
            self._script,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def page(self, request: Request) -> Response:
        from html import escape

        from starlette.responses import HTMLResponse

        title = escape(self.title)
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>The chat button is at the bottom right. Embed it on a"
            " site with:</p><pre>"
            + escape(
                f'<script src="{self.ctx.public_url}/webchat/{self.name}/widget.js" async></script>'
            )
            + "</pre>"
            f'<script src="/webchat/{escape(self.name)}/widget.js" async></script>'
            "</body></html>"
        )

    async def widget_config(self, request: Request) -> Response:
        self._check_origin(request)
        return self._json(
            request,
            {
                "channel": self.name,
                "title": self.title,
                "greeting": self.greeting,
                "color": self.color,
                "ask_email": self.ask_email,
                "max_message_chars": self.max_message_chars,
                "transcript": self.email_channel is not None and self.ctx.mail is not None,
                "attachments": {"max_kb": self.max_upload // 1024, "types": self.attachment_types},
                # None online: the widget becomes an offline form (e-mail required).
                "agents_online": (
                    await self.ctx.queries.agents_online() if self.ctx.queries else True
                ),
            },
        )

    async def session(self, request: Request) -> Response:
        """A token for a new visitor, or a fresh one for the visitor whose
        (still valid) token comes in the body. Nothing is stored: a visitor
        who never writes leaves no trace."""
        self._check_origin(request)
        self._limit(self._ip_limit, self._client_ip(request))
        data = await self._read_json(request)
        old = data.get("token")
        vid = self.visitor_of(old) if isinstance(old, str) else None
        token, vid = self.issue_token(vid)
        return self._json(request, {"token": token, "visitor": vid})

    async def post_message(self, request: Request) -> Response:
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._ip_limit, self._client_ip(request))
        self._limit(self._visitor_limit, visit.visitor)
        data = await self._read_json(request)
        client_id = data.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            raise _Refused(400, "'client_id' must be 8-64 letters, digits, '-' or '_'")
        text = data.get("text")
        if not isinstance(text, str):
            raise _Refused(400, "'text' must be a string")
        text = clean_text(text)
        if not text:
            raise _Refused(400, "'text' must not be empty")
        if len(text) > self.max_message_chars:
            raise _Refused(413, f"message longer than {self.max_message_chars} characters")
        page = data.get("page")
        name = data.get("name")
        name = clean_text(name).replace("\n", " ")[:MAX_NAME] if isinstance(name, str) else ""
        payload = {
            "visitor": visit.visitor,
            "client_id": client_id,
            "text": text,
            "name": name or None,
            "page": page[:MAX_PAGE] if isinstance(page, str) else None,
            "user_agent": request.headers.get("user-agent", "")[:300] or None,
            "offline": data.get("offline") is True or None,
        }
        new = await self.ctx.intake.accept(
            Envelope(
                channel=self.name,
                external_id=f"{visit.visitor}:{client_id}",
                payload=json.dumps(payload, ensure_ascii=False).encode(),
                content_type="application/json",
            )
        )
        self.touch()
        if new:
            # The visitor's other tabs show it too.
            self._push(
                visit.visitor,
                {
                    "type": "message",
                    "direction": "in",
                    "client_id": client_id,
                    "text": text,
                    "at": time.time(),
                },
            )
        return self._json(request, {"status": "accepted", "duplicate": not new}, 202)

    async def upload(self, request: Request) -> Response:
        """A file as the body (``Content-Type`` its type), ``?client_id=``
        and ``?filename=``: stored as a message of the visitor with the file
        attached. Refused: a type not allowed or whose first bytes do not
        match it (415), a file over the limit (413, before anything is
        read past it: web/limits.py caps this route at ``max_upload``)."""
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._ip_limit, self._client_ip(request))
        self._limit(self._visitor_limit, visit.visitor)
        client_id = request.query_params.get("client_id", "")
        if not CLIENT_ID.match(client_id):
            raise _Refused(400, "'client_id' must be 8-64 letters, digits, '-' or '_'")
        filename = clean_text(request.query_params.get("filename", "")).replace("\n", " ")
        filename = filename.replace("/", "_").replace("\\", "_")[:MAX_FILENAME] or "file"
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in self.attachment_types:
            raise _Refused(415, f"files of type {ctype or 'unknown'} are not accepted here")
        data = await request.body()
        if len(data) > self.max_upload:
            raise _Refused(413, f"file larger than {self.max_upload // 1024} KB")
        if not data:
            raise _Refused(400, "the file is empty")
        magic = ATTACHMENT_TYPES[ctype]
        if magic is None:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise _Refused(415, "a text file must be UTF-8") from None
        elif not data.startswith(magic):
            raise _Refused(415, f"the file is not a {ctype} file")
        payload = {
            "visitor": visit.visitor,
            "client_id": client_id,
            "text": f"Attachment: {filename}",
            "attachment": {
                "filename": filename,
                "content_type": ctype,
                "data": base64.b64encode(data).decode(),
            },
        }
        new = await self.ctx.intake.accept(
            Envelope(
                channel=self.name,
                external_id=f"{visit.visitor}:{client_id}",
                payload=json.dumps(payload).encode(),
                content_type="application/json",
            )
        )
        self.touch()
        return self._json(request, {"status": "accepted", "duplicate": not new}, 202)

    def file_links(
        self, visitor: str, message_id: int, files: Sequence[tuple[str | None, str, int]]
    ) -> list[dict[str, Any]]:
        """What the widget shows of a reply's files (name, type, size): each
        with its link (below the channel's mount, ``?t=`` signed for this
        visitor and this reply) and whether it shows as an image."""
        token = self._files.dumps([visitor, message_id])
        return [
            {
                "name": name or "attachment",
                "type": ctype,
                "size": size,
                "image": ctype in INLINE_IMAGES,
                "url": f"/files/{message_id}/{i}?t={token}",
            }
            for i, (name, ctype, size) in enumerate(files)
        ]

    async def file(self, request: Request) -> Response:
        """An agent's file for the visitor the link was signed for (an
        ``<img>`` or a download link cannot send the visitor's token: the
        link carries its own). Images common browsers show safely come
        inline; anything else is a download, never rendered here."""
        from starlette.responses import Response

        self._check_origin(request)
        self._limit(self._ip_limit, self._client_ip(request))
        mid = int(request.path_params["message_id"])
        index = int(request.path_params["index"])
        try:
            claim = self._files.loads(
                request.query_params.get("t", ""), max_age=self.visitor_days * 86400
            )
        except (BadSignature, SignatureExpired):
            raise _Refused(403, "this file link is not valid (or expired)") from None
        if (
            not isinstance(claim, list)
            or len(claim) != 2
            or claim[1] != mid
            or not isinstance(claim[0], str)
            or not VISITOR_ID.match(claim[0])
        ):
            raise _Refused(403, "this file link is not for this file")
        found = (
            await self.ctx.queries.thread_file(claim[0], mid, index) if self.ctx.queries else None
        )
        if found is None or found.data is None:
            raise _Refused(404, "no such file")
        ctype = found.content_type.lower()
        if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", ctype):
            ctype = "application/octet-stream"
        kind = "inline" if ctype in INLINE_IMAGES else "attachment"
        return Response(
            found.data,
            media_type=ctype,
            headers={
                **self._cors(request),
                "Content-Disposition": content_disposition(kind, found.filename),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, max-age=3600",
                "Cross-Origin-Resource-Policy": "cross-origin",
            },
        )

    async def transcript(self, request: Request) -> Response:
        """``{"email": ...}``: the visitor's conversation as it stands, sent
        to that address now (through ``email_channel``); what the widget
        shows, never notes."""
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._ip_limit, self._client_ip(request))
        self._limit(self._visitor_limit, visit.visitor)
        data = await self._read_json(request)
        email = data.get("email")
        if not isinstance(email, str) or len(email) > MAX_EMAIL or not EMAIL.match(email.strip()):
            raise _Refused(400, "give the 'email' to send the transcript to")
        if self.email_channel is None or self.ctx.mail is None:
            raise _Refused(404, "this chat sends no transcripts")
        msgs = await self._messages(visit.visitor)
        if not msgs:
            raise _Refused(404, "nothing to send yet: write first")
        lines = [f"{self.title}: your conversation", ""]
        for m in msgs:
            who = "You" if m["direction"] == "in" else (m.get("agent") or self.title)
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(m["at"]))
            lines += [f"{who}, {when}:", m["text"], ""]
        try:
            await self.ctx.mail(
                self.email_channel,
                [email.strip()],
                f"{self.title}: your conversation",
                "\n".join(lines),
            )
        except Exception as exc:
            self.log.warning("transcript_failed", error=str(exc)[:200])
            raise _Refused(502, "the transcript could not be sent now: try again later") from None
        return self._json(request, {"sent": True, "messages": len(msgs)})

    async def typing(self, request: Request) -> Response:
        """The visitor is typing (the widget says so at most every few
        seconds): the inbox shows it in their conversation, if they have one."""
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._visitor_limit, visit.visitor)
        cid = await self.ctx.queries.conversation_of(visit.visitor) if self.ctx.queries else None
        if cid is not None and self.ctx.emit is not None:
            self.ctx.emit(
                {
                    "type": "presence",
                    "conversation_id": cid,
                    "username": f"visitor:{visit.visitor[:8]}",
                    "name": "The visitor",
                    "state": "typing",
                    "ttl": TYPING_TTL,
                }
            )
        return self._json(request, {"ok": True, "conversation": cid is not None})

    def agent_typing(self, thread_key: str, name: str) -> None:
        self._push(thread_key, {"type": "typing", "name": name, "ttl": TYPING_TTL})

    async def history(self, request: Request) -> Response:
        self._check_origin(request)
        visit = self._visit(request)
        msgs = await self._messages(visit.visitor)
        return self._json(request, {"visitor": visit.visitor, "messages": msgs})

    async def _messages(self, visitor: str) -> list[dict[str, Any]]:
        if self.ctx.queries is None:
            return []
        rows = await self.ctx.queries.thread_messages(visitor)
        out = []
        for m in rows:
            p = public_message(m, visitor)
            if p is None:
                continue
            if p["direction"] == "out" and m.get("attachments"):
                p["files"] = self.file_links(
                    visitor,
                    m["id"],
                    [(a["filename"], a["content_type"], a["size"]) for a in m["attachments"]],
                )
            out.append(p)
        return out

    async def receipts(self, request: Request) -> Response:
        """``{"delivered": [ids], "read": [ids]}``: ids of replies of the
        visitor's conversation that were handed over; others are ignored.
        Ids of replies not yet recorded as sent come back as ``pending``
        (the widget asks again shortly)."""
        self._check_origin(request)
        visit = self._visit(request)
        data = await self._read_json(request)
        wanted: list[tuple[str, int]] = []
        for state in ("delivered", "read"):
            ids = data.get(state, [])
            if not isinstance(ids, list) or len(ids) > MAX_RECEIPTS:
                raise _Refused(400, f"'{state}' must be a list of at most {MAX_RECEIPTS} ids")
            for i in ids:
                if isinstance(i, bool) or not isinstance(i, int):
                    raise _Refused(400, f"'{state}' must hold message ids (integers)")
                wanted.append((state, i))
        rows = {}
        if wanted and self.ctx.queries is not None:
            stored = await self.ctx.queries.thread_messages(visit.visitor)
            rows = {m["id"]: m for m in stored if m["direction"] == "out" and m["kind"] != "note"}
        envelopes: list[Envelope] = []
        pending: list[int] = []
        for state, mid in wanted:
            m = rows.get(mid)
            if m is None:
                continue
            if m.get("provider_id") != f"{visit.visitor}:{mid}":
                pending.append(mid)
                continue
            envelopes.append(
                Envelope(
                    channel=self.name,
                    external_id=f"{visit.visitor}:receipt:{state}:{mid}",
                    payload=json.dumps(
                        {"receipt": state, "visitor": visit.visitor, "message_id": mid}
                    ).encode(),
                    content_type="application/json",
                )
            )
        if envelopes:
            await self.ctx.intake.accept_many(envelopes)
        return self._json(
            request,
            {"accepted": len(envelopes), "pending": sorted(set(pending))},
            202,
        )

    async def identify(self, request: Request) -> Response:
        """``{"name": ..., "email": ...}`` (either may be missing)."""
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._ip_limit, self._client_ip(request))
        self._limit(self._visitor_limit, visit.visitor)
        data = await self._read_json(request)
        name = data.get("name")
        email = data.get("email")
        if name is not None and not isinstance(name, str):
            raise _Refused(400, "'name' must be a string")
        if email is not None and not isinstance(email, str):
            raise _Refused(400, "'email' must be a string")
        name = clean_text(name or "").replace("\n", " ")[:MAX_NAME] or None
        email = (email or "").strip() or None
        if email is not None and (len(email) > MAX_EMAIL or not EMAIL.match(email)):
            raise _Refused(400, "that does not look like an e-mail address")
        if name is None and email is None:
            raise _Refused(400, "give a 'name' or an 'email'")
        if self.ctx.contacts is None:
            raise _Refused(503, "no store")
        owner = normalize_identity(KIND, visit.visitor, name, {"email": email} if email else None)
        extra = normalize_identity("email", email, name) if email else None
        outcome = await self.ctx.contacts.link(owner, extra)
        body: dict[str, Any] = {"name": name, "email": email, "email_linked": outcome}
        if outcome == "other" and email and self.email_channel and self.ctx.mail:
            # Known to another contact: linked once the visitor proves they
            # read that mailbox (a code sent there, typed back in the chat).
            code = f"{secrets.randbelow(1_000_000):06d}"
            try:
                await self.ctx.mail(
                    self.email_channel,
                    [email],
                    f"{self.title}: your code",
                    f"Your code for the chat on our website: {code}\n\nIt is valid for"
                    f" {CODE_MINUTES} minutes. If you did not ask for it, ignore this e-mail.",
                )
            except Exception as exc:
                self.log.warning("webchat_code_failed", error=str(exc)[:200])
            else:
                body["confirm"] = self._codes.dumps(
                    {"v": visit.visitor, "e": email, "h": _code_hash(visit.visitor, code)}
                )
        return self._json(request, body)

    async def confirm(self, request: Request) -> Response:
        """``{"confirm": token, "code": "123456"}``: the code sent to the
        address links this visitor to the contact that holds it."""
        self._check_origin(request)
        visit = self._visit(request)
        self._limit(self._ip_limit, self._client_ip(request))
        self._limit(self._visitor_limit, visit.visitor)
        data = await self._read_json(request)
        token, code = data.get("confirm"), data.get("code")
        if not isinstance(token, str) or not isinstance(code, str):
            raise _Refused(400, "give 'confirm' (from identify) and the 'code'")
        try:
            claim = self._codes.loads(token, max_age=CODE_MINUTES * 60)
        except (BadSignature, SignatureExpired):
            raise _Refused(400, "that code request expired: ask for a new code") from None
        if not isinstance(claim, dict) or claim.get("v") != visit.visitor:
            raise _Refused(400, "that code request is not this visitor's")
        if not hmac.compare_digest(str(claim.get("h")), _code_hash(visit.visitor, code.strip())):
            raise _Refused(400, "wrong code")
        if self.ctx.contacts is None:
            raise _Refused(503, "no store")
        owner = normalize_identity(KIND, visit.visitor, None)
        extra = normalize_identity("email", str(claim["e"]), None)
        outcome = await self.ctx.contacts.confirmed(owner, extra)
        return self._json(request, {"email": claim["e"], "email_linked": outcome})

    async def events(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        self._check_origin(request)
        visit = self._visit(request, query_token=True)
        after_raw = request.query_params.get("after", "0")
        # ASCII digits only ("²".isdigit() is true) and within a 64-bit row id.
        ok = after_raw.isascii() and after_raw.isdigit() and len(after_raw) <= 18
        after = int(after_raw) if ok else 0
        if self._closing:
            raise _Refused(503, "the chat is shutting down")
        if len(self._streams.get(visit.visitor, ())) >= STREAMS_PER_VISITOR:
            raise _Refused(429, "too many open chat windows", {"Retry-After": "30"})
        if self.connected >= self.max_connections:
            raise _Refused(503, "the chat is busy, try again shortly", {"Retry-After": "30"})
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(100)
        self._streams.setdefault(visit.visitor, set()).add(q)
        return StreamingResponse(
            self._stream(visit.visitor, q, after),
            media_type="text/event-stream",
            headers={
                **self._cors(request),
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            },
        )

    async def _stream(
        self, visitor: str, q: asyncio.Queue[dict[str, Any] | None], after: int
    ) -> AsyncIterator[str]:
        """Replies newer than ``after`` from the store, then pushed replies as
        they are sent; the store is checked again on every keep-alive, which
        covers a reply sent while this stream was not yet registered or
        delivered by another instance."""
        emitted: set[int] = set()

        def fmt(event: dict[str, Any]) -> str:
            head = f"id: {event['id']}\n" if isinstance(event.get("id"), int) else ""
            return f"{head}data: {json.dumps(event, ensure_ascii=False)}\n\n"

        async def catch_up() -> list[str]:
            out = []
            for m in await self._messages(visitor):
                if m["direction"] == "out" and m["id"] > after and m["id"] not in emitted:
                    emitted.add(m["id"])
                    out.append(fmt({"type": "message", **m}))
            return out

        try:
            yield "retry: 3000\n\n"
            for chunk in await catch_up():
                yield chunk
            while not self._closing:
                try:
                    async with asyncio.timeout(self.poll_interval):  # not wait_for: see pipeline
                        event = await q.get()
                except TimeoutError:
                    for chunk in await catch_up():
                        yield chunk
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                mid = event.get("id")
                if isinstance(mid, int):
                    if mid in emitted:
                        continue
                    emitted.add(mid)
                yield fmt(event)
        finally:
            queues = self._streams.get(visitor)
            if queues is not None:
                queues.discard(q)
                if not queues:
                    self._streams.pop(visitor, None)

    def _push(self, visitor: str, event: dict[str, Any]) -> int:
        """Hand an event to the visitor's open streams; returns how many."""
        n = 0
        for q in list(self._streams.get(visitor, ())):
            try:
                q.put_nowait(event)
                n += 1
            except asyncio.QueueFull:
                pass  # a stuck stream catches up from the store on its next tick
        return n

    # -- the contract -----------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            data = json.loads(envelope.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NormalizeError(f"web chat payload is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise NormalizeError("web chat payload must be a JSON object")
        visitor = data.get("visitor")
        if not isinstance(visitor, str) or not VISITOR_ID.match(visitor):
            raise NormalizeError("web chat payload has no valid visitor id")
        if "receipt" in data:
            state = {"delivered": DeliveryState.DELIVERED, "read": DeliveryState.READ}.get(
                data["receipt"]
            )
            mid = data.get("message_id")
            if state is None or isinstance(mid, bool) or not isinstance(mid, int):
                raise NormalizeError("web chat receipt needs 'receipt' and 'message_id'")
            return StatusUpdate(
                channel=self.name,
                provider_id=f"{visitor}:{mid}",
                state=state,
                at=envelope.received_at,
            )
        text = data.get("text")
        client_id = data.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise NormalizeError("web chat message has no client_id")
        if not isinstance(text, str):
            raise NormalizeError("web chat message has no text")
        text = clean_text(text)
        if not text:
            return Skip("empty web chat message")
        page = data.get("page") if isinstance(data.get("page"), str) else None
        ua = data.get("user_agent") if isinstance(data.get("user_agent"), str) else None
        name = data.get("name") if isinstance(data.get("name"), str) else None
        sender = Identity(kind=KIND, address=visitor, display_name=name or None)
        files = []
        att = data.get("attachment")
        if isinstance(att, dict):
            try:
                raw = base64.b64decode(str(att.get("data", "")), validate=True)
            except ValueError:
                raise NormalizeError("web chat attachment is not base64") from None
            files.append(
                Attachment(
                    filename=str(att.get("filename") or "file")[:MAX_FILENAME],
                    content_type=str(att.get("content_type") or "application/octet-stream"),
                    data=raw,
                )
            )
        return Message(
            attachments=files,
            channel=self.name,
            external_id=f"{visitor}:{client_id}",
            sender=sender,
            text=text,
            thread_key=visitor,
            sent_at=envelope.received_at,
            meta={
                "webchat": {
                    k: v
                    for k, v in (
                        ("page", page),
                        ("user_agent", ua),
                        ("offline_form", data.get("offline") is True),
                    )
                    if v
                }
            },
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.recipient.kind == "email" and self.email_channel is not None:
            # The visitor answered our e-mail: the conversation goes on by e-mail.
            return await self._email(message, message.recipient.address)
        visitor = message.recipient.address
        if message.recipient.kind != KIND or not VISITOR_ID.match(visitor):
            raise SendError(
                f"web chat can only answer web chat visitors, not {message.recipient.kind!r}",
                retry=False,
            )
        files: list[dict[str, Any]] = []
        if message.attachments:
            if not isinstance(message.message_id, int):
                raise SendError("web chat delivers files of stored replies only", retry=False)
            files = self.file_links(
                visitor,
                message.message_id,
                [(a.filename, a.content_type, a.size) for a in message.attachments],
            )
        ref = message.message_id if message.message_id is not None else f"o{message.outbox_id}"
        live = 0
        if isinstance(message.message_id, int):
            live = self._push(
                visitor,
                {
                    "type": "message",
                    "id": message.message_id,
                    "direction": "out",
                    "text": message.text,
                    "at": time.time(),
                    "state": "sent",
                    "auto": message.automatic,
                    "agent": None if message.automatic else message.meta.get("agent_name"),
                    **({"survey": message.meta["survey"]} if "survey" in message.meta else {}),
                    **({"files": files} if files else {}),
                },
            )
        self.touch()
        self.log.debug("webchat_sent", visitor=visitor[:8], live_streams=live)
        keys: list[str] = []
        if live == 0 and not message.automatic:
            # The visitor has left: a copy by e-mail when they gave one, whose
            # answer joins this conversation (its Message-ID is a thread key).
            keys = await self._email_copy(message)
        # The message row is the copy the visitor picks up later: handed
        # over either way; the widget's receipt makes it "delivered".
        return SendResult(provider_id=f"{visitor}:{ref}", state=DeliveryState.SENT, keys=keys)

    async def _email_copy(self, message: OutboundMessage) -> list[str]:
        if self.email_channel is None or self.ctx.mail is None or self.ctx.queries is None:
            return []
        email = await self.ctx.queries.customer_email(message.conversation_id)
        if not email:
            return []
        try:
            result = await self._email(message, email)
        except SendError as exc:
            # The chat copy is delivered; the e-mail copy is a courtesy.
            self.log.warning("webchat_email_copy_failed", error=str(exc)[:200])
            return []
        return result.keys

    async def _email(self, message: OutboundMessage, address: str) -> SendResult:
        if self.email_channel is None or self.ctx.mail is None:
            raise SendError("this web chat has no email_channel to answer by e-mail", retry=False)
        text = (
            f"{message.text}\n\n-- \nYou wrote to us in the chat on our website; reply to"
            " this e-mail to go on."
        )
        try:
            mid = await self.ctx.mail(
                self.email_channel,
                [address],
                f"Re: your chat with {self.title}",
                text,
                [a for a in message.attachments if a.data is not None],
            )
        except SendError:
            raise
        except Exception as exc:
            raise SendError(f"e-mail to the visitor failed: {exc}"[:300], retry=True) from None
        key = message_id_key(mid)
        return SendResult(provider_id=key, state=DeliveryState.SENT, keys=[key])
