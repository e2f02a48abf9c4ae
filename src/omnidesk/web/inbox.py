"""The inbox API: conversations, messages, contacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from ..outbox import ReplyError, queue_reply
from ..store.contacts import get_contact
from ..store.inbox import ConversationFilter, get_conversation_full, list_conversations
from .auth import Principal, current_principal
from .deps import can_see, get_daemon

if TYPE_CHECKING:
    from ..daemon import Daemon

router = APIRouter(prefix="/api/v1")


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    kind: Literal["reply", "note"] = "reply"
    html: str | None = None


@router.get("/conversations", tags=["inbox"])
async def conversations(
    status: str | None = None,
    category: str | None = None,
    team: str | None = None,
    assignee: str | None = Query(None, description="username, or 'none' for unassigned"),
    channel: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, description="id of the last item of the previous page"),
    p: Principal = Depends(current_principal),
    daemon: Daemon = Depends(get_daemon),
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


async def visible_conversation(
    daemon: Daemon, p: Principal, conversation_id: int
) -> dict[str, Any]:
    conv = await daemon.store.read(get_conversation_full, conversation_id)
    if conv is None:
        raise HTTPException(404, "no such conversation")
    if not can_see(p, conv):
        raise HTTPException(403, "not your team's conversation")
    return conv


@router.get("/conversations/{conversation_id}", tags=["inbox"])
async def conversation(
    conversation_id: int,
    p: Principal = Depends(current_principal),
    daemon: Daemon = Depends(get_daemon),
) -> dict[str, Any]:
    return await visible_conversation(daemon, p, conversation_id)


@router.post("/conversations/{conversation_id}/messages", tags=["inbox"], status_code=201)
async def post_message(
    conversation_id: int,
    body: ReplyIn,
    p: Principal = Depends(current_principal),
    daemon: Daemon = Depends(get_daemon),
) -> dict[str, Any]:
    """A reply (delivered through the conversation's channel) or a private note."""
    await visible_conversation(daemon, p, conversation_id)
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


@router.get("/contacts/{contact_id}", tags=["contacts"])
async def contact(
    contact_id: int,
    p: Principal = Depends(current_principal),
    daemon: Daemon = Depends(get_daemon),
) -> dict[str, Any]:
    c = await daemon.store.read(get_contact, contact_id)
    if c is None:
        raise HTTPException(404, "no such contact")
    if not p.sees_all():
        c["conversations"] = [x for x in c["conversations"] if can_see(p, x)]
        if not c["conversations"]:
            raise HTTPException(403, "no conversation of this contact is visible to you")
    return c
