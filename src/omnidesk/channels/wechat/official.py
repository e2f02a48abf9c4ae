"""WeChat Official Account (公众号): message push in, customer-service
messages out.

Inbound, at ``/webhooks/{channel}`` (the server URL set in the account's
basic configuration):

* ``GET`` is the server URL check: ``signature`` is the SHA-1 of the sorted
  token, ``timestamp`` and ``nonce``; a good one is answered with ``echostr``,
  a wrong one with 403.
* ``POST`` is a message push. In plain mode (明文) the same ``signature``
  is checked; it does not cover the body, so a captured signature could carry
  another body: a (timestamp, nonce) seen before with a different body is
  refused (per instance, within the age limit). In safe mode (安全模式,
  ``encrypt_type=aes``) ``msg_signature`` covers the encrypted body, which
  is decrypted with ``encoding_aes_key`` and must name our ``app_id``. With
  ``mode = "safe"`` a plain push is refused; ``"compatible"`` takes both.
  A timestamp more than ``max_age`` seconds off is refused as stale. Refused
  pushes store nothing (401 missing signature, 403 wrong or stale).

A checked push is stored (decrypted XML as the envelope) before ``success``
is answered, within WeChat's five seconds; WeChat retries three times
otherwise. External ids: ``msg:{MsgId}`` for messages and, as WeChat advises
for events, ``event:{FromUserName}:{CreateTime}:{Event}``: a redelivery is
stored once. A push that parses as no message is kept whole (``body:<sha256>``)
and goes to quarantine with its bytes.

What pushes become: text; image (the ``PicUrl`` as the attachment's
reference); voice (WeChat's speech recognition as the text when the account
has it on, the media id as reference); video and short video; location;
link; mini-program page; menu clicks (``CLICK``: the menu key, as if typed);
subscribe and unsubscribe (automatic messages: shown in an open
conversation, never opening one). Other events (menu links, scans, reported
locations, template receipts) are skipped with the reason.

Replies go out through the customer-service message API
(``message/custom/send``), split at 2,048 bytes. WeChat accepts them only
within 48 hours of the customer's last message (and five per message): the
adapter checks the window first and fails a late reply with the reason,
without a call; WeChat's own refusals (45015 window, 45047 quota, 43004
unfollowed) fail the same way. Rate limits and busy answers are retried by
the outbox.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar
from xml.etree import ElementTree

from wechatpy import events as wx_events
from wechatpy import messages as wx_messages
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from ...identity import normalize_identity
from ...model import (
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
from ..base import ChannelAdapter, ChannelContext, IntakeError
from ..media import upload_name
from ..parts import send_steps
from .api import (
    MAX_AGE,
    OFFICIAL_MEDIA_KINDS,
    OfficialAccountClient,
    ReplayGuard,
    WeChatApi,
    WeChatApiError,
    aes_crypto,
    reply_parts,
    send_error,
    stale,
    upload_media,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://api.weixin.qq.com"
MAX_BODY = 256 * 1024  # a push is a few hundred bytes of XML
WINDOW_REASON = (
    "outside WeChat's 48-hour window: the customer last wrote more than 48 hours ago,"
    " and WeChat accepts customer-service messages only within 48 hours of it"
)
REFUSALS = {
    45015: WINDOW_REASON,
    45047: (
        "WeChat's quota of customer-service messages for this customer is used up"
        " (five per customer message): it opens again when the customer writes"
    ),
    43004: "the customer no longer follows the account",
    40003: "WeChat does not know this customer's OpenID for this account",
    48001: (
        "the account lacks the customer-service message permission"
        " (a verified service account has it)"
    ),
}
_AES_KEY_LEN = 43


def push_fields(xml: bytes) -> dict[str, str]:
    """The top-level fields of a push (``<xml><MsgId>...``). ElementTree (C)
    reads them ~10x faster than wechatpy's xmltodict, which normalize() then
    uses for the whole message; the webhook needs only the ids. Raises
    ValueError for what is not XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    return {child.tag: (child.text or "").strip() for child in root}


def external_id(fields: dict[str, str], body: bytes) -> str:
    """``msg:{MsgId}``; for events (no MsgId), as WeChat advises, sender and
    time: ``event:{FromUserName}:{CreateTime}:{Event}``."""
    if fields.get("MsgType", "").lower() == "event":
        event = fields.get("Event", "").lower()
        return f"event:{fields.get('FromUserName')}:{fields.get('CreateTime')}:{event}"
    if fields.get("MsgId", "0") not in ("", "0"):
        return f"msg:{fields['MsgId']}"
    return f"body:{hashlib.sha256(body).hexdigest()}"


