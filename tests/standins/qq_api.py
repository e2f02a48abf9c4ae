"""A local stand-in for the QQ bot open platform's OpenAPI, speaking its
documented wire format, for the QQ channel.

Endpoints:

* ``POST /app/getAppAccessToken`` - ``{"appId", "clientSecret"}`` answered
  with ``{"access_token", "expires_in"}`` (seconds, as a string, like the
  platform); a wrong secret gets ``{"code": 100016, "message": ...}``.
* ``POST /v2/users/{openid}/messages`` - a passive C2C reply: ``Authorization:
  QQBot {token}`` and ``X-Union-Appid``; ``msg_id`` required (active messages
  were withdrawn), refused once the message is older than 60 minutes
  (``expire``) or answered 5 times; the same ``msg_id`` + ``msg_seq`` twice is
  refused as a duplicate (40054005). Answers ``{"id", "timestamp"}``.

The refusal codes for an expired or exhausted ``msg_id`` are the stand-in's
own (the platform documents the rule, not a code); tests script other
failures with :meth:`fail_next` and read every request from ``calls``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.standins.server import StandInServer


@dataclass
class QqCall:
    method: str
    path: str
    body: Any
    authorization: str
    status: int = 0
    code: int = 0


class QqApiStandIn(StandInServer):
    def __init__(self, app_id: str, secret: str) -> None:
        super().__init__()
        self.app_id = app_id
        self.secret = secret
        self.calls: list[QqCall] = []
        self.script: list[tuple[int, int, str]] = []
        self.tokens: list[str] = []
        self.expired: set[str] = set()
        self.sent: dict[tuple[str, int], str] = {}
        self.ttl = 7200
        self._ids = itertools.count(1)

    def fail_next(self, status: int, code: int, message: str, times: int = 1) -> None:
        self.script.extend((status, code, message) for _ in range(times))

    def revoke_tokens(self) -> None:
        """The platform forgets every token it gave (as after expiry)."""
        self.tokens = []

    def sends(self) -> list[QqCall]:
        return [c for c in self.calls if c.path.endswith("/messages")]

    def delivered(self) -> list[QqCall]:
        return [c for c in self.sends() if c.status == 200]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = QqCall(request.method, request.path, body, request.headers.get("Authorization", ""))
        resp = self._answer(request, call)
        call.status = resp.status
        self.calls.append(call)
        await self._recorded()
        return resp

    def _error(self, status: int, code: int, message: str) -> web.Response:
        call_error = {"code": code, "message": message, "err_code": code, "trace_id": "standin"}
        resp = web.json_response(call_error, status=status)
        return resp

    def _answer(self, request: web.Request, call: QqCall) -> web.Response:
        b = call.body if isinstance(call.body, dict) else {}
        if call.path == "/app/getAppAccessToken":
            if b.get("appId") != self.app_id or b.get("clientSecret") != self.secret:
                return web.json_response({"code": 100016, "message": "invalid appid or secret"})
            token = f"token-{next(self._ids)}"
            self.tokens.append(token)
            return web.json_response({"access_token": token, "expires_in": str(self.ttl)})
        parts = call.path.strip("/").split("/")
        if not (request.method == "POST" and len(parts) == 4 and parts[:2] == ["v2", "users"]):
            return self._error(404, 404, "not found")
        auth = call.authorization
        if not auth.startswith("QQBot ") or auth[6:] not in self.tokens:
            return self._error(401, 11244, "token not exist or expire")
        if request.headers.get("X-Union-Appid") != self.app_id:
            return self._error(401, 11241, "appid mismatch")
        if self.script:
            status, code, message = self.script.pop(0)
            return self._error(status, code, message)
        msg_id, seq = b.get("msg_id"), b.get("msg_seq", 1)
        if not msg_id:
            return self._error(400, 40034102, "active messages are no longer provided")
        if msg_id in self.expired:
            return self._error(400, 40034103, "passive reply window expired")
        if (msg_id, seq) in self.sent:
            return self._error(400, 40054005, "message deduplicated: msg_seq already used")
        if sum(1 for m, _ in self.sent if m == msg_id) >= 5:
            return self._error(400, 40034104, "reply limit for this msg_id reached")
        if not isinstance(b.get("content"), str) or b.get("msg_type") != 0:
            return self._error(400, 40034001, "content and msg_type 0 required")
        mid = f"ROBOT1.0_standin{next(self._ids)}"
        self.sent[(msg_id, seq)] = mid
        return web.json_response({"id": mid, "timestamp": int(time.time())})
