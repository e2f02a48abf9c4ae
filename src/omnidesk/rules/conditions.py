"""Conditions: the ``when`` part of a rule, compiled into small matcher objects
(parsed from TOML by :mod:`.schema`).

Each matcher answers three questions:

- ``test(ctx)``: is it true for this message? (the hot path: set look-ups, no parsing)
- ``explain(ctx)``: why, in words an admin understands (only asked when the rule fired)
- ``triggers()``: facts about the *message itself* at least one of which must hold for the
  condition to be true, or None if it cannot say. The rule set indexes rules by these, so
  a message only visits the rules whose keywords or values it actually has.

Fields that change while rules run (``category``, ``confidence``, ``tags``) never produce
triggers: an earlier rule may change them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import regex
import structlog

from .context import Context
from .fields import WEEKDAYS, Field
from .keywords import Keyword
from .text import MAX_TEXT, fold

log = structlog.get_logger(__name__)

# A regular expression gets this long per value before it counts as "no match": a
# catastrophic pattern must not freeze the pipeline thread.
REGEX_TIMEOUT = 0.1

Trigger = tuple[str, str, Hashable]  # ("kw", field, phrase) or ("eq", field, value key)


class Node:
    __slots__ = ()

    def test(self, ctx: Context) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def explain(self, ctx: Context) -> list[str]:
        return [self.describe()]

    def triggers(self) -> frozenset[Trigger] | None:
        return None

    def keywords(self) -> Iterable[Keyword]:
        """The keywords this node itself looks for (not those of the nodes
        inside it: see ``walk``)."""
        return ()

    def walk(self) -> Iterator[Node]:
        """This condition and every condition inside it."""
        yield self


def _show(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


class Equals(Node):
    """``equals`` and ``in``: any of the field's values is one of ``values``."""

    __slots__ = ("field", "keys", "shown")

    def __init__(self, field: Field, keys: frozenset[Hashable], shown: list[Any]) -> None:
        self.field, self.keys, self.shown = field, keys, shown

    def test(self, ctx: Context) -> bool:
        return any(k in self.keys for k in self.field.keys(ctx))

    def describe(self) -> str:
        if len(self.shown) == 1:
            return f"{self.field.name} = {self.shown[0]}"
        return f"{self.field.name} in [{_show(self.shown)}]"

    def explain(self, ctx: Context) -> list[str]:
        for value in self.field.values(ctx):
            if any(k in self.keys for k in self.field.value_keys(value)):
                return [f"{self.field.name} = {value}"]
        return [self.describe()]

    def triggers(self) -> frozenset[Trigger] | None:
        if not self.field.static:
            return None
        return frozenset(("eq", self.field.name, k) for k in self.keys)


class Contains(Node):
    __slots__ = ("field", "ids", "kws")

    def __init__(self, field: Field, kws: tuple[Keyword, ...]) -> None:
        self.field, self.kws = field, kws
        self.ids = frozenset(k.pattern for k in kws)

    def _found(self, ctx: Context) -> frozenset[str]:
        if self.field.static:
            return ctx.hit_ids(self.field.name, self.field.getter)
        return frozenset(
            h.keyword for v in self.field.values(ctx) if isinstance(v, str) for h in ctx.scan(v)
        )

    def test(self, ctx: Context) -> bool:
        return not self._found(ctx).isdisjoint(self.ids)

    def describe(self) -> str:
        return f"{self.field.name} contains {_show(repr(k.pattern) for k in self.kws)}"

    def explain(self, ctx: Context) -> list[str]:
        found = self._found(ctx)
        words = [repr(k.pattern) for k in self.kws if k.pattern in found]
        return [f"{self.field.name} contains {_show(words)}"]

    def triggers(self) -> frozenset[Trigger] | None:
        if not self.field.static:
            return None
        return frozenset(("kw", self.field.name, k.pattern) for k in self.kws)

    def keywords(self) -> Iterable[Keyword]:
        return self.kws


