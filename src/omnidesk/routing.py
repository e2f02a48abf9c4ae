"""Teams and assignment strategies (pure: the pipeline supplies the loads).

* ``round_robin``: the next member after the one assigned last, skipping
  members at their cap.
* ``least_loaded``: the member with the fewest open conversations (ties go
  to the member listed first), skipping members at their cap.
* ``manual``: nobody; the conversation waits in the team queue.

A returning contact goes back to the agent who last handled them (``sticky``)
when that agent is in the team and under the cap. When every member is at the
cap the conversation waits, unassigned, in the team queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import TeamConfig


@dataclass(frozen=True, slots=True)
class Assignment:
    agent: str | None
    reason: str


def choose_assignee(
    team: TeamConfig,
    *,
    loads: Mapping[str, int],
    rr_last: str | None = None,
    previous: str | None = None,
) -> Assignment:
    members = team.members
    if not members:
        return Assignment(None, f"team {team.name} has no members: waiting in the team queue")
    if team.strategy == "manual":
        return Assignment(None, f"team {team.name} assigns manually: waiting in the team queue")
    cap = team.max_open_per_agent

    def free(agent: str) -> bool:
        return loads.get(agent, 0) < cap

    if team.sticky and previous in members and free(previous):
        return Assignment(previous, f"returning contact: back to {previous}, who handled them last")
    if team.strategy == "least_loaded":
        candidates = [m for m in members if free(m)]
        if not candidates:
            return Assignment(None, f"every member of {team.name} is at the cap of {cap}")
        best = min(candidates, key=lambda m: (loads.get(m, 0), members.index(m)))
        return Assignment(best, f"least loaded in {team.name} ({loads.get(best, 0)} open)")
    start = (members.index(rr_last) + 1) if rr_last in members else 0
    for i in range(len(members)):
        agent = members[(start + i) % len(members)]
        if free(agent):
            return Assignment(agent, f"round robin in {team.name}")
    return Assignment(None, f"every member of {team.name} is at the cap of {cap}")
