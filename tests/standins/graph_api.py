"""A local stand-in for Meta's Graph API (graph.facebook.com), speaking its
documented wire format, for the Messenger, Instagram and WhatsApp adapters.

Endpoints (any ``/vNN.N/`` version prefix):

* ``POST /{id}/messages`` - the Send API (``recipient.id``, ``messaging_type``,
  ``message.text``) answering ``{"recipient_id", "message_id"}``, or, when the
  body says ``"messaging_product": "whatsapp"``, the WhatsApp Cloud API
  messages endpoint (``to`` or ``recipient``, ``type`` text/template/media)
  answering ``{"messaging_product", "contacts": [{"input", "wa_id"}],
  "messages": [{"id": "wamid..."}]}``;
* ``POST /{phone-number-id}/media`` - the WhatsApp media upload
  (multipart/form-data: ``messaging_product=whatsapp``, ``type``, ``file``)
  answering ``{"id"}``; a media message must name an id it gave;
* ``POST /{page-id}/message_attachments`` - the Attachment Upload API
  (multipart: ``message`` JSON with ``attachment.type``, ``filedata``, and
  ``platform=instagram`` for Instagram) answering ``{"attachment_id"}``; a
  Send API attachment must name an id it gave;
* ``GET /{id}`` and ``GET /me`` - the sender itself (the adapter's start-up
  token check).

Every upload is kept in ``uploads`` (id -> ``Upload``: the form fields, file
name, content type and bytes as they arrived).

The access token is checked (``Authorization: Bearer`` or ``access_token``
query parameter): a wrong one gets Meta's code 190. Errors have Meta's shape
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.
Tests script failures with :meth:`GraphApiStandIn.fail_next`, close a
customer's messaging window (Meta then answers 131047 on WhatsApp, code 10 /
subcode 2018278 on Messenger), and read every request from ``calls``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .server import read_form

_VERSIONED = re.compile(r"^/(v\d+\.\d+)/(.+)$")


@dataclass
class GraphCall:
    method: str
    path: str  # without the version prefix, e.g. "1234/messages"
    version: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    status: int = 0  # what the stand-in answered


@dataclass
class Upload:
    id: str
    path: str
    fields: dict[str, str]
    filename: str
    content_type: str
    data: bytes


@dataclass
class ScriptedError:
    status: int
    code: int
    message: str
    subcode: int | None = None
    type: str = "OAuthException"
    details: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class GraphApiStandIn:
    def __init__(self, access_token: str = "test-access-token") -> None:
        self.access_token = access_token
        self.calls: list[GraphCall] = []
        self.script: deque[ScriptedError] = deque()
        # Customers whose 24-hour window is closed (WhatsApp wa_id / Messenger PSID).
        self.window_closed: set[str] = set()
        self.uploads: dict[str, Upload] = {}
        self.upload_script: deque[ScriptedError] = deque()  # failures for uploads
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- control -------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        code: int,
        message: str = "scripted failure",
        *,
        subcode: int | None = None,
        details: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` message sends fail with this Graph API error."""
        for _ in range(times):
            self.script.append(
                ScriptedError(
                    status, code, message, subcode, details=details, headers=headers or {}
                )
            )

    def sends(self) -> list[GraphCall]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/messages")]

    async def wait_sends(self, n: int, timeout: float = 10.0) -> list[GraphCall]:
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.sends()) >= n)

        await asyncio.wait_for(enough(), timeout)
        return self.sends()

    # -- server ----------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
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

    # -- handlers ----------------------------------------------------------------
    def _error(self, status: int, e: ScriptedError) -> web.Response:
        err: dict[str, Any] = {
            "message": e.message,
            "type": e.type,
            "code": e.code,
            "fbtrace_id": f"AStandIn{next(self._ids)}",
        }
        if e.subcode is not None:
            err["error_subcode"] = e.subcode
        if e.details is not None:
            err["error_data"] = {"messaging_product": "whatsapp", "details": e.details}
        return web.json_response({"error": err}, status=status, headers=e.headers)

    async def _handle(self, request: web.Request) -> web.Response:
        m = _VERSIONED.match(request.path)
        body: Any
        if request.content_type == "multipart/form-data":
            body = await read_form(request)
        else:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = GraphCall(
            method=request.method,
            path=m.group(2) if m else request.path.lstrip("/"),
            version=m.group(1) if m else "",
            headers=dict(request.headers),
            query=dict(request.query),
            body=body,
        )
        resp = self._answer(request, call, m is not None)
        call.status = resp.status
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return resp

    def _answer(self, request: web.Request, call: GraphCall, versioned: bool) -> web.Response:
        if not versioned:
            return self._error(
                400, ScriptedError(400, 2500, "Unknown path components: missing API version")
            )
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else request.query.get("access_token", "")
        if token != self.access_token:
            return self._error(
                401,
                ScriptedError(401, 190, "Invalid OAuth access token - Cannot parse access token"),
            )
        parts = call.path.strip("/").split("/")
        if request.method == "GET" and len(parts) == 1:
            return web.json_response({"id": parts[0], "name": "Stand-in sender"})
        uploading = parts[-1] in ("media", "message_attachments") and len(parts) == 2
        if request.method == "POST" and uploading and self.upload_script:
            e = self.upload_script.popleft()
            return self._error(e.status, e)
        if request.method == "POST" and len(parts) == 2 and parts[1] == "media":
            return self._wa_upload(call)
        if request.method == "POST" and len(parts) == 2 and parts[1] == "message_attachments":
            return self._attachment_upload(call)
        if request.method == "POST" and len(parts) == 2 and parts[1] == "messages":
            if self.script:
                e = self.script.popleft()
                return self._error(e.status, e)
            if not isinstance(call.body, dict):
                return self._invalid("body must be a JSON object")
            if call.body.get("messaging_product") == "whatsapp":
                return self._whatsapp(call.body)
            return self._send_api(call.body)
        return self._error(
            400,
            ScriptedError(400, 100, f"Unsupported {request.method} request to /{call.path}"),
        )

    def _file(self, call: GraphCall, field: str) -> tuple[str, str, bytes] | None:
        if not isinstance(call.body, dict) or not isinstance(call.body.get(field), tuple):
            return None
        f: tuple[str, str, bytes] = call.body[field]
        return f

    def _keep(self, call: GraphCall, prefix: str, f: tuple[str, str, bytes]) -> str:
        uid = f"{prefix}{next(self._ids)}"
        fields = {k: v for k, v in call.body.items() if isinstance(v, str)}
        self.uploads[uid] = Upload(uid, call.path, fields, f[0], f[1], f[2])
        return uid

    def _wa_upload(self, call: GraphCall) -> web.Response:
        f = self._file(call, "file")
        if f is None:
            return self._invalid("file is required (multipart/form-data)")
        if call.body.get("messaging_product") != "whatsapp":
            return self._invalid("messaging_product must be whatsapp")
        if not call.body.get("type"):
            return self._invalid("type is required")
        if call.body["type"] != f[1]:
            return self._invalid(f"type {call.body['type']} is not the file's type {f[1]}")
        return web.json_response({"id": self._keep(call, "9000", f)})

    def _attachment_upload(self, call: GraphCall) -> web.Response:
        f = self._file(call, "filedata")
        if f is None:
            return self._invalid("filedata is required (multipart/form-data)")
        try:
            message = json.loads(call.body.get("message") or "")
            kind = message["attachment"]["type"]
        except (ValueError, KeyError, TypeError):
            return self._invalid("message.attachment.type is required")
        if kind not in ("image", "audio", "video", "file"):
            return self._invalid("attachment type must be image, audio, video or file")
        if any(ord(ch) > 127 for ch in f[0]):
            return self._invalid("file names must be ASCII")
        return web.json_response({"attachment_id": self._keep(call, "7000", f)})

    def _invalid(self, why: str) -> web.Response:
        return self._error(400, ScriptedError(400, 100, f"(#100) Invalid parameter: {why}"))

    def _send_api(self, body: dict[str, Any]) -> web.Response:
        recipient = body.get("recipient")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            return self._invalid("recipient.id is required")
        mtype = body.get("messaging_type")
        if mtype not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return self._invalid("messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG")
        if mtype == "MESSAGE_TAG" and not body.get("tag"):
            return self._invalid("tag is required with MESSAGE_TAG")
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return self._invalid("message must have text or an attachment")
        att = message.get("attachment")
        if isinstance(att, dict):
            aid = (att.get("payload") or {}).get("attachment_id")
            if aid is not None and str(aid) not in self.uploads:
                return self._invalid(f"unknown attachment_id {aid}")
        text = message.get("text")
        if isinstance(text, str) and len(text) > 2000:
            return self._invalid("message.text must be at most 2000 characters")
        quick = message.get("quick_replies")
        if quick is not None:
            if not isinstance(quick, list) or not 0 < len(quick) <= 13:
                return self._invalid("quick_replies must hold 1 to 13 items")
            for q in quick:
                if q.get("content_type") != "text" or not 0 < len(q.get("title", "")) <= 20:
                    return self._invalid("a text quick reply needs a title of 1 to 20 characters")
                if not 0 < len(q.get("payload", "")) <= 1000:
                    return self._invalid("a quick reply payload must be 1 to 1000 characters")
        psid = str(recipient["id"])
        if psid in self.window_closed and body.get("tag") != "HUMAN_AGENT":
            return self._error(
                400,
                ScriptedError(
                    400,
                    10,
                    "(#10) This message is sent outside of allowed window.",
                    subcode=2018278,
                ),
            )
        return web.json_response(
            {"recipient_id": psid, "message_id": f"m_standin{next(self._ids)}"}
        )

    def _whatsapp(self, body: dict[str, Any]) -> web.Response:
        to = body.get("to") or body.get("recipient")
        if not isinstance(to, str) or not to:
            return self._invalid("'to' (or 'recipient') is required")
        mtype = body.get("type", "text")
        if mtype == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str):
                return self._invalid("text.body is required")
            if len(text["body"]) > 4096:
                return self._invalid("text.body must be at most 4096 characters")
            if to.lstrip("+") in self.window_closed:
                return self._error(
                    400,
                    ScriptedError(
                        400,
                        131047,
                        "(#131047) Re-engagement message",
                        details="Message failed to send because more than 24 hours have passed"
                        " since the customer last replied to this number.",
                    ),
                )
        elif mtype == "template":
            t = body.get("template")
            if not isinstance(t, dict) or not t.get("name") or not t.get("language"):
                return self._invalid("template.name and template.language are required")
            for comp in t.get("components") or ():
                for p in comp.get("parameters") or ():
                    if p.get("type") == "text" and re.search(r"[\n\t]| {5,}", p.get("text", "")):
                        return self._error(
                            400,
                            ScriptedError(
                                400,
                                132018,
                                "(#132018) There was an issue with the parameters in your"
                                " template.",
                            ),
                        )
        elif mtype == "interactive":
            problem = _invalid_interactive(body.get("interactive"))
            if problem:
                return self._invalid(problem)
            if to.lstrip("+") in self.window_closed:
                return self._error(
                    400,
                    ScriptedError(400, 131047, "(#131047) Re-engagement message"),
                )
        else:
            media = body.get(mtype)
            if not isinstance(media, dict) or not (media.get("id") or media.get("link")):
                return self._invalid(f"{mtype}.id or {mtype}.link is required")
            if media.get("id") and str(media["id"]) not in self.uploads:
                return self._invalid(f"unknown media id {media['id']}")
        wamid = f"wamid.STANDIN{next(self._ids)}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": wamid}],
            }
        )


