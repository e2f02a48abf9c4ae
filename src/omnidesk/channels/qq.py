"""QQ one-to-one (C2C) messages through the official QQ bot open platform
(QQ机器人开放平台): its webhook in, its passive replies out.

Inbound, at ``/webhooks/{channel name}`` (POST only):

* Every request carries ``X-Signature-Ed25519`` (hex) over
  ``X-Signature-Timestamp`` + the raw body, made with an Ed25519 key whose
  32-byte seed is the bot secret repeated (the platform's key derivation).
  Checked on the raw bytes before parsing: a missing header is refused with
  401, a wrong signature or a timestamp more than ``max_clock_skew`` seconds
  away from now with 403, and nothing is stored.
* ``op: 13`` is the platform's check of the callback URL: the answer is
  ``{"plain_token", "signature"}``, the hex Ed25519 signature of
  ``event_ts + plain_token``. Because that answer is a signature made with
  the very key that signs deliveries, only a token and time of the platform's
  shape are signed (letters, digits, ``-`` and ``_``; a time of digits), and a
  delivery must be a JSON object: no answer to a forged check can be replayed
  as a delivery.
* ``op: 0`` dispatches are answered ``{"op": 12}`` (the HTTP callback ACK)
  once stored. ``C2C_MESSAGE_CREATE`` (a user writing to the bot) becomes a
  message with the message id as external id (the platform may push one
  message twice: it is stored once), its attachments (images, voice, video,
  files) kept as references to the platform's URLs. Friend add/remove and
  the user's switch of active messages are skipped with the reason; group and
  guild events are skipped: this channel takes one-to-one messages.

Replies follow the platform's passive-reply rules: a bot may only answer a
user's message (``msg_id``), within 60 minutes of it, at most 5 times
(``msg_seq`` 1 to 5); active messages were withdrawn on 2025-04-21. The
adapter answers the customer's last message, checks the window and the count
first and fails the reply with a reason an agent can act on, and gives each
outbox item its own ``msg_seq`` once, so a retry after a lost answer is
recognised by the platform as the same message, not sent twice. The access
token (``getAppAccessToken``, about 2 hours) is fetched at start (which also
checks the AppID and secret), kept in the channel state for a restart and the
other instances, and fetched again a minute before it expires or when the API
refuses it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..identity import normalize_identity
from ..model import (
    Attachment,
    Envelope,
    Message,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
)
from .base import ChannelAdapter, ChannelContext

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://api.sgroup.qq.com"
DEFAULT_TOKEN_URL = "https://bots.qq.com/app/getAppAccessToken"
SIGNATURE_HEADER = "X-Signature-Ed25519"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
MAX_BODY = 1024 * 1024
REPLY_WINDOW = 60 * 60  # a C2C message can be answered for 60 minutes
MAX_REPLIES = 5  # ... at most 5 times
WINDOW_REASON = (
    "outside QQ's 60-minute reply window: a QQ bot may only answer a message within 60"
    " minutes of it (active messages were withdrawn on 2025-04-21); the customer has to"
    " write again"
)
COUNT_REASON = (
    "QQ allows a bot 5 replies to one customer message and they are used up; the customer"
    " has to write again"
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TS = re.compile(r"^\d{1,12}$")
_SKIPPED = {
    "FRIEND_ADD": "the user added the bot",
    "FRIEND_DEL": "the user removed the bot",
    "C2C_MSG_REJECT": "the user switched off the bot's active messages",
    "C2C_MSG_RECEIVE": "the user switched on the bot's active messages",
}
# Codes of the platform's OpenAPI errors that are worth another try.
RETRY_CODES = frozenset({22009})  # msg limit exceed (sent too often)
DUPLICATE_CODE = 40054005  # the same msg_id + msg_seq was already sent
TOKEN_CODES = frozenset({11241, 11242, 11243, 11244})  # token missing, invalid or expired


def signing_key(secret: str) -> Ed25519PrivateKey:
    """The bot's Ed25519 key: the secret repeated to at least 32 bytes, cut
    to 32, is the seed."""
    seed = secret
    while len(seed) < 32:
        seed *= 2
    return Ed25519PrivateKey.from_private_bytes(seed[:32].encode())


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def _rfc3339(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(_str(value)).timestamp()
    except ValueError:
        return None


class QqChannel(ChannelAdapter):
    type = "qq"
    capabilities: ClassVar[frozenset[str]] = frozenset({"webhook", "attachments"})
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.app_id: str = str(o.raw("app_id"))
        if not self.app_id.isdigit():
            raise o.error("app_id", "must be the bot's numeric AppID")
        self.app_secret = o.secret("app_secret")
        if not self.app_secret.reveal():
            raise o.error("app_secret", "must not be empty")
        self.api_base_url: str = o.string("api_base_url", DEFAULT_API).rstrip("/")
        self.token_url: str = o.string("token_url", DEFAULT_TOKEN_URL)
        self.max_clock_skew: float = o.number("max_clock_skew", 600.0, min=1.0)
        self.timeout: float = o.number("timeout", 15.0, min=0.1)
        self.check_credentials: bool = o.boolean("check_credentials", True)
        o.check_unused()
        self._key = signing_key(self.app_secret.reveal())
        self._public = self._key.public_key()
        self._client: httpx.AsyncClient | None = None
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def start(self) -> None:
        self.set_health(True, "running", "waiting for webhook deliveries")
        if self.check_credentials and self.ctx.spawn is not None:
            self.ctx.spawn(self._check(), f"{self.name}-credentials-check")

    async def _check(self) -> None:
        """Fetch an access token once at start: a wrong AppID or secret shows
        on /healthz before the first reply fails (the token is then cached)."""
        try:
            await self._access_token(renew=True)  # a stored token proves nothing of the secret
        except SendError as exc:
            if exc.retry:
                self.set_health(False, "degraded", exc.reason)
            return  # a refusal has set the health to failing
        self.set_health(True, "running", "credentials accepted; waiting for webhook deliveries")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.set_health(True, "stopped")

    # -- webhook -------------------------------------------------------------------
    def verify(self, timestamp: str | None, body: bytes, signature: str | None) -> str | None:
        """None when the request is signed by the platform and fresh, else why not."""
        if not signature or not timestamp:
            return f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}"
        try:
            sig = bytes.fromhex(signature)
        except ValueError:
            return f"{SIGNATURE_HEADER} is not hex"
        if len(sig) != 64 or sig[63] & 224:
            return f"{SIGNATURE_HEADER} is not an Ed25519 signature"
        try:
            self._public.verify(sig, timestamp.encode() + body)
        except InvalidSignature:
            return "signature mismatch"
        if not _TS.match(timestamp) or abs(time.time() - int(timestamp)) > self.max_clock_skew:
            return "stale or malformed timestamp (replayed, or the clocks differ)"
        return None

    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse({"error": "QQ callbacks are POSTs"}, 405)
        body = await request.body()  # at most max_body (web/limits.py)
        ts = request.headers.get(TIMESTAMP_HEADER)
        sig = request.headers.get(SIGNATURE_HEADER)
        if not (sig and ts):
            # Only the URL check may come unsigned (the platform does not
            # always sign it); anything else unsigned is refused unread.
            check = _loads(body) if body.lstrip().startswith(b'{"') else None
            if isinstance(check, dict) and check.get("op") == 13:
                return self._validation(_dict(check.get("d")))
        problem = self.verify(ts, body, sig)
        if problem is not None:
            self.log.info("webhook_refused", reason=problem)
            return JSONResponse({"error": problem}, 401 if problem.startswith("missing") else 403)
        data = _loads(body)
        if not isinstance(data, dict):
            # Never stored: a signed body that is not a JSON object can only
            # be an answer to a check replayed as a delivery.
            return JSONResponse({"error": "not a JSON object"}, 400)
        if data.get("op") == 13:
            return self._validation(_dict(data.get("d")))
        d = _dict(data.get("d"))
        event = _str(data.get("t"))
        ext = _str(d.get("id")) if event == "C2C_MESSAGE_CREATE" else ""
        ext = ext or f"event:{_str(data.get('id')) or ts}:{event}"
        envelope = Envelope(
            channel=self.name,
            external_id=ext[:500],
            payload=body,
            content_type="application/json",
        )
        try:
            await self.ctx.intake.accept(envelope)
        except Exception as exc:
            # Not stored: anything but 200 makes the platform push it again.
            self.log.warning("webhook_not_stored", error=str(exc))
            return JSONResponse({"error": "not stored, retry later"}, 503)
        self.touch()
        return JSONResponse({"op": 12})

    def _validation(self, d: dict[str, Any]) -> Response:
        from starlette.responses import JSONResponse

        token, ts = _str(d.get("plain_token")), _str(d.get("event_ts"))
        if not _TOKEN.match(token) or not _TS.match(ts):
            return JSONResponse({"error": "plain_token or event_ts of an unexpected form"}, 400)
        signature = self._key.sign((ts + token).encode()).hex()
        self.log.info("webhook_validated")
        return JSONResponse({"plain_token": token, "signature": signature})

    # -- normalize (pure) ----------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            data = json.loads(envelope.payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise NormalizeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise NormalizeError("not a QQ callback payload: not a JSON object")
        if data.get("op") != 0:
            return Skip(f"op {data.get('op')!r} is not an event dispatch")
        event = _str(data.get("t"))
        if event in _SKIPPED:
            return Skip(_SKIPPED[event])
        if event != "C2C_MESSAGE_CREATE":
            return Skip(f"{event or 'an untyped'} event: this channel takes one-to-one messages")
        d = _dict(data.get("d"))
        openid = _str(_dict(d.get("author")).get("user_openid"))
        msg_id = _str(d.get("id"))
        if not openid or not msg_id:
            raise NormalizeError("C2C message without author.user_openid or id")
        attachments: list[Attachment] = []
        labels: list[str] = []
        for a in d.get("attachments") or ():
            if not isinstance(a, dict) or not _str(a.get("url")):
                continue
            ctype = _str(a.get("content_type")) or "application/octet-stream"
            kind = {"voice": "[voice message]", "file": "[file]"}.get(ctype)
            if "/" not in ctype:
                ctype = "audio/silk" if ctype == "voice" else "application/octet-stream"
            url = a["url"] if a["url"].startswith("http") else "https://" + a["url"]
            attachments.append(Attachment(_str(a.get("filename")) or None, ctype, ref=url))
            labels.append(
                kind
                or {"image": "[picture]", "video": "[video]"}.get(ctype.split("/")[0], "[file]")
            )
        text = _str(d.get("content")).strip() or " ".join(labels)
        if not text:
            raise NormalizeError("C2C message without content or attachments")
        return Message(
            channel=self.name,
            external_id=msg_id,
            sender=normalize_identity("qq", openid),
            text=text,
            attachments=attachments,
            sent_at=_rfc3339(d.get("timestamp")) or envelope.received_at,
            thread_key=openid,
            meta={"qq": {"msg_id": msg_id}},
        )

    # -- send ------------------------------------------------------------------------
    async def _access_token(self, *, renew: bool = False) -> str:
        """The API's access token: this instance's, else one another instance
        (or this one before a restart) wrote to the channel state, else a new
        one, written there for the others."""
        async with self._token_lock:
            if self._token and not renew and self._token[1] > time.time() + 60:
                return self._token[0]
            state = self.ctx.state
            if not renew and state is not None:
                stored = _loads((await state.get("access_token") or "").encode())
                if isinstance(stored, list) and len(stored) == 2:
                    token, until = str(stored[0]), float(stored[1])
                    if until > time.time() + 60:
                        self._token = (token, until)
                        return token
            try:
                resp = await self._http().post(
                    self.token_url,
                    json={"appId": self.app_id, "clientSecret": self.app_secret.reveal()},
                )
                data = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                reason = f"QQ token service unreachable: {type(exc).__name__}"
                raise SendError(reason, retry=True) from None
            token = _str(_dict(data).get("access_token"))
            if resp.status_code >= 400 or not token:
                self.set_health(False, "failing", "QQ refused the AppID and secret")
                raise SendError(
                    f"QQ refused the AppID and secret: {_dict(data).get('message') or resp.text}",
                    retry=False,
                )
            try:
                ttl = float(_dict(data).get("expires_in") or 7200)
            except ValueError:
                ttl = 7200.0
            self._token = (token, time.time() + ttl)
            if state is not None:
                await state.put({"access_token": json.dumps(list(self._token))})
            return token

    async def send(self, message: OutboundMessage) -> SendResult:
        who = message.recipient
        if who.kind != "qq":
            raise SendError(f"cannot send a QQ message to a {who.kind} identity", retry=False)
        if message.attachments:
            raise SendError(
                "QQ replies cannot carry attachments here; send the text alone", retry=False
            )
        if not message.text.strip():
            raise SendError("nothing to send: the reply has no text", retry=False)
        msg_id = message.reply_to_external_id
        if not msg_id:
            raise SendError(WINDOW_REASON + " (no customer message to answer)", retry=False)
        if self.ctx.queries is not None:
            last = await self.ctx.queries.last_inbound_at(message.conversation_id, who)
            if last is not None and time.time() - last > REPLY_WINDOW:
                raise SendError(WINDOW_REASON, retry=False)
        seq = await self._seq(message.outbox_id, msg_id)
        body = {"content": message.text, "msg_type": 0, "msg_id": msg_id, "msg_seq": seq}
        url = f"{self.api_base_url}/v2/users/{who.address}/messages"
        for attempt in range(2):
            token = await self._access_token(renew=attempt > 0)
            try:
                resp = await self._http().post(
                    url,
                    json=body,
                    headers={"Authorization": f"QQBot {token}", "X-Union-Appid": self.app_id},
                )
            except httpx.HTTPError as exc:
                raise SendError(f"QQ unreachable: {type(exc).__name__}", retry=True) from None
            try:
                data = _dict(resp.json())
            except ValueError:
                data = {}
            code = data.get("code") if isinstance(data.get("code"), int) else None
            if resp.status_code == 401 or code in TOKEN_CODES:
                if attempt == 0:
                    continue  # the token expired early: fetch a new one, once
                self.set_health(False, "failing", "QQ refused the access token")
            if (resp.status_code < 300 and code in (None, 0)) or code == DUPLICATE_CODE:
                # A duplicate msg_seq: an earlier attempt whose answer was lost got through.
                await self._done(message.outbox_id)
                self.set_health(True, "running", "replies are being delivered")
                return SendResult(provider_id=_str(data.get("id")) or None)
            error = self._refused(resp.status_code, code, _str(data.get("message")))
            if not error.retry:
                await self._done(message.outbox_id)
            raise error
        raise SendError("QQ refused the access token twice", retry=True)  # pragma: no cover

    def _refused(self, status: int, code: int | None, text: str) -> SendError:
        what = f"{text or 'no reason given'} (QQ code {code}, HTTP {status})"
        if status == 429 or code in RETRY_CODES:
            return SendError(f"rate limited by QQ: {what}", retry=True)
        if status >= 500:
            return SendError(f"QQ is having trouble: {what}", retry=True)
        return SendError(f"QQ refused the message: {what}", retry=False)

    async def _done(self, outbox_id: int) -> None:
        if self.ctx.state is not None:
            await self.ctx.state.put({f"seq:outbox:{outbox_id}": None})

    async def _seq(self, outbox_id: int, msg_id: str) -> int:
        """This reply's ``msg_seq``: given once per outbox item (a retry sends
        the same one), counting up per customer message, at most 5."""
        state = self.ctx.state
        if state is None:
            return 1
        mine = await state.get(f"seq:outbox:{outbox_id}")
        if mine:
            return int(mine)
        used = int(await state.get(f"seq:msg:{msg_id}") or 0)
        if used >= MAX_REPLIES:
            raise SendError(COUNT_REASON, retry=False)
        seq = used + 1
        await state.put({f"seq:msg:{msg_id}": str(seq), f"seq:outbox:{outbox_id}": str(seq)})
        return seq
