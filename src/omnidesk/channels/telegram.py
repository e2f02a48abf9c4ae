"""Telegram bots through python-telegram-bot (the Bot API over HTTP).

Two ways in, chosen by ``mode``:

* ``polling`` (default): a long ``getUpdates`` loop. The offset that confirms
  updates to Telegram advances only after ``intake.accept`` stored them, so a
  crash redelivers rather than loses; intake dedupes the redelivery. One
  daemon instance polls a bot at a time (``single_consumer``).
* ``webhook``: Telegram POSTs each update to ``/webhooks/{channel}``. The
  ``X-Telegram-Bot-Api-Secret-Token`` header must equal ``secret_token``
  (compared in constant time): missing is refused with 401, wrong with 403,
  and nothing is stored. On start the channel calls ``setWebhook`` with
  ``{public_url}/webhooks/{channel}`` (or ``webhook_url``) unless
  ``set_webhook = false``.

External ids: a message is ``{chat_id}:{message_id}`` (the same message
redelivered under any update id is stored once); an edit is
``{chat_id}:{message_id}:edit:{update_id}`` (every edit kept, each once);
anything else is ``update:{update_id}``. The thread key is the chat id (with
``:{topic}`` in forum topics), so a private chat or a group is one running
conversation within the session window.

Files (photos, documents, voice, video, stickers) are downloaded at intake,
before the update is accepted, through ``getFile``: agents see them at once
and they outlive Telegram's one-hour download links. Each file is bounded by
``max_file_bytes`` (the cloud Bot API serves at most 20 MB) and the whole
update by ``download_timeout``; a file that cannot be fetched keeps its
``file_id`` as the attachment's ``ref`` with the reason in the message meta,
and :meth:`TelegramChannel.download` fetches it later.

Replies go out with ``sendMessage`` as a reply to the customer's last message
(``reply_parameters``, sent even if that message was deleted), split at 4096
characters; attachments follow as photos or documents. 429 ``retry_after`` is
honoured through the outbox, network errors and 5xx are retried, 400/403
(bad request, bot blocked, kicked from the group) fail with Telegram's reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

# PTB 22 moves durations (RetryAfter.retry_after...) from int to timedelta and
# warns on every int access until the opt-in is set; we read both forms.
os.environ.setdefault("PTB_TIMEDELTA", "true")

import telegram
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from ..identity import normalize_identity, normalize_phone
from ..model import (
    Attachment,
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
)
from .base import ChannelAdapter, ChannelContext, survey_button_label
from .textsplit import split_units

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096  # Telegram's limit for one message, in UTF-16 code units
MAX_BODY = 5 * 1024 * 1024  # an update is a few KB; files never travel in it
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

# Update fields that carry a message a customer wrote (or edited).
_MESSAGE_KEYS = ("message", "edited_message")
# Content keys of a message that are files, with a default type and extension.
_FILE_KINDS: dict[str, tuple[str, str]] = {
    "photo": ("image/jpeg", "jpg"),
    "document": ("application/octet-stream", "bin"),
    "video": ("video/mp4", "mp4"),
    "animation": ("video/mp4", "mp4"),
    "audio": ("audio/mpeg", "mp3"),
    "voice": ("audio/ogg", "ogg"),
    "video_note": ("video/mp4", "mp4"),
    "sticker": ("image/webp", "webp"),
}
_FILE_LABELS = {
    "photo": "[photo]",
    "document": "[document: {name}]",
    "video": "[video]",
    "animation": "[animation]",
    "audio": "[audio: {name}]",
    "voice": "[voice message]",
    "video_note": "[video message]",
}
# Messages Telegram sends about the chat, not from a customer.
_SERVICE_KEYS = (
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "message_auto_delete_timer_changed",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
    "video_chat_scheduled",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_participants_invited",
    "write_access_allowed",
    "boost_added",
    "chat_background_set",
    "proximity_alert_triggered",
    "successful_payment",
    "refunded_payment",
    "giveaway_created",
    "giveaway_completed",
)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def body_external_id(body: bytes) -> str:
    """For input that is not a readable update: the same bytes twice are one."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def update_external_id(update: Any) -> str | None:
    """The intake key for an update (see the module docstring), or None when
    it is not an update at all."""
    if not isinstance(update, dict):
        return None
    uid = _int(update.get("update_id"))
    for key in _MESSAGE_KEYS:
        m = _dict(update.get(key))
        chat_id, mid = _int(_dict(m.get("chat")).get("id")), _int(m.get("message_id"))
        if chat_id is not None and mid is not None:
            if key == "message":
                return f"{chat_id}:{mid}"
            suffix = uid if uid is not None else _int(m.get("edit_date"))
            return f"{chat_id}:{mid}:edit:{suffix}"
    return None if uid is None else f"update:{uid}"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries, as Telegram describes it."""

    file_id: str
    kind: str
    content_type: str
    filename: str
    size: int | None


def message_files(m: Mapping[str, Any]) -> list[FileRef]:
    """The files of one message: the largest size of a photo, the file of a
    document/video/voice/sticker... (thumbnails are left out)."""
    out: list[FileRef] = []
    mid = _int(m.get("message_id")) or 0
    for kind, (default_type, ext) in _FILE_KINDS.items():
        raw = m.get(kind)
        if kind == "photo":
            sizes = [p for p in raw if isinstance(p, dict)] if isinstance(raw, list) else []
            obj = max(
                sizes,
                key=lambda p: (_int(p.get("file_size")) or 0, _int(p.get("width")) or 0),
                default=None,
            )
        else:
            obj = raw if isinstance(raw, dict) else None
        if obj is None or not _str(obj.get("file_id")):
            continue
        ctype = _str(obj.get("mime_type")) or default_type
        if kind == "sticker":
            if obj.get("is_animated"):
                ctype, ext = "application/x-tgsticker", "tgs"
            elif obj.get("is_video"):
                ctype, ext = "video/webm", "webm"
        name = _str(obj.get("file_name")) or f"{kind}_{mid}.{ext}"
        out.append(FileRef(obj["file_id"], kind, ctype, name, _int(obj.get("file_size"))))
    return out


def _display_name(obj: Mapping[str, Any]) -> str | None:
    parts = [p for p in (_str(obj.get("first_name")), _str(obj.get("last_name"))) if p]
    return " ".join(parts) or _str(obj.get("title")) or _str(obj.get("username"))


def _sender(m: Mapping[str, Any]) -> Identity:
    user = _dict(m.get("from"))
    uid = _int(user.get("id"))
    if uid is not None:
        data = {
            k: user[k]
            for k in ("username", "language_code", "is_premium", "is_bot")
            if user.get(k) not in (None, False)
        }
        return normalize_identity("telegram", str(uid), _display_name(user), data)
    # Anonymous group admins and linked channels write as a chat.
    chat = _dict(m.get("sender_chat"))
    cid = _int(chat.get("id"))
    if cid is not None:
        data = {
            "chat": True,
            **({"username": chat["username"]} if _str(chat.get("username")) else {}),
        }
        return normalize_identity("telegram", str(cid), _display_name(chat), data)
    raise NormalizeError("message has neither 'from' nor 'sender_chat'")


def _special_content(m: Mapping[str, Any], meta: dict[str, Any]) -> list[str]:
    """Text lines for content that is neither text nor a file."""
    lines: list[str] = []
    venue = _dict(m.get("venue"))
    loc = _dict(m.get("location")) or _dict(venue.get("location"))
    if loc:
        lat, lon = loc.get("latitude"), loc.get("longitude")
        meta["location"] = {"latitude": lat, "longitude": lon}
        if venue:
            meta["venue"] = {k: venue.get(k) for k in ("title", "address")}
            lines.append(f"[venue] {venue.get('title') or ''}, {venue.get('address') or ''}")
        lines.append(f"[location] {lat}, {lon} https://maps.google.com/?q={lat},{lon}")
    contact = _dict(m.get("contact"))
    if contact:
        name = _display_name(contact) or ""
        phone = _str(contact.get("phone_number")) or ""
        meta["contact"] = {
            k: contact.get(k) for k in ("phone_number", "first_name", "last_name", "user_id")
        }
        lines.append(f"[contact] {name} {phone}".strip())
    poll = _dict(m.get("poll"))
    if poll:
        opts = [o.get("text") for o in poll.get("options", []) if isinstance(o, dict)]
        lines.append(f"[poll] {poll.get('question') or ''} ({' / '.join(map(str, opts))})")
    dice = _dict(m.get("dice"))
    if dice:
        lines.append(f"[dice {dice.get('emoji') or ''}] {dice.get('value')}")
    web_app = _dict(m.get("web_app_data"))
    if web_app:
        meta["web_app_data"] = web_app.get("data")
        lines.append(f"[web app] {web_app.get('button_text') or ''}: {web_app.get('data') or ''}")
    sticker = _dict(m.get("sticker"))
    if sticker and _str(sticker.get("emoji")):
        lines.append(f"[sticker {sticker['emoji']}]")
    for key in ("game", "story", "giveaway", "paid_media", "checklist", "invoice"):
        if key in m:
            lines.append(f"[{key.replace('_', ' ')}]")
    return lines


def _my_chat_member_reason(update: Mapping[str, Any]) -> str:
    mcm = _dict(update.get("my_chat_member"))
    new = _dict(mcm.get("new_chat_member")).get("status")
    chat = _dict(mcm.get("chat"))
    if chat.get("type") == "private" and new == "kicked":
        return f"the user {_dict(mcm.get('from')).get('id')} blocked the bot"
    return f"the bot's membership in chat {chat.get('id')} changed to {new}"


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Pieces of at most ``limit`` UTF-16 units (Telegram's measure)."""
    return split_units(text, limit)


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def retry_after_seconds(exc: RetryAfter) -> float:
    return _seconds(exc.retry_after)


