"""Browser sessions and login throttling.

A session cookie holds 32 random bytes; only their SHA-256 is stored, so a
copy of the database opens no session. Each session carries its own CSRF
token (synchronizer pattern). Sessions end after an idle period and after an
absolute lifetime, on logout, when the account is disabled or its password
changes.

Login throttling counts failures per key (``ip:<address>``, ``user:<name>``)
in the database, so it survives restarts and holds across instances sharing
PostgreSQL. After ``free`` failures every further one doubles the lockout.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from ..model import now_ts
from .base import Db, row_dict


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    db: Db,
    username: str,
    *,
    idle_seconds: float,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, str]:
    """Returns (cookie value, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = now_ts()
    db.run(
        "INSERT INTO sessions (id_hash, username, csrf_token, created_at, last_seen_at,"
        " expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_hash(token), username, csrf, now, now, now + idle_seconds, ip, (user_agent or "")[:300]),
    )
    # Old sessions are swept whenever someone logs in: no separate task needed.
    db.run("DELETE FROM sessions WHERE expires_at < ?", (now,))
    return token, csrf


def lookup_session(
    db: Db, token: str, *, idle_seconds: float, max_seconds: float
) -> dict[str, Any] | None:
    """The live session for a cookie value (sliding the idle expiry), with its
    user's role, or None. Disabled accounts have no live session."""
    now = now_ts()
    r = row_dict(
        db.one(
            "SELECT s.id_hash, s.username, s.csrf_token, s.created_at, s.last_seen_at,"
            " s.expires_at, u.role, u.display_name, u.disabled FROM sessions s"
            " JOIN users u ON u.username = s.username WHERE s.id_hash = ?",
            (_hash(token),),
        )
    )
    if r is None or r["disabled"] or r["expires_at"] < now or now - r["created_at"] > max_seconds:
        return None
    # Writing on every request would serialize reads behind the writer: slide
    # the expiry at most once a minute.
    r["touch"] = now - r["last_seen_at"] > 60
    r["new_expiry"] = min(now + idle_seconds, r["created_at"] + max_seconds)
    return r


def touch_session(db: Db, id_hash: str, expires_at: float) -> None:
    db.run(
        "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
        (now_ts(), expires_at, id_hash),
    )


def delete_session(db: Db, token: str) -> None:
    db.run("DELETE FROM sessions WHERE id_hash = ?", (_hash(token),))


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free: int  # failures allowed before lockouts start
    base: float  # seconds of the first lockout
    cap: float  # longest lockout
    forget: float  # seconds without failure after which the count resets


def throttle_status(db: Db, keys: list[str]) -> float:
    """Seconds until every key may try again (0: allowed now)."""
    now = now_ts()
    wait = 0.0
    for k in keys:
        until = db.val("SELECT locked_until FROM login_throttle WHERE key = ?", (k,))
        if until is not None and until > now:
            wait = max(wait, until - now)
    return wait


def record_failure(db: Db, key: str, policy: ThrottlePolicy) -> float | None:
    """Count a failed login; returns the lockout (seconds) it earned, if any."""
    now = now_ts()
    r = db.one("SELECT failures, last_at FROM login_throttle WHERE key = ?", (key,))
    failures = 1
    if r is not None and now - r["last_at"] < policy.forget:
        failures = int(r["failures"]) + 1
    lock = None
    if failures > policy.free:
        lock = min(policy.cap, policy.base * 2 ** (failures - policy.free - 1))
    db.run(
        "INSERT INTO login_throttle (key, failures, last_at, locked_until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,"
        " last_at = excluded.last_at, locked_until = excluded.locked_until",
        (key, failures, now, None if lock is None else now + lock),
    )
    return lock


def clear_failures(db: Db, key: str) -> None:
    db.run("DELETE FROM login_throttle WHERE key = ?", (key,))
