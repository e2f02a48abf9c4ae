"""Slack through slack-bolt (AsyncApp) and slack_sdk.

Two ways in, chosen by ``mode``:

* ``events`` (default): the Events API POSTs to ``/webhooks/{channel}``.
  slack-bolt verifies ``X-Slack-Signature`` (HMAC-SHA256 of
  ``v0:{timestamp}:{raw body}`` with the signing secret) and refuses a
  timestamp more than five minutes away (401, nothing stored), and answers
  the ``url_verification`` challenge.
* ``socket``: Socket Mode over a WebSocket opened with the app-level token
  (``apps.connections.open``); no public URL needed.

Either way a middleware placed before bolt's authorization stores every
verified payload with ``intake.accept`` and only then acknowledges (HTTP 200,
or the Socket Mode ack): a Slack API outage never turns into a dropped event,
and a failed store answers 503 so Slack delivers again. Retries
(``X-Slack-Retry-Num``) are the same external id and dedupe at intake.

External ids: a message is ``{channel}:{ts}`` (so the ``message`` and
``app_mention`` events for one message, and every retry, are one), an edit
``{channel}:{ts}:edit:{event_ts}``, a deletion ``{channel}:{ts}:deleted``,
any other event ``ev:{event_id}``.

Threads map to conversations: in channels (shared Slack Connect channels,
private channels) the thread key is ``{channel}:{thread_ts}``, a top-level
message starting its own thread; a direct message to the app is one running
chat per DM channel (key ``{channel}``), like a private Telegram chat.

``normalize`` is pure, so what needs the Slack API happens at intake, inside
a time budget that keeps the acknowledgement within Slack's three seconds:
the sender's profile (``users.info``, cached) and the message's files
(downloaded with the bot token, only from Slack's own hosts) go into the
envelope's meta. A profile or file that cannot be fetched in time is left
out (files keep their Slack id and URL as the attachment reference).

A satisfaction survey goes out with its choices as buttons (an ``actions``
block); a press comes back as an interactivity payload (``block_actions``,
a form field ``payload`` signed like events: set the app's Interactivity
Request URL to the same ``/webhooks/{channel}``, or get it over Socket Mode)
and is taken as the customer's answer, as if they had typed its number.

Replies go out with ``chat.postMessage`` in the conversation's thread (text
escaped for Slack's ``&``, ``<``, ``>``), attachments with the files upload
flow (``files_upload_v2``). 429 (with ``Retry-After``) and 5xx are retried by
the outbox; Slack's ``ok: false`` errors (``channel_not_found``,
``not_in_channel``, ``is_archived``, ``invalid_auth``...) fail with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from ..identity import normalize_identity
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

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_API = "https://slack.com/api"
MAX_BODY = 5 * 1024 * 1024
# Message subtypes a person wrote; every other subtype is about the channel.
_HUMAN_SUBTYPES = (None, "file_share", "thread_broadcast", "me_message")
# Slack errors worth another try (the rest mean the request itself is wrong).
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_PROFILE_FIELDS = ("real_name", "display_name", "email", "phone", "title")
_LINK = re.compile(r"<([^<>]*)>")
_SPACES = re.compile(r"[ \t]{2,}")
_DROPPED = re.compile(r"[ \t]*\x00[ \t]*([,.;:!?])?")


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def body_external_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_external_id(payload: Any) -> str | None:
    """The intake key for an Events API payload (see the module docstring),
    or None when it is not one."""
    if not isinstance(payload, dict):
        return None
    kind = payload.get("type")
    if kind == "app_rate_limited":
        return f"rate-limited:{payload.get('team_id')}:{payload.get('minute_rate_limited')}"
    if kind == "block_actions":
        trigger = _str(payload.get("trigger_id"))
        return f"action:{trigger}" if trigger else None
    if kind != "event_callback":
        return None
    ev = _dict(payload.get("event"))
    channel = _str(ev.get("channel"))
    if ev.get("type") in ("message", "app_mention") and channel:
        sub = ev.get("subtype")
        if sub == "message_changed":
            ts = _str(_dict(ev.get("message")).get("ts"))
            when = _str(ev.get("event_ts")) or _str(ev.get("ts"))
            if ts and when:
                return f"{channel}:{ts}:edit:{when}"
        elif sub == "message_deleted":
            ts = _str(ev.get("deleted_ts"))
            if ts:
                return f"{channel}:{ts}:deleted"
        elif _str(ev.get("ts")):
            return f"{channel}:{ev['ts']}"
    event_id = _str(payload.get("event_id"))
    return f"ev:{event_id}" if event_id else None


def _is_dm(channel: str, event: Mapping[str, Any]) -> bool:
    kind = event.get("channel_type")
    return kind == "im" if isinstance(kind, str) else channel.startswith("D")


def thread_key_for(channel: str, event: Mapping[str, Any], m: Mapping[str, Any]) -> str:
    if _is_dm(channel, event):
        return channel
    return f"{channel}:{_str(m.get('thread_ts')) or _str(m.get('ts')) or ''}".rstrip(":")


def _label_link(inner: str, our_user: str | None) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        if our_user and target[1:] == our_user:
            return "\x00"  # dropped, with its spacing, below
        return f"@{label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        if target.startswith(("!subteam", "!date")):
            return label or target[1:]
        return f"@{target[1:]}"
    if target.startswith("mailto:"):
        return label or target[len("mailto:") :]
    return f"{label} ({target})" if label and label != target else target


def slack_to_text(text: str, our_user: str | None = None) -> str:
    """Slack's mrkdwn markup to plain text: ``<@U1>`` -> ``@U1``,
    ``<https://x|label>`` -> ``label (https://x)``, entities unescaped; a
    mention of our own bot is dropped."""
    plain = _LINK.sub(lambda m: _label_link(m.group(1), our_user), text)
    plain = _DROPPED.sub(lambda m: m.group(1) or " ", plain)
    return _SPACES.sub(" ", html.unescape(plain)).strip()


def escape_text(text: str) -> str:
    """What Slack wants in ``text``: only ``&``, ``<`` and ``>`` escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def signature_valid(
    secret: str, raw: bytes, timestamp: str | None, signature: str | None, now: float | None = None
) -> bool:
    """Slack's request signature over raw bytes. Bolt checks every body it
    can read; this covers the ones it cannot (slack_sdk wants UTF-8 text)."""
    if not timestamp or not signature or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > 300:
        return False
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _ts_float(ts: Any) -> float | None:
    try:
        return float(ts)
    except (TypeError, ValueError):
        return None


