"""Dependencies shared by the API routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import HTTPException, Path, Request

from ..store.inbox import conversation_access
from .auth import Principal

if TYPE_CHECKING:
    from .services import WebServices


# The largest integer SQLite and PostgreSQL's BIGINT hold. An id or key past
# it names no row, and handing it to the database raises (OverflowError, a
# 500): every integer the API takes is bounded by it, so the answer is a 422.
DB_INT_MAX = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="a row id")]


async def get_services(request: Request) -> WebServices:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a
    # thread hop on every request (it halved webhook throughput, measured).
    return request.app.state.services


def can_see(p: Principal, conv: dict[str, Any]) -> bool:
    """Agents see their teams' conversations and those assigned to them;
    supervisors and admins see everything."""
    return (
        p.sees_all()
        or conv.get("team") in p.teams
        or (p.username is not None and conv.get("assignee") == p.username)
    )


def visibility(p: Principal) -> tuple[list[str] | None, str | None]:
    """(teams, user) for store filters; (None, ...) means everything."""
    return (None if p.sees_all() else list(p.teams)), p.username


async def check_conversation(
    services: WebServices, p: Principal, conversation_id: int
) -> dict[str, Any]:
    """The conversation's access facts, or 404/403."""
    conv = await services.store.read(conversation_access, conversation_id)
    if conv is None:
        raise HTTPException(404, "no such conversation")
    if not can_see(p, conv):
        raise HTTPException(403, "not your team's conversation")
    return conv