class Matches(Node):
    """``matches``: the first of ``patterns`` found in any of the field's values.
    On a static field the answer is kept in the evaluation's context under
    ``key`` (a rule that tests it and then explains it searches once; two
    rules with the same condition search once), and one on subject or text
    can be worked out ahead, by ``RuleSet.preview``."""

    __slots__ = ("field", "key", "patterns")

    def __init__(self, field: Field, patterns: list[regex.Pattern[str]]) -> None:
        self.field, self.patterns = field, patterns
        # repr: unambiguous whatever the patterns hold (a newline, say).
        self.key = repr((field.name, *(p.pattern for p in patterns)))

    def _first(self, ctx: Context) -> tuple[regex.Pattern[str], str] | None:
        if not self.field.static:
            return self._search(ctx)
        if self.key in ctx.matched:
            found = ctx.matched[self.key]
        else:
            found = ctx.matched[self.key] = self._search(ctx)
        return None if found is None else (self.patterns[found[0]], found[1])

    def _search(self, ctx: Context) -> tuple[int, str] | None:
        for value in self.field.values(ctx):
            if not isinstance(value, str):
                continue
            for i, pattern in enumerate(self.patterns):
                try:
                    m = pattern.search(value[:MAX_TEXT], timeout=REGEX_TIMEOUT)
                except TimeoutError:
                    log.warning(
                        "rules.regex_timeout", field=self.field.name, pattern=pattern.pattern
                    )
                    continue
                if m is not None:
                    return i, m.group(0)
        return None

    def test(self, ctx: Context) -> bool:
        return self._first(ctx) is not None

    def describe(self) -> str:
        return f"{self.field.name} matches {_show(f'/{p.pattern}/' for p in self.patterns)}"

    def explain(self, ctx: Context) -> list[str]:
        found = self._first(ctx)
        if found is None:
            return [self.describe()]
        return [f"{self.field.name} matches /{found[0].pattern}/ ({found[1][:60]!r})"]


class Affix(Node):
    """``starts_with`` / ``ends_with`` on the folded value (case-insensitive)."""

    __slots__ = ("affixes", "field", "op")

    def __init__(self, field: Field, op: str, affixes: tuple[str, ...]) -> None:
        self.field, self.op, self.affixes = field, op, affixes

    def _hit(self, ctx: Context) -> str | None:
        for value in self.field.values(ctx):
            if isinstance(value, str):
                folded = fold(value)
                for a in self.affixes:
                    if folded.startswith(a) if self.op == "starts_with" else folded.endswith(a):
                        return a
        return None

    def test(self, ctx: Context) -> bool:
        return self._hit(ctx) is not None

    def describe(self) -> str:
        return f"{self.field.name} {self.op.replace('_', ' ')} {_show(map(repr, self.affixes))}"

    def explain(self, ctx: Context) -> list[str]:
        return [f"{self.field.name} {self.op.replace('_', ' ')} {self._hit(ctx)!r}"]


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "above": lambda v, lim: v > lim,
    "at_least": lambda v, lim: v >= lim,
    "below": lambda v, lim: v < lim,
    "at_most": lambda v, lim: v <= lim,
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class Compare(Node):
    __slots__ = ("field", "limit", "op")

    def __init__(self, field: Field, op: str, limit: float) -> None:
        self.field, self.op, self.limit = field, op, limit

    def _hit(self, ctx: Context) -> float | None:
        check = _COMPARE[self.op]
        for value in self.field.values(ctx):
            n = _number(value)
            if n is not None and check(n, self.limit):
                return n
        return None

    def test(self, ctx: Context) -> bool:
        return self._hit(ctx) is not None

    def describe(self) -> str:
        return f"{self.field.name} {self.op.replace('_', ' ')} {self.limit:g}"

    def explain(self, ctx: Context) -> list[str]:
        return [f"{self.field.name} {self._hit(ctx):g} {self.op.replace('_', ' ')} {self.limit:g}"]


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class TimeBetween(Node):
    """Local time of day in [start, end); a range whose end is before its start wraps
    past midnight (``["18:00", "08:00"]`` is the night)."""

    __slots__ = ("end", "start", "tz", "tz_name")

    def __init__(self, tz: tzinfo, tz_name: str, start: int, end: int) -> None:
        self.tz, self.tz_name, self.start, self.end = tz, tz_name, start, end

    def _minute(self, ctx: Context) -> int:
        t = ctx.local_time(self.tz)
        return t.hour * 60 + t.minute

    def test(self, ctx: Context) -> bool:
        m = self._minute(ctx)
        if self.start < self.end:
            return self.start <= m < self.end
        return m >= self.start or m < self.end

    def describe(self) -> str:
        return f"time between {_hhmm(self.start)} and {_hhmm(self.end)} ({self.tz_name})"

    def explain(self, ctx: Context) -> list[str]:
        now = _hhmm(self._minute(ctx))
        return [f"time {now} between {_hhmm(self.start)} and {_hhmm(self.end)} ({self.tz_name})"]


