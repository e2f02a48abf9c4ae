"""Inbound HTTP for channels: the signed API channel and provider webhooks.
These answer without a user token; each channel checks its own signature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from .deps import get_daemon

if TYPE_CHECKING:
    from ..daemon import Daemon

router = APIRouter(tags=["channels"])


@router.post("/api/v1/inbound/{channel}", status_code=202)
async def inbound(channel: str, request: Request, daemon: Daemon = Depends(get_daemon)) -> Response:
    """Signed inbound message for an API channel (see the API channel docs)."""
    adapter = daemon.adapters.get(channel)
    if adapter is None or adapter.type != "api":
        raise HTTPException(404, f"no API channel named {channel!r}")
    return await adapter.handle_webhook(request)


async def _webhook(channel: str, request: Request, daemon: Daemon) -> Response:
    adapter = daemon.adapters.get(channel)
    if adapter is None:
        raise HTTPException(404, f"no channel named {channel!r}")
    return await adapter.handle_webhook(request)


@router.get("/webhooks/{channel}")
async def webhook_verify(
    channel: str, request: Request, daemon: Daemon = Depends(get_daemon)
) -> Response:
    """Provider webhook verification handshakes (e.g. Meta's hub.challenge)."""
    return await _webhook(channel, request, daemon)


@router.post("/webhooks/{channel}")
async def webhook(channel: str, request: Request, daemon: Daemon = Depends(get_daemon)) -> Response:
    """Provider webhook deliveries (signature-checked by each channel)."""
    return await _webhook(channel, request, daemon)
