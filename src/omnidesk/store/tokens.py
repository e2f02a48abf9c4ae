"""API bearer tokens. Only a SHA-256 of each token is stored: tokens are long
random strings, so a fast hash is enough and a stolen database yields none.

Each token has a random **public id** (``tok_`` and 24 hex digits): the name
the API, the UI and the CLI show it by and revoke it with. The row's
sequential id never leaves the store, so holding one token tells nothing
about the ids of others.

Who may see or revoke which tokens is an explicit :class:`Owner` on every
call, never an absent filter: a user's tokens, one token alone (a token made
without a user manages only itself), or every token (admins).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from ..model import now_ts
from .base import Db, row_dict

ROLES = ("admin", "supervisor", "agent")
PUBLIC_PREFIX = "tok_"
COLUMNS = "public_id AS id, role, name, username, created_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class Owner:
    """The tokens a caller may list and revoke."""

    username: str | None = None
    public_id: str | None = None
    everyone: bool = False

    @classmethod
    def user(cls, username: str) -> Owner:
        return cls(username=username)

    @classmethod
    def token(cls, public_id: str) -> Owner:
        return cls(public_id=public_id)

    @classmethod
    def anyone(cls) -> Owner:
        return cls(everyone=True)

    def where(self) -> tuple[str, tuple[Any, ...]]:
        if self.everyone:
            return "1 = 1", ()
        if self.username is not None:
            return "username = ?", (self.username,)
        if self.public_id is not None:
            return "public_id = ?", (self.public_id,)
        raise ValueError("an Owner names a user, a token, or everyone")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Db, role: str, *, name: str | None = None, username: str | None = None) -> str:
    """A new token (the secret, shown once); its public id is in :func:`lookup_token`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = "odk_" + secrets.token_urlsafe(32)
    db.run(
        "INSERT INTO api_tokens (token_hash, public_id, role, name, username, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (hash_token(token), PUBLIC_PREFIX + secrets.token_hex(12), role, name, username, now_ts()),
    )
    return token


def lookup_token(db: Db, token: str) -> dict[str, Any] | None:
    """A live token's public id (as ``id``), role, name and user."""
    return row_dict(
        db.one(
            "SELECT public_id AS id, role, name, username FROM api_tokens"
            " WHERE token_hash = ? AND revoked_at IS NULL",
            (hash_token(token),),
        )
    )


def list_tokens(db: Db, owner: Owner) -> list[dict[str, Any]]:
    """The owner's tokens (never their secret), oldest first."""
    where, params = owner.where()
    return [
        d
        for d in (
            row_dict(r)
            # Oldest first: the table's row id (``id`` in the output is the public one).
            for r in db.all(
                f"SELECT {COLUMNS} FROM api_tokens WHERE {where} ORDER BY api_tokens.id", params
            )
        )
        if d is not None
    ]


def revoke_token(db: Db, public_id: str, owner: Owner) -> dict[str, Any] | None:
    """Revoke one of the owner's live tokens; the token as it was, or None
    when the owner has no live token with that id."""
    where, params = owner.where()
    found = row_dict(
        db.one(
            f"SELECT {COLUMNS} FROM api_tokens"
            f" WHERE public_id = ? AND revoked_at IS NULL AND {where}",
            (public_id, *params),
        )
    )
    if found is not None:
        db.run("UPDATE api_tokens SET revoked_at = ? WHERE public_id = ?", (now_ts(), public_id))
    return found
