"""Meta platforms: Messenger, Instagram messaging and the WhatsApp Cloud API.

All three share Meta's webhook and the Graph API, so one base class does the
common work and three small subclasses (``messenger``, ``instagram``,
``whatsapp``) say what differs.

Inbound, at ``/webhooks/{channel name}``:

* ``GET`` is the subscription handshake: ``hub.mode=subscribe``, the
  ``hub.verify_token`` compared in constant time with ``verify_token``, and
  ``hub.challenge`` echoed back; a wrong token gets 403.
* ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
  body keyed with app_secret>``, checked on the raw bytes before any parsing
  (missing: 401, wrong: 403, nothing stored). Meta batches: one delivery holds
  several ``entry`` objects, each with several ``messaging`` items (Messenger,
  Instagram) or ``changes`` (WhatsApp, each with lists of ``messages`` and
  ``statuses``). The delivery is split here into one envelope per item, with
  the item's own stable id as external id (``mid``, ``wamid``,
  ``status:<wamid>:<status>``...), and all of them are committed in one group
  before the 200: a redelivery is deduplicated by the intake. A delivery with
  a valid signature that cannot be parsed is kept whole (external id
  ``body:<sha256>``), goes to quarantine with its raw bytes, and is still
  answered 200 - Meta would otherwise retry it for days.

The envelope payload is the item with its context (entry id and time,
WhatsApp's ``metadata`` and the sender's ``contacts`` record) as compact JSON,
so each envelope can be normalized on its own.

What items become:

* customer messages (text, media, location, contacts, interactive replies,
  postbacks, orders, unsupported types) -> ``Message``; media are kept as
  references (WhatsApp media id, Messenger CDN URL) - downloading them needs
  Graph calls and is not done at intake;
* edits and unsends -> ``Message(kind=EDIT)`` pointing at the original;
* reactions -> a message marked automatic ("reaction"): it shows in the
  conversation but never reopens or opens one;
* Messenger ``delivery`` (per mid) and WhatsApp ``statuses`` -> ``StatusUpdate``
  on the outbound message whose provider id matches; Messenger ``read`` and
  mid-less ``delivery`` receipts carry a watermark and update every reply on
  that thread sent before it;
* echoes: a reply omnidesk sent (marked with our ``metadata``, or matching a
  stored provider id) is skipped; a message a person sent from the Page inbox,
  the Instagram app or the WhatsApp Business app is recorded in the
  conversation as an outbound message, because it is part of what the
  customer was told;
* everything else (opt-ins, referrals, account and template notices, calls)
  -> ``Skip`` with the reason, kept in the intake table.

Outbound replies go through the Graph API at ``{api_base_url}/{api_version}``:
the Send API (``/{page_id}/messages`` or ``/me/messages``) for Messenger and
Instagram, ``/{phone_number_id}/messages`` for WhatsApp. WhatsApp refuses a
free-form message more than 24 hours after the customer last wrote (error
131047): the adapter checks the window first and fails the reply with a
reason an agent can act on, or sends the configured approved template.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ..identity import normalize_identity, normalize_phone
from ..intake import IntakeError
from ..model import (
    Attachment,
    DeliveryState,
    Direction,
    Envelope,
    Identity,
    Message,
    MessageKind,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
    StatusUpdate,
)
from ..store.conversations import last_inbound_at
from .base import ChannelAdapter, ChannelContext

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

SIGNATURE_HEADER = "X-Hub-Signature-256"
DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
MAX_BODY = 16 * 1024 * 1024
# Set on every message we send through the Send API; Meta echoes it back, so
# our own echoes are recognised without a database lookup (and without the
# race between the echo webhook and the Send API's answer).
ECHO_MARK = "omnidesk"
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

_DIGITS = re.compile(r"^\d{1,32}$")
_WS = re.compile(r"\s+")


# -- signatures ----------------------------------------------------------------


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header: str | None) -> str | None:
    """None when ``header`` signs ``body``, else the reason it does not."""
    if not header:
        return "missing X-Hub-Signature-256 header"
    algo, _, digest = header.strip().partition("=")
    if algo.lower() != "sha256" or not digest:
        return "malformed X-Hub-Signature-256 header (expected sha256=<hex>)"
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        return "signature mismatch"
    return None


# -- splitting a delivery into envelopes ----------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _str_id(value: Any) -> str | None:
    """Meta sends ids as strings, sometimes as numbers."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _party(item: Mapping[str, Any], key: str) -> str | None:
    v = item.get(key)
    return _str_id(v.get("id")) if isinstance(v, dict) else None