class _Bot(telegram.Bot):
    async def raw_updates(
        self, *, offset: int | None, timeout: int, allowed_updates: list[str] | None
    ) -> Any:
        """``getUpdates`` as Telegram's JSON, not parsed objects: one update
        PTB cannot parse must go to quarantine, not stop the whole poll."""
        return await self._post(
            "getUpdates",
            {"offset": offset, "timeout": timeout, "allowed_updates": allowed_updates},
            read_timeout=timeout + 10.0,
        )


class TelegramChannel(ChannelAdapter):
    type = "telegram"
    capabilities: ClassVar[frozenset[str]] = frozenset({"attachments", "edits", "webhook"})
    max_body: ClassVar[int] = MAX_BODY
    # Only one instance may long-poll a bot (Telegram answers a second poller
    # with 409). In webhook mode every instance accepts deliveries; only the
    # owner calls setWebhook.
    single_consumer: ClassVar[bool] = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.token = o.secret("token")
        if not self.token or ":" not in self.token.reveal():
            raise o.error("token", "must be a bot token from @BotFather (digits:letters)")
        self.mode = o.string("mode", "polling", choices=("polling", "webhook"))
        self.secret_token = o.secret("secret_token", None)
        if self.mode == "webhook":
            if not self.secret_token:
                raise o.error("secret_token", "is required in webhook mode")
            if not _SECRET_RE.fullmatch(self.secret_token.reveal()):
                raise o.error("secret_token", "must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        self.api_base_url = o.string("api_base_url", DEFAULT_API).rstrip("/")
        allowed = o.strings("allowed_updates", None)
        self.allowed_updates: list[str] | None = allowed
        self.set_webhook = o.boolean("set_webhook", True)
        self.webhook_url = o.string("webhook_url", f"{ctx.public_url}/webhooks/{ctx.name}")
        self.poll_timeout = o.integer("poll_timeout", 50, min=0)
        self.download_files = o.boolean("download_files", True)
        self.max_file_bytes = o.integer("max_file_bytes", 20 * 1024 * 1024, min=0)
        self.download_timeout = o.number("download_timeout", 30.0, min=0.1)
        self.request_timeout = o.number("request_timeout", 15.0, min=0.1)
        self.retry_max = o.number("retry_max", 60.0, min=0.1)
        o.check_unused()

        token = self.token.reveal()
        self._secrets = [token, token.replace(":", "%3A")]
        self._request = HTTPXRequest(
            connection_pool_size=16,
            read_timeout=self.request_timeout,
            write_timeout=self.request_timeout,
            connect_timeout=self.request_timeout,
        )
        self._poll_request = HTTPXRequest(
            connection_pool_size=1,
            read_timeout=self.poll_timeout + 10.0,
            connect_timeout=self.request_timeout,
        )
        # PTB appends the token: {api}/bot{token}/{method}, {api}/file/bot{token}/{path}.
        self.bot = _Bot(
            token,
            base_url=f"{self.api_base_url}/bot",
            base_file_url=f"{self.api_base_url}/file/bot",
            request=self._request,
            get_updates_request=self._poll_request,
        )
        self.me: dict[str, Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._answering: set[asyncio.Future[None]] = set()
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        await self._request.initialize()
        await self._poll_request.initialize()
        runner = self._poll_loop() if self.mode == "polling" else self._webhook_setup()
        spawn = self.ctx.spawn
        task = spawn(runner, f"telegram-{self.name}") if spawn else asyncio.ensure_future(runner)
        self._task = task if isinstance(task, asyncio.Task) else None

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # Its end (cancelled, or a crash spawn already logged) is not ours
            # to raise; our own caller's cancellation still propagates.
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._answering:
            await asyncio.gather(*self._answering, return_exceptions=True)
        await self._request.shutdown()
        await self._poll_request.shutdown()
        self.set_health(True, "stopped")

    def scrub(self, text: str) -> str:
        """Error texts may quote the token (PTB does on a refused token)."""
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _error(self, exc: BaseException) -> str:
        return self.scrub(f"{type(exc).__name__}: {exc}")

    async def _pause(self, failures: int, at_least: float = 0.0) -> None:
        """Exponential backoff with jitter: never a hot loop."""
        delay = min(self.retry_max, 0.5 * (2 ** min(failures, 10)))
        await asyncio.sleep(max(at_least, delay * random.uniform(0.8, 1.2)))

    async def _hello(self) -> None:
        """getMe until it answers: proves the token and names the bot."""
        failures = 0
        while True:
            try:
                me = await self.bot.get_me()
                self.me = {"id": me.id, "username": me.username}
                return
            except InvalidToken as exc:
                self.set_health(False, "failing", f"Telegram refused the bot token: {exc}")
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                self.set_health(False, "degraded", f"cannot reach Telegram: {self._error(exc)}")
            failures += 1
            await self._pause(failures)

    async def _webhook_setup(self) -> None:
        await self._hello()
        if not self.set_webhook:
            self.set_health(True, "running", "waiting for webhook deliveries")
            return
        failures = 0
        while True:
            try:
                await self.bot.set_webhook(
                    self.webhook_url,
                    secret_token=self.secret_token.reveal() if self.secret_token else None,
                    allowed_updates=self.allowed_updates,
                )
                self.set_health(True, "running", f"webhook set to {self.webhook_url}")
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                failures += 1
                self.set_health(False, "failing", f"setWebhook failed: {self._error(exc)}")
            await self._pause(failures)

    async def _poll_loop(self) -> None:
        await self._hello()
        try:
            # A webhook and getUpdates exclude each other; pending updates stay.
            await self.bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            self.log.warning("delete_webhook_failed", error=self._error(exc))
        offset: int | None = None
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                raw = await self.bot.raw_updates(
                    offset=offset, timeout=self.poll_timeout, allowed_updates=self.allowed_updates
                )
            except RetryAfter as exc:
                self.set_health(True, "degraded", "Telegram asked to slow down")
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except InvalidToken as exc:
                failures += 1
                self.set_health(False, "failing", f"Telegram refused the bot token: {exc}")
                await self._pause(failures, at_least=5.0)
                continue
            except Conflict as exc:
                # Another poller, or a webhook someone set: do not fight over it.
                failures += 1
                self.set_health(False, "failing", f"getUpdates conflict: {self._error(exc)}")
                await self._pause(failures, at_least=5.0)
                continue
            except TelegramError as exc:
                failures += 1
                state = "degraded" if failures < 3 else "failing"
                self.set_health(False, state, f"getUpdates failed: {self._error(exc)}")
                await self._pause(failures)
                continue
            updates = raw if isinstance(raw, list) else []
            if updates:
                try:
                    envelopes = [await self._envelope(u) for u in updates]
                    await self.ctx.intake.accept_many(envelopes)
                except Exception as exc:
                    # Not stored: the offset stays, Telegram gives them again.
                    failures += 1
                    self.set_health(False, "degraded", f"cannot store updates: {exc}")
                    await self._pause(failures)
                    continue
                self.touch()
                self._answer_presses(updates)
                ids = [
                    i for i in (_int(_dict(u).get("update_id")) for u in updates) if i is not None
                ]
                if ids:
                    offset = max(ids) + 1
            failures = 0
            self.set_health(True, "running", "polling")
            if not updates and self.poll_timeout and time.monotonic() - started < 0.5:
                # A server that answers an idle long poll at once must not spin us.
                await asyncio.sleep(0.5)

    # -- intake --------------------------------------------------------------
    async def _envelope(self, update: Any, raw: bytes | None = None) -> Envelope:
        body = raw if raw is not None else json.dumps(update, ensure_ascii=False).encode()
        ext = update_external_id(update) or body_external_id(body)
        meta: dict[str, Any] = {}
        if self.download_files and isinstance(update, dict):
            refs = [f for key in _MESSAGE_KEYS for f in message_files(_dict(update.get(key)))]
            if refs:
                meta["files"] = await self._fetch_files(refs)
        return Envelope(
            channel=self.name,
            external_id=ext,
            payload=body,
            content_type="application/json",
            meta=meta,
        )

    async def _fetch_files(self, refs: Iterable[FileRef]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.download_timeout
        for ref in refs:
            if ref.file_id in out:
                continue
            if ref.size is not None and ref.size > self.max_file_bytes:
                out[ref.file_id] = {"error": f"{ref.size} bytes is over max_file_bytes"}
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                out[ref.file_id] = {"error": "download_timeout reached before this file"}
                continue
            try:
                data = await asyncio.wait_for(self.download(ref.file_id), timeout=left)
            except TimeoutError:
                out[ref.file_id] = {"error": "download timed out"}
            except (TelegramError, ValueError) as exc:
                out[ref.file_id] = {"error": self._error(exc)}
            else:
                out[ref.file_id] = {"data": base64.b64encode(data).decode()}
        return out

    def _answer_presses(self, updates: list[Any]) -> None:
        """Answer the button presses among stored updates (answerCallbackQuery):
        until then the customer's Telegram shows a spinner on the button. Done
        beside intake, never holding it up; a press answered too late (Telegram
        allows about 15 s) or twice is only logged."""
        ids = [
            qid
            for u in updates
            if (qid := _str(_dict(_dict(u).get("callback_query")).get("id"))) is not None
        ]
        if ids:
            task = asyncio.ensure_future(self._answer(ids))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, ids: list[str]) -> None:
        for qid in ids:
            try:
                await self.bot.answer_callback_query(qid)
            except TelegramError as exc:
                self.log.info("callback_answer_failed", error=self._error(exc))

    async def download(self, file_id: str) -> bytes:
        """A file's bytes by its ``file_id`` (``getFile`` then the file URL);
        raises ValueError over ``max_file_bytes``."""
        f = await self.bot.get_file(file_id)
        if f.file_size is not None and f.file_size > self.max_file_bytes:
            raise ValueError(f"{f.file_size} bytes is over max_file_bytes")
        data = bytes(await f.download_as_bytearray())
        if len(data) > self.max_file_bytes:
            raise ValueError(f"{len(data)} bytes is over max_file_bytes")
        return data

    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if self.mode != "webhook":
            return JSONResponse({"error": "this Telegram channel uses long polling"}, 404)
        got = request.headers.get(SECRET_HEADER)
        if got is None:
            return JSONResponse({"error": f"missing {SECRET_HEADER}"}, 401)
        assert self.secret_token is not None
        if not hmac.compare_digest(got.encode(), self.secret_token.reveal().encode()):
            self.log.info("webhook_refused", reason="wrong secret token")
            return JSONResponse({"error": f"wrong {SECRET_HEADER}"}, 403)
        body = await request.body()  # at most max_body (web/limits.py)
        try:
            update: Any = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            update = None  # kept as raw bytes: normalize sends it to quarantine
        try:
            envelope = await self._envelope(update, body)
            new = await self.ctx.intake.accept(envelope)
        except Exception as exc:
            # Not stored: a non-2xx makes Telegram deliver it again.
            self.log.warning("webhook_not_stored", error=str(exc))
            return JSONResponse({"error": "not stored, retry later"}, 503)
        self.touch()
        if new:
            self._answer_presses([update])
        return JSONResponse({"ok": True, "duplicate": not new})

    # -- normalize (pure) ----------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            update = json.loads(envelope.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NormalizeError(f"not JSON: {exc}") from None
        if not isinstance(update, dict):
            raise NormalizeError(f"not a Telegram Update: a JSON {type(update).__name__}")
        if _int(update.get("update_id")) is None:
            keys = ", ".join(sorted(update)[:8])
            raise NormalizeError(f"not a Telegram Update: no integer update_id (keys: {keys})")
        for key in _MESSAGE_KEYS:
            if key in update:
                m = update[key]
                if not isinstance(m, dict):
                    raise NormalizeError(f"'{key}' is not an object")
                return self._message(envelope, update, m, edited=key == "edited_message")
        if "channel_post" in update or "edited_channel_post" in update:
            return Skip("a post in a Telegram channel, not a customer message")
        if "my_chat_member" in update:
            return Skip(_my_chat_member_reason(update))
        if isinstance(update.get("callback_query"), dict):
            return self._button(envelope, update["callback_query"])
        if "business_message" in update or "edited_business_message" in update:
            return Skip("Telegram Business messages are not supported")
        kinds = [k for k in update if k != "update_id"]
        if not kinds:
            return Skip("update carries no content")
        return Skip(f"update of type {kinds[0]} is not a customer message")

    def _message(
        self, envelope: Envelope, update: dict[str, Any], m: dict[str, Any], *, edited: bool
    ) -> Normalized:
        chat = _dict(m.get("chat"))
        chat_id, mid = _int(chat.get("id")), _int(m.get("message_id"))
        if chat_id is None or mid is None:
            raise NormalizeError("message without an integer chat.id and message_id")
        for key in _SERVICE_KEYS:
            if key in m:
                return Skip(f"service message ({key}) in chat {chat_id}")
        sender = _sender(m)
        if self.me and sender.address == str(self.me.get("id")):
            return Skip("our own bot's message")
        tg: dict[str, Any] = {
            "update_id": update.get("update_id"),
            "message_id": mid,
            "chat": {k: chat.get(k) for k in ("id", "type", "title", "username") if k in chat},
        }
        text = _str(m.get("text")) or _str(m.get("caption")) or ""
        lines = _special_content(m, tg)
        files = message_files(m)
        got = _dict(envelope.meta.get("files"))
        attachments: list[Attachment] = []
        problems: dict[str, str] = {}
        for f in files:
            entry = _dict(got.get(f.file_id))
            data = None
            if isinstance(entry.get("data"), str):
                try:
                    data = base64.b64decode(entry["data"], validate=True)
                except ValueError:
                    problems[f.file_id] = "stored file data is not valid base64"
            elif entry.get("error"):
                problems[f.file_id] = str(entry["error"])
            else:
                problems[f.file_id] = "not downloaded"
            attachments.append(Attachment(f.filename, f.content_type, data=data, ref=f.file_id))
        if problems:
            tg["file_errors"] = problems
        if not text and not lines:
            # Something for the inbox preview and the rules to read.
            lines = [_FILE_LABELS.get(f.kind, f"[{f.kind}]").format(name=f.filename) for f in files]
        if lines:
            text = "\n".join([*([text] if text else []), *lines])
        if not text and not attachments:
            keys = [k for k in m if k not in ("message_id", "from", "chat", "date")][:6]
            text = f"[unsupported Telegram message: {', '.join(keys) or 'empty'}]"
        reply = _dict(m.get("reply_to_message"))
        if _int(reply.get("message_id")) is not None:
            tg["reply_to"] = f"{chat_id}:{reply['message_id']}"
        if "forward_origin" in m or "forward_from" in m:
            tg["forwarded"] = True
        extra: list[Identity] = []
        contact = _dict(m.get("contact"))
        phone = _str(contact.get("phone_number"))
        user_id = _dict(m.get("from")).get("id")
        if phone and _int(contact.get("user_id")) is not None and contact["user_id"] == user_id:
            # The user shared their own number (Telegram vouches for it):
            # the contact can now meet WhatsApp and SMS.
            e164 = normalize_phone(phone)
            if e164:
                extra.append(Identity("phone", e164, sender.display_name))
        thread = _int(m.get("message_thread_id"))
        thread_key = f"{chat_id}:{thread}" if m.get("is_topic_message") and thread else str(chat_id)
        date = _int(m.get("edit_date")) if edited else None
        date = date or _int(m.get("date"))
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=text,
            attachments=attachments,
            sent_at=float(date) if date else envelope.received_at,
            kind=MessageKind.EDIT if edited else MessageKind.MESSAGE,
            edit_of=f"{chat_id}:{mid}" if edited else None,
            thread_key=thread_key,
            extra_identities=extra,
            meta={"telegram": tg},
        )

    def _button(self, envelope: Envelope, cb: dict[str, Any]) -> Normalized:
        """A press on a button omnidesk sent (a survey's inline keyboard): the
        customer's answer, as if they had typed the button's value."""
        data = _str(cb.get("data")) or ""
        m = _dict(cb.get("message"))
        chat_id = _int(_dict(m.get("chat")).get("id"))
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "survey" or not parts[2].isdigit() or chat_id is None:
            return Skip("a button press on a message omnidesk did not send")
        sender = _sender({"from": cb.get("from"), "chat": m.get("chat")})
        thread = _int(m.get("message_thread_id"))
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=parts[2],
            sent_at=envelope.received_at,
            thread_key=f"{chat_id}:{thread}"
            if m.get("is_topic_message") and thread
            else str(chat_id),
            meta={"telegram": {"button": data, "callback_query": _str(cb.get("id"))}},
        )

    # -- send ------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        chat, topic = _parse_thread_key(message.thread_key, message.recipient.address)
        reply_to = _reply_target(message.reply_to_external_id, chat)
        pieces = split_text(message.text) if message.text.strip() else []
        files = [a for a in message.attachments if a.data is not None]
        if not pieces and not files:
            raise SendError("nothing to send: the reply has no text", retry=False)
        sent: list[int] = []
        buttons = _survey_keyboard(message.meta.get("survey"))
        for _attempt in range(2):  # a second go only after a group became a supergroup
            try:
                for i, piece in enumerate(pieces):
                    msg = await self.bot.send_message(
                        chat,
                        piece,
                        message_thread_id=topic,
                        reply_parameters=(
                            telegram.ReplyParameters(reply_to, allow_sending_without_reply=True)
                            if reply_to is not None and i == 0
                            else None
                        ),
                        reply_markup=buttons if i == len(pieces) - 1 else None,
                    )
                    sent.append(msg.message_id)
                for a in files:
                    assert a.data is not None
                    if a.content_type in ("image/jpeg", "image/png") and len(a.data) < 10_000_000:
                        msg = await self.bot.send_photo(
                            chat, a.data, filename=a.filename, message_thread_id=topic
                        )
                    else:
                        msg = await self.bot.send_document(
                            chat, a.data, filename=a.filename or "file", message_thread_id=topic
                        )
                    sent.append(msg.message_id)
                break
            except ChatMigrated as exc:
                # The group was upgraded: the same conversation now lives at
                # the new chat id. Send there now (what was sent stays sent).
                chat = exc.new_chat_id
                pieces = pieces[len(sent) :]
                reply_to = None
                continue
            except RetryAfter as exc:
                raise SendError(
                    f"Telegram rate limit: {exc}", retry=True, retry_after=retry_after_seconds(exc)
                ) from None
            except Forbidden as exc:
                raise SendError(
                    f"Telegram refused: {self.scrub(exc.message)}", retry=False
                ) from None
            except BadRequest as exc:
                raise SendError(
                    f"Telegram rejected the message: {self.scrub(exc.message)}", retry=False
                ) from None
            except InvalidToken:
                self.set_health(False, "failing", "Telegram refused the bot token")
                raise SendError("Telegram refused the bot token", retry=True) from None
            except NetworkError as exc:
                raise SendError(f"Telegram unreachable: {self._error(exc)}", retry=True) from None
            except TelegramError as exc:
                raise SendError(f"Telegram error: {self._error(exc)}", retry=True) from None
        if not sent:
            raise SendError("Telegram accepted nothing", retry=True)
        return SendResult(provider_id=f"{chat}:{sent[0]}")