class WeChatOfficialChannel(ChannelAdapter):
    type = "wechat"
    capabilities: ClassVar[frozenset[str]] = frozenset({"webhook", "attachments"})
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.app_id: str = o.string("app_id")
        self.app_secret = o.secret("app_secret")
        self.token = o.secret("token")
        for key in ("app_id", "app_secret", "token"):
            if not getattr(self, key):
                raise o.error(key, "must not be empty")
        self.mode: str = o.string("mode", "safe", choices=("plain", "compatible", "safe"))
        self.encoding_aes_key = o.secret("encoding_aes_key", None)
        aes = self.encoding_aes_key.reveal() if self.encoding_aes_key else ""
        if self.mode != "plain" and len(aes) != _AES_KEY_LEN:
            raise o.error(
                "encoding_aes_key", f"must be the 43-character EncodingAESKey in {self.mode} mode"
            )
        self.max_age: float = o.number("max_age", float(MAX_AGE), min=1.0)
        self.api_base_url: str = o.string("api_base_url", DEFAULT_API).rstrip("/")
        self.timeout: float = o.number("timeout", 10.0, min=0.1)
        self.check_window: bool = o.boolean("check_window", True)
        self.check_token: bool = o.boolean("check_token", True)
        o.check_unused()
        self._token = self.token.reveal()
        self.crypto = aes_crypto(WeChatCrypto, o, self._token, aes, self.app_id) if aes else None
        self.api = WeChatApi(
            OfficialAccountClient(
                self.app_id, self.app_secret.reveal(), self.api_base_url, self.timeout
            ),
            ctx.state,
        )
        self._replays = ReplayGuard()

    async def start(self) -> None:
        self.set_health(True, "running", "waiting for message pushes")
        if self.check_token and self.ctx.spawn is not None:
            self.ctx.spawn(self._check_token(), f"{self.name}-token-check")

    async def _check_token(self) -> None:
        """Get (or find in the state) the access token once at start, so a
        wrong secret or a missing IP whitelist entry shows on /healthz before
        the first reply fails."""
        try:
            await self.api.token()
        except WeChatApiError as exc:
            err = send_error(exc, REFUSALS)
            self.set_health(False, "failing" if not err.retry else "degraded", err.reason)
        else:
            self.set_health(True, "running", "access token ready; waiting for message pushes")

    async def stop(self) -> None:
        self.set_health(True, "stopped")

    # -- webhook ---------------------------------------------------------------
    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        q = request.query_params
        signature, timestamp, nonce = q.get("signature"), q.get("timestamp"), q.get("nonce")
        if request.method == "GET":
            return self._url_check(signature, timestamp, nonce, q.get("echostr"))
        body = await request.body()  # at most max_body (web/limits.py)
        encrypted = q.get("encrypt_type", "raw").lower() == "aes"
        problem = self._check(q, body, encrypted)
        if problem is not None:
            self.log.info("webhook_refused", reason=problem)
            status = 401 if problem.startswith("missing") else 403
            return PlainTextResponse(problem + "\n", status_code=status)
        xml = body
        if encrypted:
            assert self.crypto is not None
            try:
                encrypted_part = {"Encrypt": push_fields(body)["Encrypt"]}
                xml = self.crypto.decrypt_message(
                    encrypted_part, q.get("msg_signature"), timestamp, nonce
                ).encode()
            except InvalidSignatureException:
                self.log.info("webhook_refused", reason="msg_signature mismatch")
                return PlainTextResponse("msg_signature mismatch\n", status_code=403)
            except InvalidAppIdException:
                self.log.info("webhook_refused", reason="encrypted for another app id")
                return PlainTextResponse("encrypted for another app id\n", status_code=403)
            except Exception as exc:  # malformed XML, base64 or padding
                self.log.info("webhook_refused", reason=f"cannot decrypt: {type(exc).__name__}")
                return PlainTextResponse("cannot decrypt the message\n", status_code=400)
        try:
            new = await self.ctx.intake.accept(self.envelope(xml, encrypted=encrypted))
        except IntakeError as exc:
            # Not stored: no "success", so WeChat pushes it again.
            self.log.error("webhook_not_stored", error=str(exc))
            return PlainTextResponse("not stored, retry later\n", status_code=503)
        self.touch()
        if not new:
            self.log.debug("webhook_duplicate")
        return PlainTextResponse("success")

    def _url_check(
        self, signature: str | None, timestamp: str | None, nonce: str | None, echostr: str | None
    ) -> Response:
        from starlette.responses import PlainTextResponse

        if not (signature and timestamp and nonce and echostr):
            return PlainTextResponse(
                "expected signature, timestamp, nonce and echostr\n", status_code=400
            )
        try:
            check_signature(self._token, signature, timestamp, nonce)
        except InvalidSignatureException:
            self.log.warning("url_check_refused", reason="signature mismatch")
            return PlainTextResponse("signature mismatch\n", status_code=403)
        self.log.info("url_check_passed")
        return PlainTextResponse(echostr[:256])

    def _check(self, q: Any, body: bytes, encrypted: bool) -> str | None:
        """Why a push is refused before decryption (None: go on)."""
        signature, timestamp, nonce = q.get("signature"), q.get("timestamp"), q.get("nonce")
        if encrypted:
            if self.crypto is None:
                return "encrypted push, but no encoding_aes_key is configured"
            if not q.get("msg_signature") or not nonce:
                return "missing msg_signature or nonce"
        else:
            if self.mode == "safe":
                return "plaintext push refused: this channel is in safe mode"
            if not signature or not nonce:
                return "missing signature or nonce"
            try:
                check_signature(self._token, signature, timestamp or "", nonce)
            except InvalidSignatureException:
                return "signature mismatch"
        too_old = stale(timestamp, self.max_age)
        if too_old is not None:
            return f"stale push: {too_old}"
        if not encrypted and not self._replays.check(timestamp or "", nonce, body):
            return "replayed signature with another body"
        return None

    def envelope(self, xml: bytes, *, encrypted: bool = False) -> Envelope:
        try:
            fields = push_fields(xml)
            if not fields.get("MsgType"):
                raise ValueError("no MsgType")
        except ValueError as exc:
            return Envelope(
                channel=self.name,
                external_id=f"body:{hashlib.sha256(xml).hexdigest()}",
                payload=xml,
                content_type="application/octet-stream",
                meta={"unparseable": str(exc)[:300]},
            )
        return Envelope(
            channel=self.name,
            external_id=external_id(fields, xml)[:500],
            payload=xml,
            content_type="application/xml",
            meta={"encrypted": True} if encrypted else {},
        )

    # -- normalize (pure) ---------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        if envelope.meta.get("unparseable"):
            raise NormalizeError(f"not a WeChat push: {envelope.meta['unparseable']}")
        try:
            msg = parse_message(envelope.payload)
        except Exception as exc:
            raise NormalizeError(f"not a WeChat push: {type(exc).__name__}: {exc}") from None
        if msg is None or not msg.source:
            raise NormalizeError("WeChat push without FromUserName")
        who = normalize_identity("wechat", msg.source, None, {"app_id": self.app_id})
        at = float(msg.time) if msg.time else envelope.received_at
        base: dict[str, Any] = {
            "channel": self.name,
            "external_id": envelope.external_id,
            "sender": who,
            "thread_key": msg.source,
            "sent_at": at,
        }
        meta: dict[str, Any] = {"wechat": {"type": msg.type, "to": msg.target}}
        if isinstance(msg, wx_events.BaseEvent):
            return self._event(msg, base, meta)
        text, attachments = self._content(msg, meta["wechat"])
        return Message(text=text, attachments=attachments, meta=meta, **base)

    def _content(self, msg: Any, wx: dict[str, Any]) -> tuple[str, list[Attachment]]:
        if isinstance(msg, wx_messages.TextMessage):
            return msg.content or "", []
        if isinstance(msg, wx_messages.ImageMessage):
            wx["media_id"] = msg.media_id
            return "[image]", [Attachment(None, "image/jpeg", ref=msg.image or msg.media_id)]
        if isinstance(msg, wx_messages.VoiceMessage):
            wx["media_id"], wx["format"] = msg.media_id, msg.format
            fmt = (msg.format or "amr").lower()
            att = Attachment(f"voice.{fmt}", f"audio/{fmt}", ref=f"wechat-media:{msg.media_id}")
            if msg.recognition:
                wx["recognition"] = msg.recognition
                return msg.recognition, [att]
            return "[voice message]", [att]
        if isinstance(msg, wx_messages.VideoMessage | wx_messages.ShortVideoMessage):
            wx["media_id"] = msg.media_id
            return "[video]", [Attachment(None, "video/mp4", ref=f"wechat-media:{msg.media_id}")]
        if isinstance(msg, wx_messages.LocationMessage):
            lat, lon = msg.location_x, msg.location_y
            wx["location"] = {"latitude": lat, "longitude": lon, "scale": msg.scale}
            label = f"{msg.label} - " if msg.label else ""
            return f"[location: {label}{lat}, {lon}]", []
        if isinstance(msg, wx_messages.LinkMessage):
            wx["link"] = {"title": msg.title, "description": msg.description, "url": msg.url}
            lines = [f"[link] {msg.title or ''}".rstrip(), msg.description or "", msg.url or ""]
            return "\n".join(line for line in lines if line), []
        if isinstance(msg, wx_messages.MiniProgramPageMessage):
            wx["miniprogram"] = {"app_id": msg.app_id, "page_path": msg.page_path}
            return f"[mini program: {msg.title or msg.page_path or ''}]", []
        return f"[a WeChat message of type {msg.type}]", []

    def _event(self, msg: Any, base: dict[str, Any], meta: dict[str, Any]) -> Normalized:
        event = str(msg.event or "").lower()
        meta["wechat"]["event"] = event
        if isinstance(msg, wx_events.ClickEvent):
            meta["wechat"]["menu_key"] = msg.key
            return Message(text=f"[menu: {msg.key}]", meta=meta, **base)
        if event in ("subscribe", "subscribe_scan"):
            if event == "subscribe_scan":
                meta["wechat"]["scene"] = msg.scene_id
            return Message(
                text="[followed the account]", auto="wechat-subscribe", meta=meta, **base
            )
        if event == "unsubscribe":
            return Message(
                text="[unfollowed the account: replies can no longer reach them]",
                auto="wechat-unsubscribe",
                meta=meta,
                **base,
            )
        return Skip(f"WeChat {event or msg.type} event from {msg.source}: not a message")

    # -- send ----------------------------------------------------------------------
    async def _step(self, call: Callable[[], Awaitable[Any]]) -> str | None:
        """One message of a reply; WeChat's refusal as the outbox's SendError."""
        try:
            await call()
        except WeChatApiError as exc:
            err = send_error(exc, REFUSALS)
            if exc.token_fetch or exc.errcode == 48001:
                self.set_health(False, "failing", err.reason)
            raise err from None
        return None  # WeChat gives customer-service messages no id

    async def _send_file(self, openid: str, a: Attachment, kind: str, ctype: str) -> None:
        """Upload the file as temporary media, then send it by its media_id."""
        assert a.data is not None
        name = upload_name(a, ctype)
        media_id = await upload_media(self.api, kind, name, a.data, ctype)

        def send_media(client: Any) -> Any:
            if kind == "image":
                return client.message.send_image(openid, media_id)
            if kind == "voice":
                return client.message.send_voice(openid, media_id)
            return client.message.send_video(openid, media_id, title=name)

        await self.api.call(send_media)

    async def send(self, message: OutboundMessage) -> SendResult:
        openid = message.recipient.address if message.recipient.kind == "wechat" else None
        openid = openid or message.thread_key
        if not openid:
            raise SendError("no WeChat OpenID for this conversation", retry=False)
        queries = self.ctx.queries if self.check_window else None
        pieces, files = await reply_parts(
            queries, message, OFFICIAL_MEDIA_KINDS, "WeChat Official Account", WINDOW_REASON
        )
        steps: list[Callable[[], Awaitable[str | None]]] = []
        for piece in pieces:

            def send_text(client: Any, text: str = piece) -> Any:
                return client.message.send_text(openid, text)

            steps.append(functools.partial(self._step, functools.partial(self.api.call, send_text)))
        for a, kind, ctype in files:
            send_file = functools.partial(self._send_file, openid, a, kind.name, ctype)
            steps.append(functools.partial(self._step, send_file))
        await send_steps(self.ctx.state, message.outbox_id, steps)
        self.set_health(True, "running", "replies are being delivered")
        # WeChat gives customer-service messages no id.
        return SendResult(provider_id=None)
