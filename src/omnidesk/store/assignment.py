"""Availability and fair assignment: who is online, and draining a team's
waiting queue into the places its online agents have free.

An agent is ``online``, ``away`` or ``offline`` (``agent_status``). Signing
in makes them online, signing out of their last session offline, and they
may set it by hand. Two things turn an online agent's state without a write:
no live session any more (``via = 'session'``: offline) and no activity for
``idle_away_seconds`` (away). Both are read at the moment a question is
asked, so every instance sees the same state without a timer.

Only online agents get new work (``[assignment] only_online``). A team's
waiting conversations (open, in the team, nobody assigned) are served in
one order, priority then age, whenever a place may have freed: a batch of
new conversations (the newest waits behind older ones), a resolve, a
reassignment, a status change, an agent coming online. Each drain holds the
team's lock (``locks.TEAM``) until commit, so two instances on one
PostgreSQL database never fill the same place twice; SQLite's single writer
gives the same.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..config import AssignmentConfig, TeamConfig
from ..events import Event
from ..model import now_ts
from ..routing import choose_assignee
from . import conversations as convs
from .audit import add_audit
from .base import Db, placeholders
from .locks import TEAM, xact_lock
from .users import load_team

STATES = ("online", "away", "offline")
TeamLookup = Callable[[Db, str], TeamConfig | None]
# (db, conversation, team, agent, why, at): how the pipeline audits routing
RecordArrival = Callable[[Db, int, str | None, str | None, str, float], None]
log = structlog.get_logger("omnidesk.assignment")


# -- availability ------------------------------------------------------------------


def _live_session(db: Db, username: str, now: float) -> bool:
    return bool(
        db.val(
            "SELECT 1 FROM sessions WHERE username = ? AND expires_at > ? LIMIT 1",
            (username, now),
        )
    )


def effective_state(row: Any, *, live: bool, now: float, idle: float) -> str:
    """The state an agent is in now, from their stored row."""
    if row is None or row["status"] == "offline":
        return "offline"
    if row["via"] == "session" and not live:
        return "offline"
    if row["status"] == "online" and now - float(row["last_active_at"]) > idle:
        return "away"
    return str(row["status"])


def agent_state(db: Db, username: str, policy: AssignmentConfig, now: float | None = None) -> str:
    now = now_ts() if now is None else now
    row = db.one(
        "SELECT status, via, last_active_at FROM agent_status WHERE username = ?", (username,)
    )
    return effective_state(
        row, live=_live_session(db, username, now), now=now, idle=policy.idle_away_seconds
    )


def online_agents(
    db: Db, names: Iterable[str], policy: AssignmentConfig, now: float | None = None
) -> set[str]:
    """Those of ``names`` who may get new work now."""
    names = list(dict.fromkeys(names))
    if not names or not policy.only_online:
        return set(names)
    now = now_ts() if now is None else now
    rows = db.all(
        "SELECT a.username FROM agent_status a WHERE a.status = 'online'"
        f" AND a.username IN ({placeholders(len(names))}) AND a.last_active_at >= ?"
        " AND (a.via <> 'session' OR EXISTS (SELECT 1 FROM sessions s"
        " WHERE s.username = a.username AND s.expires_at > ?))",
        (*names, now - policy.idle_away_seconds, now),
    )
    return {r["username"] for r in rows}


def set_status(
    db: Db,
    username: str,
    status: str,
    policy: AssignmentConfig,
    *,
    actor: str,
    via: str = "session",
    reason: str | None = None,
) -> list[Event]:
    """Set an agent's state by hand (or by signing in and out). Coming
    online drains the queues of the agent's teams; returns the events."""
    if status not in STATES:
        raise ValueError(f"status must be one of {', '.join(STATES)}")
    now = now_ts()
    before = agent_state(db, username, policy, now)
    db.run(
        "INSERT INTO agent_status (username, status, via, last_active_at, changed_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET status = excluded.status,"
        " via = excluded.via, last_active_at = excluded.last_active_at,"
        " changed_at = excluded.changed_at",
        (username, status, via, now, now),
    )
    after = agent_state(db, username, policy, now)
    if after == before:
        return []
    add_audit(
        db,
        actor,
        "availability_changed",
        reason=reason,
        detail={"agent": username, "from": before, "to": after},
        at=now,
    )
    events: list[Event] = [_state_event(username, after)]
    if after == "online":
        events += drain_agent_teams(db, username, policy)
    return events


def touch_activity(db: Db, username: str, policy: AssignmentConfig) -> list[Event]:
    """A sign of a person at the keyboard: an online agent who had turned
    away by idling is back (and their teams' queues are drained)."""
    now = now_ts()
    row = db.one(
        "SELECT status, via, last_active_at FROM agent_status WHERE username = ?", (username,)
    )
    if row is None:
        return []
    was = effective_state(row, live=True, now=now, idle=policy.idle_away_seconds)
    db.run("UPDATE agent_status SET last_active_at = ? WHERE username = ?", (now, username))
    if row["status"] != "online" or was != "away":
        return []
    events: list[Event] = [_state_event(username, "online")]
    return events + drain_agent_teams(db, username, policy)