def _survey_keyboard(survey: Any) -> telegram.InlineKeyboardMarkup | None:
    """A survey's choices as an inline keyboard: one button a row with its
    label for a rating, two rows of numbers for the 0-10 loyalty question.
    A press comes back as a callback_query (see ``_button``)."""
    if not isinstance(survey, dict) or not isinstance(survey.get("choices"), list):
        return None
    sid = survey.get("id")
    buttons = [
        telegram.InlineKeyboardButton(
            survey_button_label(c),
            callback_data=f"survey:{sid}:{c['value']}",
        )
        for c in survey["choices"]
        if isinstance(c, dict) and "value" in c
    ]
    if not buttons:
        return None
    if survey.get("stage") == "loyalty":
        rows = [buttons[:6], buttons[6:]]
    else:
        rows = [[b] for b in reversed(buttons)]  # best on top
    return telegram.InlineKeyboardMarkup(rows)


def _parse_thread_key(thread_key: str | None, fallback: str) -> tuple[int | str, int | None]:
    """chat id (and forum topic) a reply goes to."""
    key = thread_key or fallback
    head, _, topic = key.partition(":")
    chat: int | str = int(head) if head.lstrip("-").isdigit() else head
    return chat, int(topic) if topic.isdigit() else None


def _reply_target(external_id: str | None, chat: int | str) -> int | None:
    """The message id to answer, when the external id is from the same chat."""
    if not external_id:
        return None
    parts = external_id.split(":")
    if len(parts) >= 2 and parts[0] == str(chat) and parts[1].isdigit():
        return int(parts[1])
    return None
