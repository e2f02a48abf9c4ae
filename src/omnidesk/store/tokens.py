"""API bearer tokens. Only a SHA-256 of each token is stored: tokens are long
random strings, so a fast hash is enough and a stolen database yields none."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from ..model import now_ts
from .base import Db, row_dict

ROLES = ("admin", "supervisor", "agent")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Db, role: str, *, name: str | None = None, username: str | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = "odk_" + secrets.token_urlsafe(32)
    db.run(
        "INSERT INTO api_tokens (token_hash, role, name, username, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (hash_token(token), role, name, username, now_ts()),
    )
    return token


def lookup_token(db: Db, token: str) -> dict[str, Any] | None:
    return row_dict(
        db.one(
            "SELECT id, role, name, username FROM api_tokens"
            " WHERE token_hash = ? AND revoked_at IS NULL",
            (hash_token(token),),
        )
    )


def list_tokens(db: Db, username: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never their value), all or one user's."""
    where, params = ("", ()) if username is None else (" WHERE username = ?", (username,))
    return [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT id, role, name, username, created_at, last_used_at, revoked_at"
                f" FROM api_tokens{where} ORDER BY id",
                params,
            )
        )
        if d is not None
    ]


def revoke_token(db: Db, token_id: int, username: str | None = None) -> bool:
    """Revoke a token (only ``username``'s when given)."""
    sql = "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
    params: tuple[Any, ...] = (now_ts(), token_id)
    if username is not None:
        sql += " AND username = ?"
        params += (username,)
    return db.run(sql, params) > 0