def signed_out(db: Db, username: str, policy: AssignmentConfig) -> list[Event]:
    """After a logout: offline once no session of theirs is live."""
    if _live_session(db, username, now_ts()):
        return []
    return set_status(db, username, "offline", policy, actor=username, reason="signed out")


def _state_event(username: str, state: str) -> Event:
    return {"type": "agent.availability", "username": username, "state": state}


def agent_board(db: Db, policy: AssignmentConfig) -> list[dict[str, Any]]:
    """Each agent (every account of role agent or supervisor, and every team
    member) with their state, open load and teams: the supervisors' view."""
    now = now_ts()
    names = {
        r["username"]
        for r in db.all("SELECT username FROM users WHERE disabled = 0 AND role <> 'admin'")
    }
    names |= {r["username"] for r in db.all("SELECT DISTINCT username FROM team_members")}
    if not names:
        return []
    ordered = sorted(names)
    marks = placeholders(len(ordered))
    status = {
        r["username"]: r
        for r in db.all(
            "SELECT username, status, via, last_active_at, changed_at FROM agent_status"
            f" WHERE username IN ({marks})",
            tuple(ordered),
        )
    }
    live = {
        r["username"]
        for r in db.all(
            f"SELECT DISTINCT username FROM sessions WHERE username IN ({marks})"
            " AND expires_at > ?",
            (*ordered, now),
        )
    }
    users = {
        r["username"]: r
        for r in db.all(
            f"SELECT username, display_name, disabled FROM users WHERE username IN ({marks})",
            tuple(ordered),
        )
    }
    teams: dict[str, list[str]] = {}
    caps: dict[str, int] = {}
    for r in db.all(
        "SELECT tm.username, t.name, t.max_open_per_agent FROM team_members tm"
        " JOIN teams t ON t.name = tm.team ORDER BY t.name"
    ):
        teams.setdefault(r["username"], []).append(r["name"])
        caps[r["username"]] = max(caps.get(r["username"], 0), int(r["max_open_per_agent"]))
    loads = convs.open_counts(db, ordered)
    out = []
    for name in ordered:
        u = users.get(name)
        if u is not None and u["disabled"]:
            continue
        row = status.get(name)
        out.append(
            {
                "username": name,
                "display_name": (u["display_name"] if u is not None else None) or name,
                "state": effective_state(
                    row, live=name in live, now=now, idle=policy.idle_away_seconds
                ),
                "load": loads.get(name, 0),
                "cap": caps.get(name),
                "teams": teams.get(name, []),
                "last_active_at": row["last_active_at"] if row is not None else None,
            }
        )
    return out


# -- the team queue ------------------------------------------------------------------


@dataclass(slots=True)
class TeamRoom:
    """A team during one transaction's assignments: its spec with only the
    members who may get work, their loads and the round-robin pointer."""

    spec: TeamConfig
    online: TeamConfig
    loads: dict[str, int]
    rr_last: str | None
    rr_changed: bool = False
    assigned: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # conversation -> why


def team_room(
    db: Db, team: str, policy: AssignmentConfig, lookup: TeamLookup = load_team
) -> TeamRoom | None:
    spec = lookup(db, team)
    if spec is None:
        return None
    here = online_agents(db, spec.members, policy)
    online = TeamConfig(
        name=spec.name,
        members=[m for m in spec.members if m in here],
        strategy=spec.strategy,
        max_open_per_agent=spec.max_open_per_agent,
        sticky=spec.sticky,
    )
    return TeamRoom(
        spec=spec,
        online=online,
        loads=convs.open_counts(db, online.members),
        rr_last=db.val("SELECT rr_last FROM routing_state WHERE team = ?", (spec.name,)),
    )


def free_places(room: TeamRoom) -> int:
    if room.spec.strategy == "manual":
        return 0
    cap = room.spec.max_open_per_agent
    return sum(max(0, cap - room.loads.get(m, 0)) for m in room.online.members)


def waiting_reason(room: TeamRoom | None, team: str | None) -> str:
    """Why a conversation of this team is left waiting."""
    if room is None:
        return "no team with members to assign within" if team else "no team"
    spec = room.spec
    if spec.strategy == "manual":
        return f"team {spec.name} assigns manually: waiting in the team queue"
    if not spec.members:
        return f"team {spec.name} has no members: waiting in the team queue"
    if not room.online.members:
        return f"nobody in {spec.name} is online: waiting in the team queue"
    if free_places(room) == 0:
        return f"every online member of {spec.name} is at the cap of {spec.max_open_per_agent}"
    return f"waiting in the {spec.name} queue behind older conversations"


