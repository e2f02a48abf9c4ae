"""SLA clocks of one conversation, in business hours: pure arithmetic.

Three targets, each counted in the business hours of the policy's calendar
(else the team's, else the default one):

- **first response**: from the moment the conversation opened to the first
  reply by a person. Owed while the conversation is open.
- **next response**: from the first customer message that nobody answered yet
  (after the first response) to the next reply. Owed while it is open.
- **resolution**: from the moment the conversation opened to its resolution.
  Owed until it is resolved (a reopened conversation's clock goes on from the
  same start).

Automatic messages (acknowledgements, surveys, rules' canned replies) and
notes are no reply: ``conversations.first_response_at``, ``last_reply_at``
and ``awaiting_since`` are kept by the store from people's replies only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..rules.calendar import Calendar
from ..rules.service import SlaPolicy

TARGETS = ("first_response", "next_response", "resolution")
LABELS = {
    "first_response": "first response",
    "next_response": "next response",
    "resolution": "resolution",
}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    start: float  # when the clock started (the episode)
    due: float
    done_at: float | None  # met at (a reply, a resolution); None while running
    owed: bool  # running and counted now
    warn_at: float | None = None

    def breached(self, now: float) -> bool:
        end = self.done_at if self.done_at is not None else now
        return end > self.due

    def to_dict(self, calendar: Calendar, now: float) -> dict[str, Any]:
        left = None if not self.owed else calendar.between(now, self.due)
        return {
            "target": self.name,
            "started_at": self.start,
            "due_at": self.due,
            "done_at": self.done_at,
            "owed": self.owed,
            "breached": self.breached(now) if (self.owed or self.done_at is not None) else False,
            "business_seconds_left": left,
            "warn_at": self.warn_at,
        }


@dataclass(frozen=True, slots=True)
class SlaView:
    policy: SlaPolicy
    calendar: Calendar
    targets: tuple[Target, ...]

    def nearest_due(self) -> float | None:
        dues = [t.due for t in self.targets if t.owed]
        return min(dues) if dues else None

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def to_dict(self, now: float) -> dict[str, Any]:
        due = self.nearest_due()
        return {
            "policy": self.policy.name,
            "calendar": self.calendar.name,
            "due_at": due,
            "business_seconds_left": None if due is None else self.calendar.between(now, due),
            "breached": due is not None and now > due,
            "targets": [t.to_dict(self.calendar, now) for t in self.targets],
        }


def clocks(policy: SlaPolicy, calendar: Calendar, conv: Mapping[str, Any]) -> SlaView:
    """The policy's targets for ``conv`` (a conversations row as a mapping)."""
    priority = conv["priority"]
    status = conv["status"]
    created = conv["created_at"]
    out: list[Target] = []

    def add(name: str, start: float, done: float | None, owed: bool) -> None:
        secs = policy.target(name, priority)
        if secs is None:
            return
        due = calendar.add(start, secs)
        warn = None
        if policy.warn_before:
            warn = calendar.add(due, -min(policy.warn_before, secs))
        out.append(Target(name, start, due, done, owed, warn))

    first = conv.get("first_response_at")
    add("first_response", created, first, first is None and status == "open")
    waiting = conv.get("awaiting_since")
    if first is not None and waiting is not None:
        add("next_response", waiting, None, status == "open")
    resolved = conv.get("resolved_at") if status == "resolved" else None
    add("resolution", created, resolved, resolved is None)
    return SlaView(policy, calendar, tuple(out))
