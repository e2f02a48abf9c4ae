"""Conditions on a conversation over time: what time-based rules (``on = "time"``)
and SLA policies (``[[sla]]``) can look at besides a message's fields.

A time-based rule is evaluated on a conversation's *facts* (``RuleInput.conversation``,
keys below) at a moment (``RuleInput.received_at``: the scheduler's clock, or an
example's ``at``). Conditions on elapsed time can say when they will next change
(``next_change``), so the scheduler looks at a conversation again exactly when a
threshold is crossed rather than every minute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .calendar import Calendar
from .conditions import _COMPARE, Node
from .context import Context
from .fields import NUMBER_OPS, TEXT_OPS, Field, as_list

# -- the facts ---------------------------------------------------------------
# Keys of RuleInput.conversation (UNIX seconds for times; None when unknown).
STATUS = "status"
PRIORITY = "priority"
TEAM = "team"
ASSIGNEE = "assignee"
CREATED = "created_at"
LAST_CUSTOMER = "last_customer_at"
LAST_AGENT = "last_reply_at"
STATUS_CHANGED = "status_at"
SLA_DUE = "sla_due"  # the nearest SLA due time still open
RATING = "rating"  # the latest satisfaction rating on this conversation
LOYALTY = "loyalty"  # the latest loyalty answer (0-10)
CALENDAR = "calendar"  # the Calendar its business hours are counted in

# field name -> facts key of the moment it counts from
SINCE = {
    "created": CREATED,
    "customer": LAST_CUSTOMER,
    "agent": LAST_AGENT,
    "status": STATUS_CHANGED,
}


def _fact(key: str) -> Callable[[Context], list[Any]]:
    return lambda ctx: as_list(ctx.inp.conversation.get(key))


CONVERSATION_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("status", _fact(STATUS), TEXT_OPS),
        Field("priority", _fact(PRIORITY), TEXT_OPS),
        Field("team", _fact(TEAM), TEXT_OPS),
        Field("assignee", _fact(ASSIGNEE), TEXT_OPS),
        Field("rating", _fact(RATING), ("equals", "in", *NUMBER_OPS), kind="number"),
        Field("loyalty", _fact(LOYALTY), ("equals", "in", *NUMBER_OPS), kind="number"),
    )
}
SINCE_FIELDS = {
    **{f"hours_since_{k}": (v, False) for k, v in SINCE.items()},
    **{f"business_hours_since_{k}": (v, True) for k, v in SINCE.items()},
}
SLA_FIELDS = ("sla_due_in_hours", "sla_breached")
CONVERSATION_FIELD_NAMES = (*CONVERSATION_FIELDS, *SINCE_FIELDS, *SLA_FIELDS)

# When a growing number of hours crosses a limit, "at_least" and "below"
# turn at the limit and "above" and "at_most" one second after; for a
# shrinking one (hours left) it is the other way round. The second is a
# business second where the hours are business hours: past the end of a
# working day the number stands still until the next one starts.
_LATER_GROWING = {"above": 1.0, "at_most": 1.0, "at_least": 0.0, "below": 0.0}
_LATER_SHRINKING = {"below": 1.0, "at_least": 1.0, "above": 0.0, "at_most": 0.0}


def _now(ctx: Context) -> float:
    return ctx.inp.received_at.timestamp()


def _calendar(ctx: Context) -> Calendar | None:
    cal = ctx.inp.conversation.get(CALENDAR)
    return cal if isinstance(cal, Calendar) else None


class SinceCompare(Node):
    """``hours_since_agent.at_least = 72``: hours (calendar, or business hours of
    the conversation's calendar) since a moment of the conversation."""

    __slots__ = ("business", "key", "limit", "name", "op")

    def __init__(self, name: str, key: str, business: bool, op: str, limit: float) -> None:
        self.name, self.key, self.business, self.op, self.limit = name, key, business, op, limit

    def _hours(self, ctx: Context) -> float | None:
        ts = ctx.inp.conversation.get(self.key)
        if ts is None:
            return None
        cal = _calendar(ctx) if self.business else None
        now = _now(ctx)
        return (cal.between(ts, now) if cal is not None else now - ts) / 3600

    def test(self, ctx: Context) -> bool:
        h = self._hours(ctx)
        return h is not None and _COMPARE[self.op](h, self.limit)

    def describe(self) -> str:
        return f"{self.name} {self.op.replace('_', ' ')} {self.limit:g}"

    def explain(self, ctx: Context) -> list[str]:
        h = self._hours(ctx)
        shown = "unknown" if h is None else f"{h:.1f}"
        return [f"{self.name} {shown} {self.op.replace('_', ' ')} {self.limit:g}"]

    def next_change(self, ctx: Context) -> float | None:
        ts = ctx.inp.conversation.get(self.key)
        if ts is None:
            return None
        cal = _calendar(ctx) if self.business else None
        secs = self.limit * 3600 + _LATER_GROWING[self.op]
        turn = cal.add(ts, secs) if cal is not None else ts + secs
        return turn if turn > _now(ctx) else None


class SlaDueIn(Node):
    """``sla_due_in_hours.below = 1``: business hours left until the nearest
    SLA due time (negative once it passed; no value when nothing is due)."""

    __slots__ = ("limit", "op")

    def __init__(self, op: str, limit: float) -> None:
        self.op, self.limit = op, limit

    def _hours(self, ctx: Context) -> float | None:
        due = ctx.inp.conversation.get(SLA_DUE)
        if due is None:
            return None
        cal = _calendar(ctx)
        now = _now(ctx)
        return (cal.between(now, due) if cal is not None else due - now) / 3600

    def test(self, ctx: Context) -> bool:
        h = self._hours(ctx)
        return h is not None and _COMPARE[self.op](h, self.limit)

    def describe(self) -> str:
        return f"sla_due_in_hours {self.op.replace('_', ' ')} {self.limit:g}"

    def explain(self, ctx: Context) -> list[str]:
        h = self._hours(ctx)
        shown = "none" if h is None else f"{h:.1f}"
        return [f"sla_due_in_hours {shown} {self.op.replace('_', ' ')} {self.limit:g}"]

    def next_change(self, ctx: Context) -> float | None:
        due = ctx.inp.conversation.get(SLA_DUE)
        if due is None:
            return None
        cal = _calendar(ctx)
        secs = -self.limit * 3600 + _LATER_SHRINKING[self.op]
        turn = cal.add(due, secs) if cal is not None else due + secs
        return turn if turn > _now(ctx) else None


class SlaBreached(Node):
    __slots__ = ("expected",)

    def __init__(self, expected: bool) -> None:
        self.expected = expected

    def test(self, ctx: Context) -> bool:
        due = ctx.inp.conversation.get(SLA_DUE)
        breached = due is not None and _now(ctx) >= due
        return breached is self.expected

    def describe(self) -> str:
        return "SLA breached" if self.expected else "SLA not breached"

    def next_change(self, ctx: Context) -> float | None:
        due = ctx.inp.conversation.get(SLA_DUE)
        return due if due is not None and due > _now(ctx) else None


TIME_NODES = (SinceCompare, SlaDueIn, SlaBreached)


def next_change(node: Node, ctx: Context) -> float | None:
    """The earliest moment after now at which any time condition inside
    ``node`` may turn (an upper bound on how long its answer stays valid)."""
    found = [
        t
        for n in node.walk()
        if isinstance(n, TIME_NODES)
        for t in (n.next_change(ctx),)
        if t is not None
    ]
    return min(found) if found else None