def drain(
    db: Db,
    room: TeamRoom,
    *,
    at: float | None = None,
    arrivals: Mapping[int, bool] | None = None,
    skip: Collection[int] = (),
    actor: str = "routing",
    isolate: bool = False,
    record_arrival: RecordArrival | None = None,
) -> list[Event]:
    """Fill the team's free places with its oldest waiting conversations
    (priority, then age); the caller holds the team's lock. Each assignment
    is audited; returns ``conversation.updated`` events for them (the
    assignments are also in ``room.assigned``). ``arrivals``: the conversations
    just opened (their own ``conversation.created`` event tells), each with
    whether its contact is new (no earlier agent to return to); ``skip``:
    conversations just released by hand, left waiting for someone to take
    them (a later drain may assign them). ``isolate``: each assignment in a
    savepoint; one that fails is left waiting (``room.failed``) and the
    drain goes on. ``record_arrival`` audits an arrival's routing (the
    pipeline's own record)."""
    places = free_places(room)
    if places == 0:
        return []
    at = now_ts() if at is None else at
    arrivals = arrivals or {}
    # On PostgreSQL a waiting row another transaction holds (an agent's
    # change, a contact merge) is passed over, not waited for: the team lock
    # already serializes drains, and waiting on a row could deadlock.
    lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgres" else ""
    queue = db.all(
        "SELECT id, contact_id FROM conversations WHERE team = ? AND assignee IS NULL"
        " AND status = 'open' ORDER BY priority_rank DESC, created_at, id LIMIT ?" + lock,
        (room.spec.name, places + len(skip)),
    )
    events: list[Event] = []
    for q in queue:
        if free_places(room) == 0:
            break
        cid = int(q["id"])
        if cid in skip:
            continue
        spec = room.online
        previous = (
            convs.last_assignee(db, int(q["contact_id"]))
            if spec.sticky and not arrivals.get(cid, False)
            else None
        )
        choice = choose_assignee(spec, loads=room.loads, rr_last=room.rr_last, previous=previous)
        if choice.agent is None:
            continue
        try:
            with db.savepoint() if isolate else nullcontext():
                convs.update_conversation(db, cid, assignee=choice.agent)
                if cid in arrivals and record_arrival is not None:
                    record_arrival(db, cid, room.spec.name, choice.agent, choice.reason, at)
                else:
                    add_audit(
                        db,
                        actor,
                        "routed",
                        conversation_id=cid,
                        reason=choice.reason,
                        detail={
                            "team": room.spec.name,
                            "assignee": choice.agent,
                            "from_queue": cid not in arrivals,
                        },
                        at=at,
                    )
        except Exception as exc:
            if not isolate:
                raise
            # Left waiting, with the reason for the caller to record.
            log.exception("assignment_failed", conversation_id=cid)
            room.failed[cid] = str(exc)
            continue
        # Only now, with nothing left to fail: the view of the team moves on.
        room.loads[choice.agent] = room.loads.get(choice.agent, 0) + 1
        if room.spec.strategy == "round_robin":
            room.rr_last, room.rr_changed = choice.agent, True
        room.assigned[cid] = choice.agent
        if cid in arrivals:
            continue
        events.append(
            {
                "type": "conversation.updated",
                "conversation_id": cid,
                "assignee": choice.agent,
                "team": room.spec.name,
                "previous_assignee": None,
                "previous_team": room.spec.name,
                "assigned_from_queue": True,
            }
        )
    return events


def save_pointer(db: Db, room: TeamRoom) -> None:
    if room.rr_changed:
        db.run(
            "INSERT INTO routing_state (team, rr_last) VALUES (?, ?)"
            " ON CONFLICT (team) DO UPDATE SET rr_last = excluded.rr_last",
            (room.spec.name, room.rr_last),
        )
        room.rr_changed = False


def drain_teams(
    db: Db,
    teams: Iterable[str | None],
    policy: AssignmentConfig,
    *,
    skip: Collection[int] = (),
    lookup: TeamLookup = load_team,
) -> list[Event]:
    """Drain each of ``teams`` under its lock (taken all at once, in order)."""
    names = sorted({t for t in teams if t})
    if not names:
        return []
    xact_lock(db, [f"team:{t}" for t in names], rank=TEAM)
    events: list[Event] = []
    for t in names:
        room = team_room(db, t, policy, lookup)
        if room is None:
            continue
        events += drain(db, room, skip=skip)
        save_pointer(db, room)
    return events


def drain_agent_teams(db: Db, username: str, policy: AssignmentConfig) -> list[Event]:
    teams = [
        r["team"] for r in db.all("SELECT team FROM team_members WHERE username = ?", (username,))
    ]
    return drain_teams(db, teams, policy)


def after_change(db: Db, events: list[Event], policy: AssignmentConfig) -> list[Event]:
    """A conversation changed (status, assignee, team): places may have
    freed in the teams involved. Returns ``events`` and those of the drain."""
    teams: set[str | None] = set()
    released: set[int] = set()
    for e in events:
        if e.get("type") != "conversation.updated":
            continue
        teams.update((e.get("team"), e.get("previous_team")))
        if e.get("previous_assignee") and e.get("assignee") is None and "assignee" in e:
            released.add(int(e["conversation_id"]))
    if not teams - {None}:
        return events
    return events + drain_teams(db, teams, policy, skip=released)