class Unparseable(ValueError):
    """A signed delivery that is not a Meta webhook body we understand."""


_OBJECTS = {
    "messenger": ("page",),
    "instagram": ("instagram", "page"),
    "whatsapp": ("whatsapp_business_account",),
}


def split_delivery(platform: str, body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(external id, envelope document) for every item of a delivery, in order,
    duplicates included. Raises :class:`Unparseable` with the reason."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unparseable(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Unparseable("body is not a JSON object")
    obj = data.get("object")
    if obj not in _OBJECTS[platform]:
        raise Unparseable(
            f"object {obj!r} is not what a {platform} channel receives"
            f" ({' or '.join(repr(o) for o in _OBJECTS[platform])}): is the webhook pointed"
            " at the right channel?"
        )
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise Unparseable("'entry' is missing or not a list")
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        head = {"id": _str_id(entry.get("id")), "time": entry.get("time")}
        if platform == "whatsapp":
            out.extend(_split_whatsapp_entry(obj, head, entry))
        else:
            out.extend(_split_page_entry(platform, obj, head, entry))
    return out


def _doc(platform: str, obj: str, entry: dict[str, Any], kind: str, item: Any) -> dict[str, Any]:
    return {"platform": platform, "object": obj, "entry": entry, "kind": kind, "item": item}


def _split_page_entry(
    platform: str, obj: str, head: dict[str, Any], entry: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for source in ("messaging", "standby"):
        items = entry.get(source)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            kind = source
            delivery = _obj(item.get("delivery"))
            mids = delivery.get("mids")
            if isinstance(mids, list) and len(mids) > 1:
                # One receipt per mid, so each is its own idempotent status update.
                for mid in mids:
                    one = {**item, "delivery": {**delivery, "mids": [mid]}}
                    yield f"delivery:{mid}", _doc(platform, obj, head, kind, one)
                continue
            yield _page_item_id(item), _doc(platform, obj, head, kind, item)
    changes = entry.get("changes")
    if isinstance(changes, list):
        for change in changes:
            yield f"change:{_sha(_dumps(change))}", _doc(platform, obj, head, "change", change)


def _page_item_id(item: Mapping[str, Any]) -> str:
    sender = _party(item, "sender") or "-"
    ts = item.get("timestamp")
    msg = item.get("message")
    if isinstance(msg, dict):
        mid = _str_id(msg.get("mid"))
        if mid:
            if msg.get("is_deleted"):
                return f"unsent:{mid}"
            return mid
    edit = item.get("message_edit")
    if isinstance(edit, dict) and _str_id(edit.get("mid")):
        return f"edit:{edit['mid']}:{edit.get('num_edit', 0)}"
    delivery = item.get("delivery")
    if isinstance(delivery, dict):
        mids = delivery.get("mids")
        if isinstance(mids, list) and len(mids) == 1 and _str_id(mids[0]):
            return f"delivery:{mids[0]}"
        return f"delivery:{sender}:{delivery.get('watermark')}"
    read = item.get("read")
    if isinstance(read, dict):
        return f"read:{sender}:{read.get('watermark')}"
    reaction = item.get("reaction")
    if isinstance(reaction, dict):
        return f"reaction:{reaction.get('mid')}:{sender}:{reaction.get('action')}:{ts}"
    postback = item.get("postback")
    if isinstance(postback, dict) and _str_id(postback.get("mid")):
        return f"postback:{postback['mid']}"
    for kind in ("postback", "referral", "optin", "account_linking", "policy_enforcement"):
        if kind in item:
            return f"{kind}:{sender}:{ts}"
    return f"item:{_sha(_dumps(item))}"


def _split_whatsapp_entry(
    obj: str, head: dict[str, Any], entry: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    changes = entry.get("changes")
    if not isinstance(changes, list):
        return
    for change in changes:
        if not isinstance(change, dict):
            continue
        value = change.get("value")
        field = change.get("field")
        value = _obj(value)
        if not any(isinstance(value.get(k), list) for k, _ in _WA_KINDS):
            # Account, template, call and preference notices: one envelope each.
            doc = _doc("whatsapp", obj, head, "change", change)
            yield f"change:{_sha(_dumps(change))}", doc
            continue
        extra = set(value) - _WA_VALUE_KEYS
        if extra:
            # Parts we do not split (calls, preferences...): kept as one envelope.
            doc = _doc("whatsapp", obj, head, "change", change)
            yield f"change:{_sha(_dumps(change))}", doc
        ctx = {"field": field, "metadata": value.get("metadata")}
        contacts = _list(value.get("contacts"))
        for key, kind in _WA_KINDS:
            for part in _list(value.get(key)):
                if not isinstance(part, dict):
                    continue
                d = _doc("whatsapp", obj, head, kind, part)
                d.update(ctx)
                if kind == "message":
                    d["contact"] = _wa_contact(contacts, part)
                elif kind == "echo":
                    d["contact"] = contacts[0] if len(contacts) == 1 else None
                yield _wa_item_id(kind, part, head), d


def _wa_item_id(kind: str, part: dict[str, Any], head: dict[str, Any]) -> str:
    wamid = _str_id(part.get("id"))
    if kind == "message":
        return wamid or f"item:{_sha(_dumps(part))}"
    if kind == "status":
        return f"status:{wamid}:{part.get('status')}"
    if kind == "echo":
        return f"echo:{wamid or _sha(_dumps(part))}"
    return f"error:{_sha(_dumps([head, part]))}"


_WA_KINDS = (
    ("messages", "message"),
    ("statuses", "status"),
    ("message_echoes", "echo"),
    ("errors", "error"),
)
_WA_VALUE_KEYS = frozenset({"messaging_product", "metadata", "contacts", *dict(_WA_KINDS)})


def _wa_contact(contacts: list[Any], msg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``contacts`` record of the message's sender (profile name, BSUID)."""
    frm, uid = msg.get("from"), msg.get("from_user_id")
    for c in contacts:
        if isinstance(c, dict) and (
            (frm and c.get("wa_id") == frm) or (uid and c.get("user_id") == uid)
        ):
            return c
    return contacts[0] if len(contacts) == 1 and isinstance(contacts[0], dict) else None


# -- small parsing helpers -------------------------------------------------------


def _ts(value: Any) -> float | None:
    """Meta timestamps: Messenger in milliseconds, WhatsApp in seconds (as a
    string). A value that is not a plausible time gives None, not an error:
    the message itself is still good."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    if t > 1e11:  # milliseconds
        t /= 1000.0
    return t if 1e8 < t < 1e10 else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _flat(text: str) -> str:
    return _WS.sub(" ", text).strip()


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
        try:
            resp = await self._http().post(path, json=body)
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
        messaging window), from the store; None when unknown."""
        store = self.ctx.store
        if store is None:
            return None
        return await store.read(
            last_inbound_at, m.conversation_id, m.recipient.kind, m.recipient.address
        )


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


# -- Messenger and Instagram -------------------------------------------------------


_ATTACHMENT_LABELS = {
    "image": "[image]",
    "video": "[video]",
    "audio": "[audio]",
    "file": "[file]",
    "sticker": "[sticker]",
    "fallback": "[link]",
    "template": "[template]",
    "location": "[location]",
    "story_mention": "[mentioned you in their story]",
    "story_reply": "[replied to your story]",
    "share": "[shared a post]",
    "ig_reel": "[shared a reel]",
    "reel": "[shared a reel]",
    "ig_post": "[shared a post]",
    "like_heart": "\u2764\ufe0f",
    "product": "[product]",
    "unsupported_type": "[a message type Meta does not pass on]",
}
_ATTACHMENT_TYPES = {
    "image": "image/*",
    "video": "video/*",
    "audio": "audio/*",
    "sticker": "image/*",
}
# Messenger's "like" button sends this sticker.
_THUMBS_UP_STICKERS = frozenset({"369239263222822", "369239343222814", "369239383222810"})


class _PageChannel(MetaChannel):
    """Messenger and Instagram: the Send API and ``messaging`` items."""

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments", "edits"}
    )

    def _read_options(self, o: Any) -> None:
        self.page_id: str | None = o.string("page_id", None)
        self.human_agent_tag: bool = o.boolean("human_agent_tag", False)

    def _sender_path(self) -> str:
        return self.page_id or "me"

    def normalize_item(self, envelope: Envelope, doc: dict[str, Any]) -> Normalized:
        item: dict[str, Any] = doc["item"]
        entry_id = _str_id((doc.get("entry") or {}).get("id"))
        if doc.get("kind") == "change":
            return Skip(f"{doc.get('object')} change {item.get('field')!r} is not a message")
        sender, recipient = _party(item, "sender"), _party(item, "recipient")
        at = _ts(item.get("timestamp"))
        msg = item.get("message")
        is_echo = isinstance(msg, dict) and bool(msg.get("is_echo"))
        if is_echo:
            # From the page to the customer (Meta's own samples sometimes
            # swap the two: the customer is whichever is not the page).
            customer = recipient if recipient and recipient != entry_id else sender
            page = sender if customer == recipient else recipient
        else:
            customer, page = sender, recipient or entry_id
        if not customer:
            raise NormalizeError("messaging item without a sender id")
        if not _DIGITS.match(customer):
            raise NormalizeError(f"sender id {customer!r} is not a Meta user id")
        if self.page_id and page and page != self.page_id and self.platform == "messenger":
            return Skip(f"for page {page}; this channel serves page {self.page_id}")
        thread_key = f"{page or entry_id}:{customer}"
        who = normalize_identity(self.identity_kind, customer, None, {"page_id": page})
        standby = doc.get("kind") == "standby"

        if "delivery" in item or "read" in item:
            return self._receipt(item, thread_key)
        if isinstance(msg, dict):
            if is_echo:
                return self._echo(envelope, msg, who, page, thread_key, at)
            return self._message(envelope, msg, who, thread_key, at, standby)
        edit = item.get("message_edit")
        if isinstance(edit, dict) and _str_id(edit.get("mid")):
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text=_text(edit.get("text")),
                kind=MessageKind.EDIT,
                edit_of=str(edit["mid"]),
                thread_key=thread_key,
                sent_at=at,
            )
        reaction = item.get("reaction")
        if isinstance(reaction, dict):
            emoji = _text(reaction.get("emoji")) or _text(reaction.get("reaction"))
            removed = reaction.get("action") == "unreact"
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text="[reaction removed]" if removed else (emoji or "[reaction]"),
                auto="reaction",
                thread_key=thread_key,
                sent_at=at,
                meta={"reaction": reaction},
            )
        postback = item.get("postback")
        if isinstance(postback, dict):
            # A button the customer pressed ("Get started", a menu item): what
            # they chose is part of the conversation.
            title = _text(postback.get("title")) or _text(postback.get("payload")) or "[button]"
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text=title,
                thread_key=thread_key,
                sent_at=at,
                meta={"postback": postback, **({"standby": True} if standby else {})},
            )
        for kind in ("referral", "optin", "account_linking", "policy_enforcement"):
            if isinstance(item.get(kind), dict):
                return Skip(f"{kind} event: {json.dumps(item[kind], ensure_ascii=False)[:300]}")
        return Skip(f"unknown messaging item with keys {sorted(item)}")

    def _receipt(self, item: dict[str, Any], thread_key: str) -> Normalized:
        delivery, read = item.get("delivery"), item.get("read")
        state = DeliveryState.DELIVERED if delivery is not None else DeliveryState.READ
        receipt = delivery if isinstance(delivery, dict) else read
        if not isinstance(receipt, dict):
            return Skip("receipt without details")
        mids = receipt.get("mids")
        if isinstance(mids, list) and mids and _str_id(mids[0]):
            return StatusUpdate(channel=self.name, provider_id=str(mids[0]), state=state)
        watermark = _ts(receipt.get("watermark"))
        if watermark is None:
            return Skip(f"{state} receipt without mids or watermark")
        return StatusUpdate(
            channel=self.name,
            provider_id="",
            state=state,
            thread_key=thread_key,
            watermark=watermark,
        )

    def _content(self, msg: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
        text = _text(msg.get("text"))
        labels: list[str] = []
        attachments: list[Attachment] = []
        meta: dict[str, Any] = {}
        for att in msg.get("attachments") or ():
            if not isinstance(att, dict):
                continue
            kind = _text(att.get("type")) or "file"
            payload = _obj(att.get("payload"))
            url = _text(payload.get("url"))
            sticker = _str_id(payload.get("sticker_id"))
            if sticker in _THUMBS_UP_STICKERS:
                labels.append("\U0001f44d")
                continue
            coords = payload.get("coordinates")
            if kind == "location" or isinstance(coords, dict):
                c = coords if isinstance(coords, dict) else {}
                meta["location"] = {"latitude": c.get("lat"), "longitude": c.get("long")}
                labels.append(f"[location: {c.get('lat')}, {c.get('long')}]")
                continue
            label = _ATTACHMENT_LABELS.get(kind, f"[{kind}]")
            title = _text(att.get("title")) or _text(payload.get("title"))
            if title:
                label = f"{label[:-1]}: {title}]" if label.startswith("[") else label
            labels.append(label)
            if url:
                attachments.append(
                    Attachment(
                        filename=title or None,
                        content_type=_ATTACHMENT_TYPES.get(kind, "application/octet-stream"),
                        ref=url,
                    )
                )
            if kind not in _ATTACHMENT_TYPES and kind != "file":
                meta.setdefault("attachments", []).append(att)
        if not text and labels:
            text = " ".join(labels)
        for key in ("quick_reply", "reply_to", "referral", "commands"):
            if key in msg:
                meta[key] = msg[key]
        return text, attachments, meta

    def _message(
        self,
        envelope: Envelope,
        msg: dict[str, Any],
        who: Identity,
        thread_key: str,
        at: float | None,
        standby: bool,
    ) -> Normalized:
        mid = _str_id(msg.get("mid"))
        if not mid:
            raise NormalizeError("message without a mid")
        if msg.get("is_deleted"):
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text="[the customer unsent this message]",
                kind=MessageKind.EDIT,
                edit_of=mid,
                thread_key=thread_key,
                sent_at=at,
                meta={"unsent": True},
            )
        text, attachments, meta = self._content(msg)
        if msg.get("is_unsupported"):
            text = text or "[a message type Meta does not pass on]"
        if not text and not attachments:
            return Skip("message without text or attachments")
        if standby:
            meta["standby"] = True  # received while another app had thread control
        return Message(
            channel=self.name,
            external_id=mid,
            sender=who,
            text=text,
            attachments=attachments,
            thread_key=thread_key,
            sent_at=at,
            meta=meta,
        )

    def _echo(
        self,
        envelope: Envelope,
        msg: dict[str, Any],
        customer: Identity,
        page: str | None,
        thread_key: str,
        at: float | None,
    ) -> Normalized:
        if _text(msg.get("metadata")).startswith(ECHO_MARK):
            return Skip("echo of a reply sent by omnidesk")
        text, attachments, meta = self._content(msg)
        if not text and not attachments:
            return Skip("echo of a message without text or attachments")
        app = _str_id(msg.get("app_id"))
        name = "Instagram app" if self.platform == "instagram" else "Page inbox"
        return Message(
            channel=self.name,
            external_id=_str_id(msg.get("mid")) or envelope.external_id,
            sender=Identity(
                kind=self.identity_kind,
                address=page or "page",
                display_name=f"{name} (outside omnidesk)" if not app else f"app {app}",
            ),
            recipients=[customer],
            text=text,
            attachments=attachments,
            thread_key=thread_key,
            sent_at=at,
            direction=Direction.OUTBOUND,
            meta={**meta, "sent_outside_omnidesk": True, **({"app_id": app} if app else {})},
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        page, customer = _thread_parts(message.thread_key)
        who = message.recipient
        psid = who.address if who.kind == self.identity_kind else customer
        if not psid:
            raise ConfigurationProblem("no recipient id for this conversation")
        path = f"{self.page_id or page or 'me'}/messages"
        last_id: str | None = None
        for part in _chunks(message.text, TEXT_LIMITS[self.platform]):
            body: dict[str, Any] = {
                "recipient": {"id": psid},
                "messaging_type": "RESPONSE",
                "message": self._message_body(part),
            }
            try:
                data = await self._post(path, body)
            except SendError as exc:
                if not (self.human_agent_tag and exc.reason.startswith("outside the 24-hour")):
                    raise
                # Meta allows human agents to answer for 7 days with this tag.
                body["messaging_type"] = "MESSAGE_TAG"
                body["tag"] = "HUMAN_AGENT"
                data = await self._post(path, body)
            last_id = _str_id(data.get("message_id")) or last_id
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=last_id)

    def _message_body(self, text: str) -> dict[str, Any]:
        return {"text": text, "metadata": ECHO_MARK}


