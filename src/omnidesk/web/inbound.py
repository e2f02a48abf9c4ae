"""Inbound HTTP for channels: the signed API channel and provider webhooks.
These answer without a user token; each channel checks its own signature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(tags=["channels"])
RETRY_AFTER = 5  # seconds a sender is asked to wait when the store cannot take its message


async def intake_unavailable(request: Request, exc: Exception) -> Response:
    """An ``IntakeError`` from any channel's endpoint: the store could not
    take the message (disk full, database restarting), nothing was stored and
    the sender must try again, so 503 with Retry-After rather than a 500
    that reads like a bug in the request. The intake has logged the cause."""
    return JSONResponse(
        {"detail": "could not store the message now, please try again later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


@router.post("/api/v1/inbound/{channel}", status_code=202)
async def inbound(
    channel: str, request: Request, services: WebServices = Depends(get_services)
) -> Response:
    """Signed inbound message for an API channel (see the API channel docs)."""
    adapter = services.adapters.get(channel)
    if adapter is None or adapter.type != "api":
        raise HTTPException(404, f"no API channel named {channel!r}")
    return await adapter.handle_webhook(request)


async def webhook(request: Request) -> Response:
    """Provider webhooks at ``/webhooks/{channel}``: verification handshakes
    (GET, e.g. Meta's hub.challenge) and deliveries (POST), each checked by
    its channel. A plain Starlette route: FastAPI's per-route machinery cost
    more than the whole webhook (bench/bench_webhooks.py)."""
    name = request.path_params["channel"]
    adapter = request.app.state.services.adapters.get(name)
    if adapter is None:
        return JSONResponse({"detail": f"no channel named {name!r}"}, status_code=404)
    response: Response = await adapter.handle_webhook(request)
    return response


router.add_route("/webhooks/{channel}", webhook, methods=["GET", "POST"], include_in_schema=False)
