"""Working on many conversations at once, and what each agent has read.

``POST /api/v1/conversations/bulk`` applies one change (status, assignee
and/or team, tags, category) to up to 500 conversations in one transaction:
each conversation is checked as the single-conversation routes check it,
each change is audited on its conversation as if made one by one (reason
``bulk``), and one ``bulk_action`` audit entry records the whole. The teams
involved are drained afterwards (``store/assignment.py``), as for a single
change. ``POST /api/v1/conversations/{id}/read`` records that the caller saw
the conversation (the list's new/unread markers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from ..events import Event
from ..model import Category, Status
from ..store import actions, assignment
from ..store.audit import add_audit
from ..store.base import Db
from ..store.inbox import mark_read
from .auth import Principal, current_principal, require_user
from .deps import Id, check_conversation, get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["inbox"])


class BulkIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=500)
    status: Status | None = None
    assignee: str | None = Field(
        None, description="username, or null to unassign (give the key to change it)"
    )
    team: str | None = Field(None, description="move to this team (give the key to change it)")
    add_tags: list[str] = Field(default_factory=list, max_length=20)
    remove_tags: list[str] = Field(default_factory=list, max_length=20)
    category: Category | None = None
    reason: str | None = Field(None, max_length=1000)


@router.post("/conversations/bulk")
async def bulk(
    body: BulkIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """One change to many conversations (status, assignee/team, tags,
    category), all or nothing. Assigning and moving teams is for supervisors
    and admins; anyone may change what they see otherwise."""
    fields = body.model_fields_set
    assigning = "assignee" in fields or "team" in fields
    if assigning and not p.sees_all():
        raise HTTPException(403, "assigning many at once is for supervisors and admins")
    if not (
        assigning or body.status or body.add_tags or body.remove_tags or body.category is not None
    ):
        raise HTTPException(422, "nothing to change")
    ids = list(dict.fromkeys(body.ids))
    for cid in ids:
        await check_conversation(services, p, cid)
    reason = "bulk" + (f": {body.reason}" if body.reason else "")
    policy = services.config.assignment

    def run(db: Db) -> tuple[int, list[Event]]:
        events: list[Event] = []
        changed = 0
        for cid in ids:
            mine: list[Event] = []
            if body.status is not None:
                mine += actions.set_status(db, cid, str(body.status), actor=p.actor, reason=reason)
            if assigning:
                current = db.val("SELECT assignee FROM conversations WHERE id = ?", (cid,))
                mine += actions.assign(
                    db,
                    cid,
                    actor=p.actor,
                    assignee=body.assignee if "assignee" in fields else current,
                    team=body.team,
                    change_team="team" in fields,
                    reason=reason,
                )
            if body.add_tags or body.remove_tags:
                mine += actions.set_tags(
                    db, cid, actor=p.actor, add=body.add_tags, remove=body.remove_tags
                )
            if body.category is not None:
                mine += actions.correct(
                    db, cid, actor=p.actor, category=str(body.category), reason=reason
                )
            changed += bool(mine)
            events += mine
        change = body.model_dump(mode="json", exclude={"ids", "reason"}, exclude_unset=True)
        add_audit(
            db,
            p.actor,
            "bulk_action",
            reason=body.reason,
            detail={"conversations": ids, "change": change, "changed": changed},
        )
        return changed, assignment.after_change(db, events, policy)

    try:
        changed, events = await services.store.write(run)
    except actions.ActionError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    services.publish(events)
    return {"changed": changed, "conversations": len(ids)}


@router.post("/conversations/{conversation_id}/read")
async def read(
    conversation_id: Id,
    p: Principal = Depends(require_user),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """The caller has seen the conversation as it is now (clears its
    new/unread marker in their list)."""
    if not p.username:
        raise HTTPException(403, "read markers belong to a user: this token acts as nobody")
    await check_conversation(services, p, conversation_id)
    await services.store.write(mark_read, conversation_id, p.username)
    return {"read": True}
