"""A local stand-in for X's API v2 (api.x.com), speaking its documented wire
format, for the X channel and X's own SDK (xdk).

Endpoints: ``GET /2/users/me`` (the account the token belongs to: the
adapter's start-up check) and
``POST /2/dm_conversations/with/{participant_id}/messages`` with a
JSON body ``{"text": ...}`` (at most 10,000 characters), authenticated with
OAuth 1.0a user context: the ``Authorization: OAuth ...`` header's HMAC-SHA1
signature is verified with oauthlib (an implementation independent of the
SDK's) against the consumer and access token secrets; a wrong one gets 401.
Answers 201 ``{"data": {"dm_conversation_id", "dm_event_id"}}``.

Errors have X's v2 problem shape ``{"title", "detail", "type", "status"}``;
429 carries ``x-rate-limit-reset``. Tests script failures with
:meth:`fail_next`, mark users who do not accept DMs (403), and read every
request from ``calls``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature, utils

from tests.standins.server import StandInServer


@dataclass
class XCall:
    method: str
    path: str
    body: Any
    signed: bool
    status: int = 0


@dataclass
class Scripted:
    status: int
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


class XApiStandIn(StandInServer):
    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        our_id: str,
    ) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.our_id = our_id
        self.calls: list[XCall] = []
        self.script: list[Scripted] = []
        self.closed_dms: set[str] = set()
        self._ids = itertools.count(1_900_000_000_000_000_000)

    def fail_next(
        self, status: int, title: str, detail: str = "", times: int = 1, **headers: str
    ) -> None:
        self.script.extend(Scripted(status, title, detail, dict(headers)) for _ in range(times))

    def sends(self) -> list[XCall]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/messages")]

    def delivered(self) -> list[XCall]:
        return [c for c in self.sends() if c.status == 201]

    async def wait_sends(self, n: int, timeout: float = 10.0) -> list[XCall]:
        await self.wait_until(lambda: len(self.sends()) >= n, timeout)
        return self.sends()

    # -- OAuth 1.0a --------------------------------------------------------------------
    def _signed(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("OAuth "):
            return False
        params = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(auth)}
        if (
            params.get("oauth_consumer_key") != self.consumer_key
            or params.get("oauth_token") != self.access_token
            or params.get("oauth_signature_method") != "HMAC-SHA1"
        ):
            return False
        if abs(time.time() - int(params.get("oauth_timestamp", "0"))) > 300:
            return False
        url = str(request.url)
        r = OAuthRequest(url, request.method, body=None, headers={"Authorization": auth})
        r.params = signature.collect_parameters(
            uri_query=request.url.raw_query_string,
            headers={"Authorization": auth},
            exclude_oauth_signature=True,
        )
        r.signature = params.get("oauth_signature", "")
        return bool(signature.verify_hmac_sha1(r, self.consumer_secret, self.access_token_secret))

    # -- server ------------------------------------------------------------------------
    def _problem(self, status: int, title: str, detail: str, headers: Any = None) -> web.Response:
        body = {"title": title, "detail": detail, "type": "about:blank", "status": status}
        return web.json_response(body, status=status, headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        call = XCall(request.method, request.path, body, self._signed(request))
        resp = self._answer(call)
        call.status = resp.status
        self.calls.append(call)
        await self._recorded()
        return resp

    def _answer(self, call: XCall) -> web.Response:
        if not call.signed:
            return self._problem(401, "Unauthorized", "Unauthorized")
        if call.method == "GET" and call.path == "/2/users/me":
            user = {"id": self.our_id, "name": "Example Support", "username": "examplesupport"}
            return web.json_response({"data": user})
        parts = call.path.strip("/").split("/")
        if not (
            call.method == "POST"
            and len(parts) == 5
            and parts[:3] == ["2", "dm_conversations", "with"]
            and parts[4] == "messages"
        ):
            return self._problem(404, "Not Found Error", f"no route {call.method} {call.path}")
        if self.script:
            s = self.script.pop(0)
            return self._problem(s.status, s.title, s.detail, s.headers)
        participant = parts[3]
        if not participant.isdigit():
            return self._problem(400, "Invalid Request", "participant_id must be numeric")
        text = call.body.get("text") if isinstance(call.body, dict) else None
        if not isinstance(text, str) or not text:
            return self._problem(400, "Invalid Request", "text or attachments is required")
        if len(text) > 10_000:
            return self._problem(400, "Invalid Request", "text must be at most 10000 characters")
        if participant in self.closed_dms:
            return self._problem(
                403, "Forbidden", "You are not permitted to send direct messages to this user."
            )
        conv = "-".join(sorted([participant, self.our_id], key=int))
        return web.json_response(
            {"data": {"dm_conversation_id": conv, "dm_event_id": str(next(self._ids))}},
            status=201,
        )
