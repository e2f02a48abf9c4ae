"""Health and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..store.inbound import count_pending
from .auth import Principal, current_principal
from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(tags=["ops"])


async def _observe(services: WebServices) -> dict[str, Any]:
    """Channel, queue and pipeline process health, read now and written
    into the gauges: for /healthz and for /metrics alike (a Prometheus that
    only scrapes /metrics must not see the state of the last health check)."""
    m = services.metrics
    channels = {n: a.health().to_dict() for n, a in services.adapters.items()}
    for n, h in channels.items():
        # Replies failing count too: the outbox's results (health.py).
        if (out := services.health.outbound(n)) is not None:
            h["outbound"] = out
        m.channel_up.labels(n).set(1 if h["ok"] and (out is None or out["ok"]) else 0)
    try:
        pending = await services.store.read(count_pending)
        store_ok = True
    except Exception:
        pending, store_ok = None, False
    m.pending.set(pending or 0)
    seen: dict[str, Any] = {"channels": channels, "pending": pending, "store_ok": store_ok}
    if (status := services.pipeline_status()) is not None:
        m.pipeline_ready.set(status["ready"])
        m.pipeline_restarts.set(status["restarts"])
        seen["pipeline"] = status
    return seen


@router.get("/healthz")
async def healthz(services: WebServices = Depends(get_services)) -> JSONResponse:
    """Liveness, store, rules and channel health. No authentication."""
    seen = await _observe(services)
    channels, pending, store_ok = seen["channels"], seen["pending"], seen["store_ok"]
    rules_error = services.rules.last_error
    ok = store_ok and all(
        h["ok"] and h.get("outbound", {}).get("ok", True) for h in channels.values()
    )
    extra = {}
    if "pipeline" in seen:
        # A pipeline process that keeps dying leaves mail pending: say so.
        extra["pipeline"] = seen["pipeline"]
        ok = ok and extra["pipeline"]["ok"]
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "store": {"ok": store_ok, "engine": services.store.dialect, "pending": pending},
        "rules": {
            "ok": rules_error is None,
            "version": services.rules.version,
            "error": str(rules_error) if rules_error else None,
        },
        "channels": channels,
        **extra,
    }
    return JSONResponse(body, status_code=200 if store_ok else 503)


@router.get("/readyz")
async def readyz(services: WebServices = Depends(get_services)) -> JSONResponse:
    """Readiness: 200 when this instance does its work, 503 with the list of
    problems (store, pipeline, channels past their [health] thresholds) when
    it does not; ``warnings`` name what is wrong but not yet a problem. No
    authentication, for load balancers and orchestrators."""
    seen = await services.health.check()
    return JSONResponse(seen.to_dict(), status_code=200 if seen.ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    _: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> Response:
    """Prometheus metrics (any valid token)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    await _observe(services)
    await services.health.check()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
