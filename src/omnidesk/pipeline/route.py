"""The route stage: a new conversation goes to its team (the rules' or the
default) and to an agent: the one a rule named, or one chosen within the
team (``store/assignment.py``, ``routing.choose_assignee``) last thing in
the batch's transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import structlog

from ..config import TeamConfig
from ..model import Decision
from ..store import Db
from ..store.assignment import drain, save_pointer, team_room, waiting_reason
from ..store.audit import add_audit
from ..store.locks import TEAM, xact_lock
from ..store.users import load_team
from .context import BatchResult, Isolate, PipelineContext, Unassigned

log = structlog.get_logger("omnidesk.pipeline")


def team_of(ctx: PipelineContext, decision: Decision) -> str | None:
    return decision.team or ctx.default_team


def route_new(
    db: Db, res: BatchResult, new: Unassigned, assignee: str | None, rule: str | None
) -> None:
    """An agent a rule named (``assignee``) is recorded now; otherwise one is
    chosen at the end of the batch (``assign_new``)."""
    if assignee is not None:
        why = f"rule {rule or ''} named the agent".strip()
        routed(db, new.conversation_id, new.team, assignee, why, new.at)
    else:
        res.to_assign.append(new)


def assign_new(db: Db, ctx: PipelineContext, res: BatchResult, *, isolate: bool = True) -> None:
    """Choose the assignee of the batch's new conversations, last thing in
    its transaction. A new conversation joins its team's waiting queue and
    the queue is drained (``store/assignment.py``): the team's free places
    go to its oldest waiting conversations first, by priority then age, and
    only to online agents. With several instances assignment is one at a
    time per team until commit, so the team locks are taken here, all at
    once and in order, and held for the end of the batch only rather than
    most of it. ``isolate``: each assignment in a savepoint of its own, a
    failing one leaves its conversation unassigned (otherwise a failure
    asks for the batch to be redone so)."""
    if not res.to_assign:
        return
    xact_lock(db, sorted({f"team:{u.team}" for u in res.to_assign if u.team}), rank=TEAM)
    by_team: dict[str | None, list[Unassigned]] = {}
    for u in res.to_assign:
        by_team.setdefault(u.team, []).append(u)
    for team, items in by_team.items():
        try:
            _assign_team(db, ctx, res, team, items, isolate)
        except Exception as exc:
            if not isolate:
                raise Isolate from exc
            # Reading the team failed: its conversations wait, and say why.
            log.exception("assignment_failed", team=team)
            for u in items:
                u.event["assignee"] = None
                routed(db, u.conversation_id, u.team, None, f"assignment failed: {exc}", u.at)
    res.to_assign.clear()


def _assign_team(
    db: Db,
    ctx: PipelineContext,
    res: BatchResult,
    team: str | None,
    items: list[Unassigned],
    isolate: bool,
) -> None:
    room = None
    if team:
        with db.savepoint() if isolate else nullcontext():
            room = team_room(db, team, ctx.assignment, _lookup(ctx))
    if room is not None:
        arrivals = {u.conversation_id: u.new_contact for u in items}
        res.events.extend(
            drain(
                db,
                room,
                at=items[0].at,
                arrivals=arrivals,
                isolate=isolate,
                record_arrival=lambda *a: routed(*a),
            )
        )
        save_pointer(db, room)
    for u in items:
        agent = room.assigned.get(u.conversation_id) if room is not None else None
        u.event["assignee"] = agent
        if agent is not None:
            continue
        why = waiting_reason(room, u.team)
        if room is not None and u.conversation_id in room.failed:
            why = f"assignment failed: {room.failed[u.conversation_id]}"
        routed(db, u.conversation_id, u.team, None, why, u.at)


def _lookup(ctx: PipelineContext) -> Callable[[Db, str], TeamConfig | None]:
    if ctx.teams_in_db:
        return load_team
    return lambda db, name: ctx.teams.get(name)


def routed(
    db: Db, conv_id: int, team: str | None, assignee: str | None, why: str, at: float
) -> None:
    add_audit(
        db,
        "routing",
        "routed",
        conversation_id=conv_id,
        reason=why,
        detail={"team": team, "assignee": assignee},
        at=at,
    )
