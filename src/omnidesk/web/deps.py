"""Dependencies shared by the API routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from .auth import Principal

if TYPE_CHECKING:
    from ..daemon import Daemon


def get_daemon(request: Request) -> Daemon:
    return request.app.state.daemon


def can_see(p: Principal, conv: dict[str, Any]) -> bool:
    """Agents see their teams' conversations and those assigned to them;
    supervisors and admins see everything."""
    return (
        p.sees_all()
        or conv.get("team") in p.teams
        or (p.username is not None and conv.get("assignee") == p.username)
    )
