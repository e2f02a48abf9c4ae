"""The live feed (server-sent events) and presence (who is viewing or typing).

``GET /api/v1/events`` streams the daemon's events - new conversations and
messages, delivery states, conversation changes, presence - each only to those
allowed to see the conversation it is about. Browsers reconnect on their own;
a ``resync`` event tells a client it missed events and should reload its
lists.

Presence is a heartbeat: a browser viewing a conversation posts
``viewing``/``typing`` every few seconds and ``left`` when it goes; an entry
nobody renewed within ``PRESENCE_TTL`` seconds lapses. Presence travels as
events, so with several instances on PostgreSQL every instance learns it
through the same LISTEN/NOTIFY path as the other events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from ..events import Event, EventBus
from ..store.base import Db
from ..store.conversations import get_conversation_row
from ..store.inbox import conversation_access
from .auth import Principal, current_principal
from .deps import Id, can_see, check_conversation, get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["live"])

PRESENCE_TTL = 30.0


class PresenceTracker:
    """Who is in which conversation, rebuilt from presence events."""

    def __init__(self) -> None:
        # conversation id -> username -> (state, expires at, display name)
        self._by_conv: dict[int, dict[str, tuple[str, float, str]]] = {}
        self._task: asyncio.Task[Any] | None = None

    def apply(self, e: Event) -> None:
        if e.get("type") != "presence":
            return
        cid, user = int(e["conversation_id"]), str(e["username"])
        entries = self._by_conv.setdefault(cid, {})
        if e.get("state") == "left":
            entries.pop(user, None)
        else:
            entries[user] = (
                str(e.get("state")),
                time.time() + float(e.get("ttl", PRESENCE_TTL)),
                str(e.get("name") or user),
            )
        if not entries:
            self._by_conv.pop(cid, None)

    def snapshot(self, conversation_id: int) -> list[dict[str, str]]:
        now = time.time()
        entries = self._by_conv.get(conversation_id, {})
        for user in [u for u, (_, exp, _) in entries.items() if exp < now]:
            del entries[user]
        return [
            {"username": u, "name": name, "state": state}
            for u, (state, _, name) in sorted(entries.items())
        ]

    def ensure_following(self, services: WebServices) -> None:
        """Follow the bus (started on first use, inside the running loop)."""
        if self._task is None or self._task.done():
            self._task = services.spawn(self._follow(services.events), "presence")

    async def _follow(self, bus: EventBus) -> None:
        async with bus.subscribe() as q:
            while True:
                self.apply(await q.get())


def presence_tracker(services: WebServices) -> PresenceTracker:
    tracker: PresenceTracker | None = services.presence
    if tracker is None:
        tracker = services.presence = PresenceTracker()
    tracker.ensure_following(services)
    return tracker


class PresenceIn(BaseModel):
    state: Literal["viewing", "typing", "left"]


@router.post("/conversations/{conversation_id}/presence", status_code=200)
async def post_presence(
    conversation_id: Id,
    body: PresenceIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Heartbeat: the caller is viewing or typing in the conversation (renew
    every ~10 s), or has left it. Returns who is there now."""
    await check_conversation(services, p, conversation_id)
    tracker = presence_tracker(services)
    event = {
        "type": "presence",
        "conversation_id": conversation_id,
        "username": p.username or p.actor,
        "name": p.name,
        "state": body.state,
        "ttl": PRESENCE_TTL,
    }
    tracker.apply(event)
    services.publish([event])
    if body.state == "typing":
        await _tell_channel(services, conversation_id, p.name)
    return {"presence": tracker.snapshot(conversation_id)}


async def _tell_channel(services: WebServices, conversation_id: int, name: str) -> None:
    """A chat shows the customer that an agent is typing (the web chat's
    widget); other channels ignore it."""
    conv = await services.store.read(get_conversation_row, conversation_id)
    adapter = services.adapters.get(conv["channel"]) if conv else None
    if conv is not None and adapter is not None and conv.get("thread_key"):
        adapter.agent_typing(str(conv["thread_key"]), name)


def _message_conversation(db: Db, message_id: int) -> dict[str, Any] | None:
    cid = db.val("SELECT conversation_id FROM messages WHERE id = ?", (message_id,))
    return None if cid is None else conversation_access(db, int(cid))


class _Visibility:
    """Decides, per event, whether this subscriber may see it (with a short
    cache of conversation teams so a burst of events costs one read each)."""

    def __init__(self, services: WebServices, p: Principal) -> None:
        self.services = services
        self.p = p
        self._cache: dict[int, tuple[float, dict[str, Any] | None]] = {}

    async def allows(self, e: Event) -> bool:
        kind = e.get("type")
        if kind == "resync":
            return True
        if kind == "quarantine":
            return self.p.role == "admin"
        if kind == "agent.availability":  # the supervisors' board, and the agent's own
            return self.p.sees_all() or e.get("username") == self.p.username
        if kind == "notification":  # an SLA or rule notice is for its addressee only
            return e.get("username") is not None and e.get("username") == self.p.username
        if self.p.sees_all():
            return True
        if e.get("team") is not None or e.get("assignee") is not None:
            if can_see(self.p, e):
                return True
        for prev in ("previous_team", "previous_assignee"):
            # Tell an agent a conversation left their view, so the row goes.
            if prev in e and can_see(
                self.p,
                {"team": e.get("previous_team"), "assignee": e.get("previous_assignee")},
            ):
                return True
        conv = await self._conv(e)
        return conv is not None and can_see(self.p, conv)

    async def _conv(self, e: Event) -> dict[str, Any] | None:
        now = time.monotonic()
        if "conversation_id" in e:
            key = int(e["conversation_id"])
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < 2.0:
                return hit[1]
            conv = await self.services.store.read(conversation_access, key)
            self._cache[key] = (now, conv)
            if len(self._cache) > 1000:
                self._cache.clear()
            return conv
        if "message_id" in e:
            return await self.services.store.read(_message_conversation, int(e["message_id"]))
        return None


@router.get("/events")
async def events(
    request: Request,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> EventSourceResponse:
    """Server-sent events: ``conversation.created``, ``conversation.updated``,
    ``message.created``, ``delivery``, ``presence``, ``contact.merged``,
    ``resync``. Each ``data`` is the event as JSON."""
    presence_tracker(services)
    vis = _Visibility(services, p)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        yield {"event": "ready", "data": json.dumps({"user": p.username, "role": p.role})}
        async with services.events.subscribe() as q:
            while True:
                if services.stopping() or await request.is_disconnected():
                    return  # let the server shut down without waiting for us
                try:
                    async with asyncio.timeout(0.5):  # wait_for may swallow a cancel (3.11)
                        e = await q.get()
                except TimeoutError:
                    continue
                if await vis.allows(e):
                    yield {"event": str(e.get("type", "event")), "data": json.dumps(e, default=str)}

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})
