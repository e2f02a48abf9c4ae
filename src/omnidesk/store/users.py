"""Accounts (agents, supervisors, admins) and teams with their members.

Passwords are hashed with argon2id by :mod:`omnidesk.accounts`; this module
only stores the hash. Teams live in the database (seeded from ``[[teams]]`` in
the config at start, then managed by admins); the pipeline reads them here,
inside its own transaction, when it assigns a conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..config import TeamConfig
from ..model import now_ts
from .base import Db, placeholders, row_dict
from .locks import xact_lock

ROLES = ("agent", "supervisor", "admin")
ROLE_RANK = {"agent": 0, "supervisor": 1, "admin": 2}
STRATEGIES = ("round_robin", "least_loaded", "manual")

USER_COLUMNS = (
    "id, username, display_name, email, role, disabled, created_at, updated_at, last_login_at"
)


class AccountError(ValueError):
    """A change that cannot be made (unknown user, bad role, last admin...)."""


def valid_username(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and name[0].isalnum()
        and all(ch.isalnum() or ch in "._-@" for ch in name)
    )


def _user(db: Db, r: Any) -> dict[str, Any] | None:
    d = row_dict(r)
    if d is None:
        return None
    d["disabled"] = bool(d["disabled"])
    d["teams"] = user_teams(db, d["username"])
    return d


def get_user(db: Db, username: str) -> dict[str, Any] | None:
    return _user(db, db.one(f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", (username,)))


def list_users(db: Db) -> list[dict[str, Any]]:
    out = []
    for r in db.all(f"SELECT {USER_COLUMNS} FROM users ORDER BY username"):
        u = _user(db, r)
        assert u is not None
        out.append(u)
    return out


def password_hash(db: Db, username: str) -> tuple[str | None, bool] | None:
    """(hash, disabled) for a login attempt; None when there is no such user."""
    r = db.one("SELECT password_hash, disabled FROM users WHERE username = ?", (username,))
    return None if r is None else (r["password_hash"], bool(r["disabled"]))


def create_user(
    db: Db,
    username: str,
    *,
    role: str,
    password_hash: str | None,
    display_name: str | None = None,
    email: str | None = None,
    teams: Sequence[str] = (),
) -> dict[str, Any]:
    if not valid_username(username):
        raise AccountError(
            "a username is 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter"
            " or digit"
        )
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if db.val("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise AccountError(f"user {username!r} already exists")
    now = now_ts()
    db.run(
        "INSERT INTO users (username, display_name, email, role, password_hash, disabled,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        (username, display_name, email, role, password_hash, now, now),
    )
    if teams:
        set_user_teams(db, username, teams)
    u = get_user(db, username)
    assert u is not None
    return u


def update_user(db: Db, username: str, **fields: Any) -> dict[str, Any]:
    """Change display_name, email, role, disabled, password_hash or teams."""
    before = get_user(db, username)
    if before is None:
        raise AccountError(f"no user {username!r}")
    allowed = {"display_name", "email", "role", "disabled", "password_hash"}
    teams = fields.pop("teams", None)
    bad = set(fields) - allowed
    if bad:
        raise AccountError(f"not changeable: {sorted(bad)}")
    if "role" in fields and fields["role"] not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    demotes_admin = before["role"] == "admin" and (
        fields.get("role", "admin") != "admin" or fields.get("disabled")
    )
    if demotes_admin:
        # Two admins demoting each other at once on PostgreSQL would each
        # count the other and leave none: the count and the change are one
        # step under a lock (SQLite's single writer already serializes them).
        xact_lock(db, ["accounts:admins"])
        if active_admins(db) <= 1:
            raise AccountError("this is the last active admin: make another admin first")
    if "disabled" in fields:
        fields["disabled"] = 1 if fields["disabled"] else 0
    if fields:
        fields["updated_at"] = now_ts()
        cols = ", ".join(f"{k} = ?" for k in fields)
        db.run(f"UPDATE users SET {cols} WHERE username = ?", (*fields.values(), username))
    if teams is not None:
        set_user_teams(db, username, teams)
    if fields.get("disabled") or "password_hash" in fields:
        # A disabled account or a new password ends every open session.
        db.run("DELETE FROM sessions WHERE username = ?", (username,))
    if fields.get("disabled"):
        db.run(
            "UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
            (now_ts(), username),
        )
    after = get_user(db, username)
    assert after is not None
    return after


def active_admins(db: Db) -> int:
    return int(db.val("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0"))


def touch_login(db: Db, username: str) -> None:
    db.run("UPDATE users SET last_login_at = ? WHERE username = ?", (now_ts(), username))


# -- teams ---------------------------------------------------------------------


def user_teams(db: Db, username: str) -> list[str]:
    return [
        r["team"]
        for r in db.all(
            "SELECT team FROM team_members WHERE username = ? ORDER BY team", (username,)
        )
    ]


def set_user_teams(db: Db, username: str, teams: Iterable[str]) -> None:
    wanted = list(dict.fromkeys(teams))
    known = {r["name"] for r in db.all("SELECT name FROM teams")}
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise AccountError(f"no team named {unknown[0]!r}")
    current = set(user_teams(db, username))
    for t in current - set(wanted):
        db.run("DELETE FROM team_members WHERE team = ? AND username = ?", (t, username))
    for t in wanted:
        if t not in current:
            pos = db.val(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM team_members WHERE team = ?", (t,)
            )
            db.run(
                "INSERT INTO team_members (team, username, position) VALUES (?, ?, ?)",
                (t, username, int(pos)),
            )


def list_teams(db: Db) -> list[dict[str, Any]]:
    out = []
    for r in db.all(
        "SELECT name, strategy, max_open_per_agent, sticky, created_at, updated_at FROM teams"
        " ORDER BY name"
    ):
        d = row_dict(r)
        assert d is not None
        d["sticky"] = bool(d["sticky"])
        d["members"] = team_members(db, d["name"])
        out.append(d)
    return out


def team_members(db: Db, team: str) -> list[str]:
    return [
        r["username"]
        for r in db.all(
            "SELECT username FROM team_members WHERE team = ? ORDER BY position, username",
            (team,),
        )
    ]


def load_team(db: Db, name: str) -> TeamConfig | None:
    """A team as routing wants it: members in order, without disabled accounts
    (members need not have an account: config teams may name agents who log in
    with API tokens only)."""
    r = db.one(
        "SELECT name, strategy, max_open_per_agent, sticky FROM teams WHERE name = ?", (name,)
    )
    if r is None:
        return None
    members = [
        m["username"]
        for m in db.all(
            "SELECT tm.username FROM team_members tm LEFT JOIN users u ON u.username = tm.username"
            " WHERE tm.team = ? AND COALESCE(u.disabled, 0) = 0 ORDER BY tm.position, tm.username",
            (name,),
        )
    ]
    return TeamConfig(
        name=r["name"],
        members=members,
        strategy=r["strategy"],
        max_open_per_agent=int(r["max_open_per_agent"]),
        sticky=bool(r["sticky"]),
    )


def save_team(
    db: Db,
    name: str,
    *,
    members: Sequence[str] | None = None,
    strategy: str | None = None,
    max_open_per_agent: int | None = None,
    sticky: bool | None = None,
    create: bool = False,
) -> dict[str, Any]:
    if not valid_username(name):
        raise AccountError("a team name is letters, digits, '.', '_', '-' or '@'")
    if strategy is not None and strategy not in STRATEGIES:
        raise AccountError(f"strategy must be one of {', '.join(STRATEGIES)}")
    if max_open_per_agent is not None and max_open_per_agent < 1:
        raise AccountError("max_open_per_agent must be at least 1")
    now = now_ts()
    exists = db.val("SELECT 1 FROM teams WHERE name = ?", (name,))
    if exists and create:
        raise AccountError(f"team {name!r} already exists")
    if not exists:
        if not create:
            raise AccountError(f"no team named {name!r}")
        db.run(
            "INSERT INTO teams (name, strategy, max_open_per_agent, sticky, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                name,
                strategy or "round_robin",
                max_open_per_agent or 25,
                1 if sticky is None or sticky else 0,
                now,
                now,
            ),
        )
    else:
        sets: dict[str, Any] = {}
        if strategy is not None:
            sets["strategy"] = strategy
        if max_open_per_agent is not None:
            sets["max_open_per_agent"] = max_open_per_agent
        if sticky is not None:
            sets["sticky"] = 1 if sticky else 0
        sets["updated_at"] = now
        cols = ", ".join(f"{k} = ?" for k in sets)
        db.run(f"UPDATE teams SET {cols} WHERE name = ?", (*sets.values(), name))
    if members is not None:
        db.run("DELETE FROM team_members WHERE team = ?", (name,))
        db.many(
            "INSERT INTO team_members (team, username, position) VALUES (?, ?, ?)",
            [(name, m, i) for i, m in enumerate(dict.fromkeys(members))],
        )
    team = next(t for t in list_teams(db) if t["name"] == name)
    return team


def delete_team(db: Db, name: str) -> bool:
    db.run("DELETE FROM team_members WHERE team = ?", (name,))
    return db.run("DELETE FROM teams WHERE name = ?", (name,)) > 0


def seed_teams(db: Db, teams: Sequence[TeamConfig]) -> list[str]:
    """Create the config's teams that the database does not have yet. Teams
    already there are left as admins last saved them; returns the names of
    config teams whose database copy differs (the caller logs them)."""
    # Several instances starting together on PostgreSQL: one seeds, the
    # others wait for its commit and find the teams there.
    xact_lock(db, ["seed:teams"])
    differ = []
    for t in teams:
        existing = load_team(db, t.name)
        if existing is None:
            save_team(
                db,
                t.name,
                members=t.members,
                strategy=t.strategy,
                max_open_per_agent=t.max_open_per_agent,
                sticky=t.sticky,
                create=True,
            )
        elif (team_members(db, t.name), existing.strategy, existing.max_open_per_agent) != (
            list(dict.fromkeys(t.members)),
            t.strategy,
            t.max_open_per_agent,
        ):
            differ.append(t.name)
    return differ


def teams_of(db: Db, username: str | None) -> tuple[str, ...]:
    return () if not username else tuple(user_teams(db, username))


def users_named(db: Db, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not names:
        return {}
    rows = db.all(
        f"SELECT username, display_name FROM users WHERE username IN ({placeholders(len(names))})",
        tuple(names),
    )
    return {r["username"]: {"display_name": r["display_name"]} for r in rows}