class _IntakeFirst(AsyncMiddleware):
    """Runs before bolt's authorization (which calls auth.test): every
    verified payload except the URL handshake goes to the intake here, and
    the answer is sent only after it is stored."""

    def __init__(self, accept: Callable[[AsyncBoltRequest], Awaitable[BoltResponse]]) -> None:
        self._accept = accept

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],  # bolt passes it by this name
    ) -> BoltResponse:
        if req.body.get("type") == "url_verification" or req.body.get("ssl_check"):
            return await next()
        return await self._accept(req)


class SlackChannel(ChannelAdapter):
    type = "slack"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"attachments", "threads", "edits", "webhook"}
    )
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.bot_token = o.secret("bot_token")
        if not self.bot_token:
            raise o.error("bot_token", "must not be empty (the xoxb- token of the app)")
        self.mode = o.string("mode", "events", choices=("events", "socket"))
        self.signing_secret = o.secret("signing_secret", None)
        self.app_token = o.secret("app_token", None)
        if self.mode == "events" and not self.signing_secret:
            raise o.error("signing_secret", "is required in events mode")
        if self.mode == "socket" and not self.app_token:
            raise o.error("app_token", "is required in socket mode (an xapp- token)")
        api = o.string("api_base_url", DEFAULT_API)
        self.api_base_url = api.rstrip("/") + "/"  # slack_sdk joins method names onto it
        self.fetch_profiles = o.boolean("fetch_profiles", True)
        self.profile_timeout = o.number("profile_timeout", 1.0, min=0.05)
        self.profile_cache_seconds = o.number("profile_cache_seconds", 3600.0, min=0)
        self.link_email = o.boolean("link_email", True)
        self.download_files = o.boolean("download_files", True)
        self.max_file_bytes = o.integer("max_file_bytes", 20 * 1024 * 1024, min=0)
        self.download_timeout = o.number("download_timeout", 1.5, min=0.05)
        self.request_timeout = o.integer("request_timeout", 10, min=1)
        self.retry_max = o.number("retry_max", 60.0, min=0.1)
        hosts = o.strings("file_hosts", ["files.slack.com"])
        o.check_unused()
        # The bot token travels only to Slack's own hosts (and the API host).
        self.file_hosts = {*hosts, urlsplit(self.api_base_url).hostname or ""}
        self._session: aiohttp.ClientSession | None = None
        self.client: AsyncWebClient | None = None
        self.app: AsyncApp | None = None
        self._socket: Any = None
        self.identity: dict[str, Any] = {}  # auth.test: team_id, user_id, bot_id
        self._profiles: dict[str, tuple[float, dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.client = AsyncWebClient(
            token=self.bot_token.reveal(),
            base_url=self.api_base_url,
            session=self._session,
            timeout=self.request_timeout,
            retry_handlers=[],  # the outbox retries, with its backoff
        )
        quiet = logging.getLogger(f"omnidesk.channels.slack.bolt.{self.name}")
        self.app = AsyncApp(
            client=self.client,
            signing_secret=self.signing_secret.reveal() if self.signing_secret else "",
            process_before_response=True,
            request_verification_enabled=self.mode == "events",
            ignoring_self_events_enabled=False,  # our own messages are recorded as skipped
            before_authorize=_IntakeFirst(self._accept_request),
            logger=quiet,
        )
        self._spawn(self._hello(), "hello")
        if self.mode == "socket":
            self._spawn(self._run_socket(), "socket")
        self.set_health(True, "starting", "checking the bot token")

    def _spawn(self, coro: Awaitable[Any], what: str) -> None:
        spawn = self.ctx.spawn
        name = f"slack-{self.name}-{what}"
        task = spawn(coro, name) if spawn else asyncio.ensure_future(coro)
        if isinstance(task, asyncio.Task):
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Their ends (cancelled, or a crash spawn already logged) are not ours
        # to raise; our own caller's cancellation still propagates.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._socket is not None:
            try:
                await self._socket.close_async()
            except Exception as exc:
                self.log.warning("socket_close_failed", error=str(exc))
            self._socket = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.set_health(True, "stopped")

    async def _pause(self, failures: int) -> None:
        await asyncio.sleep(min(self.retry_max, 0.5 * (2 ** min(failures, 10))))

    async def _hello(self) -> None:
        """auth.test until it answers: proves the token, and tells our team
        and bot ids (to recognise our own messages)."""
        assert self.client is not None
        failures = 0
        while True:
            try:
                r = await self.client.auth_test()
                self.identity = {k: r.get(k) for k in ("team_id", "user_id", "bot_id", "team")}
                if self.mode == "events":
                    self.set_health(
                        True, "running", f"workspace {r.get('team') or r.get('team_id')}"
                    )
                return
            except SlackApiError as exc:
                failures += 1
                error = _reason(exc)
                if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                    self.set_health(False, "failing", f"Slack refused the bot token: {error}")
                else:
                    self.set_health(False, "degraded", f"auth.test failed: {error}")
            except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures += 1
                self.set_health(False, "degraded", f"cannot reach Slack: {type(exc).__name__}")
            await self._pause(failures)

    async def _run_socket(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert self.app is not None and self.client is not None and self.app_token is not None
        handler = AsyncSocketModeHandler(self.app, self.app_token.reveal(), web_client=self.client)
        self._socket = handler
        failures = 0
        while True:
            # slack_sdk retries a failed connect forever without telling why:
            # ask for a socket URL first, so a refused app token shows in health.
            try:
                await self.client.apps_connections_open(app_token=self.app_token.reveal())
                break
            except (
                SlackApiError,
                SlackClientError,
                aiohttp.ClientError,
                OSError,
                TimeoutError,
            ) as exc:
                failures += 1
                self.set_health(False, "failing", f"Socket Mode connect failed: {_reason(exc)}")
                await self._pause(failures)
        await handler.connect_async()
        # slack_sdk reconnects by itself; this watches and reports.
        while True:
            if await handler.client.is_connected():
                self.set_health(True, "running", "Socket Mode connected")
            else:
                self.set_health(False, "degraded", "Socket Mode reconnecting")
            await asyncio.sleep(1.0)

    # -- intake --------------------------------------------------------------
    async def handle_webhook(self, request: Request) -> Response:
        from slack_bolt.adapter.starlette.async_handler import to_starlette_response
        from starlette.responses import JSONResponse

        if self.mode != "events" or self.app is None:
            return JSONResponse({"error": "this Slack channel uses Socket Mode"}, 404)
        if request.method != "POST":
            return JSONResponse({"error": "POST only"}, 405)
        stamp = request.headers.get("x-slack-request-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit()):
            # slack_sdk's verifier calls int() on it: "²" (a digit to Python)
            # would raise there, a 500 instead of a refusal.
            self.log.info("webhook_refused", reason="missing or malformed timestamp")
            return JSONResponse({"error": "invalid request"}, 401)
        raw = await request.body()  # at most max_body (web/limits.py)
        try:
            req = AsyncBoltRequest(
                body=raw.decode("utf-8"), query=request.url.query, headers=dict(request.headers)
            )
            if not isinstance(req.body, dict):
                raise ValueError("body is not a JSON object")
        except (ValueError, TypeError, AttributeError):
            # Bolt cannot read it. Signed by Slack, it is kept (quarantine);
            # otherwise refused like any forgery.
            assert self.signing_secret is not None
            if not signature_valid(
                self.signing_secret.reveal(),
                raw,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
            ):
                return JSONResponse({"error": "invalid request"}, 401)
            return to_starlette_response(await self._store(raw, None, {}))
        resp = await self.app.async_dispatch(req)
        if resp.status == 401:
            self.log.info("webhook_refused", reason="bad signature or stale timestamp")
        return to_starlette_response(resp)

    async def _accept_request(self, req: AsyncBoltRequest) -> BoltResponse:
        raw = req.raw_body.encode() if req.raw_body else json.dumps(req.body).encode()
        retries = req.headers.get("x-slack-retry-num") or []
        meta = {"retry_num": retries[0]} if retries else {}
        return await self._store(raw, req.body, meta, socket=req.mode == "socket_mode")

    async def _store(
        self, raw: bytes, payload: Any, meta: dict[str, Any], *, socket: bool = False
    ) -> BoltResponse:
        ext = event_external_id(payload) or body_external_id(raw)
        if isinstance(payload, dict):
            if payload.get("type") == "app_rate_limited":
                self.set_health(
                    False, "degraded", "Slack dropped events: the app exceeded its event rate"
                )
            elif not (meta.get("retry_num") and await self._known(ext)):
                meta.update(await self._enrich(payload))
        if self.identity:
            meta["bot"] = self.identity
        envelope = Envelope(self.name, ext, raw, "application/json", meta=meta)
        try:
            new = await self.ctx.intake.accept(envelope)
        except Exception as exc:
            # Not stored: a non-2xx (or no Socket Mode ack) makes Slack retry.
            self.log.warning("event_not_stored", error=str(exc))
            return BoltResponse(status=503, body={"error": "not stored, retry later"})
        self.touch()
        rate_limited = self._health.state == "degraded" and "event rate" in self._health.detail
        if rate_limited and isinstance(payload, dict) and payload.get("type") == "event_callback":
            self.set_health(True, "running", "events arriving again")
        if socket:
            return BoltResponse(status=200, body="")  # a bare Socket Mode ack
        return BoltResponse(status=200, body={"ok": True, "duplicate": not new})

    async def _known(self, ext: str) -> bool:
        """A Slack retry of something already stored needs no new profile or
        file downloads (intake would dedupe it anyway)."""
        if self.ctx.queries is None:
            return False
        try:
            return ext in await self.ctx.queries.known_external_ids([ext])
        except Exception:
            return False

    async def _enrich(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Profile and files for a message event (the profile for a button
        press), within the time budget."""
        if payload.get("type") == "block_actions":
            out: dict[str, Any] = {}
            user = _str(_dict(payload.get("user")).get("id"))
            if user and self.fetch_profiles:
                await self._profile_into(user, out)
            return out
        if payload.get("type") != "event_callback":
            return {}
        ev = _dict(payload.get("event"))
        if ev.get("type") not in ("message", "app_mention"):
            return {}
        m = _dict(ev.get("message")) if ev.get("subtype") == "message_changed" else ev
        if m.get("bot_id"):
            return {}
        out = {}
        user = _str(m.get("user"))
        jobs: list[Awaitable[Any]] = []
        if user and self.fetch_profiles:
            jobs.append(self._profile_into(user, out))
        files = [f for f in m.get("files") or [] if isinstance(f, dict)]
        if files and self.download_files:
            jobs.append(self._files_into(files, out))
        if jobs:
            await asyncio.gather(*jobs)
        return out

    async def _profile_into(self, user: str, out: dict[str, Any]) -> None:
        cached = self._profiles.get(user)
        if cached and cached[0] > time.monotonic():
            out["profile"] = cached[1]
            return
        assert self.client is not None
        try:
            r = await asyncio.wait_for(self.client.users_info(user=user), self.profile_timeout)
        except SlackApiError as exc:
            out["profile_error"] = f"users.info: {_reason(exc)}"
            return
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            out["profile_error"] = f"users.info: {type(exc).__name__}"
            return
        u = _dict(r.get("user"))
        p = _dict(u.get("profile"))
        profile = {k: p[k] for k in _PROFILE_FIELDS if _str(p.get(k))}
        for k in ("name", "team_id", "tz", "is_bot", "is_restricted", "is_ultra_restricted"):
            if u.get(k) not in (None, "", False):
                profile[k] = u[k]
        if not profile.get("real_name") and _str(u.get("real_name")):
            profile["real_name"] = u["real_name"]
        self._profiles[user] = (time.monotonic() + self.profile_cache_seconds, profile)
        if len(self._profiles) > 10_000:
            self._profiles.pop(next(iter(self._profiles)))
        out["profile"] = profile

    async def _files_into(self, files: Iterable[dict[str, Any]], out: dict[str, Any]) -> None:
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.download_timeout
        for f in files:
            fid = _str(f.get("id"))
            url = _str(f.get("url_private_download")) or _str(f.get("url_private"))
            if not fid or not url:
                continue
            size = f.get("size")
            if isinstance(size, int) and size > self.max_file_bytes:
                got[fid] = {"error": f"{size} bytes is over max_file_bytes"}
                continue
            if urlsplit(url).hostname not in self.file_hosts:
                got[fid] = {"error": "not a Slack file host: the bot token is not sent there"}
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                got[fid] = {"error": "download_timeout reached before this file"}
                continue
            try:
                data = await asyncio.wait_for(self.download(url), left)
            except TimeoutError:
                got[fid] = {"error": "download timed out"}
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                got[fid] = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                got[fid] = {"data": base64.b64encode(data).decode()}
        if got:
            out["files"] = got

    async def download(self, url: str) -> bytes:
        """A private Slack file (``url_private``) with the bot token; raises
        ValueError for other hosts or over ``max_file_bytes``."""
        if urlsplit(url).hostname not in self.file_hosts:
            raise ValueError("not a Slack file host")
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.bot_token.reveal()}"}
        async with self._session.get(url, headers=headers, allow_redirects=False) as r:
            if r.status != 200:
                raise ValueError(f"Slack answered {r.status}")
            data = await r.content.read(self.max_file_bytes + 1)
        if len(data) > self.max_file_bytes:
            raise ValueError("over max_file_bytes")
        return data

    # -- normalize (pure) ----------------------------------------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            payload = json.loads(_interactive_json(envelope.payload))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NormalizeError(f"not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise NormalizeError(f"not a Slack payload: a JSON {type(payload).__name__}")
        kind = payload.get("type")
        if kind == "app_rate_limited":
            return Skip(
                "Slack did not deliver this app's events for the minute starting"
                f" {payload.get('minute_rate_limited')} (more than 30,000 events an hour)"
            )
        if not isinstance(kind, str):
            raise NormalizeError("not a Slack Events API payload: no 'type'")
        if kind == "block_actions":
            return self._button(envelope, payload)
        if kind != "event_callback":
            return Skip(f"payload of type {kind} is not a customer message")
        ev = payload.get("event")
        if not isinstance(ev, dict):
            raise NormalizeError("event_callback without an 'event' object")
        if ev.get("type") not in ("message", "app_mention"):
            return Skip(f"event {ev.get('type')} is not a customer message")
        return self._message(envelope, payload, ev)

    def _message(
        self, envelope: Envelope, payload: dict[str, Any], ev: dict[str, Any]
    ) -> Normalized:
        sub = ev.get("subtype")
        bot = {**_dict(envelope.meta.get("bot")), **self.identity}
        if sub == "message_changed":
            m, kind = _dict(ev.get("message")), MessageKind.EDIT
        elif sub == "message_deleted":
            m, kind = _dict(ev.get("previous_message")), MessageKind.EDIT
        elif sub in _HUMAN_SUBTYPES or sub == "bot_message":
            m, kind = ev, MessageKind.MESSAGE
        else:
            return Skip(f"message subtype {sub} is not a customer message")
        if m.get("bot_id") or m.get("subtype") == "bot_message":
            ours = bot.get("bot_id") and m.get("bot_id") == bot.get("bot_id")
            return Skip("our own bot's message" if ours else "a message from a bot")
        user = _str(m.get("user")) or _str(ev.get("user"))
        if not user:
            raise NormalizeError("message without a 'user'")
        if bot.get("user_id") and user == bot.get("user_id"):
            return Skip("our own bot's message")
        channel = _str(ev.get("channel"))
        if not channel:
            raise NormalizeError("message without a 'channel'")
        our_team = _str(bot.get("team_id")) or _str(payload.get("team_id"))
        user_team = _str(m.get("user_team"))
        if payload.get("is_ext_shared_channel") and user_team and user_team == our_team:
            # Our colleagues in a Slack Connect channel are not customers.
            return Skip("written by a member of our own workspace in a shared channel")
        team = user_team or _str(m.get("team")) or _str(payload.get("team_id"))
        profile = _dict(envelope.meta.get("profile"))
        slack: dict[str, Any] = {"channel": channel, "ts": m.get("ts"), "team": team}
        sender = self._sender(user, team, profile, _dict(m.get("user_profile")))
        extra: list[Identity] = []
        email = _str(profile.get("email"))
        if email and self.link_email and not profile.get("is_bot"):
            # Slack verified the address: later mail from it meets this contact.
            extra.append(normalize_identity("email", email, sender.display_name))
        if envelope.meta.get("profile_error"):
            slack["profile_error"] = envelope.meta["profile_error"]
        if sub == "message_deleted":
            text = "[message deleted]"
            attachments: list[Attachment] = []
            slack["deleted"] = True
            edit_of: str | None = f"{channel}:{ev.get('deleted_ts')}"
        else:
            text = slack_to_text(_str(m.get("text")) or "", bot.get("user_id"))
            attachments = self._attachments(m, _dict(envelope.meta.get("files")), slack)
            if not text and attachments:
                text = "\n".join(f"[file: {a.filename or a.content_type}]" for a in attachments)
            if not text:
                text = "[empty Slack message]"
            edit_of = f"{channel}:{m.get('ts')}" if kind == MessageKind.EDIT else None
        if _str(m.get("text")) and slack_to_text(m["text"]) != m["text"]:
            slack["mrkdwn"] = m["text"]
        sent = _ts_float(ev.get("event_ts") if kind == MessageKind.EDIT else m.get("ts"))
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=text,
            attachments=attachments,
            sent_at=sent or _ts_float(payload.get("event_time")) or envelope.received_at,
            kind=kind,
            edit_of=edit_of,
            thread_key=thread_key_for(channel, ev, m),
            extra_identities=extra,
            meta={"slack": slack},
        )

    def _button(self, envelope: Envelope, payload: dict[str, Any]) -> Normalized:
        """A press on a survey button omnidesk sent: the customer's answer,
        as if they had typed the button's number, in the conversation the
        survey message belongs to."""
        actions = [a for a in payload.get("actions") or () if isinstance(a, dict)]
        value = _str(actions[0].get("value")) if actions else None
        parts = (value or "").split(":")
        if len(parts) != 3 or parts[0] != "survey" or not parts[2].isdigit():
            return Skip("a button press on a message omnidesk did not send")
        user = _dict(payload.get("user"))
        uid = _str(user.get("id"))
        container = _dict(payload.get("container"))
        channel = _str(container.get("channel_id")) or _str(_dict(payload.get("channel")).get("id"))
        if not uid or not channel:
            raise NormalizeError("block_actions without a user or a channel")
        m = _dict(payload.get("message"))
        ts = _str(container.get("message_ts")) or _str(m.get("ts"))
        thread = _str(container.get("thread_ts")) or _str(m.get("thread_ts")) or ts
        team = _str(user.get("team_id")) or _str(_dict(payload.get("team")).get("id"))
        profile = _dict(envelope.meta.get("profile"))
        sender = self._sender(uid, team, profile, {"name": user.get("name")})
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=parts[2],
            sent_at=_ts_float(actions[0].get("action_ts")) or envelope.received_at,
            thread_key=thread_key_for(channel, {}, {"thread_ts": thread}),
            meta={"slack": {"channel": channel, "button": value, "message_ts": ts}},
        )

    @staticmethod
    def _sender(
        user: str, team: str | None, profile: Mapping[str, Any], inline: Mapping[str, Any]
    ) -> Identity:
        name = (
            _str(profile.get("real_name"))
            or _str(profile.get("display_name"))
            or _str(inline.get("real_name"))
            or _str(inline.get("display_name"))
            or _str(profile.get("name"))
            or _str(inline.get("name"))
        )
        data = {
            k: profile[k] for k in ("display_name", "email", "title", "tz", "name") if k in profile
        }
        if profile.get("is_restricted") or profile.get("is_ultra_restricted"):
            data["guest"] = True
        if team:
            data["team"] = team
        address = f"{team}:{user}" if team else user
        return normalize_identity("slack", address, name, data)

    @staticmethod
    def _attachments(
        m: Mapping[str, Any], got: Mapping[str, Any], slack: dict[str, Any]
    ) -> list[Attachment]:
        out: list[Attachment] = []
        problems: dict[str, str] = {}
        for f in m.get("files") or []:
            if not isinstance(f, dict) or not _str(f.get("id")):
                continue
            entry = _dict(got.get(f["id"]))
            data = None
            if isinstance(entry.get("data"), str):
                try:
                    data = base64.b64decode(entry["data"], validate=True)
                except ValueError:
                    problems[f["id"]] = "stored file data is not valid base64"
            else:
                problems[f["id"]] = str(entry.get("error") or "not downloaded")
            ref = _str(f.get("url_private_download")) or _str(f.get("url_private")) or f["id"]
            out.append(
                Attachment(
                    filename=_str(f.get("name")) or _str(f.get("title")),
                    content_type=_str(f.get("mimetype")) or "application/octet-stream",
                    data=data,
                    ref=ref,
                )
            )
        if problems:
            slack["file_errors"] = problems
        return out

    # -- send ------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        if self.client is None:
            raise SendError("the Slack channel is not started", retry=True)
        channel, thread_ts = _parse_thread_key(message.thread_key, message.recipient.address)
        files = [a for a in message.attachments if a.data is not None]
        text = escape_text(message.text)
        if not text.strip() and not files:
            raise SendError("nothing to send: the reply has no text", retry=False)
        try:
            if text.strip():
                r = await self.client.chat_postMessage(
                    channel=channel,
                    text=text,  # the notification's text, and what shows without blocks
                    blocks=survey_blocks(text, message.meta.get("survey")),
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                )
                provider = f"{r.get('channel') or channel}:{r.get('ts')}"
            else:
                provider = None
            if files:
                await self.client.files_upload_v2(
                    file_uploads=[
                        {"content": a.data, "filename": a.filename or "file", "title": a.filename}
                        for a in files
                    ],
                    channel=channel,
                    thread_ts=thread_ts,
                )
        except SlackApiError as exc:
            raise _send_error(exc) from None
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SendError(f"Slack unreachable: {type(exc).__name__}: {exc}", retry=True) from None
        return SendResult(provider_id=provider)


def _interactive_json(body: bytes) -> bytes:
    """An interactivity request is a form whose ``payload`` field holds the
    JSON; an Events API request is the JSON itself."""
    if body.startswith(b"payload="):
        fields = parse_qs(body.decode("utf-8", "strict"), max_num_fields=8)
        return fields.get("payload", [""])[0].encode()
    return body


def survey_blocks(text: str, survey: Any) -> list[dict[str, Any]] | None:
    """A survey's question with its choices as buttons (Block Kit: a section
    and an ``actions`` block; a press comes back as ``block_actions`` with
    the button's value ``survey:{id}:{choice}``). None for any other message."""
    if not isinstance(survey, dict) or not isinstance(survey.get("choices"), list):
        return None
    sid = survey.get("id")
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": survey_button_label(c)[:75], "emoji": True},
            "action_id": f"survey-{sid}-{c['value']}",
            "value": f"survey:{sid}:{c['value']}",
        }
        for c in survey["choices"]
        if isinstance(c, dict) and "value" in c
    ][:25]  # an actions block holds at most 25 elements
    if not buttons:
        return None
    if survey.get("stage") != "loyalty":
        buttons.reverse()  # best first, as the Telegram keyboard shows them
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": f"survey-{sid}-{survey.get('stage')}", "elements": buttons},
    ]


def _reason(exc: BaseException) -> str:
    """Slack's error code when it gave one, else the exception's type."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        error = _dict(exc.response.data).get("error")
        if error:
            return str(error)
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def _send_error(exc: SlackApiError) -> SendError:
    resp = exc.response
    status = getattr(resp, "status_code", None) or 0
    data = _dict(getattr(resp, "data", None))
    error = data.get("error") or f"HTTP {status}"
    if status == 429 or error == "ratelimited":
        raw = (getattr(resp, "headers", None) or {}).get("Retry-After")
        try:
            after = float(raw) if raw is not None else None
        except ValueError:
            after = None
        return SendError(f"Slack rate limit ({error})", retry=True, retry_after=after)
    if status >= 500 or error in _TRANSIENT_ERRORS:
        return SendError(f"Slack error: {error}", retry=True)
    return SendError(f"Slack refused: {error}", retry=False)


def _parse_thread_key(thread_key: str | None, fallback: str) -> tuple[str, str | None]:
    """(channel, thread_ts) a reply goes to. Without a thread key the reply
    goes to the user (chat.postMessage opens the DM for a user id)."""
    if thread_key:
        channel, _, ts = thread_key.partition(":")
        return channel, ts or None
    return fallback.rpartition(":")[2], None
