"""Admin API: the trained classifier — the model in use and its report, the versions,
the retrain history (from the audit trail), the corrections since it was trained, and
a retrain on demand (``learning.Retrainer``, the same path as the command and the
schedule)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from ..rules.decide import settings
from ..store import jsoncol
from ..store.base import Db
from ..store.training import category_corrections, count_new
from .auth import Principal, require_admin
from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["admin"])

_REPORT_KEYS = (
    "version",
    "trained_at",
    "examples",
    "labels",
    "weighted",
    "sources",
    "seconds",
    "cross_validated",
    "combination",
    "held_out",
    "store_until",
)


def _history(db: Db, limit: int) -> list[dict[str, Any]]:
    rows = db.all(
        "SELECT at, actor, detail FROM audit WHERE action = 'model_retrained'"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [{"at": r["at"], "actor": r["actor"], **jsoncol.loads(r["detail"], {})} for r in rows]


def _learning(db: Db, since: float) -> dict[str, Any]:
    return {
        "history": _history(db, 20),
        "new": count_new(db, since=since),
        "corrections": category_corrections(db, since=since, limit=50),
    }


@router.get("/classifier")
async def classifier_state(
    _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The model in use (its report), every saved version, the retrain history, what
    agents corrected since the model's training data ends, and a retrain's progress."""
    if services.rules.models is not None:
        services.rules.check_model()  # a model installed a moment ago shows at once
    rules = services.rules.current
    model = rules.model
    report = {k: model.report.get(k) for k in _REPORT_KEYS} if model is not None else None
    since = 0.0
    if model is not None:
        since = float(model.report.get("store_until") or model.report.get("trained_at") or 0.0)
    store = services.retrainer.model_store
    current = store.current_version()
    versions = []
    for v in reversed(store.versions()):
        r = store.report(v)
        cv = r.get("cross_validated") or {}
        held = r.get("held_out") or {}
        versions.append(
            {
                "version": v,
                "installed": v == current,
                "trained_at": r.get("trained_at"),
                "examples": r.get("examples"),
                "cv_macro_f1": cv.get("macro_f1"),
                "held_out_macro_f1": held.get("new_macro_f1"),
            }
        )
    used = None
    if model is not None:
        threshold, weight, origin = settings(model, rules.classifier.config)
        used = {"threshold": threshold, "weight": weight, "origin": origin}
    return {
        "model": report,
        "settings": used,
        "versions": versions,
        "since": since,
        "min_new": services.config.retrain_min_new,
        "schedule_seconds": services.config.retrain_every,
        "retrain": services.retrainer.status(),
        **await services.store.read(_learning, since),
    }


class RetrainBody(BaseModel):
    # Train even when fewer than ``min_new`` corrections and confirmations are new.
    force: bool = False


@router.post("/classifier/retrain", status_code=202)
async def classifier_retrain(
    body: RetrainBody | None = None,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Start a retrain in the background; ``GET /classifier`` shows its progress and,
    once done, its outcome (also in the audit trail)."""
    min_new = 1 if body is not None and body.force else services.config.retrain_min_new
    if not services.retrainer.start(services.spawn, actor=p.actor, min_new=min_new):
        raise HTTPException(409, "a retrain is already running")
    return {"started": True, "min_new": min_new}
