"""A local stand-in for Twilio's REST API (api.twilio.com), speaking its
documented wire format, for the SMS adapter and the real twilio SDK.

Endpoints:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` - a form with
  ``To``, ``From`` or ``MessagingServiceSid``, ``Body`` (at most 1,600
  characters, else error 21617), ``StatusCallback``; HTTP Basic auth with the
  account SID and auth token (else 20003). Answers 201 with the message
  resource (``sid`` ``SM...``, ``status`` ``queued``, ``num_segments``).
* ``GET /2010-04-01/Accounts/{AccountSid}.json`` - the account (``status``
  ``active``): the adapter's start-up check of its credentials.
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{sid}/Media/{media}`` - the
  bytes of a media file a test put there (``add_media``), behind Basic auth.

Errors have Twilio's shape ``{"code", "message", "more_info", "status"}``.
Tests script failures with :meth:`fail_next`, mark numbers unsubscribed
(Twilio then answers 21610) and read every request from ``calls``.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from omnidesk.channels.sms import segments
from tests.standins.server import StandInServer


@dataclass
class TwilioCall:
    method: str
    path: str
    form: dict[str, str]
    authorized: bool
    status: int = 0


@dataclass
class Scripted:
    status: int
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class TwilioStandIn(StandInServer):
    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: list[TwilioCall] = []
        self.script: list[Scripted] = []
        self.unsubscribed: set[str] = set()
        self.media: dict[str, tuple[str, bytes]] = {}
        self._ids = itertools.count(1)

    # -- control -------------------------------------------------------------
    def fail_next(self, status: int, code: int, message: str = "scripted", times: int = 1) -> None:
        self.script.extend(Scripted(status, code, message) for _ in range(times))

    def add_media(self, message_sid: str, content_type: str, data: bytes) -> str:
        """A media file of an incoming MMS; returns its URL (as Twilio gives it)."""
        media_sid = f"ME{next(self._ids):032x}"
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"
        self.media[path] = (content_type, data)
        return self.base_url + path

    def sends(self) -> list[TwilioCall]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/Messages.json")]

    def delivered(self) -> list[TwilioCall]:
        return [c for c in self.sends() if c.status == 201]

    async def wait_sends(self, n: int, timeout: float = 10.0) -> list[TwilioCall]:
        await self.wait_until(lambda: len(self.sends()) >= n, timeout)
        return self.sends()

    def _error(self, status: int, code: int, message: str, headers: Any = None) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
            headers=headers,
        )

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        call = TwilioCall(request.method, request.path, form, self._authorized(request))
        resp = self._answer(request, call)
        call.status = resp.status
        self.calls.append(call)
        await self._recorded()
        return resp

    def _answer(self, request: web.Request, call: TwilioCall) -> web.Response:
        if not call.authorized:
            return self._error(401, 20003, "Authenticate")
        prefix = f"/2010-04-01/Accounts/{self.account_sid}"
        if request.method == "GET" and call.path in self.media:
            ctype, data = self.media[call.path]
            return web.Response(body=data, content_type=ctype)
        if request.method == "GET" and call.path == f"{prefix}.json":
            return web.json_response(
                {"sid": self.account_sid, "status": "active", "friendly_name": "Stand-in"}
            )
        if request.method != "POST" or call.path != f"{prefix}/Messages.json":
            return self._error(404, 20404, f"The requested resource {call.path} was not found")
        if self.script:
            s = self.script.pop(0)
            return self._error(s.status, s.code, s.message, s.headers)
        f = call.form
        to = f.get("To", "")
        if not to.startswith("+") or not to[1:].isdigit():
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not (f.get("From") or f.get("MessagingServiceSid")):
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        body = f.get("Body", "")
        if not body and not f.get("MediaUrl"):
            return self._error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return self._error(400, 21617, "The concatenated message body exceeds 1600 characters.")
        if to in self.unsubscribed:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = f"SM{next(self._ids):032x}"
        _, n = segments(body)
        return web.json_response(
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "direction": "outbound-api",
                "from": f.get("From"),
                "messaging_service_sid": f.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": str(n),
                "sid": sid,
                "status": "queued",
                "to": to,
                "uri": f"{prefix}/Messages/{sid}.json",
                "error_code": None,
                "error_message": None,
            },
            status=201,
        )