class MessengerChannel(_PageChannel):
    type = "messenger"
    platform = "messenger"
    identity_kind = "messenger"


class InstagramChannel(_PageChannel):
    type = "instagram"
    platform = "instagram"
    identity_kind = "instagram"

    def _message_body(self, text: str) -> dict[str, Any]:
        # Instagram's Send API takes no metadata; our echoes are recognised by
        # their mid (the provider id of the reply) instead.
        return {"text": text}


# -- WhatsApp --------------------------------------------------------------------


_WA_MEDIA = ("image", "video", "audio", "document", "sticker", "voice")
_WA_STATUS = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "played": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}


@functools.lru_cache(maxsize=4096)  # parsing a number costs ~50 µs; customers write again
def _wa_phone(wa_id: str) -> str | None:
    """A WhatsApp id is the user's phone number in digits: E.164 when it
    parses as one, else the digits with a '+' (WhatsApp vouches for it)."""
    if not re.fullmatch(r"\+?\d{1,20}", wa_id or ""):
        return None
    return normalize_phone(wa_id) or "+" + wa_id.lstrip("+")


def _wa_errors(errors: Any) -> str:
    out = []
    for e in errors if isinstance(errors, list) else ():
        if not isinstance(e, dict):
            continue
        data = e.get("error_data")
        details = _text(data.get("details")) if isinstance(data, dict) else ""
        title = _text(e.get("title")) or _text(e.get("message"))
        code = e.get("code")
        if code == 131047:
            title = WHATSAPP_WINDOW_REASON
        out.append(f"{title}{': ' + details if details else ''} (code {code})")
    return "; ".join(out)


