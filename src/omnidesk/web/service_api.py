"""The service in the inbox API: a conversation's SLA clocks (live, in business
hours), its surveys, and agents' notifications (SLA warnings and breaches,
rules' ``notify``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..model import now_ts
from ..service.evaluate import conversation_input, policy_for
from ..service.satisfaction import contact_figure
from ..service.sla import clocks
from ..service.surveys import surveys_of
from ..store import service as svc
from ..store.base import Db
from .auth import Principal, current_principal
from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["service"])


def live_sla(
    services: WebServices, conv: dict[str, Any], now: float | None = None
) -> dict[str, Any] | None:
    """The SLA policy that applies to ``conv`` and its clocks as of now (due
    times, business seconds left, breaches), or None without a policy."""
    now = now_ts() if now is None else now
    ruleset = services.rules.current
    service = ruleset.service
    contact = conv.get("contact") or {}
    facts = {**conv, "contact": contact.get("attributes", {}) if isinstance(contact, dict) else {}}
    inp = conversation_input(
        facts,
        datetime.fromtimestamp(now, UTC),
        service.calendar_for(conv.get("team")),
        services.scheduler.settings.channel_types,
    )
    ctx = ruleset.conversation_context(inp, conv.get("category"))
    policy = policy_for(ruleset, ctx, services.scheduler.settings.fallback_policy)
    if policy is None:
        return None
    calendar = service.calendar_for(conv.get("team"), policy)
    return clocks(policy, calendar, conv).to_dict(now)


def business_left(
    services: WebServices, team: str | None, due: float | None, now: float
) -> float | None:
    """Business seconds from now to ``due`` in the team's calendar."""
    if due is None:
        return None
    return services.rules.current.service.calendar_for(team).between(now, due)


def conversation_extras(db: Db, conversation_id: int, contact_id: int) -> dict[str, Any]:
    """A conversation's surveys, and its contact's satisfaction figure."""
    return {
        "surveys": surveys_of(db, conversation_id=conversation_id),
        "contact_satisfaction": contact_figure(db, contact_id),
    }


class ReadIn(BaseModel):
    ids: list[int] | None = Field(None, description="these notifications; omit for all")


@router.get("/notifications")
async def notifications(
    unread: bool = False,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """The caller's notifications, newest first, and how many are unread."""
    if p.username is None:
        return {"items": [], "unread": 0}
    user = p.username

    def load(db: Db) -> dict[str, Any]:
        return {
            "items": svc.notifications_for(db, user, unread_only=unread),
            "unread": svc.unread_count(db, user),
        }

    return await services.store.read(load)


@router.post("/notifications/read")
async def read_notifications(
    body: ReadIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    if p.username is None:
        return {"marked": 0}
    n = await services.store.write(svc.mark_read, p.username, body.ids, now_ts())
    return {"marked": n}
