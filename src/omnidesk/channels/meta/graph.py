"""What Messenger, Instagram and WhatsApp share: the Graph API client, its
errors, and the adapter base class (webhook handshake, signature check,
split, normalize dispatch, the messaging window)."""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ...model import (
    Envelope,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    Skip,
)
from ..base import ChannelAdapter, ChannelContext, IntakeError
from .webhook import (
    MAX_BODY,
    SIGNATURE_HEADER,
    Unparseable,
    _dumps,
    _sha,
    _text,
    split_delivery,
    verify_signature,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
WINDOW_SECONDS = 24 * 3600
WHATSAPP_WINDOW_REASON = (
    "outside WhatsApp's 24-hour window: the customer last wrote more than 24 hours ago,"
    " so WhatsApp only accepts an approved template message"
)
MESSENGER_WINDOW_REASON = (
    "outside the 24-hour messaging window: the customer last wrote more than 24 hours ago"
    " (Meta refuses standard replies; enable human_agent_tag for 7 days of agent replies)"
)
# Graph API error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling,
# WhatsApp Cloud API error codes).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016})
TEXT_LIMITS = {"messenger": 2000, "instagram": 1000, "whatsapp": 4096}

_WS = re.compile(r"\s+")


def _flat(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _fit(label: str, limit: int) -> str:
    """A button's label within the provider's limit (cut with an ellipsis)."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _survey_choice(payload: str | None) -> str | None:
    """The number a survey button stands for (its id or payload
    ``survey:{id}:{choice}``), None for any other button."""
    parts = (payload or "").split(":")
    if len(parts) == 3 and parts[0] == "survey" and parts[2].isdigit():
        return parts[2]
    return None


def _chunks(text: str, limit: int) -> list[str]:
    """Split a long reply at paragraph, line or word boundaries so every part
    fits the platform's limit (Messenger 2,000, Instagram 1,000, WhatsApp
    4,096 characters)."""
    text = text.strip() or text
    parts: list[str] = []
    while len(text) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, limit // 2, limit)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    parts.append(text)
    return [p for p in parts if p] or [""]


# -- Graph API errors ------------------------------------------------------------


def graph_error(status: int, body: Any, headers: Mapping[str, str]) -> SendError:
    """Turn a Graph API error answer into a SendError: rate limits and server
    trouble are retried, everything else fails with a reason an agent can read."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = err.get("code") if isinstance(err.get("code"), int) else None
    sub = err.get("error_subcode")
    message = _text(err.get("message")) or f"HTTP {status}"
    data = err.get("error_data")
    details = _text(data.get("details")) if isinstance(data, dict) else ""
    trace = _text(err.get("fbtrace_id"))
    what = f"{message}{': ' + details if details and details not in message else ''}"
    tail = f" (Graph API code {code}{f'/{sub}' if sub else ''}, HTTP {status}"
    tail += f", fbtrace_id {trace})" if trace else ")"
    retry_after = None
    ra = headers.get("Retry-After")
    if ra and ra.strip().isdigit():
        retry_after = float(ra)
    if code == 131047:
        return SendError(f"{WHATSAPP_WINDOW_REASON}{tail}", retry=False)
    if code == 10 and sub == 2018278:
        return SendError(f"{MESSENGER_WINDOW_REASON}{tail}", retry=False)
    if status == 429 or code in RATE_LIMIT_CODES:
        return SendError(f"rate limited by Meta: {what}{tail}", retry=True, retry_after=retry_after)
    if status >= 500 or code in TRANSIENT_CODES or err.get("is_transient") is True:
        return SendError(f"Meta is having trouble: {what}{tail}", retry=True)
    if code == 190:
        return SendError(
            f"the access token was rejected (expired or revoked): {what}{tail};"
            " put a new token in access_token",
            retry=False,
        )
    if code in (3, 10) or (isinstance(code, int) and 200 <= code <= 299):
        return SendError(f"the app lacks a permission: {what}{tail}", retry=False)
    if code == 551:
        return SendError(f"this person is not reachable right now: {what}{tail}", retry=False)
    return SendError(f"Meta refused the message: {what}{tail}", retry=False)


class ConfigurationProblem(SendError):
    """A send that cannot work with the channel's settings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retry=False)


# -- the adapters --------------------------------------------------------------


class MetaChannel(ChannelAdapter):
    """What Messenger, Instagram and WhatsApp share: the webhook, the
    signature, the split, the Graph API client and its errors."""

    platform: ClassVar[str]
    identity_kind: ClassVar[str]
    max_body: ClassVar[int] = MAX_BODY
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments"}
    )

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.app_secret = o.secret("app_secret")
        self.verify_token = o.secret("verify_token")
        self.access_token = o.secret("access_token")
        for key in ("app_secret", "verify_token", "access_token"):
            if not getattr(self, key):
                raise o.error(key, "must not be empty")
        self.api_base_url = o.string("api_base_url", DEFAULT_API_BASE).rstrip("/")
        self.api_version = o.string("api_version", DEFAULT_API_VERSION).strip("/")
        if not re.fullmatch(r"v\d+\.\d+", self.api_version):
            raise o.error("api_version", f"must look like v21.0 (got {self.api_version!r})")
        self.timeout = o.number("timeout", 15.0, min=0.1)
        self.check_token = o.boolean("check_token", True)
        self._read_options(o)
        o.check_unused()
        self._secret_bytes = self.app_secret.reveal()
        self._client: httpx.AsyncClient | None = None

    def _read_options(self, o: Any) -> None:
        """Subclasses read their own keys here."""

    # -- lifecycle ---------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.api_base_url}/{self.api_version}/",
            timeout=self.timeout,
            headers={"Authorization": f"Bearer {self.access_token.reveal()}"},
        )

    async def start(self) -> None:
        # The HTTP client is made on first use (an SSL context costs ~20 ms).
        self.set_health(True, "running", "waiting for webhook deliveries")
        if self.check_token and self.ctx.spawn is not None:
            self.ctx.spawn(self._check_token(), f"{self.name}-token-check")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.set_health(True, "stopped")

    async def _check_token(self) -> None:
        """Ask the Graph API about our own sender once at start, so a wrong
        token or id shows on /healthz before the first reply fails."""
        try:
            resp = await self._http().get(self._sender_path(), params={"fields": "id"})
        except httpx.HTTPError as exc:
            self.set_health(False, "degraded", f"Graph API unreachable: {type(exc).__name__}")
            return
        if resp.status_code >= 400:
            err = graph_error(resp.status_code, _json(resp), resp.headers)
            self.set_health(False, "failing", f"Graph API refused our token: {err.reason}")
        else:
            self.set_health(True, "running", "token accepted; waiting for webhook deliveries")

    def _sender_path(self) -> str:
        return "me"

    # -- webhook -------------------------------------------------------------------
    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if request.method == "GET":
            return self._handshake(request)
        body = await request.body()  # at most max_body (web/limits.py)
        problem = verify_signature(self._secret_bytes, body, request.headers.get(SIGNATURE_HEADER))
        if problem is not None:
            self.log.info("webhook_refused", reason=problem)
            status = 401 if problem.startswith("missing") else 403
            return JSONResponse({"error": problem}, status_code=status)
        envelopes = self.envelopes(body)
        try:
            results = await self.ctx.intake.accept_many(envelopes)
        except IntakeError as exc:
            # Not stored: a non-2xx answer makes Meta deliver again later.
            self.log.error("webhook_not_stored", error=str(exc))
            return JSONResponse({"error": "could not store, retry later"}, status_code=503)
        self.touch()
        new = sum(results)
        return JSONResponse({"stored": new, "duplicates": len(results) - new})

    def _handshake(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        q = request.query_params
        mode, token = q.get("hub.mode"), q.get("hub.verify_token")
        challenge = q.get("hub.challenge")
        if mode != "subscribe" or token is None or not challenge:
            return PlainTextResponse(
                "expected hub.mode=subscribe, hub.verify_token and hub.challenge\n",
                status_code=400,
            )
        if not hmac.compare_digest(token.encode(), self.verify_token.reveal().encode()):
            self.log.warning("webhook_handshake_refused", reason="verify_token mismatch")
            return PlainTextResponse("verify token mismatch\n", status_code=403)
        self.log.info("webhook_subscribed")
        return PlainTextResponse(challenge[:4096])

    def envelopes(self, body: bytes) -> list[Envelope]:
        """Split a signed delivery into envelopes (never empty: a delivery
        with nothing to split is kept whole, so nothing signed is ever lost)."""
        now = time.time()
        try:
            items = split_delivery(self.platform, body)
        except Unparseable as exc:
            self.log.warning("webhook_unparseable", reason=str(exc), size=len(body))
            return [self._whole(body, now, str(exc))]
        if not items:
            return [self._whole(body, now, None)]
        out: list[Envelope] = []
        # The same item twice in one delivery is left to the intake: the
        # second copy counts as a duplicate there, like a redelivery.
        for ext, doc in items:
            if doc["kind"] == "error":
                self.log.warning("meta_reported_error", error=doc["item"])
            elif doc["kind"] == "change" and doc["item"].get("field") == "account_update":
                # Restrictions, bans, disconnections: an admin must hear of them.
                self.log.warning("meta_account_notice", value=doc["item"].get("value"))
            out.append(
                Envelope(
                    channel=self.name,
                    external_id=ext[:500],
                    payload=_dumps(doc),
                    content_type="application/json",
                    received_at=now,
                )
            )
        return out

    def _whole(self, body: bytes, now: float, reason: str | None) -> Envelope:
        return Envelope(
            channel=self.name,
            external_id=f"body:{_sha(body)}",
            payload=body,
            content_type="application/octet-stream" if reason else "application/json",
            received_at=now,
            meta={"unparseable": reason} if reason else {"whole_delivery": True},
        )

    # -- normalize -----------------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        meta = envelope.meta or {}
        if meta.get("unparseable"):
            raise NormalizeError(f"undecodable webhook delivery: {meta['unparseable']}")
        if meta.get("whole_delivery"):
            return Skip("delivery without any messaging item (no entries or empty entries)")
        try:
            doc = json.loads(envelope.payload)
        except ValueError as exc:
            raise NormalizeError(f"stored envelope is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("item"), dict):
            raise NormalizeError("stored envelope has no item")
        return self.normalize_item(envelope, doc)

    def normalize_item(self, envelope: Envelope, doc: dict[str, Any]) -> Normalized:
        raise NotImplementedError

    # -- sending ---------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send_request(path, json=body)

    async def _upload(
        self, path: str, fields: dict[str, str], field: str, name: str, data: bytes, ctype: str
    ) -> dict[str, Any]:
        """A multipart/form-data POST carrying one file (the media and
        attachment upload endpoints)."""
        return await self._send_request(path, data=fields, files={field: (name, data, ctype)})

    async def _send_request(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = await self._http().post(path, **kwargs)
        except httpx.HTTPError as exc:
            raise SendError(
                f"Graph API unreachable: {type(exc).__name__}: {exc}", retry=True
            ) from None
        data = _json(resp)
        if resp.status_code >= 400 or (isinstance(data, dict) and "error" in data):
            err = graph_error(resp.status_code, data, resp.headers)
            if "access token was rejected" in err.reason or "lacks a permission" in err.reason:
                self.set_health(False, "failing", err.reason)
            raise err
        if not isinstance(data, dict):
            raise SendError(f"Graph API answered {resp.status_code} without JSON", retry=True)
        return data

    async def _customer_last_wrote(self, m: OutboundMessage) -> float | None:
        """When the customer last wrote on this channel (the start of Meta's
        messaging window); None when unknown."""
        if self.ctx.queries is None:
            return None
        return await self.ctx.queries.last_inbound_at(m.conversation_id, m.recipient)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _thread_parts(thread_key: str | None) -> tuple[str | None, str | None]:
    """Our thread keys are ``{page or phone number id}:{customer id}``."""
    if not thread_key or ":" not in thread_key:
        return None, thread_key
    owner, _, customer = thread_key.partition(":")
    return owner or None, customer or None
