"""SMS and MMS through Twilio (the ``twilio`` package: its request validator
and its REST client).

Inbound, at ``/webhooks/{channel name}`` (the number's "A message comes in"
webhook and the replies' status callback both point here):

* ``POST`` with ``X-Twilio-Signature``, checked with the twilio package's
  ``RequestValidator`` against ``webhook_url`` (the exact public URL Twilio
  was given, which behind a proxy is not the address the daemon listens on)
  and the form parameters: missing is refused with 401, wrong with 403, and
  nothing is stored. Twilio's signature carries no time: a replayed request is
  deduplicated by its ``MessageSid``, which Twilio never reuses.
* An incoming message (``MessageSid``, ``From``, ``Body``, ``NumMedia`` and
  ``MediaUrlN``/``MediaContentTypeN``) becomes one envelope with the
  ``MessageSid`` as external id; the answer is empty TwiML (no automatic
  reply from Twilio). MMS media are downloaded before the message is
  accepted, with the account's credentials (Twilio's media URLs may require
  them), only from ``api_base_url`` (a signed request still names no other
  host we would fetch from), bounded by ``max_media_bytes`` and
  ``download_timeout``; a file that cannot be fetched keeps its URL as the
  attachment's reference, with the reason in the message meta.
* A status callback (``MessageStatus``) becomes ``status:{sid}:{status}``:
  ``sent``, ``delivered``, ``read``, ``undelivered`` and ``failed`` move the
  reply's delivery state (a failure with Twilio's ``ErrorCode`` explained);
  ``queued``, ``sending`` and ``accepted`` are skipped with the reason.

Opt-out: a customer who texts STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END,
QUIT, REVOKE, OPTOUT; or what Twilio's Advanced Opt-Out marks with
``OptOutType``) gets no further reply from omnidesk: the opt-out is written to
the channel's state before the message is accepted, and ``send`` refuses,
with the reason shown, until the customer texts START (or YES, UNSTOP). The
STOP and START messages show in the conversation as automatic messages (they
open none). Twilio itself refuses messages to an unsubscribed number (error
21610): that refusal records the opt-out too.

Replies go out with ``messages.create`` of the twilio client (its
``AsyncTwilioHttpClient``, the API domain pointed at ``api_base_url``), from
``from_number`` or through ``messaging_service_sid``, with the status
callback set. Twilio takes at most 1,600 characters a message and splits
them itself into segments of 153 GSM-7 characters, or 67 UCS-2 units once any
character is outside GSM-7 (``segments``): a longer reply is cut at a word
into several messages, each sent once even when a later one fails and the
reply is retried (the parts sent are kept in the channel state). Rate limits
(HTTP 429, code 20429), network trouble and Twilio's 5xx are retried;
refusals (invalid or unreachable number, unsubscribed, not SMS-capable) fail
with Twilio's code and message.

Identities: the sender's number in E.164 (``phone``), the same kind and form
WhatsApp's numbers are stored in, so an SMS contact meets the same person on
WhatsApp (and an e-mail contact with that verified phone). The thread key is
``{our number}:{customer}``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx

from ..identity import normalize_phone
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
from .base import ChannelAdapter, ChannelContext
from .parts import send_parts
from .textsplit import split_units

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from twilio.rest import Client

DEFAULT_API = "https://api.twilio.com"
SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_BODY = 256 * 1024  # a Twilio webhook is a form of a few KB
MAX_MESSAGE = 1600  # Twilio's limit for one message body (error 21617 above it)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# Twilio's default opt-out keywords (Advanced Opt-Out lets an account add its own,
# which arrive marked with OptOutType).
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})

_STATUS = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}
# Twilio error codes an agent meets (https://www.twilio.com/docs/api/errors).
ERRORS = {
    21211: "the 'To' number is not a valid phone number",
    21408: "this Twilio account may not send to that country (Geo Permissions)",
    21610: "the customer has opted out (texted STOP) and Twilio refuses to message them",
    21612: "Twilio cannot route a message between these two numbers",
    21614: "the 'To' number is not a mobile number that can receive SMS",
    21617: "the message body is longer than 1,600 characters",
    30003: "the handset is unreachable (switched off or out of coverage)",
    30004: "the message was blocked (the customer or their carrier blocks this number)",
    30005: "the number is unknown or no longer in service",
    30006: "the number is a landline or its carrier cannot receive SMS",
    30007: "the carrier filtered the message as spam",
    30008: "the carrier reported an unknown error",
}
OPTED_OUT = (
    "the customer opted out of SMS (texted STOP); no message can be sent until they text START"
)

# GSM 03.38: the basic character set (one septet each) and the extension
# table (two septets each: an escape and the character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def segments(text: str) -> tuple[str, int]:
    """The encoding (``GSM-7`` or ``UCS-2``) a carrier sends ``text`` in and
    how many SMS segments it takes: 160 septets in one, 153 a segment when
    concatenated; in UCS-2 70 UTF-16 units in one, 67 a segment."""
    septets = 0
    for ch in text:
        if ch in GSM7_BASIC:
            septets += 1
        elif ch in GSM7_EXTENSION:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return "UCS-2", 1 if units <= 70 else -(-units // 67)
    return "GSM-7", 1 if septets <= 160 else -(-septets // 153)


def split_sms(text: str) -> list[str]:
    """The messages a reply is sent as: at most 1,600 characters each (as
    UTF-16 units, so an emoji counts as Twilio counts it), cut at a word."""
    return split_units(text.strip() or text, MAX_MESSAGE)


def keyword(body: str) -> str | None:
    """``stop`` or ``start`` when the whole message is an opt-out or opt-in
    keyword (carriers match the message alone, in any case)."""
    word = body.strip().strip(".!").upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None


def opt_change(params: Mapping[str, str]) -> str | None:
    """What an incoming message does to the customer's consent."""
    marked = params.get("OptOutType", "").upper()
    if marked == "STOP":
        return "stop"
    if marked == "START":
        return "start"
    if marked == "HELP":
        return None
    return keyword(params.get("Body", ""))


