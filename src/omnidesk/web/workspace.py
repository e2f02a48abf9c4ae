"""An agent's working tools: saved inbox views (per user) and canned replies
(shared, or for one team; supervisors and admins manage them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from ..store.audit import add_audit
from ..store.base import Db
from ..store.canned import PLACEHOLDERS, CannedError, delete_canned, list_canned, save_canned
from ..store.views import ViewError, delete_view, list_views, save_view
from .auth import Principal, current_principal, require_supervisor, require_user
from .deps import Id, get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1")


class ViewIn(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    filters: dict[str, str | bool] = Field(
        default_factory=dict,
        description="the inbox list's query parameters: scope, status, category, priority, "
        "channel, tag, team, assignee, sort, breached",
    )


class CannedIn(BaseModel):
    shortcut: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)
    team: str | None = None


def _user(p: Principal) -> str:
    assert p.username is not None, "require_user"
    return p.username


@router.get("/views", tags=["views"])
async def views(
    p: Principal = Depends(require_user), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    return {"items": await services.store.read(list_views, _user(p))}


@router.post("/views", tags=["views"], status_code=201)
async def add_view(
    body: ViewIn,
    p: Principal = Depends(require_user),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Save (or overwrite, by name) a view."""
    try:
        return await services.store.write(save_view, _user(p), body.name, body.filters)
    except ViewError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/views/{view_id}", tags=["views"])
async def drop_view(
    view_id: Id, p: Principal = Depends(require_user), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    if not await services.store.write(delete_view, _user(p), view_id):
        raise HTTPException(404, "no such view of yours")
    return {"deleted": view_id}


@router.get("/canned", tags=["canned"])
async def canned(
    p: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Canned replies the caller may use, and the placeholders they can hold."""
    items = await services.store.read(list_canned, None if p.sees_all() else p.teams)
    return {"items": items, "placeholders": list(PLACEHOLDERS)}


async def _save(
    services: WebServices, p: Principal, body: CannedIn, canned_id: int | None
) -> dict[str, Any]:
    def save(db: Db) -> dict[str, Any]:
        c = save_canned(db, actor=p.actor, canned_id=canned_id, **body.model_dump())
        add_audit(
            db,
            p.actor,
            "canned_saved",
            detail={"id": c["id"], "shortcut": c["shortcut"], "team": c["team"]},
        )
        return c

    try:
        return await services.store.write(save)
    except CannedError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/canned", tags=["canned"], status_code=201)
async def add_canned(
    body: CannedIn,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return await _save(services, p, body, None)


@router.put("/canned/{canned_id}", tags=["canned"])
async def put_canned(
    canned_id: Id,
    body: CannedIn,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return await _save(services, p, body, canned_id)


@router.delete("/canned/{canned_id}", tags=["canned"])
async def drop_canned(
    canned_id: Id,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    def drop(db: Db) -> bool:
        ok = delete_canned(db, canned_id)
        if ok:
            add_audit(db, p.actor, "canned_deleted", detail={"id": canned_id})
        return ok

    if not await services.store.write(drop):
        raise HTTPException(404, "no such canned reply")
    return {"deleted": canned_id}
