"""X (Twitter) direct messages: the Account Activity webhook in, the v2 DM API
out (through ``xdk``, X's official Python SDK).

Inbound, at ``/webhooks/{channel name}``:

* ``GET ?crc_token=...`` is X's challenge-response check (when the webhook is
  registered, and again about hourly): the answer is
  ``{"response_token": "sha256=<base64 HMAC-SHA256 of crc_token keyed with the
  consumer secret>"}``. Without a token: 400.
* ``POST`` carries ``x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256
  of the raw body keyed with the consumer secret>``, checked on the raw bytes
  before any parsing (missing: 401, wrong: 403, nothing stored). The signature
  carries no time and X redelivers (its retries, the replay of missed
  activity): a delivery is split into one envelope per event with X's own id
  as external id, so a redelivery of any age is stored once, and an event
  that arrives late keeps its own ``created_timestamp``.

What a delivery's parts become (``for_user_id`` names the subscribed account;
one this channel does not serve is skipped with the reason):

* ``direct_message_events`` of type ``message_create`` -> a ``Message`` from the
  sender (identity kind ``x``, the numeric user id, with name and screen name
  from the delivery's ``users``). The text has X's HTML entities unescaped and
  its t.co links expanded; media (photo, video, GIF) are kept as references
  (X serves DM media only to signed requests). A DM our own account sent is
  an echo: the reply omnidesk sent is recognised by its event id and skipped;
  one a person sent from the X app is recorded as an outbound message.
* ``direct_message_mark_read_events`` -> a read receipt for every reply on that
  customer's thread sent before it (a watermark).
* ``direct_message_indicate_typing_events`` are not stored: they say nothing
  that outlives the next few seconds, and an account gets many.
* anything else (posts, likes, follows, blocks) is kept as one envelope per
  delivery and skipped with the reason: this channel takes direct messages.
* a signed body that is not a JSON object is refused (400) and not stored:
  the CRC answer is an HMAC with the same key as the delivery signature, so
  only a token of letters, digits and ``+/=_.~-`` is answered, and no answer
  can pass for a delivery; a signed body that starts like one but does not
  parse is kept whole and quarantined.

Replies go out with ``POST /2/dm_conversations/with/{participant_id}/messages``
(the current DM endpoint; the v1.1 ``direct_messages/events/new`` is retired),
signed with OAuth 1.0a user context (consumer key and secret, the account's
access token and secret: user tokens that never expire, unlike OAuth 2.0's),
at most 10,000 characters a message, a longer reply cut at a word into
several, each sent once across retries. The SDK is synchronous: its calls run
in a worker thread, one at a time per channel. HTTP 429 is retried no sooner
than ``x-rate-limit-reset``; 5xx and network errors are retried; 401 fails the
reply and marks the channel failing; 400/403 (the customer does not accept
DMs from you, blocked you, or left) fail it with X's reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..identity import normalize_identity
from ..model import (
    Attachment,
    DeliveryState,
    Direction,
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
from .base import ChannelAdapter, ChannelContext
from .parts import send_parts
from .textsplit import split_units

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://api.x.com"
SIGNATURE_HEADER = "x-twitter-webhooks-signature"
MAX_BODY = 5 * 1024 * 1024  # a delivery is a few KB; media never travel in it
MAX_DM = 10_000  # characters of one direct message
_ID = re.compile(r"^\d{1,25}$")
# The CRC answer is an HMAC with the very key that signs deliveries: only a
# token that can never pass for a delivery (no '{') is signed.
_CRC_TOKEN = re.compile(r"^[A-Za-z0-9+/=_.~-]{1,256}$")
# Delivery keys that are context for the events, not events.
_CONTEXT = frozenset({"for_user_id", "users", "apps", "user_has_blocked", "source"})
_DM = "direct_message_events"
_READ = "direct_message_mark_read_events"
_TYPING = "direct_message_indicate_typing_events"


def sign(consumer_secret: str, data: bytes) -> str:
    """``sha256=<base64 HMAC-SHA256>``: X's webhook signature and CRC answer."""
    digest = hmac.new(consumer_secret.encode(), data, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def verify_signature(consumer_secret: str, body: bytes, header: str | None) -> str | None:
    """None when ``header`` signs ``body``, else the reason it does not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    if not header.startswith("sha256="):
        return f"malformed {SIGNATURE_HEADER} header (expected sha256=<base64>)"
    if not hmac.compare_digest(sign(consumer_secret, body).encode(), header.strip().encode()):
        return "signature mismatch"
    return None


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return ""


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _ms(value: Any) -> float | None:
    try:
        t = float(value) / 1000.0
    except (TypeError, ValueError):
        return None
    return t if 1e8 < t < 1e10 else None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def split_delivery(body: bytes) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """(external id, envelope document) for every event of a delivery that is
    kept, and how many typing indicators were left out. Raises ValueError
    with the reason for a body that is not a JSON object."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    head: dict[str, Any] = {"for_user_id": _str(data.get("for_user_id")) or None}
    users = _dict(data.get("users"))
    apps = _dict(data.get("apps"))
    out: list[tuple[str, dict[str, Any]]] = []
    for event in _list(data.get(_DM)):
        if not isinstance(event, dict):
            continue
        mc = _dict(event.get("message_create"))
        who = {_str(mc.get("sender_id")), _str(_dict(mc.get("target")).get("recipient_id"))}
        app = _str(mc.get("source_app_id"))
        doc = {
            **head,
            "kind": "dm",
            "event": event,
            "users": {k: v for k, v in users.items() if k in who},
            "apps": {app: apps[app]} if app in apps else {},
        }
        ext = _str(event.get("id")) or "dm:" + hashlib.sha256(_dumps(event)).hexdigest()
        out.append((ext, doc))
    for event in _list(data.get(_READ)):
        if not isinstance(event, dict):
            continue
        ext = f"read:{_str(event.get('sender_id'))}:{_str(event.get('last_read_event_id'))}"
        out.append((ext, {**head, "kind": "read", "event": event}))
    typing = data.get(_TYPING)
    n_typing = len(typing) if isinstance(typing, list) else 0
    rest = {k: v for k, v in data.items() if k not in _CONTEXT | {_DM, _READ, _TYPING}}
    if rest:
        doc = {**head, "kind": "other", "keys": sorted(rest), "body": rest}
        out.append(("other:" + hashlib.sha256(body).hexdigest(), doc))
    if not out and not n_typing:
        out.append(("body:" + hashlib.sha256(body).hexdigest(), {**head, "kind": "empty"}))
    return out, n_typing


class XChannel(ChannelAdapter):
    type = "x"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments"}
    )
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.user_id: str = _str(o.raw("user_id"))
        if not _ID.match(self.user_id):
            raise o.error("user_id", "must be the numeric id of the X account (a string of digits)")
        self.consumer_key = o.secret("consumer_key")
        self.consumer_secret = o.secret("consumer_secret")
        self.access_token = o.secret("access_token")
        self.access_token_secret = o.secret("access_token_secret")
        for key in ("consumer_key", "consumer_secret", "access_token", "access_token_secret"):
            if not getattr(self, key).reveal():
                raise o.error(key, "must not be empty")
        self.api_base_url: str = o.string("api_base_url", DEFAULT_API).rstrip("/")
        self.timeout: float = o.number("timeout", 15.0, min=0.1)
        self.check_credentials: bool = o.boolean("check_credentials", True)
        o.check_unused()
        self._secret = self.consumer_secret.reveal()
        self._client: Any = None
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def _sdk(self) -> Any:
        """X's SDK client, made on first use, with a timeout on every call
        (the SDK passes none, and a hung call would hold the worker thread)."""
        if self._client is None:
            import requests.adapters
            from xdk import Client
            from xdk.oauth1_auth import OAuth1

            timeout = self.timeout

            class _Timeout(requests.adapters.HTTPAdapter):
                def send(self, request: Any, **kw: Any) -> Any:  # type: ignore[override]
                    kw["timeout"] = kw.get("timeout") or timeout
                    return super().send(request, **kw)

            auth = OAuth1(
                api_key=self.consumer_key.reveal(),
                api_secret=self.consumer_secret.reveal(),
                callback="oob",
                access_token=self.access_token.reveal(),
                access_token_secret=self.access_token_secret.reveal(),
            )
            client = Client(base_url=self.api_base_url, auth=auth)
            for prefix in ("http://", "https://"):
                client.session.mount(prefix, _Timeout())
            self._client = client
        return self._client

    async def start(self) -> None:
        self.set_health(True, "running", "waiting for webhook deliveries")
        if self.check_credentials and self.ctx.spawn is not None:
            self.ctx.spawn(self._check(), f"{self.name}-credentials-check")

    async def _check(self) -> None:
        """Ask X who the access token belongs to, once at start: wrong
        credentials, or a token of another account than ``user_id`` (whose
        DMs would all be skipped), show on /healthz before a reply fails."""
        import requests

        try:
            async with self._lock:
                me = await asyncio.to_thread(lambda: self._sdk().users.get_me())
        except requests.HTTPError as exc:
            reason = self._refused(exc.response).reason
            self.set_health(False, "failing", f"X refused the credentials check: {reason}")
            return
        except requests.RequestException as exc:
            self.set_health(False, "degraded", f"X API unreachable: {type(exc).__name__}")
            return
        data = getattr(me, "data", None)
        got = _str(getattr(data, "id", None) or (data.get("id") if isinstance(data, dict) else ""))
        if got and got != self.user_id:
            self.set_health(
                False,
                "failing",
                f"the access token belongs to the X account {got}, not user_id {self.user_id}:"
                " direct messages to this channel's account would be skipped",
            )
            return
        self.set_health(True, "running", "credentials accepted; waiting for webhook deliveries")

    async def stop(self) -> None:
        if self._client is not None:
            self._client.session.close()
            self._client = None
        self.set_health(True, "stopped")

    # -- webhook -----------------------------------------------------------------------
    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if request.method == "GET":
            token = request.query_params.get("crc_token")
            if not token:
                return JSONResponse({"error": "expected crc_token"}, 400)
            if not _CRC_TOKEN.match(token):
                return JSONResponse({"error": "crc_token of an unexpected form"}, 400)
            return JSONResponse({"response_token": sign(self._secret, token.encode())})
        body = await request.body()  # at most max_body (web/limits.py)
        problem = verify_signature(self._secret, body, request.headers.get(SIGNATURE_HEADER))
        if problem is not None:
            self.log.info("webhook_refused", reason=problem)
            return JSONResponse({"error": problem}, 401 if problem.startswith("missing") else 403)
        if not body.lstrip().startswith(b"{"):
            # X delivers JSON objects; a signed body that cannot be one is an
            # answer of the CRC check replayed as a delivery: never stored.
            return JSONResponse({"error": "not a JSON object"}, 400)
        now = time.time()
        items: list[tuple[str, dict[str, Any] | None]] = []
        try:
            split, typing = split_delivery(body)
            items.extend(split)
        except ValueError as exc:
            # Kept whole, raw bytes and all: normalize sends it to quarantine.
            self.log.warning("webhook_unparseable", reason=str(exc), size=len(body))
            items, typing = [("body:" + hashlib.sha256(body).hexdigest(), None)], 0
        envelopes = [
            Envelope(
                channel=self.name,
                external_id=ext[:500],
                payload=body if doc is None else _dumps(doc),
                content_type="application/json",
                received_at=now,
            )
            for ext, doc in items
        ]
        try:
            results = await self.ctx.intake.accept_many(envelopes) if envelopes else []
        except Exception as exc:
            # Not stored: a non-2xx answer makes X deliver it again.
            self.log.warning("webhook_not_stored", error=str(exc))
            return JSONResponse({"error": "not stored, retry later"}, 503)
        self.touch()
        new = sum(results)
        return JSONResponse({"stored": new, "duplicates": len(results) - new, "typing": typing})

    # -- normalize (pure) ------------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            doc = json.loads(envelope.payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise NormalizeError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or "kind" not in doc:
            what = "a JSON object" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
            raise NormalizeError(f"not an Account Activity delivery: {what} without events")
        owner = doc.get("for_user_id")
        if owner and owner != self.user_id:
            return Skip(f"for the X account {owner}; this channel serves {self.user_id}")
        kind = doc["kind"]
        if kind == "empty":
            return Skip("delivery carries no event")
        if kind == "other":
            keys = ", ".join(doc.get("keys") or ()) or "unknown"
            return Skip(f"{keys}: not direct messages (this channel takes DMs only)")
        event = _dict(doc.get("event"))
        if kind == "read":
            return self._read(event)
        return self._dm(envelope, doc, event)

    def _read(self, event: dict[str, Any]) -> Normalized:
        reader = _str(event.get("sender_id"))
        if reader == self.user_id:
            return Skip("our account read the customer's messages")
        at = _ms(event.get("created_timestamp"))
        if not _ID.match(reader) or at is None:
            raise NormalizeError("read event without a numeric sender_id and created_timestamp")
        return StatusUpdate(
            channel=self.name,
            provider_id="",
            state=DeliveryState.READ,
            at=at,
            thread_key=reader,
            watermark=at,
        )

    def _dm(self, envelope: Envelope, doc: dict[str, Any], event: dict[str, Any]) -> Normalized:
        etype = _str(event.get("type"))
        if etype != "message_create":
            return Skip(f"direct message event of type {etype or 'none'!r}")
        mc = _dict(event.get("message_create"))
        sender = _str(mc.get("sender_id"))
        recipient = _str(_dict(mc.get("target")).get("recipient_id"))
        if not _ID.match(sender):
            raise NormalizeError(f"sender id {sender!r} is not an X user id")
        if not _ID.match(recipient):
            raise NormalizeError(f"recipient id {recipient!r} is not an X user id")
        if self.user_id not in (sender, recipient):
            return Skip(
                f"a direct message between {sender} and {recipient}; this channel serves"
                f" {self.user_id}"
            )
        data = _dict(mc.get("message_data"))
        text, attachments, meta = _content(data)
        users = _dict(doc.get("users"))
        meta["event_id"] = envelope.external_id
        app = _dict(next(iter(_dict(doc.get("apps")).values()), None))
        if app.get("name"):
            meta["source_app"] = app["name"]
        outbound = sender == self.user_id
        customer = recipient if outbound else sender
        who = _identity(customer, users)
        base: dict[str, Any] = {
            "channel": self.name,
            "external_id": envelope.external_id,
            "text": text,
            "attachments": attachments,
            "sent_at": _ms(event.get("created_timestamp")) or envelope.received_at,
            "thread_key": customer,
            "meta": {"x": meta},
        }
        if outbound:
            # An echo: omnidesk's own reply (skipped by its event id) or a DM a
            # person sent from the X app (recorded in the conversation).
            return Message(
                **base,
                sender=_identity(self.user_id, users),
                recipients=[who],
                direction=Direction.OUTBOUND,
            )
        return Message(**base, sender=who)

    # -- send ------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        who = message.recipient
        participant = who.address if who.kind == "x" else (message.thread_key or "")
        if not _ID.match(participant):
            raise SendError(
                f"cannot send an X direct message to a {who.kind} identity ({who.address})",
                retry=False,
            )
        if message.attachments:
            raise SendError(
                "X replies cannot carry attachments here (X needs each file uploaded through"
                " its media API first); send the text alone",
                retry=False,
            )
        if not message.text.strip():
            raise SendError("nothing to send: the reply has no text", retry=False)
        parts = split_units(message.text.strip(), MAX_DM)

        async def one(part: str, _before: list[str]) -> str:
            async with self._lock:  # the SDK's session is not shared between threads
                return await asyncio.to_thread(self._post_dm, participant, part)

        ids = await send_parts(self.ctx.state, message.outbox_id, parts, one)
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=ids[-1] if ids else None)

    def _post_dm(self, participant: str, text: str) -> str:
        """One DM through the SDK (in a worker thread); its event id."""
        import requests

        try:
            resp = self._sdk().direct_messages.create_by_participant_id(participant, {"text": text})
        except requests.HTTPError as exc:
            raise self._refused(exc.response) from None
        except requests.RequestException as exc:
            raise SendError(f"X unreachable: {type(exc).__name__}", retry=True) from None
        data = getattr(resp, "data", None)
        event_id = _str(getattr(data, "dm_event_id", None))
        if not event_id:
            errors = getattr(resp, "errors", None) or []
            raise SendError(f"X sent no dm_event_id: {_problems(errors)}", retry=False)
        return event_id

    def _refused(self, resp: Any) -> SendError:
        status = int(getattr(resp, "status_code", 0) or 0)
        try:
            body = resp.json()
        except ValueError:
            body = {}
        what = _problems([body] if isinstance(body, dict) and "title" in body else body)
        if status == 429:
            reset = _str(resp.headers.get("x-rate-limit-reset"))
            wait = max(1.0, float(reset) - time.time()) if reset.isdigit() else None
            return SendError(f"rate limited by X: {what} (HTTP 429)", retry=True, retry_after=wait)
        if status >= 500:
            return SendError(f"X is having trouble: {what} (HTTP {status})", retry=True)
        if status == 401:
            self.set_health(False, "failing", "X refused the channel's credentials")
            return SendError(
                f"X refused the credentials (consumer key/secret or access token): {what}"
                " (HTTP 401)",
                retry=False,
            )
        return SendError(f"X refused the message: {what} (HTTP {status})", retry=False)


