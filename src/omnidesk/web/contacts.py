"""Contacts: search, the whole history, attribute edits, merge and undo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from ..service.satisfaction import contact_figure
from ..service.surveys import surveys_of
from ..store.base import Db
from ..store.contact_admin import (
    ContactError,
    contact_audit,
    contact_visible,
    merge_contacts,
    merges_of,
    undo_merge,
    update_contact,
)
from ..store.contacts import get_contact
from ..store.search import SearchError, search_contacts
from .auth import Principal, current_principal, require_admin
from .deps import DB_INT_MAX, Id, can_see, get_services, visibility

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["contacts"])


class ContactPatch(BaseModel):
    name: str | None = Field(None, max_length=200)
    attributes: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="attributes to set (e.g. tier, company, language); null removes one",
    )


class MergeIn(BaseModel):
    source_id: int = Field(
        ge=1,
        le=DB_INT_MAX,
        description="the contact merged away (its identities and conversations move to this one)",
    )
    reason: str | None = Field(None, max_length=1000)


@router.get("/contacts")
async def contacts(
    q: str = Query(..., min_length=1, max_length=200, description="name, e-mail, phone, handle"),
    limit: int = Query(25, ge=1, le=100),
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Search contacts by name, e-mail address, phone number or channel handle
    (every word must occur; exact matches first). Agents find only contacts
    with a conversation they can see."""
    teams, user = visibility(p)
    try:
        items = await services.store.read(
            search_contacts, q, limit=limit, visible_teams=teams, visible_user=user
        )
    except SearchError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"items": items}


async def _check_contact(services: WebServices, p: Principal, contact_id: int) -> None:
    teams, user = visibility(p)
    if not await services.store.read(contact_visible, contact_id, teams, user):
        exists = await services.store.read(contact_visible, contact_id, None, None)
        if not exists:
            raise HTTPException(404, "no such contact")
        raise HTTPException(403, "no conversation of this contact is visible to you")


@router.get("/contacts/{contact_id}")
async def contact(
    contact_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """A contact: identities on each channel, attributes, every conversation on
    any channel (an agent sees those of their teams), merges and changes."""

    teams, user = visibility(p)

    def load(db: Db) -> dict[str, Any] | None:
        c = get_contact(db, contact_id)
        if c is not None:
            c["merges"] = merges_of(db, contact_id)
            c["audit"] = contact_audit(db, contact_id, visible_teams=teams, visible_user=user)
            # The satisfaction and loyalty figure, and the surveys answered.
            c["satisfaction"] = contact_figure(db, contact_id)
            c["surveys"] = surveys_of(db, contact_id=contact_id)
        return c

    c = await services.store.read(load)
    if c is None:
        raise HTTPException(404, "no such contact")
    if not p.sees_all():
        c["conversations"] = [x for x in c["conversations"] if can_see(p, x)]
        if not c["conversations"]:
            raise HTTPException(403, "no conversation of this contact is visible to you")
        # What a merge moved is listed by id: only the conversations the agent sees.
        seen = {x["id"] for x in c["conversations"]}
        for m in c["merges"]:
            m["conversation_ids"] = [i for i in m["conversation_ids"] if i in seen]
        # Ratings and comments too: only those about conversations the agent sees.
        c["surveys"] = [s for s in c["surveys"] if s["conversation_id"] in seen]
    return c


@router.patch("/contacts/{contact_id}")
async def edit_contact(
    contact_id: Id,
    body: ContactPatch,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Rename, or set attributes (tier, company, language...); recorded."""
    await _check_contact(services, p, contact_id)
    try:
        out = await services.store.write(
            update_contact, contact_id, actor=p.actor, name=body.name, attributes=body.attributes
        )
    except ContactError as exc:
        raise HTTPException(422, str(exc)) from None
    services.publish([{"type": "contact.updated", "contact_id": contact_id}])
    return out


@router.post("/contacts/{contact_id}/merge")
async def merge(
    contact_id: Id,
    body: MergeIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Merge ``source_id`` into this contact: every identity and conversation
    moves here. Recorded; an admin can undo it exactly."""
    await _check_contact(services, p, contact_id)
    await _check_contact(services, p, body.source_id)
    try:
        out = await services.store.write(
            merge_contacts, body.source_id, contact_id, actor=p.actor, reason=body.reason
        )
    except ContactError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    services.publish(
        [
            {
                "type": "contact.merged",
                "contact_id": contact_id,
                "source_id": body.source_id,
                "merge_id": out["merge_id"],
            }
        ]
    )
    return out


@router.get("/contact-merges")
async def merges(
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return {"items": await services.store.read(merges_of, None, limit=limit)}


@router.post("/contact-merges/{merge_id}/undo")
async def undo(
    merge_id: Id,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Undo a merge: exactly the identities and conversations it moved go back."""
    try:
        out = await services.store.write(undo_merge, merge_id, actor=p.actor)
    except ContactError as exc:
        raise HTTPException(409, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    services.publish(
        [
            {
                "type": "contact.merged",
                "contact_id": out["target"],
                "source_id": out["source"],
                "undone": True,
            }
        ]
    )
    return out
