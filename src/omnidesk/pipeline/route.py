"""The route stage: a new conversation goes to its team (the rules' or the
default) and to an agent: the one a rule named, or one chosen within the
team (``routing.choose_assignee``) last thing in the batch's transaction."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ..config import TeamConfig
from ..model import Decision
from ..routing import choose_assignee
from ..store import Db
from ..store import conversations as convs
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
    its transaction. With several instances assignment is one at a time per
    team until commit (the round-robin pointer and the loads must be
    current), so the team locks are taken here, all at once and in order,
    and held for the end of the batch only rather than most of it. Each
    team's members, loads and round-robin pointer are read once per batch and
    kept current in memory as the batch assigns. ``isolate``: each assignment
    in a savepoint of its own, a failing one leaves its conversation
    unassigned (otherwise a failure asks for the batch to be redone so)."""
    if not res.to_assign:
        return
    xact_lock(db, sorted({f"team:{u.team}" for u in res.to_assign if u.team}), rank=TEAM)
    teams: dict[str | None, _TeamState | None] = {}
    for u in res.to_assign:
        if u.team not in teams:
            teams[u.team] = _team_state(db, ctx, u.team)
        state = teams[u.team]
        if not isolate:
            try:
                assignee = _assign_one(db, u, state)
            except Exception as exc:
                raise Isolate from exc
            u.event["assignee"] = assignee
            continue
        try:
            with db.savepoint():
                assignee = _assign_one(db, u, state)
        except Exception as exc:
            # The conversation stays in its team's queue, unassigned, and says why.
            log.exception("assignment_failed", conversation_id=u.conversation_id)
            assignee = None
            routed(db, u.conversation_id, u.team, None, f"assignment failed: {exc}", u.at)
        u.event["assignee"] = assignee
    for state in teams.values():
        if state is not None and state.rr_changed:
            db.run(
                "INSERT INTO routing_state (team, rr_last) VALUES (?, ?)"
                " ON CONFLICT (team) DO UPDATE SET rr_last = excluded.rr_last",
                (state.spec.name, state.rr_last),
            )
    res.to_assign.clear()


def _assign_one(db: Db, u: Unassigned, state: _TeamState | None) -> str | None:
    if state is None:
        assignee = None
        why = "no team with members to assign within" if u.team else "no team"
    else:
        previous = (
            convs.last_assignee(db, u.contact_id)
            if state.spec.sticky and not u.new_contact
            else None
        )
        choice = choose_assignee(
            state.spec, loads=state.loads, rr_last=state.rr_last, previous=previous
        )
        assignee, why = choice.agent, choice.reason
        if assignee is not None:
            db.run(
                "UPDATE conversations SET assignee = ? WHERE id = ?",
                (assignee, u.conversation_id),
            )
    routed(db, u.conversation_id, u.team, assignee, why, u.at)
    # Only now, with nothing left to fail: the batch's view of the team moves on.
    if state is not None and assignee is not None:
        state.loads[assignee] = state.loads.get(assignee, 0) + 1
        if state.spec.strategy == "round_robin":
            state.rr_last, state.rr_changed = assignee, True
    return assignee


@dataclass(slots=True)
class _TeamState:
    """A team during one batch's assignments."""

    spec: TeamConfig
    loads: dict[str, int]
    rr_last: str | None
    rr_changed: bool = False


def _team_state(db: Db, ctx: PipelineContext, team: str | None) -> _TeamState | None:
    spec = (load_team(db, team) if ctx.teams_in_db else ctx.teams.get(team)) if team else None
    if spec is None:
        return None
    return _TeamState(
        spec=spec,
        loads=convs.open_counts(db, spec.members),
        rr_last=db.val("SELECT rr_last FROM routing_state WHERE team = ?", (spec.name,)),
    )


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
