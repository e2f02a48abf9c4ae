"""A local stand-in for WeChat's APIs, speaking their documented wire format
(JSON answers with ``errcode``/``errmsg``), for the Official Account and the
WeChat customer service (WeCom kf) adapters.

Official Account (api.weixin.qq.com):

* ``GET /cgi-bin/token?grant_type=client_credential&appid&secret`` -
  ``{"access_token", "expires_in"}``, or 40013 / 40125 for a wrong id / secret;
* ``POST /cgi-bin/message/custom/send?access_token=`` - a customer-service
  message (``touser``, ``msgtype`` text with ``text.content``, or image /
  voice / video with a ``media_id`` this stand-in gave); 45015 when the
  customer's 48-hour window is closed (``window_closed``);
* ``POST /cgi-bin/media/upload?access_token=&type=`` (both APIs) - a
  temporary medium (multipart/form-data, field ``media`` with a file name),
  answering ``{"type", "media_id", "created_at"}``; kept in ``uploads``.

WeCom (qyapi.weixin.qq.com):

* ``GET /cgi-bin/gettoken?corpid&corpsecret``;
* ``POST /cgi-bin/kf/sync_msg`` - the messages queued by ``kf_push`` for an
  ``open_kfid``, from ``cursor`` (an opaque string here: ``c<index>``), at most
  ``limit``, with ``next_cursor`` and ``has_more``;
* ``POST /cgi-bin/kf/send_msg`` - ``{"msgid"}`` (text, or image / voice /
  video / file with an uploaded ``media_id``);
* ``POST /cgi-bin/kf/service_state/get`` and ``/trans`` - each session's
  state (0 new until changed), with WeCom's allowed transitions.

Every API call checks ``access_token``: an unknown one gets 40014, an
expired one (``expire_tokens()``) 42001. Tests script failures with
``fail_next(errcode, errmsg)`` (for sends) and read ``calls``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .server import read_form

_TRANSITIONS = {0: {1, 2, 3, 4}, 1: {1, 2, 3, 4}, 2: {2, 3, 4}, 3: {3, 4}, 4: set()}


@dataclass
class Call:
    method: str
    path: str  # e.g. "message/custom/send"
    query: dict[str, str]
    body: Any
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Upload:
    media_id: str
    type: str
    filename: str
    content_type: str
    data: bytes


_UPLOAD_TYPES = frozenset({"image", "voice", "video", "thumb", "file"})


class WeChatApiStandIn:
    def __init__(
        self, *, appid: str = "", secret: str = "", corp_id: str = "", corp_secret: str = ""
    ) -> None:
        self.appid, self.secret = appid, secret
        self.corp_id, self.corp_secret = corp_id, corp_secret
        self.calls: list[Call] = []
        self.valid: set[str] = set()
        self.expired: set[str] = set()
        self.tokens_issued = 0
        self.script: deque[tuple[int, str]] = deque()
        self.nth_failures: dict[tuple[str, int], tuple[int, str]] = {}
        self.window_closed: set[str] = set()
        self.kf_messages: dict[str, list[dict[str, Any]]] = {}
        self.uploads: dict[str, Upload] = {}
        self.service_state: dict[tuple[str, str], tuple[int, str]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- control -------------------------------------------------------------------
    def fail_next(self, errcode: int, errmsg: str = "scripted failure", times: int = 1) -> None:
        for _ in range(times):
            self.script.append((errcode, errmsg))

    def fail_nth(self, path: str, n: int, errcode: int, errmsg: str = "scripted failure") -> None:
        """The ``n``-th call (from 0) to ``path`` fails with this error."""
        self.nth_failures[(path, n)] = (errcode, errmsg)

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001 (expired)."""
        self.expired |= self.valid
        self.valid.clear()

    def kf_push(self, open_kfid: str, *msgs: dict[str, Any]) -> None:
        self.kf_messages.setdefault(open_kfid, []).extend(msgs)

    def of(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def wait_calls(self, path: str, n: int, timeout: float = 10.0) -> list[Call]:
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(path)) >= n)

        await asyncio.wait_for(enough(), timeout)
        return self.of(path)

    # -- server --------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["tail"]
        body: Any = None
        if request.content_type == "multipart/form-data":
            body = await read_form(request)
        else:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
        call = Call(request.method, path, dict(request.query), body)
        failure = self.nth_failures.pop((path, len(self.of(path))), None)
        call.answer = self._err(*failure) if failure else self._answer(call)
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(call.answer)

    @staticmethod
    def _err(code: int, msg: str) -> dict[str, Any]:
        return {"errcode": code, "errmsg": f"{msg} rid: standin-{code}"}

    def _issue(self) -> dict[str, Any]:
        self.tokens_issued += 1
        tok = f"tok-{self.tokens_issued}-{next(self._ids)}"
        self.valid.add(tok)
        return {"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": 7200}

    def _answer(self, call: Call) -> dict[str, Any]:
        q = call.query
        if call.path == "token":
            if q.get("appid") != self.appid:
                return self._err(40013, "invalid appid")
            if q.get("secret") != self.secret:
                return self._err(40125, "invalid appsecret")
            return self._issue()
        if call.path == "gettoken":
            if q.get("corpid") != self.corp_id:
                return self._err(40013, "invalid corpid")
            if q.get("corpsecret") != self.corp_secret:
                return self._err(40001, "invalid secret")
            return self._issue()
        tok = q.get("access_token", "")
        if tok in self.expired:
            return self._err(42001, "access_token expired")
        if tok not in self.valid:
            return self._err(40014, "invalid access_token")
        body = call.body if isinstance(call.body, dict) else {}
        if call.path == "media/upload":
            return self._upload(q.get("type", ""), body.get("media"))
        if call.path == "message/custom/send":
            return self._custom_send(body)
        if call.path == "kf/sync_msg":
            return self._sync(body)
        if call.path == "kf/send_msg":
            if self.script:
                return self._err(*self.script.popleft())
            if not body.get("touser") or not body.get("open_kfid"):
                return self._err(40003, "invalid touser or open_kfid")
            state, _ = self.service_state.get((body["open_kfid"], body["touser"]), (0, ""))
            if state not in (0, 1):
                return self._err(95018, "send msg not allowed in this service state")
            problem = self._content(body, ("text", "image", "voice", "video", "file"))
            if problem:
                return problem
            return {"errcode": 0, "errmsg": "ok", "msgid": body.get("msgid") or "standin"}
        if call.path == "kf/service_state/get":
            key = (body.get("open_kfid", ""), body.get("external_userid", ""))
            state, servicer = self.service_state.get(key, (0, ""))
            answer = {"errcode": 0, "errmsg": "ok", "service_state": state}
            return {**answer, "servicer_userid": servicer}
        if call.path == "kf/service_state/trans":
            key = (body.get("open_kfid", ""), body.get("external_userid", ""))
            state, _ = self.service_state.get(key, (0, ""))
            new = body.get("service_state")
            if new not in _TRANSITIONS[state]:
                return self._err(95016, f"service state {state} cannot change to {new}")
            self.service_state[key] = (new, body.get("servicer_userid", ""))
            return {"errcode": 0, "errmsg": "ok"}
        return self._err(40066, f"invalid url /cgi-bin/{call.path}")

    def _custom_send(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.script:
            return self._err(*self.script.popleft())
        if not body.get("touser"):
            return self._err(40003, "invalid openid")
        problem = self._content(body, ("text", "image", "voice", "video"))
        if problem:
            return problem
        if body["msgtype"] == "text" and len(body["text"]["content"].encode()) > 2048:
            return self._err(45002, "content size out of limit")
        if body["touser"] in self.window_closed:
            return self._err(45015, "response out of time limit or subscription is canceled")
        return {"errcode": 0, "errmsg": "ok"}

    def _content(self, body: dict[str, Any], types: tuple[str, ...]) -> dict[str, Any] | None:
        """None when the message's content is valid, else WeChat's error."""
        mtype = body.get("msgtype")
        if mtype not in types:
            return self._err(40008, "invalid message type")
        content = body.get(mtype)
        if not isinstance(content, dict):
            return self._err(40008, "invalid message type")
        if mtype == "text":
            return None if content.get("content") else self._err(44004, "empty content")
        upload = self.uploads.get(str(content.get("media_id")))
        if upload is None:
            return self._err(40007, "invalid media_id")
        if upload.type != mtype:
            return self._err(40004, f"media_id is a {upload.type}, not a {mtype}")
        return None

    def _upload(self, mtype: str, media: Any) -> dict[str, Any]:
        if mtype not in _UPLOAD_TYPES:
            return self._err(40004, "invalid media type")
        if not isinstance(media, tuple) or not media[0]:
            return self._err(41005, "media data missing")
        name, ctype, data = media
        if len(data) <= 5:
            return self._err(40006, "invalid meida size")
        media_id = f"standin-media-{next(self._ids)}"
        self.uploads[media_id] = Upload(media_id, mtype, name, ctype, data)
        return {"errcode": 0, "type": mtype, "media_id": media_id, "created_at": 1_700_000_000}

    def _sync(self, body: dict[str, Any]) -> dict[str, Any]:
        kfid = body.get("open_kfid", "")
        queue = self.kf_messages.get(kfid, [])
        cursor = body.get("cursor") or "c0"
        if not cursor.startswith("c") or not cursor[1:].isdigit():
            return self._err(95007, "invalid cursor")
        start = int(cursor[1:])
        limit = int(body.get("limit") or 1000)
        part = queue[start : start + limit]
        end = start + len(part)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "next_cursor": f"c{end}",
            "has_more": 1 if end < len(queue) else 0,
            "msg_list": part,
        }
