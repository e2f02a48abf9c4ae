"""The signed HTTP API channel.

Inbound: ``POST /api/v1/inbound/{channel}`` with a JSON body and the header
``X-Omnidesk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">``
keyed with the channel's ``secret``. A wrong or missing signature, or a
timestamp more than five minutes away from now, is refused with 401 and
nothing is stored. The body::

    {"external_id": "order-123-msg-1",                # required, unique per message
     "sender": {"address": "ann@example.com",          # required
                "kind": "email",                       # optional: email | phone | api (default)
                "name": "Ann"},
     "text": "Where is my order?",                     # required (may be empty with attachments)
     "subject": "Order 123",                           # optional
     "html": "<p>...</p>",                             # optional, sanitized before display
     "thread_key": "order-123",                        # optional: same key, same conversation
     "language": "en",                                 # optional
     "attachments": [{"filename": "a.png", "content_type": "image/png", "data": "<base64>"}]}

Answer: ``202 {"status": "accepted", "duplicate": false}`` once stored.

Outbound: replies are POSTed as JSON to ``callback_url`` with the same
signature header; 2xx is success, 429/5xx/network errors are retried by the
outbox (``Retry-After`` honoured), other 4xx fail the reply with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ..identity import normalize_identity
from ..model import (
    Attachment,
    Envelope,
    Message,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
)
from .base import ChannelAdapter, ChannelContext

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

SIGNATURE_HEADER = "X-Omnidesk-Signature"
TOLERANCE = 300  # seconds either side of now
MAX_BODY = 25 * 1024 * 1024


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, *, now: float | None = None) -> str | None:
    """None when the signature is valid, else the reason it is not."""
    if not header:
        return "missing signature"
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return "malformed signature header"
    now = time.time() if now is None else now
    if abs(now - t) > TOLERANCE:
        return "signature timestamp outside the 5-minute window"
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        return "signature mismatch"
    return None


class BadRequest(ValueError):
    pass


def _require_str(d: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    v = d.get(key)
    if not isinstance(v, str) or (not allow_empty and not v.strip()):
        raise BadRequest(f"'{key}' must be a non-empty string")
    return v


def parse_body(raw: bytes) -> dict[str, Any]:
    """Validate an inbound body; raises BadRequest with a clear reason."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    _require_str(data, "external_id")
    sender = data.get("sender")
    if not isinstance(sender, dict):
        raise BadRequest("'sender' must be an object with 'address'")
    _require_str(sender, "address")
    text = data.get("text", "")
    if not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    atts = data.get("attachments", [])
    if not isinstance(atts, list):
        raise BadRequest("'attachments' must be a list")
    if not text.strip() and not atts:
        raise BadRequest("'text' must not be empty (or send attachments)")
    for i, a in enumerate(atts):
        if not isinstance(a, dict) or not isinstance(a.get("data"), str):
            raise BadRequest(f"attachments[{i}] must be an object with base64 'data'")
    for key in ("subject", "html", "thread_key", "language"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise BadRequest(f"'{key}' must be a string")
    return data


class ApiChannel(ChannelAdapter):
    type = "api"
    capabilities: ClassVar[frozenset[str]] = frozenset({"attachments", "threads", "subject"})
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.secret = o.secret("secret")
        if not self.secret:
            raise o.error("secret", "must not be empty")
        self.callback_url = o.string("callback_url", None)
        self.timeout = o.number("timeout", 10.0, min=0.1)
        o.check_unused()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout)
        self.set_health(True, "running", "accepting signed messages")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.set_health(True, "stopped")

    async def handle_inbound(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        body = await request.body()  # at most max_body (web/limits.py)
        problem = verify(self.secret.reveal(), body, request.headers.get(SIGNATURE_HEADER))
        if problem is not None:
            self.log.info("inbound_refused", reason=problem)
            return JSONResponse({"error": problem}, status_code=401)
        try:
            data = parse_body(body)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        new = await self.ctx.intake.accept(
            Envelope(
                channel=self.name,
                external_id=data["external_id"],
                payload=body,
                content_type="application/json",
            )
        )
        self.touch()
        return JSONResponse({"status": "accepted", "duplicate": not new}, status_code=202)

    handle_webhook = handle_inbound

    def normalize(self, envelope: Envelope) -> Message:
        try:
            data = parse_body(envelope.payload)
        except BadRequest as exc:
            raise NormalizeError(str(exc)) from None
        s = data["sender"]
        sender = normalize_identity(
            s.get("kind") or "api",
            s["address"],
            s.get("name") if isinstance(s.get("name"), str) else None,
        )
        attachments = []
        for i, a in enumerate(data.get("attachments", [])):
            try:
                blob = base64.b64decode(a["data"], validate=True)
            except (binascii.Error, ValueError):
                raise NormalizeError(f"attachments[{i}].data is not valid base64") from None
            attachments.append(
                Attachment(
                    filename=a.get("filename") if isinstance(a.get("filename"), str) else None,
                    content_type=a.get("content_type") or "application/octet-stream",
                    data=blob,
                )
            )
        html = data.get("html")
        if html:
            from ..htmltext import sanitize_html

            html = sanitize_html(html)
        return Message(
            channel=self.name,
            external_id=data["external_id"],
            sender=sender,
            text=data.get("text", ""),
            subject=data.get("subject"),
            html=html or None,
            attachments=attachments,
            thread_key=data.get("thread_key"),
            language=data.get("language"),
            sent_at=envelope.received_at,
            meta={"api": {k: data[k] for k in ("metadata",) if k in data}},
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        if not self.callback_url:
            raise SendError(
                "this API channel has no callback_url to deliver replies to", retry=False
            )
        body = json.dumps(
            {
                "outbox_id": message.outbox_id,
                "conversation_id": message.conversation_id,
                "message_id": message.message_id,
                "recipient": {"kind": message.recipient.kind, "address": message.recipient.address},
                "in_reply_to": message.reply_to_external_id,
                "thread_key": message.thread_key,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "automatic": message.automatic,
                "attachments": [
                    {
                        "filename": a.filename,
                        "content_type": a.content_type,
                        "data": base64.b64encode(a.data or b"").decode(),
                    }
                    for a in message.attachments
                ],
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret.reveal(), body),
            # The receiver can drop a redelivery (the outbox is at-least-once).
            "Idempotency-Key": f"omnidesk-{self.name}-{message.outbox_id}",
        }
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        try:
            resp = await client.post(self.callback_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(
                f"callback unreachable: {type(exc).__name__}: {exc}", retry=True
            ) from None
        finally:
            if client is not self._client:
                await client.aclose()
        if 200 <= resp.status_code < 300:
            try:
                answer_id = resp.json().get("id") if resp.content else None
            except (ValueError, AttributeError):
                answer_id = None
            return SendResult(provider_id=None if answer_id is None else str(answer_id))
        reason = f"callback answered {resp.status_code}: {resp.text[:200]}"
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = None
            ra = resp.headers.get("Retry-After")
            if ra and ra.strip().isdigit():
                retry_after = float(ra)
            raise SendError(reason, retry=True, retry_after=retry_after)
        raise SendError(reason, retry=False)
