"""Search API: messages and contacts, any language (see ``store/search.py``
for the query syntax and what each hit carries)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from ..store.search import SearchError, search_contacts, search_messages
from .auth import Principal, current_principal
from .deps import DB_INT_MAX, get_services, visibility

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1")


@router.get("/search", tags=["search"])
async def search(
    q: str = Query(
        ...,
        min_length=1,
        max_length=500,
        description='words or "quoted phrases"; every term must occur (substring, any case)',
    ),
    kind: Literal["messages", "contacts"] = "messages",
    limit: int = Query(20, ge=1, le=100),
    before: int | None = Query(
        None, ge=1, le=DB_INT_MAX, description="messages: id of the last hit of the previous page"
    ),
    conversation_id: int | None = Query(
        None, ge=1, le=DB_INT_MAX, description="messages: within one conversation"
    ),
    channel: str | None = Query(None, description="messages: from one channel"),
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Messages newest first (keyset pages: pass ``next_before`` as ``before``),
    or contacts best match first. Agents find only what their teams' or their
    own conversations hold."""
    teams, user = visibility(p)
    try:
        if kind == "contacts":
            items = await services.store.read(
                search_contacts, q, limit=limit, visible_teams=teams, visible_user=user
            )
            return {"kind": kind, "items": items, "next_before": None}
        items = await services.store.read(
            search_messages,
            q,
            limit=limit,
            before=before,
            visible_teams=teams,
            visible_user=user,
            conversation_id=conversation_id,
            channel=channel,
        )
    except SearchError as exc:
        raise HTTPException(400, str(exc)) from None
    nxt = items[-1]["id"] if len(items) == limit else None
    return {"kind": kind, "items": items, "next_before": nxt}
