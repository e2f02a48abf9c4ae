"""The FastAPI application: health, metrics, inbound API and webhooks, and the
read/write API for agents and integrations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from .. import __version__
from ..outbox import ReplyError, queue_reply
from ..store.contacts import get_contact
from ..store.inbound import count_pending, get_quarantine, list_quarantine, retry_quarantine
from ..store.inbox import ConversationFilter, get_conversation_full, list_conversations
from .auth import Principal, current_principal, require_admin

if TYPE_CHECKING:
    from ..daemon import Daemon


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    kind: Literal["reply", "note"] = "reply"
    html: str | None = None


def _visible(p: Principal, conv: dict[str, Any]) -> bool:
    return (
        p.sees_all()
        or conv.get("team") in p.teams
        or (p.username is not None and conv.get("assignee") == p.username)
    )


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="omnidesk",
        version=__version__,
        description="Omnichannel customer-service daemon: inbox API, inbound API channel, "
        "webhooks. Authenticate with `Authorization: Bearer <token>`.",
    )
    app.state.daemon = daemon

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        """Liveness and channel health. No authentication."""
        channels = {n: a.health().to_dict() for n, a in daemon.adapters.items()}
        for n, h in channels.items():
            daemon.metrics.channel_up.labels(n).set(1 if h["ok"] else 0)
        rules_error = daemon.rules.last_error
        try:
            pending = await daemon.store.read(count_pending)
            store_ok = True
        except Exception:
            pending, store_ok = None, False
        daemon.metrics.pending.set(pending or 0)
        ok = store_ok and all(h["ok"] for h in channels.values())
        body = {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "store": {"ok": store_ok, "engine": daemon.store.dialect, "pending": pending},
            "rules": {
                "ok": rules_error is None,
                "version": daemon.rules.version,
                "error": str(rules_error) if rules_error else None,
            },
            "channels": channels,
        }
        return JSONResponse(body, status_code=200 if store_ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(_: Principal = Depends(current_principal)) -> Response:
        """Prometheus metrics (any valid token)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/v1/inbound/{channel}", tags=["channels"], status_code=202)
    async def inbound(channel: str, request: Request) -> Response:
        """Signed inbound message for an API channel (see the API channel docs)."""
        adapter = daemon.adapters.get(channel)
        if adapter is None or adapter.type != "api":
            raise HTTPException(404, f"no API channel named {channel!r}")
        return await adapter.handle_webhook(request)

    async def _webhook(channel: str, request: Request) -> Response:
        adapter = daemon.adapters.get(channel)
        if adapter is None:
            raise HTTPException(404, f"no channel named {channel!r}")
        return await adapter.handle_webhook(request)

    @app.get("/webhooks/{channel}", tags=["channels"])
    async def webhook_verify(channel: str, request: Request) -> Response:
        """Provider webhook verification handshakes (e.g. Meta's hub.challenge)."""
        return await _webhook(channel, request)

    @app.post("/webhooks/{channel}", tags=["channels"])
    async def webhook(channel: str, request: Request) -> Response:
        """Provider webhook deliveries (signature-checked by each channel)."""
        return await _webhook(channel, request)

    @app.get("/api/v1/conversations", tags=["inbox"])
    async def conversations(
        status: str | None = None,
        category: str | None = None,
        team: str | None = None,
        assignee: str | None = Query(None, description="username, or 'none' for unassigned"),
        channel: str | None = None,
        limit: int = Query(50, ge=1, le=500),
        before: int | None = Query(None, description="id of the last item of the previous page"),
        p: Principal = Depends(current_principal),
    ) -> dict[str, Any]:
        flt = ConversationFilter(
            status=status,
            category=category,
            team=team,
            assignee=assignee,
            channel=channel,
            visible_teams=None if p.sees_all() else list(p.teams),
            visible_user=p.username,
        )
        items = await daemon.store.read(list_conversations, flt, limit=limit, before=before)
        nxt = items[-1]["id"] if len(items) == limit else None
        return {"items": items, "next_before": nxt}

    @app.get("/api/v1/conversations/{conversation_id}", tags=["inbox"])
    async def conversation(
        conversation_id: int, p: Principal = Depends(current_principal)
    ) -> dict[str, Any]:
        conv = await daemon.store.read(get_conversation_full, conversation_id)
        if conv is None:
            raise HTTPException(404, "no such conversation")
        if not _visible(p, conv):
            raise HTTPException(403, "not your team's conversation")
        return conv

    @app.post("/api/v1/conversations/{conversation_id}/messages", tags=["inbox"], status_code=201)
    async def post_message(
        conversation_id: int, body: ReplyIn, p: Principal = Depends(current_principal)
    ) -> dict[str, Any]:
        """A reply (delivered through the conversation's channel) or a private note."""
        conv = await daemon.store.read(get_conversation_full, conversation_id)
        if conv is None:
            raise HTTPException(404, "no such conversation")
        if not _visible(p, conv):
            raise HTTPException(403, "not your team's conversation")
        try:
            msg = await daemon.store.write(
                queue_reply,
                conversation_id,
                text=body.text,
                author=p.actor,
                kind=body.kind,
                html=body.html,
            )
        except ReplyError as exc:
            raise HTTPException(409, str(exc)) from None
        daemon.outbox.wake()
        daemon.publish(
            [
                {
                    "type": "message.created",
                    "conversation_id": conversation_id,
                    "message_id": msg["id"],
                    "direction": "out",
                }
            ]
        )
        return msg

    @app.get("/api/v1/contacts/{contact_id}", tags=["contacts"])
    async def contact(contact_id: int, p: Principal = Depends(current_principal)) -> dict[str, Any]:
        c = await daemon.store.read(get_contact, contact_id)
        if c is None:
            raise HTTPException(404, "no such contact")
        if not p.sees_all():
            c["conversations"] = [x for x in c["conversations"] if _visible(p, x)]
            if not c["conversations"]:
                raise HTTPException(403, "no conversation of this contact is visible to you")
        return c

    @app.get("/api/v1/quarantine", tags=["admin"])
    async def quarantine_list(
        state: str | None = "open", _: Principal = Depends(require_admin)
    ) -> list[dict[str, Any]]:
        return await daemon.store.read(list_quarantine, state=state)

    @app.get("/api/v1/quarantine/{qid}", tags=["admin"])
    async def quarantine_show(qid: int, _: Principal = Depends(require_admin)) -> dict[str, Any]:
        q = await daemon.store.read(get_quarantine, qid)
        if q is None:
            raise HTTPException(404, "no such quarantine entry")
        raw: bytes = q.pop("payload")
        q["size"] = len(raw)
        q["payload_preview"] = raw[:4096].decode("utf-8", "replace")
        return q

    @app.post("/api/v1/quarantine/{qid}/retry", tags=["admin"])
    async def quarantine_retry(qid: int, _: Principal = Depends(require_admin)) -> dict[str, Any]:
        done = await daemon.store.write(retry_quarantine, [qid])
        if not done:
            raise HTTPException(404, "no open quarantine entry with that id")
        daemon.pipeline.wake()
        return {"requeued": done}

    return app