class WeekdayIn(Node):
    __slots__ = ("days", "tz", "tz_name")

    def __init__(self, tz: tzinfo, tz_name: str, days: frozenset[int]) -> None:
        self.tz, self.tz_name, self.days = tz, tz_name, days

    def test(self, ctx: Context) -> bool:
        return ctx.local_time(self.tz).weekday() in self.days

    def describe(self) -> str:
        return f"weekday in [{_show(WEEKDAYS[d] for d in sorted(self.days))}] ({self.tz_name})"

    def explain(self, ctx: Context) -> list[str]:
        return [f"weekday = {WEEKDAYS[ctx.local_time(self.tz).weekday()]} ({self.tz_name})"]


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """``[settings.business_hours]``: the days and hours the team works."""

    days: frozenset[int]
    start: int  # minutes after midnight
    end: int

    def contains(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end


class InBusinessHours(Node):
    __slots__ = ("expected", "hours", "tz", "tz_name")

    def __init__(self, tz: tzinfo, tz_name: str, hours: BusinessHours, expected: bool) -> None:
        self.tz, self.tz_name, self.hours, self.expected = tz, tz_name, hours, expected

    def test(self, ctx: Context) -> bool:
        t = ctx.local_time(self.tz)
        return self.hours.contains(t.weekday(), t.hour * 60 + t.minute) is self.expected

    def describe(self) -> str:
        inside = "inside" if self.expected else "outside"
        return f"{inside} business hours ({self.tz_name})"

    def explain(self, ctx: Context) -> list[str]:
        t = ctx.local_time(self.tz)
        when = f"{WEEKDAYS[t.weekday()]} {_hhmm(t.hour * 60 + t.minute)}"
        return [f"{self.describe()}: {when}"]


def _selectivity(triggers: frozenset[Trigger]) -> tuple[int, int]:
    return (sum(1 for kind, _, _ in triggers if kind == "eq"), len(triggers))


class All(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def test(self, ctx: Context) -> bool:
        return all(c.test(ctx) for c in self.children)

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.children)

    def explain(self, ctx: Context) -> list[str]:
        return [line for c in self.children for line in c.explain(ctx)]

    def triggers(self) -> frozenset[Trigger] | None:
        # Every child must hold, so any one child's triggers will do: take the most
        # selective so the rule is visited as rarely as possible. A keyword is rare in a
        # message; a value like channel = "mail" or tier = "gold" is shared by many.
        options = [t for t in (c.triggers() for c in self.children) if t is not None]
        return min(options, key=_selectivity) if options else None

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()


class AnyOf(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def test(self, ctx: Context) -> bool:
        return any(c.test(ctx) for c in self.children)

    def describe(self) -> str:
        return "(" + " or ".join(c.describe() for c in self.children) + ")"

    def explain(self, ctx: Context) -> list[str]:
        for c in self.children:
            if c.test(ctx):
                return c.explain(ctx)
        return [self.describe()]

    def triggers(self) -> frozenset[Trigger] | None:
        found: set[Trigger] = set()
        for c in self.children:
            t = c.triggers()
            if t is None:
                return None  # one branch can be true without any indexed fact
            found |= t
        return frozenset(found)

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()


class Not(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node) -> None:
        self.child = child

    def test(self, ctx: Context) -> bool:
        return not self.child.test(ctx)

    def describe(self) -> str:
        return f"not ({self.child.describe()})"

    def walk(self) -> Iterator[Node]:
        yield self
        yield from self.child.walk()


class Always(Node):
    """A rule without ``when``."""

    __slots__ = ()

    def test(self, ctx: Context) -> bool:
        return True

    def describe(self) -> str:
        return "always"
