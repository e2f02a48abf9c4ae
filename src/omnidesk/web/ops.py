"""Health and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..store.inbound import count_pending
from .auth import Principal, current_principal
from .deps import get_daemon

if TYPE_CHECKING:
    from ..daemon import Daemon

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(daemon: Daemon = Depends(get_daemon)) -> JSONResponse:
    """Liveness, store, rules and channel health. No authentication."""
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
    extra = {}
    if daemon.pipeline_processes is not None:
        # A pipeline process that keeps dying leaves mail pending: say so.
        extra["pipeline"] = daemon.pipeline_processes.status()
        ok = ok and extra["pipeline"]["ok"]
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
        **extra,
    }
    return JSONResponse(body, status_code=200 if store_ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    _: Principal = Depends(current_principal), daemon: Daemon = Depends(get_daemon)
) -> Response:
    """Prometheus metrics (any valid token)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)
