"""A local stand-in for the Telegram Bot API (core.telegram.org/bots/api).

It speaks the documented wire format so the real python-telegram-bot can talk
to it: ``{base}/bot{token}/{method}`` with parameters in the query string, a
form (urlencoded or multipart, values JSON-encoded when not strings) or a JSON
body; answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code",
"description", "parameters"?}``; files at ``{base}/file/bot{token}/{path}``.

Methods: getMe, getUpdates (long poll with offset/limit/timeout; an update is
confirmed, and forgotten, once getUpdates is called with a higher offset; 409
while a webhook is set or when a newer poll takes over), setWebhook,
deleteWebhook, getWebhookInfo, sendMessage, sendPhoto, sendDocument, getFile,
answerCallbackQuery (a query it handed out, answered at most once).
Method names are case-insensitive, as in Telegram.

Tests script it: ``push_message()`` queues an update (and delivers it to the
webhook when one is set, with the secret token header), ``fail(method, ...)``
makes the next calls answer an error (429 with ``retry_after``, 5xx, 400,
403), ``block(chat_id)`` makes a user block the bot. Every call is recorded
in ``calls``. ``stop()``/``start()`` restart it on the same port with its
state kept, like Telegram's servers across a network outage.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

BOT_ID = 7000001


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


@dataclass
class Failure:
    status: int
    description: str
    parameters: dict[str, Any] | None = None


class TelegramStandIn:
    def __init__(self, token: str = "7000001:AAH-test-token_for-omnidesk") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []  # unconfirmed, oldest first
        self._ids = itertools.count(500_000)
        self._message_ids = itertools.count(1)
        self.webhook: dict[str, Any] | None = None
        self.webhook_deliveries: list[tuple[dict[str, Any], int]] = []
        self.failures: dict[str, list[Failure]] = {}
        self.blocked: set[int] = set()
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, data)
        self.too_big: set[str] = set()
        self.callback_queries: dict[str, bool] = {}  # id -> answered
        self._poll_generation = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------
    def fail(
        self,
        method: str,
        status: int,
        description: str,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
    ) -> None:
        params: dict[str, Any] = {}
        if retry_after is not None:
            params["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            params["migrate_to_chat_id"] = migrate_to_chat_id
        self.failures.setdefault(method.lower(), []).extend(
            [Failure(status, description, params or None)] * times
        )

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def add_file(self, data: bytes, *, path: str = "photos/file_1.jpg") -> str:
        file_id = f"FILE-{len(self.files) + 1}-{path.replace('/', '_')}"
        self.files[file_id] = (path, data)
        return file_id

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method.lower()]

    @staticmethod
    def user(uid: int = 1001, first: str = "Ann", **extra: Any) -> dict[str, Any]:
        return {"id": uid, "is_bot": False, "first_name": first, **extra}

    def message(
        self,
        text: str | None = "hello",
        *,
        user: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        message_id: int | None = None,
        **content: Any,
    ) -> dict[str, Any]:
        user = user or self.user()
        chat = chat or {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        m: dict[str, Any] = {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        if text is not None:
            m["text"] = text
        return m

    async def push(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Queue an update of ``kind`` (message, edited_message, ...), or
        deliver it to the webhook when one is set (returns the update)."""
        update = {"update_id": next(self._ids), kind: obj}
        if kind == "callback_query":
            self.callback_queries[str(obj["id"])] = False  # not answered yet
        if self.webhook is not None:
            status = await self.deliver(update)
            self.webhook_deliveries.append((update, status))
            return update
        async with self._arrived:
            self.updates.append(update)
            self._arrived.notify_all()
        return update

    async def push_message(self, text: str | None = "hello", **kw: Any) -> dict[str, Any]:
        return await self.push("message", self.message(text, **kw))

    async def deliver(self, update: dict[str, Any] | bytes, *, secret: str | None = None) -> int:
        """POST an update to the webhook as Telegram does; returns the status."""
        assert self.webhook is not None, "no webhook set"
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        headers = {"Content-Type": "application/json"}
        token = secret if secret is not None else self.webhook.get("secret_token")
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(self.webhook["url"], content=body, headers=headers)
        return r.status_code

    # -- HTTP --------------------------------------------------------------------
    @staticmethod
    def _error(status: int, description: str, parameters: Any = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                params.update(await request.json())
            else:
                form = await request.post()
                for k, v in form.items():
                    if isinstance(v, web.FileField):
                        files[k] = v.file.read()
                        params[k] = f"<file {v.filename}>"
                    else:
                        params[k] = v
        for k, v in list(params.items()):
            # Form values are strings; objects and lists arrive JSON-encoded.
            if (isinstance(v, str) and v[:1] in "[{") or k in ("offset", "limit", "timeout"):
                try:
                    params[k] = json.loads(v)
                except (TypeError, ValueError):
                    pass
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"].lower()
        params, files = await self._params(request)
        self.calls.append(Call(method, params, files))
        queued = self.failures.get(method)
        if queued:
            f = queued.pop(0)
            return self._error(f.status, f.description, f.parameters)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(404, "Not Found")
        return await handler(params, files)  # type: ignore[no-any-return]

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for p, data in self.files.values():
            if p == path:
                return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404)

    # -- methods -------------------------------------------------------------------
    async def _m_getme(self, params: dict[str, Any], files: Any) -> web.Response:
        return self._ok(
            {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Omnidesk Test",
                "username": "omnidesk_test_bot",
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    async def _m_getupdates(self, params: dict[str, Any], files: Any) -> web.Response:
        if self.webhook is not None:
            return self._error(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if isinstance(offset, int):
            if offset < 0:
                self.updates = self.updates[offset:]
            else:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._poll_generation += 1
        me = self._poll_generation
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while not self.updates and me == self._poll_generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=left)
                except TimeoutError:
                    break
        if me != self._poll_generation:
            return self._error(
                409,
                "Conflict: terminated by other getUpdates request;"
                " make sure that only one bot instance is running",
            )
        return self._ok(self.updates[:limit])

    async def _m_answercallbackquery(self, params: dict[str, Any], files: Any) -> web.Response:
        qid = str(params.get("callback_query_id") or "")
        if self.callback_queries.get(qid, True):  # unknown, or answered before
            return self._error(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.callback_queries[qid] = True
        return self._ok(True)

    async def _m_setwebhook(self, params: dict[str, Any], files: Any) -> web.Response:
        url = params.get("url") or ""
        if not url:
            self.webhook = None
            return self._ok(True)
        self.webhook = {
            "url": url,
            "secret_token": params.get("secret_token"),
            "allowed_updates": params.get("allowed_updates"),
        }
        self._poll_generation += 1  # a waiting poll ends with 409
        async with self._arrived:
            self._arrived.notify_all()
        return self._ok(True)

    async def _m_deletewebhook(self, params: dict[str, Any], files: Any) -> web.Response:
        self.webhook = None
        if str(params.get("drop_pending_updates")).lower() == "true":
            self.updates.clear()
        return self._ok(True)

    async def _m_getwebhookinfo(self, params: dict[str, Any], files: Any) -> web.Response:
        return self._ok(
            {
                "url": (self.webhook or {}).get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self.updates),
            }
        )

    def _chat_or_error(self, params: dict[str, Any]) -> tuple[int, web.Response | None]:
        raw = params.get("chat_id")
        try:
            chat_id = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0, self._error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return chat_id, self._error(403, "Forbidden: bot was blocked by the user")
        return chat_id, None

    def _sent(self, chat_id: int, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Omnidesk Test"},
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "date": int(time.time()),
            **content,
        }
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            msg["reply_to_message"] = {
                "message_id": reply.get("message_id"),
                "chat": msg["chat"],
                "date": msg["date"],
            }
        if params.get("message_thread_id"):
            msg["message_thread_id"] = int(params["message_thread_id"])
        return msg

    async def _m_sendmessage(self, params: dict[str, Any], files: Any) -> web.Response:
        chat_id, err = self._chat_or_error(params)
        if err is not None:
            return err
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._error(400, "Bad Request: message is too long")
        return self._ok(self._sent(chat_id, params, text=text))

    async def _m_sendphoto(self, params: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        chat_id, err = self._chat_or_error(params)
        if err is not None:
            return err
        if "photo" not in files:
            return self._error(400, "Bad Request: there is no photo in the request")
        size = len(files["photo"])
        photo = [
            {
                "file_id": "SENT-PHOTO",
                "file_unique_id": "sp",
                "width": 1,
                "height": 1,
                "file_size": size,
            }
        ]
        return self._ok(self._sent(chat_id, params, photo=photo))

    async def _m_senddocument(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> web.Response:
        chat_id, err = self._chat_or_error(params)
        if err is not None:
            return err
        if "document" not in files:
            return self._error(400, "Bad Request: there is no document in the request")
        doc = {"file_id": "SENT-DOC", "file_unique_id": "sd", "file_size": len(files["document"])}
        return self._ok(self._sent(chat_id, params, document=doc))

    async def _m_getfile(self, params: dict[str, Any], files: Any) -> web.Response:
        file_id = params.get("file_id")
        if file_id in self.too_big:
            return self._error(400, "Bad Request: file is too big")
        if not isinstance(file_id, str) or file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return self._ok(
            {
                "file_id": file_id,
                "file_unique_id": f"u{abs(hash(file_id)) % 10**8}",
                "file_size": len(data),
                "file_path": path,
            }
        )