def _problems(body: Any) -> str:
    """X's error bodies: v2 problems (``title``/``detail``), ``errors`` lists."""
    items: list[Any] = []
    if isinstance(body, dict):
        items = list(body.get("errors") or []) or [body]
    elif isinstance(body, list):
        items = body
    out = []
    for p in items:
        if isinstance(p, dict):
            text = _str(p.get("detail")) or _str(p.get("message")) or _str(p.get("title"))
            if text:
                out.append(text)
        elif p is not None:
            out.append(_str(getattr(p, "detail", None)) or str(p))
    return "; ".join(out) or "no reason given"


def _identity(user_id: str, users: Mapping[str, Any]) -> Identity:
    u = _dict(users.get(user_id))
    data = {k: u[k] for k in ("screen_name",) if isinstance(u.get(k), str)}
    return normalize_identity("x", user_id, _str(u.get("name")) or None, data)


def _content(data: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    """Text (entities unescaped, t.co links expanded, the media link removed),
    media references and what else the message carries."""
    text = _str(data.get("text"))
    meta: dict[str, Any] = {}
    attachments: list[Attachment] = []
    att = _dict(data.get("attachment"))
    media = _dict(att.get("media")) if att.get("type") == "media" else {}
    media_link = _str(media.get("url"))
    for url in _dict(data.get("entities")).get("urls") or ():
        if not isinstance(url, dict) or not _str(url.get("url")):
            continue
        short = _str(url.get("url"))
        if short == media_link:
            continue
        text = text.replace(short, _str(url.get("expanded_url")) or short)
    if media_link:
        text = text.replace(media_link, "")
    if media:
        mtype = _str(media.get("type")) or "photo"
        ref = _str(media.get("media_url_https")) or _str(media.get("media_url"))
        variants = [
            v
            for v in _dict(media.get("video_info")).get("variants") or ()
            if isinstance(v, dict) and _str(v.get("url"))
        ]
        ctype = "image/jpeg"
        if variants:
            best = max(variants, key=lambda v: v.get("bitrate") or 0)
            ref, ctype = _str(best["url"]), _str(best.get("content_type")) or "video/mp4"
        elif ref.lower().endswith(".png"):
            ctype = "image/png"
        name = ref.rsplit("/", 1)[-1].split("?")[0] or None
        attachments.append(Attachment(filename=name, content_type=ctype, ref=ref or None))
        meta["media"] = {"type": mtype, "id": _str(media.get("id_str") or media.get("id"))}
        label = {"photo": "[photo]", "video": "[video]", "animated_gif": "[GIF]"}.get(
            mtype, "[media]"
        )
        text = text.strip() or label
    qr = _dict(data.get("quick_reply_response"))
    if qr:
        meta["quick_reply"] = _str(qr.get("metadata"))
    text = html.unescape(text).strip()
    if not text:
        raise NormalizeError("direct message without text or media")
    return text, attachments, meta
