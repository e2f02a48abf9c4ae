"""A local stand-in for the Slack Web API and Socket Mode.

Speaks the documented wire format so the real slack_sdk/slack-bolt can talk
to it: ``{base}/api/{method}`` with the token in ``Authorization: Bearer`` (or
a ``token`` parameter), parameters in the query string, a form or a JSON
body; answers ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``
(HTTP 200, as Slack does), 429 with ``Retry-After`` when rate limited.

Methods: auth.test, users.info, conversations.info, chat.postMessage,
apps.connections.open (Socket Mode), files.getUploadURLExternal + the upload
URL + files.completeUploadExternal (slack_sdk's files_upload_v2), and private
file downloads at ``/files-pri/...`` (bot token required).

Socket Mode: ``apps.connections.open`` hands out ``ws://.../link``; the
stand-in greets with ``hello``, sends ``events_api`` envelopes with
``push_socket()`` and records the client's acks.

Tests script it: ``add_user()``, ``add_file()``, ``fail(method, ...)`` (429
with Retry-After, 5xx, ``ok: false`` errors), and read ``calls``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-1111-2222-omnidesktest"
APP_TOKEN = "xapp-1-A0APP-3333-omnidesktest"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM_ID = "T0ACME"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.time)


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None = None


def sign(body: bytes, *, secret: str = SIGNING_SECRET, ts: int | None = None) -> dict[str, str]:
    """The headers Slack sends with an Events API request."""
    t = str(int(time.time()) if ts is None else ts)
    sig = SignatureVerifier(secret).generate_signature(timestamp=t, body=body.decode())
    return {
        "X-Slack-Request-Timestamp": t,
        "X-Slack-Signature": sig,
        "Content-Type": "application/json",
    }


def event_callback(
    event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": BOT_USER, "is_bot": True}],
        **extra,
    }


_ts = itertools.count(1)


def new_ts() -> str:
    return f"{int(time.time())}.{next(_ts):06d}"


def message_event(
    text: str,
    *,
    user: str = "U0ANN",
    channel: str = "D0ANN",
    channel_type: str = "im",
    ts: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ts = ts or new_ts()
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
        **extra,
    }


def invalid_blocks(blocks: Any) -> str | None:
    """What Slack's Block Kit refuses in the blocks omnidesk sends (sections
    and actions with buttons), by its documented limits; None when valid."""
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return "blocks must be a list of 1 to 50 blocks"
    for i, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "section":
            text = b.get("text") or {}
            if (
                text.get("type") not in ("mrkdwn", "plain_text")
                or not 0 < len(text.get("text", "")) <= 3000
            ):
                return f"[{i}] section text must be 1 to 3000 characters"
        elif kind == "actions":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 25:
                return f"[{i}] actions must hold 1 to 25 elements"
            ids = [e.get("action_id") for e in elements]
            if len(set(ids)) != len(ids):
                return f"[{i}] action_id must be unique in a block"
            for e in elements:
                label = (e.get("text") or {}).get("text", "")
                if e.get("type") != "button" or not 0 < len(label) <= 75:
                    return f"[{i}] a button needs plain_text of 1 to 75 characters"
                if len(e.get("value", "")) > 2000 or len(e.get("action_id", "")) > 255:
                    return f"[{i}] button value or action_id too long"
        else:
            return f"[{i}] unsupported block type {kind!r}"
    return None


def block_actions(
    message: dict[str, Any],
    value: str,
    *,
    user: str = "U0ANN",
    channel: str = "D0ANN",
    team_id: str = TEAM_ID,
) -> bytes:
    """The interactivity request Slack POSTs when a user presses a button of
    ``message``: a form whose ``payload`` field is the JSON."""
    action_id = next(
        (
            e["action_id"]
            for b in message.get("blocks") or ()
            if b.get("type") == "actions"
            for e in b["elements"]
            if e.get("value") == value
        ),
        "unknown",
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "ann", "name": "ann", "team_id": team_id},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
            **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
        },
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.abc",
        "team": {"id": team_id, "domain": "example"},
        "channel": {"id": channel, "name": "directmessage"},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/T0/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "survey",
                "text": {"type": "plain_text", "text": value},
                "value": value,
                "type": "button",
                "action_ts": new_ts(),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


class SlackStandIn:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.failures: dict[str, list[Failure]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}  # path -> bytes
        self.uploads: dict[str, bytes] = {}  # file id -> uploaded bytes
        self.posted: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self._ack_event = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self.connections = 0  # WebSocket connections accepted so far
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    async def start(self) -> None:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files-pri/{path:.+}", self._file)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------
    def add_user(
        self,
        uid: str = "U0ANN",
        real_name: str = "Ann Customer",
        *,
        team_id: str = TEAM_ID,
        email: str | None = "ann@customer.example",
        title: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        profile = {"real_name": real_name, "display_name": real_name.split()[0]}
        if email:
            profile["email"] = email
        if title:
            profile["title"] = title
        user = {
            "id": uid,
            "team_id": team_id,
            "name": real_name.lower().replace(" ", "."),
            "real_name": real_name,
            "tz": "Europe/Berlin",
            "is_bot": False,
            "profile": profile,
            **extra,
        }
        self.users[uid] = user
        return user

    def add_file(self, data: bytes, name: str = "screenshot.png", **meta: Any) -> dict[str, Any]:
        fid = f"F{len(self.files) + 1:08d}"
        path = f"{TEAM_ID}-{fid}/{name}"
        self.files[path] = data
        return {
            "id": fid,
            "name": name,
            "title": name,
            "mimetype": meta.pop("mimetype", "image/png"),
            "size": len(data),
            "url_private": f"{self.url}/files-pri/{path}",
            "url_private_download": f"{self.url}/files-pri/{path}?download=1",
            **meta,
        }

    def fail(
        self,
        method: str,
        status: int = 200,
        error: str = "internal_error",
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        self.failures.setdefault(method, []).extend([Failure(status, error, retry_after)] * times)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def push_socket(self, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Send an ``events_api`` envelope to the connected Socket Mode client."""
        await asyncio.wait_for(self._connected.wait(), 10)
        envelope_id = str(uuid.uuid4())
        msg = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "payload": payload,
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        await self._sockets[-1].send_str(json.dumps(msg))
        return envelope_id

    async def refresh(self) -> None:
        """Ask the client to move to a new connection, as Slack does before it
        recycles a socket (``disconnect`` with ``refresh_requested``)."""
        await self._sockets[-1].send_str(
            json.dumps({"type": "disconnect", "reason": "refresh_requested"})
        )

    async def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while envelope_id not in self.acks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no ack for {envelope_id}")
            self._ack_event.clear()
            try:
                await asyncio.wait_for(self._ack_event.wait(), left)
            except TimeoutError:
                pass
        return self.acks[envelope_id]

    # -- HTTP ------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update({k: v for k, v in (await request.post()).items()})
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else params.pop("token", None)
        self.calls.append(Call(method, params, token))
        queued = self.failures.get(method)
        if queued:
            f = queued.pop(0)
            headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
            if f.status >= 500:
                return web.Response(
                    status=f.status, text="<html>upstream error</html>", content_type="text/html"
                )
            return web.json_response(
                {"ok": False, "error": f.error}, status=f.status, headers=headers
            )
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return await handler(params)  # type: ignore[no-any-return]

    async def _file(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            # Slack answers an HTML login page, not the file.
            return web.Response(status=302, headers={"Location": "https://slack.com/signin"})
        data = self.files.get(request.match_info["path"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        return web.Response(text=f"OK - {len(self.uploads[request.match_info['file_id']])}")

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections += 1
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "standin", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0APP"},
                }
            )
        )
        self._connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "envelope_id" in data:
                        self.acks[data["envelope_id"]] = data
                        self._ack_event.set()
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._connected.clear()
        return ws

    # -- methods ---------------------------------------------------------------
    async def _m_auth_test(self, params: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "omnidesk",
                "team_id": TEAM_ID,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        )

    async def _m_users_info(self, params: dict[str, Any]) -> web.Response:
        user = self.users.get(params.get("user", ""))
        if user is None:
            return web.json_response({"ok": False, "error": "user_not_found"})
        return web.json_response({"ok": True, "user": user})

    async def _m_conversations_info(self, params: dict[str, Any]) -> web.Response:
        ch = params.get("channel", "")
        return web.json_response(
            {"ok": True, "channel": {"id": ch, "is_im": ch.startswith("D"), "is_ext_shared": False}}
        )

    async def _m_chat_postMessage(self, params: dict[str, Any]) -> web.Response:
        channel, text = params.get("channel"), params.get("text")
        if not channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not text:
            return web.json_response({"ok": False, "error": "no_text"})
        blocks = params.get("blocks")
        if isinstance(blocks, str):  # a form value arrives JSON-encoded
            blocks = json.loads(blocks)
        if blocks is not None and (problem := invalid_blocks(blocks)):
            return web.json_response({"ok": False, "error": "invalid_blocks", "errors": [problem]})
        ts = new_ts()
        message = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": text, "ts": ts}
        if blocks is not None:
            message["blocks"] = blocks
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        self.posted.append({"channel": channel, **message})
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def _m_apps_connections_open(self, params: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"})

    async def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> web.Response:
        fid = f"FUP{len(self.uploads) + 1:06d}"
        return web.json_response(
            {"ok": True, "upload_url": f"{self.url}/upload/v1/{fid}", "file_id": fid}
        )

    async def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> web.Response:
        files = params.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        missing = [f["id"] for f in files or [] if f["id"] not in self.uploads]
        if missing:
            return web.json_response({"ok": False, "error": "file_not_found"})
        return web.json_response(
            {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        )
