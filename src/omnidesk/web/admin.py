"""Admin API: quarantine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException

from ..store.inbound import get_quarantine, list_quarantine, retry_quarantine
from .auth import Principal, require_admin
from .deps import Id, get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/quarantine")
async def quarantine_list(
    state: str | None = "open",
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> list[dict[str, Any]]:
    return await services.store.read(list_quarantine, state=state)


@router.get("/quarantine/{qid}")
async def quarantine_show(
    qid: Id, _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    q = await services.store.read(get_quarantine, qid)
    if q is None:
        raise HTTPException(404, "no such quarantine entry")
    raw: bytes = q.pop("payload")
    q["size"] = len(raw)
    q["payload_preview"] = raw[:4096].decode("utf-8", "replace")
    return q


@router.post("/quarantine/{qid}/retry")
async def quarantine_retry(
    qid: Id, _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    done = await services.store.write(retry_quarantine, [qid])
    if not done:
        raise HTTPException(404, "no open quarantine entry with that id")
    services.wake_pipeline()
    return {"requeued": done}