def _form(payload: bytes) -> dict[str, str]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NormalizeError(f"form body is not UTF-8: {exc}") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def error_reason(code: int | None, message: str = "") -> str:
    known = ERRORS.get(code) if code is not None else None
    what = known or message or "Twilio refused the message"
    return f"{what} (Twilio error {code})" if code is not None else what


def _media_label(ctype: str) -> str:
    kind = ctype.split("/")[0]
    return {"image": "[picture]", "video": "[video]", "audio": "[audio]"}.get(kind, "[file]")


def optout_key(phone: str) -> str:
    return f"optout:{phone}"


class SmsChannel(ChannelAdapter):
    type = "sms"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments"}
    )
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.account_sid: str = o.string("account_sid")
        if not (self.account_sid.startswith("AC") and len(self.account_sid) == 34):
            raise o.error("account_sid", "must be the Account SID from Twilio (AC + 32 characters)")
        self.auth_token = o.secret("auth_token")
        if not self.auth_token or not self.auth_token.reveal():
            raise o.error("auth_token", "must not be empty")
        raw_from = o.string("from_number", None)
        self.messaging_service_sid: str | None = o.string("messaging_service_sid", None)
        self.from_number: str | None = None
        if raw_from is not None:
            self.from_number = normalize_phone(raw_from)
            if self.from_number is None:
                raise o.error("from_number", f"{raw_from!r} is not a phone number (use +E.164)")
        if self.from_number is None and not self.messaging_service_sid:
            raise o.error("from_number", "is required (or set messaging_service_sid)")
        if self.messaging_service_sid and not self.messaging_service_sid.startswith("MG"):
            raise o.error("messaging_service_sid", "must start with MG")
        self.webhook_url: str = o.string("webhook_url", f"{ctx.public_url}/webhooks/{ctx.name}")
        self.status_callbacks: bool = o.boolean("status_callbacks", True)
        self.api_base_url: str = o.string("api_base_url", DEFAULT_API).rstrip("/")
        self.download_media: bool = o.boolean("download_media", True)
        self.max_media_bytes: int = o.integer("max_media_bytes", 5 * 1024 * 1024, min=0)
        self.download_timeout: float = o.number("download_timeout", 10.0, min=0.1)
        self.timeout: float = o.number("timeout", 15.0, min=0.1)
        self.check_credentials: bool = o.boolean("check_credentials", True)
        o.check_unused()
        from twilio.request_validator import RequestValidator

        self._validator = RequestValidator(self.auth_token.reveal())
        self._client: Client | None = None
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------
    def _twilio(self) -> Client:
        """The twilio REST client, made on first use (inside the event loop:
        its aiohttp session belongs to the loop)."""
        if self._client is None:
            from twilio.http.async_http_client import AsyncTwilioHttpClient
            from twilio.rest import Client

            client = Client(
                self.account_sid,
                self.auth_token.reveal(),
                http_client=AsyncTwilioHttpClient(timeout=self.timeout),
            )
            # The API domain (Messages live there) takes its base URL from here.
            client.api.base_url = self.api_base_url
            self._client = client
        return self._client

    def _downloader(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                auth=(self.account_sid, self.auth_token.reveal()),
                timeout=self.download_timeout,
                follow_redirects=True,  # media live behind a redirect; auth is not forwarded
            )
        return self._http

    async def start(self) -> None:
        self.set_health(True, "running", "waiting for webhook deliveries")
        if self.check_credentials and self.ctx.spawn is not None:
            self.ctx.spawn(self._check(), f"{self.name}-credentials-check")

    async def _check(self) -> None:
        """Fetch the account once at start: a wrong SID or token, or an
        account that is not active, shows on /healthz before a reply fails."""
        from twilio.base.exceptions import TwilioRestException

        try:
            account = await self._twilio().api.v2010.accounts(self.account_sid).fetch_async()
        except TwilioRestException as exc:
            what = f"{exc.msg} (HTTP {exc.status})"
            self.set_health(False, "failing", f"Twilio refused the account credentials: {what}")
            return
        except Exception as exc:  # aiohttp's errors, timeouts
            self.set_health(False, "degraded", f"Twilio unreachable: {type(exc).__name__}")
            return
        if account.status not in (None, "active"):
            self.set_health(False, "failing", f"the Twilio account is {account.status}")
            return
        self.set_health(True, "running", "credentials accepted; waiting for webhook deliveries")

    async def stop(self) -> None:
        if self._client is not None:
            http = self._client.http_client
            close = getattr(http, "close", None)
            if close is not None:
                await close()
            self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self.set_health(True, "stopped")

    # -- webhook -------------------------------------------------------------------
    def signed_url(self, query: str) -> str:
        """The URL Twilio signed: ``webhook_url`` with the request's query."""
        return f"{self.webhook_url}?{query}" if query else self.webhook_url

    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse
        from starlette.responses import Response as Plain

        if request.method != "POST":
            return JSONResponse({"error": "Twilio webhooks are POSTs"}, 405)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return JSONResponse({"error": f"missing {SIGNATURE_HEADER}"}, 401)
        body = await request.body()  # at most max_body (web/limits.py)
        try:
            params = _form(body)
        except NormalizeError:
            params = {}
        url = self.signed_url(request.url.query)
        if not self._validator.validate(url, params, signature):
            self.log.info("webhook_refused", reason="signature mismatch")
            return JSONResponse({"error": "signature mismatch"}, 403)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        status = params.get("MessageStatus")
        meta: dict[str, Any] = {}
        if request.url.query:
            meta["query"] = dict(parse_qsl(request.url.query))
        if not sid:
            ext = "body:" + hashlib.sha256(body).hexdigest()
        elif status and "Body" not in params:
            ext = f"status:{sid}:{status}"
        else:
            ext = sid
            change = opt_change(params)
            phone = normalize_phone(params.get("From", "")) if change else None
            try:
                if change and phone and self.ctx.state is not None and not await self._seen(ext):
                    # Before the accept: a STOP must hold even if storing fails.
                    # A redelivery changes nothing (an old STOP arriving after
                    # a START must not silence the customer again).
                    stamp = str(time.time()) if change == "stop" else None
                    await self.ctx.state.put({optout_key(phone): stamp})
                if self.download_media and _int(params.get("NumMedia")):
                    meta["media"] = await self._fetch_media(params)
            except Exception as exc:
                self.log.warning("webhook_not_stored", error=type(exc).__name__)
                return JSONResponse({"error": "not stored, retry later"}, 503)
        envelope = Envelope(
            channel=self.name,
            external_id=ext[:500],
            payload=body,
            content_type="application/x-www-form-urlencoded",
            meta=meta,
        )
        try:
            new = await self.ctx.intake.accept(envelope)
        except Exception as exc:
            # Not stored: a non-2xx answer makes Twilio log the failure (and
            # retry when the URL asks for it, #rc=).
            self.log.warning("webhook_not_stored", error=str(exc))
            return JSONResponse({"error": "not stored, retry later"}, 503)
        self.touch()
        if ext.startswith("status:"):
            return Plain(status_code=204)
        headers = {"X-Omnidesk-Duplicate": "1"} if not new else None
        return Plain(EMPTY_TWIML, media_type="text/xml", headers=headers)

    async def _seen(self, external_id: str) -> bool:
        queries = self.ctx.queries
        return queries is not None and bool(await queries.known_external_ids([external_id]))

    async def _fetch_media(self, params: Mapping[str, str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + self.download_timeout
        for i in range(min(_int(params.get("NumMedia")), 10)):  # Twilio sends at most 10
            url = params.get(f"MediaUrl{i}", "")
            if not url:
                continue
            if not url.startswith(self.api_base_url + "/"):
                out[url] = {"error": f"not fetched: not a URL of {self.api_base_url}"}
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                out[url] = {"error": "download_timeout reached before this file"}
                continue
            try:
                data = await asyncio.wait_for(self._download(url), timeout=left)
            except TimeoutError:
                out[url] = {"error": "download timed out"}
            except (httpx.HTTPError, ValueError) as exc:
                out[url] = {"error": str(exc) or type(exc).__name__}
            else:
                out[url] = {"data": base64.b64encode(data).decode()}
        return out

    async def _download(self, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async with self._downloader().stream("GET", url) as resp:
            if resp.status_code >= 400:
                raise ValueError(f"HTTP {resp.status_code} from the media URL")
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.max_media_bytes:
                    raise ValueError(f"over max_media_bytes ({self.max_media_bytes})")
                chunks.append(chunk)
        return b"".join(chunks)

    # -- normalize (pure) ----------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        params = _form(envelope.payload)
        sid = params.get("MessageSid") or params.get("SmsSid")
        if not sid:
            keys = ", ".join(sorted(params)[:8]) or "none"
            raise NormalizeError(f"not a Twilio message webhook: no MessageSid (fields: {keys})")
        if envelope.external_id.startswith("status:"):
            return self._status(envelope, params, sid)
        return self._message(envelope, params, sid)

    def _status(self, envelope: Envelope, params: dict[str, str], sid: str) -> Normalized:
        status = params.get("MessageStatus", "")
        state = _STATUS.get(status)
        if state is None:
            return Skip(f"status {status!r} is not a delivery state we track")
        reason = None
        if state == DeliveryState.FAILED:
            code = _int(params.get("ErrorCode")) or None
            reason = error_reason(code, params.get("ErrorMessage", "")) + f" [{status}]"
        # Parts after the first of a long reply name the first in their callback URL.
        query = envelope.meta.get("query")
        first = query.get("part_of") if isinstance(query, dict) else None
        return StatusUpdate(
            channel=self.name,
            provider_id=first if isinstance(first, str) and first else sid,
            state=state,
            reason=reason,
            at=envelope.received_at,
        )

    def _message(self, envelope: Envelope, params: dict[str, str], sid: str) -> Normalized:
        frm = params.get("From", "")
        phone = normalize_phone(frm)
        if phone is None:
            raise NormalizeError(f"sender {frm!r} is not a phone number")
        to = normalize_phone(params.get("To", "")) or params.get("To", "")
        body = params.get("Body", "")
        meta: dict[str, Any] = {
            "sid": sid,
            "to": to,
            "segments": _int(params.get("NumSegments")) or None,
        }
        for key in ("FromCountry", "OptOutType", "MessagingServiceSid"):
            if params.get(key):
                meta[key] = params[key]
        attachments: list[Attachment] = []
        got = envelope.meta.get("media")
        got = got if isinstance(got, dict) else {}
        problems: dict[str, str] = {}
        labels: list[str] = []
        for i in range(_int(params.get("NumMedia"))):
            url = params.get(f"MediaUrl{i}")
            if not url:
                continue
            ctype = params.get(f"MediaContentType{i}") or "application/octet-stream"
            found = got.get(url)
            entry: dict[str, Any] = found if isinstance(found, dict) else {}
            data = None
            if isinstance(entry.get("data"), str):
                data = base64.b64decode(entry["data"])
            else:
                problems[url] = str(entry.get("error") or "not downloaded")
            ext = ctype.split("/")[-1].split(";")[0] or "bin"
            attachments.append(Attachment(f"{sid}-{i}.{ext}", ctype, data=data, ref=url))
            labels.append(_media_label(ctype))
        if problems:
            meta["media_errors"] = problems
        text = body or " ".join(labels)
        if not text and not attachments:
            text = "[empty SMS]"
        change = opt_change(params)
        if change:
            meta["consent"] = change
        return Message(
            channel=self.name,
            external_id=sid,
            sender=Identity("phone", phone),
            text=text,
            attachments=attachments,
            sent_at=envelope.received_at,
            thread_key=f"{to}:{phone}",
            # STOP/START: shown in the conversation, never opening one or
            # drawing an automatic acknowledgement (which could not be sent).
            auto={"stop": "sms opt-out", "start": "sms opt-in"}.get(change or ""),
            meta={"sms": meta},
        )

    # -- send ----------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        to = message.recipient.address if message.recipient.kind == "phone" else None
        to = normalize_phone(to or "")
        if to is None:
            raise SendError(
                f"cannot send an SMS to a {message.recipient.kind} identity"
                f" ({message.recipient.address})",
                retry=False,
            )
        if message.attachments:
            raise SendError(
                "SMS replies cannot carry attachments here (Twilio needs a public URL for each"
                " file); send the text alone or use another channel",
                retry=False,
            )
        if not message.text.strip():
            raise SendError("nothing to send: the reply has no text", retry=False)
        state = self.ctx.state
        if state is not None and await state.get(optout_key(to)):
            raise SendError(OPTED_OUT, retry=False)
        parts = split_sms(message.text)

        async def one(part: str, before: list[str]) -> str:
            return await self._create(to, part, before[0] if before else None)

        done = await send_parts(state, message.outbox_id, parts, one)
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=done[0])

    async def _create(self, to: str, body: str, part_of: str | None) -> str:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            kwargs["from_"] = self.from_number
        if self.status_callbacks:
            url = self.webhook_url
            if part_of:
                url += ("&" if "?" in url else "?") + urlencode({"part_of": part_of})
            kwargs["status_callback"] = url
        try:
            msg = await self._twilio().messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise await self._refused(to, exc) from None
        except TwilioException as exc:
            raise SendError(f"Twilio client error: {exc}", retry=True) from None
        except (TimeoutError, OSError) as exc:
            raise SendError(f"Twilio unreachable: {type(exc).__name__}", retry=True) from None
        except Exception as exc:  # aiohttp's ClientError and friends
            if type(exc).__module__.startswith("aiohttp"):
                raise SendError(f"Twilio unreachable: {type(exc).__name__}", retry=True) from None
            raise
        if not msg.sid:
            raise SendError("Twilio accepted the message but gave no sid", retry=True)
        return str(msg.sid)

    async def _refused(self, to: str, exc: Any) -> SendError:
        code = exc.code if isinstance(exc.code, int) else None
        status = int(exc.status or 0)
        text = str(exc.msg or "").strip()
        if status == 429 or code == 20429:
            return SendError(f"rate limited by Twilio: {text} (HTTP 429)", retry=True)
        if status >= 500:
            return SendError(f"Twilio is having trouble: {text} (HTTP {status})", retry=True)
        if status in (401, 403) and code in (20003, 20005, None):
            self.set_health(False, "failing", "Twilio refused the account credentials")
            return SendError(
                f"Twilio refused the account credentials: {text} (HTTP {status})", retry=False
            )
        if code == 21610 and self.ctx.state is not None:
            await self.ctx.state.put({optout_key(to): str(time.time())})
        return SendError(f"{error_reason(code, text)}: {text}", retry=False)
