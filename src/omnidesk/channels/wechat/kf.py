"""WeChat customer service (微信客服), run from WeCom (企业微信).

The callback URL (set with the 微信客服 API's Token and EncodingAESKey) is
``/webhooks/{channel}``:

* ``GET`` is the URL check: ``msg_signature`` over the token, ``timestamp``,
  ``nonce`` and the encrypted ``echostr``, which is answered decrypted.
* ``POST`` is an encrypted ``kf_msg_or_event`` notice: no message, only the
  customer-service account (``OpenKfId``) that has news and a ``Token``
  that lifts the rate limit of ``kf/sync_msg`` for ten minutes. Forged (403),
  stale (403) and undecryptable (400) notices are refused. A good one is
  written to the channel state (``notice:{open_kfid}``) and wakes the poller.

The poller pulls with ``kf/sync_msg`` from the cursor kept in the channel
state (``cursor:{open_kfid}``), stores the messages (external id: WeChat's
``msgid``), and only then moves the cursor: a crash in between fetches the
same messages again, and the intake stores them once. It runs on one daemon
instance at a time (``single_consumer``: the instance holding the channel's
lock); a notice taken by another instance reaches it through the state,
read every ``notice_poll`` seconds, and it also syncs every
``poll_interval`` seconds without a notice.

Messages: ``origin`` 3 is the customer (text, image, voice, video, file,
location, link, business card, mini program, menu reply); 5 is a servicer
writing in the WeCom app (recorded as an outbound message: the customer was
told it); 4 are events: entering the session (an automatic message), a
message WeChat failed to deliver (``msg_send_fail``: the reply shows as
failed) and session or servicer changes (skipped with the reason).

Replies: ``kf/send_msg`` answers only while the session is new (state 0) or
with the API (state 1, "智能助手"). Before the first send the adapter reads
``kf/service_state/get`` and takes a new session (0 → 1): from then on the
session is the omnidesk agent's who replies. A session waiting in WeCom's
pool (2) or taken by a servicer in the WeCom app (3) is not taken from
them: the reply fails with the reason. WeChat accepts five messages within
48 hours of the customer's last message; the window is checked first.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from ...identity import normalize_identity
from ...model import (
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
from ..base import ChannelAdapter, ChannelContext
from ..media import upload_name
from ..parts import send_steps
from .api import (
    KF_MEDIA_KINDS,
    MAX_AGE,
    WeChatApi,
    WeChatApiError,
    WeComKfClient,
    aes_crypto,
    reply_parts,
    send_error,
    stale,
    upload_media,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://qyapi.weixin.qq.com"
MAX_BODY = 64 * 1024
NOTICE_TOKEN_TTL = 600.0  # a callback's sync token is good for ten minutes
WINDOW_REASON = (
    "outside WeChat customer service's 48-hour window: the customer last wrote more than"
    " 48 hours ago"
)
STATE_NAMES = {
    0: "new, not yet handled",
    1: "handled through the API",
    2: "waiting in WeCom's reception pool",
    3: "handled by a servicer in the WeCom app",
    4: "ended",
}
REFUSALS = {
    95001: (
        "WeChat customer service's message quota for this customer is used up"
        " (five within 48 hours of their message): it opens again when they write"
    ),
    95018: "the session's state does not allow sending through the API",
}
_ORIGIN_CUSTOMER, _ORIGIN_EVENT, _ORIGIN_SERVICER = 3, 4, 5
_MEDIA = {
    "image": ("image/*", "[image]"),
    "voice": ("audio/amr", "[voice message]"),
    "video": ("video/mp4", "[video]"),
    "file": ("application/octet-stream", "[file]"),
}


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


class WeChatKfChannel(ChannelAdapter):
    type = "wechat_kf"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "attachments", "delivery_receipts"}
    )
    max_body: ClassVar[int] = MAX_BODY
    single_consumer: ClassVar[bool] = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.corp_id: str = o.string("corp_id")
        self.secret = o.secret("secret")
        self.token = o.secret("token")
        self.encoding_aes_key = o.secret("encoding_aes_key")
        for key in ("corp_id", "secret", "token", "encoding_aes_key"):
            if not getattr(self, key):
                raise o.error(key, "must not be empty")
        if len(self.encoding_aes_key.reveal()) != 43:
            raise o.error("encoding_aes_key", "must be the 43-character EncodingAESKey")
        self.open_kfids: list[str] = o.strings("open_kfids")
        if not self.open_kfids:
            raise o.error("open_kfids", "must name at least one customer-service account")
        self.max_age: float = o.number("max_age", float(MAX_AGE), min=1.0)
        self.poll_interval: float = o.number("poll_interval", 60.0, min=0.05)
        self.notice_poll: float = o.number("notice_poll", 1.0, min=0.01)
        self.api_base_url: str = o.string("api_base_url", DEFAULT_API).rstrip("/")
        self.timeout: float = o.number("timeout", 10.0, min=0.1)
        self.check_window: bool = o.boolean("check_window", True)
        o.check_unused()
        self.crypto = aes_crypto(
            WeComCrypto, o, self.token.reveal(), self.encoding_aes_key.reveal(), self.corp_id
        )
        self.api = WeChatApi(
            WeComKfClient(self.corp_id, self.secret.reveal(), self.api_base_url, self.timeout),
            ctx.state,
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False
        self._synced_notice: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if self.ctx.state is None:
            raise RuntimeError("the wechat_kf channel needs the channel state (its cursor)")
        self._stopping = False
        spawn = self.ctx.spawn
        runner = self._poll_loop()
        task = spawn(runner, f"wechat-kf-{self.name}") if spawn else asyncio.ensure_future(runner)
        self._task = task if isinstance(task, asyncio.Task) else None

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.set_health(True, "stopped")

    # -- callback --------------------------------------------------------------------
    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        q = request.query_params
        sig, ts, nonce = q.get("msg_signature"), q.get("timestamp"), q.get("nonce")
        if not sig or not nonce:
            return PlainTextResponse("missing msg_signature or nonce\n", status_code=401)
        if request.method == "GET":
            echostr = q.get("echostr")
            if not echostr:
                return PlainTextResponse("missing echostr\n", status_code=400)
            try:
                plain = self.crypto.check_signature(sig, ts, nonce, echostr)
            except (InvalidSignatureException, InvalidCorpIdException):
                self.log.warning("url_check_refused", reason="signature or corp id mismatch")
                return PlainTextResponse("signature mismatch\n", status_code=403)
            except Exception:
                return PlainTextResponse("cannot decrypt echostr\n", status_code=400)
            return PlainTextResponse(plain)
        too_old = stale(ts, self.max_age)
        if too_old is not None:
            self.log.info("webhook_refused", reason=f"stale: {too_old}")
            return PlainTextResponse(f"stale callback: {too_old}\n", status_code=403)
        body = await request.body()
        try:
            xml = self.crypto.decrypt_message(body, sig, ts, nonce)
        except (InvalidSignatureException, InvalidCorpIdException):
            self.log.info("webhook_refused", reason="msg_signature or corp id mismatch")
            return PlainTextResponse("msg_signature mismatch\n", status_code=403)
        except Exception as exc:
            self.log.info("webhook_refused", reason=f"cannot decrypt: {type(exc).__name__}")
            return PlainTextResponse("cannot decrypt the callback\n", status_code=400)
        try:
            notice = _d(xmltodict.parse(xml).get("xml"))
        except Exception:
            notice = {}
        kfid, token = _s(notice.get("OpenKfId")), _s(notice.get("Token"))
        if notice.get("Event") != "kf_msg_or_event" or not kfid:
            self.log.info("webhook_ignored", event=notice.get("Event"))
            return PlainTextResponse("success")
        if kfid not in self.open_kfids:
            self.log.warning("webhook_other_account", open_kfid=kfid)
            return PlainTextResponse("success")
        assert self.ctx.state is not None
        try:
            value = json.dumps({"token": token, "at": time.time()})
            await self.ctx.state.put({f"notice:{kfid}": value})
        except Exception as exc:
            self.log.error("webhook_not_stored", error=str(exc))
            return PlainTextResponse("not stored, retry later\n", status_code=503)
        self.touch()
        self._wake.set()
        return PlainTextResponse("success")

    # -- the poller --------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        assert self.ctx.state is not None
        failures = 0
        last_full = 0.0
        self.set_health(True, "running", "pulling messages with sync_msg")
        while not self._stopping:
            try:
                notices = await self.ctx.state.items("notice:")
                due = time.monotonic() - last_full >= self.poll_interval
                for kfid in self.open_kfids:
                    notice = _notice(notices.get(f"notice:{kfid}"))
                    at = float(notice.get("at") or 0)
                    if due or at > self._synced_notice.get(kfid, 0.0):
                        token = _s(notice.get("token"))
                        fresh = token and time.time() - at < NOTICE_TOKEN_TTL
                        await self.sync(kfid, token if fresh else "")
                        self._synced_notice[kfid] = at
                if due:
                    last_full = time.monotonic()
                failures = 0
                self.set_health(True, "running", "pulling messages with sync_msg")
            except Exception as exc:  # WeChat, the intake or the state: retried, never fatal
                failures += 1
                state = "degraded" if failures < 3 else "failing"
                detail = f"sync_msg failed: {exc}"
                if isinstance(exc, WeChatApiError) and exc.token_fetch:
                    # A wrong corp id or secret, an untrusted IP: only an admin fixes it.
                    state = "failing"
                    detail = send_error(exc, {}, product="WeChat customer service").reason
                self.set_health(False, state, detail)
                await asyncio.sleep(
                    min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                )
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.notice_poll)
            except TimeoutError:
                pass

    async def sync(self, kfid: str, token: str = "") -> int:
        """Pull everything new for one account; returns how many messages."""
        assert self.ctx.state is not None
        key = f"cursor:{kfid}"
        got = 0
        while True:
            cursor = await self.ctx.state.get(key) or ""
            body: dict[str, Any] = {"cursor": cursor, "limit": 1000, "open_kfid": kfid}
            if token:
                body["token"] = token

            def pull(client: Any, data: dict[str, Any] = body) -> Any:
                return client.post("kf/sync_msg", data=data)

            resp = _d(await self.api.call(pull))
            msgs = [m for m in resp.get("msg_list") or () if isinstance(m, dict)]
            if msgs:
                await self.ctx.intake.accept_many(self.envelopes(msgs))
                self.touch()
                got += len(msgs)
            nxt = _s(resp.get("next_cursor"))
            if nxt and nxt != cursor:
                await self.ctx.state.put({key: nxt})
            if not resp.get("has_more") or not nxt or nxt == cursor:
                return got

    def envelopes(self, msgs: Sequence[dict[str, Any]]) -> list[Envelope]:
        now = time.time()
        return [
            Envelope(
                channel=self.name,
                external_id=_s(m.get("msgid"))[:500] or f"body:{hashlib.sha256(raw).hexdigest()}",
                payload=raw,
                content_type="application/json",
                received_at=now,
            )
            for m in msgs
            for raw in (json.dumps(m, ensure_ascii=False, sort_keys=True).encode(),)
        ]

    # -- normalize (pure) ------------------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            m = json.loads(envelope.payload)
        except ValueError as exc:
            raise NormalizeError(f"not JSON: {exc}") from None
        if not isinstance(m, dict):
            raise NormalizeError("not a sync_msg message object")
        kfid = _s(m.get("open_kfid"))
        origin = m.get("origin")
        at = float(m["send_time"]) if isinstance(m.get("send_time"), int) else None
        if origin == _ORIGIN_EVENT or m.get("msgtype") == "event":
            return self._event(envelope, m, kfid, at)
        user = _s(m.get("external_userid"))
        if not user or not kfid:
            raise NormalizeError("message without external_userid or open_kfid")
        customer = normalize_identity("wechat_kf", user, None, {"open_kfid": kfid})
        text, attachments, meta = _content(m)
        thread_key = f"{kfid}:{user}"
        if origin == _ORIGIN_SERVICER:
            servicer = _s(m.get("servicer_userid")) or "servicer"
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=Identity("wecom", servicer, f"{servicer} (WeCom app)"),
                recipients=[customer],
                text=text,
                attachments=attachments,
                thread_key=thread_key,
                sent_at=at,
                direction=Direction.OUTBOUND,
                meta={"wechat_kf": meta, "sent_outside_omnidesk": True},
            )
        if origin != _ORIGIN_CUSTOMER:
            return Skip(f"sync_msg message of origin {origin!r} is not the customer's")
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=customer,
            text=text,
            attachments=attachments,
            thread_key=thread_key,
            sent_at=at,
            meta={"wechat_kf": meta},
        )

    def _event(
        self, envelope: Envelope, m: dict[str, Any], kfid: str, at: float | None
    ) -> Normalized:
        ev = _d(m.get("event"))
        etype = _s(ev.get("event_type"))
        user = _s(ev.get("external_userid")) or _s(m.get("external_userid"))
        kfid = _s(ev.get("open_kfid")) or kfid
        if etype == "msg_send_fail":
            failed = _s(ev.get("fail_msgid"))
            if not failed:
                return Skip("msg_send_fail without fail_msgid")
            return StatusUpdate(
                channel=self.name,
                provider_id=failed,
                state=DeliveryState.FAILED,
                reason=f"WeChat could not deliver the message (fail_type {ev.get('fail_type')})",
            )
        if etype == "enter_session" and user and kfid:
            scene = _s(ev.get("scene"))
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=normalize_identity("wechat_kf", user, None, {"open_kfid": kfid}),
                text="[opened the customer-service chat]",
                auto="wechat-kf-enter-session",
                thread_key=f"{kfid}:{user}",
                sent_at=at,
                meta={"wechat_kf": {"event": etype, "scene": scene or None}},
            )
        if etype == "session_status_change":
            return Skip(
                f"session of {user} changed (change_type {ev.get('change_type')},"
                f" servicer {ev.get('new_servicer_userid') or '-'})"
            )
        return Skip(f"WeChat customer service event {etype or 'unknown'}: not a message")

    # -- send --------------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        kfid, _, user = (message.thread_key or "").partition(":")
        if message.recipient.kind == "wechat_kf":
            user = message.recipient.address
        if not kfid or not user:
            raise SendError("no customer-service account or customer for this reply", retry=False)
        queries = self.ctx.queries if self.check_window else None
        pieces, files = await reply_parts(
            queries, message, KF_MEDIA_KINDS, "WeChat customer service", WINDOW_REASON
        )
        bodies: list[dict[str, Any]] = [
            {"msgtype": "text", "text": {"content": piece}} for piece in pieces
        ]
        try:
            await self._take_session(kfid, user)
            # Every file is uploaded before anything is sent: a refused upload
            # sends nothing.
            for a, kind, ctype in files:
                assert a.data is not None
                media_id = await upload_media(
                    self.api, kind.name, upload_name(a, ctype), a.data, ctype
                )
                bodies.append({"msgtype": kind.name, kind.name: {"media_id": media_id}})
        except WeChatApiError as exc:
            raise self._refused(exc) from None
        steps = [
            functools.partial(
                self._send_msg,
                {"touser": user, "open_kfid": kfid, "msgid": f"od{message.outbox_id}x{i}", **c},
            )
            for i, c in enumerate(bodies)
        ]
        ids = await send_steps(self.ctx.state, message.outbox_id, steps)
        sent = ids[-1]
        return SendResult(provider_id=sent)

    async def _send_msg(self, body: dict[str, Any]) -> str:
        """One ``kf/send_msg``; its msgid."""

        def post(client: Any) -> Any:
            return client.post("kf/send_msg", data=body)

        try:
            resp = _d(await self.api.call(post))
        except WeChatApiError as exc:
            raise self._refused(exc) from None
        return _s(resp.get("msgid")) or str(body["msgid"])

    def _refused(self, exc: WeChatApiError) -> SendError:
        err = send_error(exc, REFUSALS, product="WeChat customer service")
        if exc.token_fetch:
            self.set_health(False, "failing", err.reason)
        return err

    async def _take_session(self, kfid: str, user: str) -> None:
        """Hand a new session to the API (state 0 -> 1), so the agent who
        replies holds it; refuse sessions WeCom gave to its own servicers."""
        who = {"open_kfid": kfid, "external_userid": user}

        def get(client: Any) -> Any:
            return client.post("kf/service_state/get", data=dict(who))

        st = _d(await self.api.call(get))
        state = st.get("service_state")
        if state == 0:

            def trans(client: Any) -> Any:
                return client.post("kf/service_state/trans", data={**who, "service_state": 1})

            await self.api.call(trans)
            self.log.info("wechat_kf_session_taken", open_kfid=kfid)
        elif state in (2, 3):
            servicer = _s(st.get("servicer_userid"))
            by = f" ({servicer})" if servicer else ""
            raise SendError(
                f"the WeChat customer-service session is {STATE_NAMES[state]}{by}: WeCom lets"
                " only its servicer answer it; end or transfer it in the WeCom app",
                retry=False,
            )


def _notice(raw: str | None) -> dict[str, Any]:
    try:
        v = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return _d(v)


def _content(m: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    mtype = _s(m.get("msgtype"))
    part = _d(m.get(mtype))
    meta: dict[str, Any] = {"msgtype": mtype}
    if mtype == "text":
        if part.get("menu_id"):
            meta["menu_id"] = part["menu_id"]
        return _s(part.get("content")), [], meta
    if mtype in _MEDIA:
        ctype, label = _MEDIA[mtype]
        media = _s(part.get("media_id"))
        meta["media_id"] = media
        name = _s(part.get("file_name")) or None
        return (
            label if not name else f"[file: {name}]",
            [Attachment(name, ctype, ref=f"wechat-kf-media:{media}")],
            meta,
        )
    if mtype == "location":
        lat, lon = part.get("latitude"), part.get("longitude")
        meta["location"] = {"latitude": lat, "longitude": lon}
        where = " ".join(x for x in (_s(part.get("name")), _s(part.get("address"))) if x)
        return f"[location: {where + ' - ' if where else ''}{lat}, {lon}]", [], meta
    if mtype == "link":
        meta["link"] = {k: part.get(k) for k in ("title", "desc", "url")}
        lines = [
            f"[link] {_s(part.get('title'))}".rstrip(),
            _s(part.get("desc")),
            _s(part.get("url")),
        ]
        return "\n".join(line for line in lines if line), [], meta
    if mtype == "business_card":
        meta["business_card"] = part.get("userid")
        return f"[business card: {_s(part.get('userid'))}]", [], meta
    if mtype == "miniprogram":
        meta["miniprogram"] = {k: part.get(k) for k in ("appid", "pagepath", "title")}
        return f"[mini program: {_s(part.get('title'))}]", [], meta
    return f"[a WeChat customer-service message of type {mtype or 'unknown'}]", [], meta