class WhatsAppChannel(MetaChannel):
    type = "whatsapp"
    platform = "whatsapp"
    identity_kind = "phone"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments", "edits"}
    )

    def _read_options(self, o: Any) -> None:
        self.phone_number_id: str = o.string("phone_number_id")
        if not _DIGITS.match(self.phone_number_id or ""):
            raise o.error("phone_number_id", "must be the numeric phone number id from Meta")
        self.quote_replies: bool = o.boolean("quote_replies", True)
        self.window_template: str | None = o.string("window_template", None)
        self.window_template_language: str = o.string("window_template_language", "en_US")
        self.window_template_text: bool = o.boolean("window_template_text", True)

    def _sender_path(self) -> str:
        return self.phone_number_id

    # -- inbound ---------------------------------------------------------------------
    def normalize_item(self, envelope: Envelope, doc: dict[str, Any]) -> Normalized:
        item: dict[str, Any] = doc["item"]
        kind = doc.get("kind")
        number_id = _str_id((doc.get("metadata") or {}).get("phone_number_id")) or (
            self.phone_number_id
        )
        if kind == "status":
            return self._status(item)
        if kind == "error":
            return Skip(f"WhatsApp reported an error: {_wa_errors([item])}")
        if kind == "change":
            field = item.get("field")
            value = item.get("value")
            event = value.get("event") if isinstance(value, dict) else None
            return Skip(f"WhatsApp {field} notice{f' {event}' if event else ''}: not a message")
        if kind == "echo":
            return self._echo(envelope, item, doc, number_id)
        return self._message(envelope, item, doc, number_id)

    def _status(self, st: dict[str, Any]) -> Normalized:
        wamid = _str_id(st.get("id"))
        status = st.get("status")
        if st.get("type") == "call":
            return Skip(f"call status {status}")
        state = _WA_STATUS.get(status if isinstance(status, str) else "")
        if wamid is None or state is None:
            return Skip(f"status {status!r} is not a delivery state we track")
        reason = None
        if state == DeliveryState.FAILED:
            reason = _wa_errors(st.get("errors")) or "WhatsApp reported the message as failed"
        return StatusUpdate(
            channel=self.name,
            provider_id=wamid,
            state=state,
            reason=reason,
            at=_ts(st.get("timestamp")) or time.time(),
        )

    def _customer(self, msg: dict[str, Any], contact: Any) -> Identity:
        contact = contact if isinstance(contact, dict) else {}
        profile = _obj(contact.get("profile"))
        name = _text(profile.get("name")) or None
        data: dict[str, object] = {
            k: v
            for k, v in (
                ("wa_id", msg.get("from") or contact.get("wa_id")),
                ("user_id", msg.get("from_user_id") or contact.get("user_id")),
                ("parent_user_id", msg.get("from_parent_user_id") or contact.get("parent_user_id")),
                ("username", profile.get("username")),
            )
            if isinstance(v, str) and v
        }
        frm = _text(msg.get("from")) or _text(contact.get("wa_id"))
        phone = _wa_phone(frm)
        if phone:
            return Identity(kind="phone", address=phone, display_name=name, data=data)
        # A user who hides their number behind a username: reachable by the
        # business-scoped user id (BSUID) only.
        bsuid = _text(msg.get("from_user_id")) or _text(contact.get("user_id"))
        if not bsuid and re.fullmatch(r"[A-Z]{2}\.[A-Za-z0-9.]+", frm):
            bsuid = frm
        if bsuid:
            return normalize_identity("whatsapp", bsuid, name, data)
        if frm:
            raise NormalizeError(f"sender {frm!r} is neither a phone number nor a WhatsApp user id")
        raise NormalizeError("message without a sender ('from' or 'from_user_id')")

    def _message(
        self, envelope: Envelope, msg: dict[str, Any], doc: dict[str, Any], number_id: str
    ) -> Normalized:
        wamid = _str_id(msg.get("id"))
        if not wamid:
            raise NormalizeError("message without an id")
        mtype = _text(msg.get("type"))
        if mtype == "system":
            system = _obj(msg.get("system"))
            return Skip(f"system notice: {_text(system.get('body')) or system.get('type')}")
        who = self._customer(msg, doc.get("contact"))
        thread_key = f"{number_id}:{who.address}"
        at = _ts(msg.get("timestamp"))
        meta: dict[str, Any] = {"type": mtype}
        for key in ("context", "referral", "group_id"):
            if key in msg:
                meta[key] = msg[key]
        base: dict[str, Any] = {
            "channel": self.name,
            "external_id": wamid,
            "sender": who,
            "thread_key": thread_key,
            "sent_at": at,
            "meta": meta,
        }
        if mtype in ("edit", "revoke"):
            body = _obj(msg.get(mtype))
            original = _str_id(body.get("original_message_id"))
            if not original:
                raise NormalizeError(f"{mtype} without original_message_id")
            atts: list[Attachment] = []
            if mtype == "revoke":
                text = "[the customer deleted this message]"
            else:
                inner = _obj(body.get("message"))
                text, atts, extra = self._content(inner, _text(inner.get("type")))
                meta.update(extra)
            return Message(
                **base, text=text, attachments=atts, kind=MessageKind.EDIT, edit_of=original
            )
        if mtype == "reaction":
            r = _obj(msg.get("reaction"))
            emoji = _text(r.get("emoji"))
            meta["reaction"] = r
            return Message(**base, text=emoji or "[reaction removed]", auto="reaction")
        text, atts, extra = self._content(msg, mtype)
        meta.update(extra)
        if not text and not atts:
            raise NormalizeError(f"{mtype or 'untyped'} message without content")
        return Message(**base, text=text, attachments=atts)

    def _content(
        self, msg: dict[str, Any], mtype: str
    ) -> tuple[str, list[Attachment], dict[str, Any]]:
        """Text, attachments and extra meta of a message body of type ``mtype``."""
        meta: dict[str, Any] = {}
        body = _obj(msg.get(mtype))
        if mtype == "text":
            return _text(body.get("body")), [], meta
        if mtype in _WA_MEDIA:
            media_id = _str_id(body.get("id"))
            url = _text(body.get("url"))
            mime = _text(body.get("mime_type")) or "application/octet-stream"
            caption = _text(body.get("caption"))
            filename = _text(body.get("filename")) or None
            meta["media"] = {
                k: body[k]
                for k in ("id", "mime_type", "sha256", "url", "voice", "animated")
                if k in body
            }
            label = {
                "image": "[image]",
                "video": "[video]",
                "audio": "[voice message]" if body.get("voice") else "[audio]",
                "voice": "[voice message]",
                "document": f"[document: {filename}]" if filename else "[document]",
                "sticker": "[sticker]",
            }[mtype]
            atts = [
                Attachment(
                    filename=filename,
                    content_type=mime.split(";")[0].strip() or mime,
                    ref=f"whatsapp-media:{media_id}" if media_id else (url or None),
                )
            ]
            return caption or label, atts, meta
        if mtype == "location":
            lat, lng = body.get("latitude"), body.get("longitude")
            meta["location"] = body
            place = ", ".join(p for p in (_text(body.get("name")), _text(body.get("address"))) if p)
            text = f"[location: {place + ' - ' if place else ''}{lat}, {lng}]"
            return text, [], meta
        if mtype == "contacts":
            cards = _list(msg.get("contacts"))
            meta["contacts"] = cards
            shown = []
            for c in cards:
                if not isinstance(c, dict):
                    continue
                n = _obj(c.get("name"))
                phones = [
                    _text(p.get("phone")) for p in c.get("phones") or () if isinstance(p, dict)
                ]
                shown.append(" ".join(x for x in (_text(n.get("formatted_name")), *phones) if x))
            return f"[shared contact: {'; '.join(shown) or 'empty card'}]", [], meta
        if mtype == "interactive":
            kind = _text(body.get("type"))
            reply = _obj(body.get(kind))
            meta["interactive"] = body
            if kind in ("button_reply", "list_reply"):
                title = _text(reply.get("title"))
                desc = _text(reply.get("description"))
                return (f"{title} ({desc})" if desc else title) or f"[{kind}]", [], meta
            if kind == "nfm_reply":
                raw = reply.get("response_json")
                try:
                    parsed = json.loads(raw) if isinstance(raw, str) else raw
                except ValueError:
                    parsed = raw
                meta["flow_response"] = parsed
                summary = ""
                if isinstance(parsed, dict):
                    summary = ", ".join(f"{k}: {v}" for k, v in parsed.items() if k != "flow_token")
                return f"[form submitted{': ' + summary if summary else ''}]", [], meta
            if kind == "call_permission_reply":
                return f"[call permission: {reply.get('response')}]", [], meta
            errors = _wa_errors(msg.get("errors"))
            return f"[interactive reply{': ' + errors if errors else ''}]", [], meta
        if mtype == "button":
            meta["button"] = body
            return _text(body.get("text")) or _text(body.get("payload")) or "[button]", [], meta
        if mtype == "order":
            meta["order"] = body
            items = [
                f"{i.get('quantity')} x {i.get('product_retailer_id')}"
                for i in body.get("product_items") or ()
                if isinstance(i, dict)
            ]
            note = _text(body.get("text"))
            text = f"[order: {', '.join(items)}]" + (f" {note}" if note else "")
            return text, [], meta
        # unsupported, unknown or future types: the agent should know the
        # customer sent something, even if we cannot show it.
        errors = _wa_errors(msg.get("errors"))
        fallback = _text(body.get("body")) if isinstance(body, dict) else ""
        text = fallback or f"[a {mtype or 'message'} WhatsApp cannot show here"
        if not fallback:
            text += f": {errors}]" if errors else "]"
        return text, [], meta

    def _echo(
        self, envelope: Envelope, echo: dict[str, Any], doc: dict[str, Any], number_id: str
    ) -> Normalized:
        """A message the business sent from the WhatsApp Business app
        (coexistence): recorded in the conversation as an outbound message."""
        mtype = _text(echo.get("type"))
        to = _text(echo.get("to"))
        phone = _wa_phone(to)
        bsuid = _text(echo.get("to_user_id"))
        if phone:
            customer = Identity("phone", phone)
        elif bsuid:
            customer = Identity("whatsapp", bsuid)
        else:
            return Skip(f"echo to {to!r}, which is not a customer we can identify")
        if mtype in ("revoke", "edit"):
            return Skip(f"{mtype} of a message sent from the WhatsApp Business app")
        text, atts, meta = self._content(echo, mtype)
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=Identity("phone", _text(echo.get("from")) or number_id, "WhatsApp Business app"),
            recipients=[customer],
            text=text,
            attachments=atts,
            thread_key=f"{number_id}:{customer.address}",
            sent_at=_ts(echo.get("timestamp")),
            direction=Direction.OUTBOUND,
            meta={**meta, "sent_outside_omnidesk": True},
        )

    # -- outbound --------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        number, _customer = _thread_parts(message.thread_key)
        number = number if number and _DIGITS.match(number) else self.phone_number_id
        target = self._recipient(message.recipient)
        last = await self._customer_last_wrote(message)
        if last is not None and time.time() - last > WINDOW_SECONDS:
            if not self.window_template:
                raise SendError(
                    f"{WHATSAPP_WINDOW_REASON} (last message {_age(time.time() - last)} ago);"
                    " configure window_template to send one automatically",
                    retry=False,
                )
            data = await self._post(f"{number}/messages", {**target, **self._template(message)})
            return SendResult(provider_id=_wamid(data))
        last_id: str | None = None
        for i, part in enumerate(_chunks(message.text, TEXT_LIMITS["whatsapp"])):
            body: dict[str, Any] = {
                **target,
                "type": "text",
                "text": {"body": part, "preview_url": False},
            }
            if i == 0 and self.quote_replies and message.reply_to_external_id:
                body["context"] = {"message_id": message.reply_to_external_id}
            data = await self._post(f"{number}/messages", body)
            last_id = _wamid(data) or last_id
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=last_id)

    def _recipient(self, who: Identity) -> dict[str, Any]:
        base = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        if who.kind == "phone":
            return {**base, "to": who.address.lstrip("+")}
        if who.kind == "whatsapp":
            return {**base, "recipient": who.address}  # a BSUID
        raise ConfigurationProblem(
            f"cannot send WhatsApp messages to a {who.kind} identity ({who.address})"
        )

    def _template(self, message: OutboundMessage) -> dict[str, Any]:
        template: dict[str, Any] = {
            "name": self.window_template,
            "language": {"code": self.window_template_language},
        }
        if self.window_template_text:
            # Template parameters may not hold newlines, tabs or runs of spaces.
            param = _flat(message.text)[:1024]
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": param}]}
            ]
        return {"type": "template", "template": template}


def _wamid(data: Mapping[str, Any]) -> str | None:
    msgs = data.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
        return _str_id(msgs[0].get("id"))
    return None


def _age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} hours" if hours < 72 else f"{hours / 24:.0f} days"


__all__ = [
    "InstagramChannel",
    "MessengerChannel",
    "WhatsAppChannel",
    "graph_error",
    "sign",
    "split_delivery",
    "verify_signature",
]