def _invalid_interactive(it: Any) -> str | None:
    """WhatsApp's documented limits for reply-button and list messages (body
    1024 characters; 1-3 buttons of 20-character titles and 256-character
    ids, unique; a list button of 20, 1-10 rows in all, row titles 24,
    descriptions 72); None when valid."""
    if not isinstance(it, dict) or it.get("type") not in ("button", "list"):
        return "interactive.type must be button or list"
    body = (it.get("body") or {}).get("text")
    if not isinstance(body, str) or not 0 < len(body) <= 1024:
        return "interactive.body.text must be 1 to 1024 characters"
    action = it.get("action") or {}
    if it["type"] == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 0 < len(buttons) <= 3:
            return "interactive.action.buttons must hold 1 to 3 buttons"
        ids = [(b.get("reply") or {}).get("id", "") for b in buttons]
        titles = [(b.get("reply") or {}).get("title", "") for b in buttons]
        if any(b.get("type") != "reply" for b in buttons) or len(set(ids)) != len(ids):
            return "buttons must be of type reply with unique ids"
        if any(not 0 < len(t) <= 20 for t in titles) or any(not 0 < len(i) <= 256 for i in ids):
            return "button titles must be 1 to 20 characters, ids 1 to 256"
        return None
    label = action.get("button")
    if not isinstance(label, str) or not 0 < len(label) <= 20:
        return "interactive.action.button must be 1 to 20 characters"
    rows = [r for sec in action.get("sections") or () for r in sec.get("rows") or ()]
    if not 0 < len(rows) <= 10:
        return "a list holds 1 to 10 rows in all"
    for r in rows:
        if not 0 < len(r.get("title", "")) <= 24 or len(r.get("description", "")) > 72:
            return "row titles must be 1 to 24 characters, descriptions at most 72"
        if not 0 < len(r.get("id", "")) <= 200:
            return "row ids must be 1 to 200 characters"
    return None
