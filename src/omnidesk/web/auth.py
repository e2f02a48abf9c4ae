"""Who is calling: bearer API tokens (``omnidesk tokens create``).

Roles: ``admin`` (everything), ``supervisor`` (every conversation),
``agent`` (the conversations of their teams and those assigned to them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..store.tokens import lookup_token

bearer = HTTPBearer(auto_error=False, description="API token from `omnidesk tokens create`")


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    username: str | None
    teams: tuple[str, ...] = field(default=())

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.username}" if self.username else f"token:{self.role}"

    def sees_all(self) -> bool:
        return self.role in ("admin", "supervisor")


async def current_principal(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
    daemon = request.app.state.daemon
    row = await daemon.store.read(lookup_token, creds.credentials)
    if row is None:
        raise HTTPException(401, "invalid or revoked token", {"WWW-Authenticate": "Bearer"})
    username = row["username"]
    teams = tuple(t.name for t in daemon.config.teams if username and username in t.members)
    return Principal(role=row["role"], username=username, teams=teams)


async def require_admin(p: Principal = Depends(current_principal)) -> Principal:
    if p.role != "admin":
        raise HTTPException(403, "admins only")
    return p
