"""Agents' availability (online, away, offline) and the supervisors' board.

Signing in makes an agent online and signing out of their last session
offline (``session.py``, ``ui.py``); here they set it by hand, and the
browser reports activity (a key or pointer within the last minute) so an
agent idle for ``[assignment] idle_away_minutes`` turns away and comes back
when they return. Every change that can free or add a place drains the
teams' queues (``store/assignment.py``), and the events it makes reach the
inbox's live feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from ..config import AssignmentConfig
from ..events import Event
from ..store import assignment
from ..store.base import Db
from .auth import Principal, require_supervisor, require_user
from .deps import get_services

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["availability"])


class AvailabilityIn(BaseModel):
    status: Literal["online", "away", "offline"]


def _me(p: Principal) -> str:
    if not p.username:
        raise HTTPException(403, "availability belongs to a user: this token acts as nobody")
    return p.username


@router.get("/me/availability")
async def my_availability(
    p: Principal = Depends(require_user), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The caller's state now (``away`` also when idle too long)."""
    username = _me(p)
    policy = services.config.assignment
    state = await services.store.read(assignment.agent_state, username, policy)
    return {"username": username, "state": state, "idle_away_seconds": policy.idle_away_seconds}


@router.put("/me/availability")
async def set_my_availability(
    body: AvailabilityIn,
    p: Principal = Depends(require_user),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Set the caller's state by hand. Coming online hands them the oldest
    waiting conversations of their teams, up to their cap. An API client
    (token) keeps the state it set; a browser's lasts while a session does."""
    via = "session" if p.via == "session" else "token"

    def set_state(db: Db, username: str, policy: AssignmentConfig) -> list[Event]:
        return assignment.set_status(
            db, username, body.status, policy, actor=p.actor, via=via, reason="set by hand"
        )

    return await _change(services, p, set_state)


@router.post("/me/activity")
async def activity(
    p: Principal = Depends(require_user), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The browser saw the agent at work (sent at most once a minute)."""
    return await _change(services, p, assignment.touch_activity)


async def _change(
    services: WebServices,
    p: Principal,
    fn: Callable[[Db, str, AssignmentConfig], list[Event]],
) -> dict[str, Any]:
    """Run one change of the caller's availability, publish what it caused
    (a drain's assignments), and answer with their state now."""
    username = _me(p)
    policy = services.config.assignment
    services.publish(await services.store.write(fn, username, policy))
    state = await services.store.read(assignment.agent_state, username, policy)
    return {"username": username, "state": state}


@router.get("/agents/availability")
async def board(
    _: Principal = Depends(require_supervisor), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """Each agent's state, open load, cap and teams (supervisors and admins)."""

    def read(db: Db) -> list[dict[str, Any]]:
        return assignment.agent_board(db, services.config.assignment)

    return {"agents": await services.store.read(read)}
