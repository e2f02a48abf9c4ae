"""Conditions: the ``when`` part of a rule, parsed from TOML into small matcher objects.

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

import difflib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import regex
import structlog

from omnidesk.model import Category

from . import context
from .context import Context
from .keywords import Keyword, parse_keyword
from .text import fold

log = structlog.get_logger(__name__)

# A regular expression gets this long per value before it counts as "no match": a
# catastrophic pattern must not freeze the pipeline thread.
REGEX_TIMEOUT = 0.1

Trigger = tuple[str, str, Hashable]  # ("kw", field, phrase) or ("eq", field, value key)
Report = Callable[..., None]  # report(reason, *needles): needles help find the line

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    **{d: i for i, d in enumerate(WEEKDAYS)},
    **{
        n: i
        for i, n in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}

TEXT_OPS = ("equals", "in", "contains", "matches", "starts_with", "ends_with")
NUMBER_OPS = ("above", "at_least", "below", "at_most")


# ---------------------------------------------------------------------------- fields


def value_key(value: Any) -> Hashable | None:
    """How values compare: text case- and width-insensitively, numbers numerically,
    booleans as the words true/false (a web form's "true" equals TOML's true)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return fold(value)
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]


def _sender_domain(ctx: Context) -> list[Any]:
    sender = ctx.inp.sender or ""
    return [sender.rsplit("@", 1)[1]] if "@" in sender else []


def _language(ctx: Context) -> list[Any]:
    lang = ctx.language()
    return [lang] if lang else []


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    getter: Callable[[Context], list[Any]]
    ops: tuple[str, ...]
    static: bool = True  # derived from the message alone, unchanged while rules run
    kind: str = "text"

    def values(self, ctx: Context) -> list[Any]:
        if self.static:
            return ctx.values(self.name, self.getter)
        return self.getter(ctx)

    def keys(self, ctx: Context) -> list[Hashable]:
        return [k for value in self.values(ctx) for k in self.value_keys(value)]

    def value_keys(self, value: Any) -> list[Hashable]:
        key = value_key(value)
        if key is None:
            return []
        # "zh" matches zh-CN and zh-TW; "zh-tw" only zh-TW.
        if self.kind == "language" and isinstance(key, str) and "-" in key:
            return [key, key.split("-", 1)[0]]
        return [key]

    def rule_key(self, value: Any) -> Hashable | None:
        key = value_key(value)
        if isinstance(key, str):
            if self.kind == "language":
                key = key.replace("_", "-")
            elif self.name == "sender_domain":
                key = key.lstrip("@")
        return key


def _contact_field(attr: str) -> Field:
    return Field(
        f"contact.{attr}",
        lambda ctx: _as_list(ctx.inp.contact.get(attr)),
        TEXT_OPS + NUMBER_OPS,
    )


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("channel", lambda c: [c.inp.channel], TEXT_OPS),
        Field("channel_type", lambda c: [c.inp.channel_type], TEXT_OPS),
        Field("sender", lambda c: [c.inp.sender], TEXT_OPS),
        Field("sender_domain", _sender_domain, TEXT_OPS),
        Field("sender_name", lambda c: _as_list(c.inp.sender_name), TEXT_OPS),
        Field("subject", context.subject, TEXT_OPS),
        Field("text", context.text, TEXT_OPS),
        Field("subject_or_text", lambda c: [c.inp.subject, c.inp.text], TEXT_OPS),
        Field("language", _language, TEXT_OPS, kind="language"),
        Field("tags", lambda c: list(c.tags), TEXT_OPS, static=False),
        Field("category", lambda c: [str(c.category)], ("equals", "in"), False, "category"),
        Field("confidence", lambda c: [c.confidence], NUMBER_OPS, False, "number"),
    )
}
# Time conditions are evaluated in the rule's time zone, so they are built per rule.
TIME_FIELDS = ("time", "weekday", "business_hours")
ALL_FIELD_NAMES = (*FIELDS, *TIME_FIELDS, "contact")


# ----------------------------------------------------------------------------- nodes


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
        return ()


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
    __slots__ = ("field", "patterns")

    def __init__(self, field: Field, patterns: list[regex.Pattern[str]]) -> None:
        self.field, self.patterns = field, patterns

    def _first(self, ctx: Context) -> tuple[regex.Pattern[str], str] | None:
        for value in self.field.values(ctx):
            if not isinstance(value, str):
                continue
            for pattern in self.patterns:
                try:
                    m = pattern.search(value, timeout=REGEX_TIMEOUT)
                except TimeoutError:
                    log.warning(
                        "rules.regex_timeout", field=self.field.name, pattern=pattern.pattern
                    )
                    continue
                if m is not None:
                    return pattern, m.group(0)
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

    def keywords(self) -> Iterable[Keyword]:
        return [k for c in self.children for k in c.keywords()]


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

    def keywords(self) -> Iterable[Keyword]:
        return [k for c in self.children for k in c.keywords()]


class Not(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node) -> None:
        self.child = child

    def test(self, ctx: Context) -> bool:
        return not self.child.test(ctx)

    def describe(self) -> str:
        return f"not ({self.child.describe()})"

    def keywords(self) -> Iterable[Keyword]:
        return self.child.keywords()


class Always(Node):
    """A rule without ``when``."""

    __slots__ = ()

    def test(self, ctx: Context) -> bool:
        return True

    def describe(self) -> str:
        return "always"


# --------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class ParseEnv:
    """What a rule's conditions need from the rule and the settings around it."""

    report: Report
    tz: tzinfo
    tz_name: str
    business_hours: BusinessHours | None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_clock(value: Any) -> int | None:
    """ "HH:MM" -> minutes after midnight; "24:00" is allowed as an end."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    h, m = int(parts[0]), int(parts[1])
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        return None
    return h * 60 + m


def parse_weekday(value: Any) -> int | None:
    return _WEEKDAY_NAMES.get(value.strip().lower()) if isinstance(value, str) else None


def parse_condition(raw: Any, env: ParseEnv) -> Node | None:
    """A ``when`` table (or nested table) -> Node; None after reporting problems."""
    if not isinstance(raw, dict):
        env.report(f"a condition must be a table of fields, got {_kind(raw)}")
        return None
    if not raw:
        env.report("empty condition table")
        return None
    nodes: list[Node] = []
    ok = True
    for key, value in raw.items():
        node = _parse_key(key, value, env)
        if node is None:
            ok = False
        else:
            nodes.append(node)
    if not ok:
        return None
    return nodes[0] if len(nodes) == 1 else All(nodes)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


def _parse_list_of_conditions(key: str, value: Any, env: ParseEnv) -> list[Node] | None:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        env.report(f"'{key}' needs a non-empty list of conditions", key)
        return None
    children = [parse_condition(v, env) for v in value]
    if any(c is None for c in children):
        return None
    return [c for c in children if c is not None]


def _parse_key(key: str, value: Any, env: ParseEnv) -> Node | None:
    if key in ("all", "any"):
        children = _parse_list_of_conditions(key, value, env)
        if children is None:
            return None
        return All(children) if key == "all" else AnyOf(children)
    if key == "not":
        if isinstance(value, list):
            children = _parse_list_of_conditions(key, value, env)
            return None if children is None else Not(AnyOf(children))
        child = parse_condition(value, env)
        return None if child is None else Not(child)
    if key == "contact":
        if not isinstance(value, dict) or not value:
            env.report("'contact' needs attribute names, e.g. contact.tier = \"gold\"", key)
            return None
        nodes = [_parse_field(_contact_field(attr), v, env) for attr, v in value.items()]
        if any(n is None for n in nodes):
            return None
        ok = [n for n in nodes if n is not None]
        return ok[0] if len(ok) == 1 else All(ok)
    if key in TIME_FIELDS:
        return _parse_time_field(key, value, env)
    field = FIELDS.get(key)
    if field is None:
        env.report(
            f"unknown field '{key}'{_did_you_mean(key, ALL_FIELD_NAMES)}; fields are: "
            f"{', '.join(ALL_FIELD_NAMES)} (and all/any/not)",
            key,
        )
        return None
    return _parse_field(field, value, env)


def _parse_field(field: Field, value: Any, env: ParseEnv) -> Node | None:
    if isinstance(value, dict):
        if not value:
            env.report(f"{field.name}: no operator given", field.name)
            return None
        nodes = [_parse_op(field, op, arg, env) for op, arg in value.items()]
        if any(n is None for n in nodes):
            return None
        ok = [n for n in nodes if n is not None]
        return ok[0] if len(ok) == 1 else All(ok)
    if isinstance(value, list):
        return _parse_op(field, "in", value, env)
    return _parse_op(field, "equals", value, env)


def _strings(field: str, op: str, arg: Any, env: ParseEnv) -> list[str] | None:
    values = arg if isinstance(arg, list) else [arg]
    if not values or not all(isinstance(v, str) for v in values):
        env.report(f"{field}.{op} needs text or a list of texts, got {_kind(arg)}", op)
        return None
    return values


def _parse_op(field: Field, op: str, arg: Any, env: ParseEnv) -> Node | None:
    name = field.name
    if op not in field.ops:
        env.report(
            f"unknown operator '{op}' for {name}{_did_you_mean(op, field.ops)}; "
            f"use one of: {', '.join(field.ops)}",
            op,
        )
        return None
    if op in ("equals", "in"):
        values = _as_list(arg) if op == "in" else [arg]
        if op == "in" and not isinstance(arg, list):
            env.report(f"{name}.in needs a list, got {_kind(arg)}", op)
            return None
        if not values:
            env.report(f"{name}.in needs at least one value", op)
            return None
        keys: set[Hashable] = set()
        for v in values:
            key = field.rule_key(v) if isinstance(v, str | int | float | bool) else None
            if key is None:
                env.report(f"{name}: cannot compare with {_kind(v)}", name)
                return None
            if field.kind == "category" and key not in {str(c) for c in Category}:
                env.report(
                    f"unknown category {v!r}; use one of: {', '.join(c.value for c in Category)}",
                    str(v),
                )
                return None
            keys.add(key)
        return Equals(field, frozenset(keys), values)
    if op == "contains":
        phrases = _strings(name, op, arg, env)
        if phrases is None:
            return None
        kws: list[Keyword] = []
        for p in phrases:
            try:
                kws.append(parse_keyword(p))
            except ValueError as e:
                env.report(f"{name}.contains: {e}", p or op)
                return None
        return Contains(field, tuple(kws))
    if op == "matches":
        sources = _strings(name, op, arg, env)
        if sources is None:
            return None
        patterns = []
        for src in sources:
            try:
                patterns.append(regex.compile(src, regex.IGNORECASE | regex.V0))
            except regex.error as e:
                env.report(f"{name}.matches: bad regular expression {src!r}: {e}", src)
                return None
        return Matches(field, patterns)
    if op in ("starts_with", "ends_with"):
        affixes = _strings(name, op, arg, env)
        if affixes is None:
            return None
        return Affix(field, op, tuple(fold(a) for a in affixes))
    # the number comparisons
    if isinstance(arg, bool) or not isinstance(arg, int | float):
        env.report(f"{name}.{op} needs a number, got {_kind(arg)}", op)
        return None
    return Compare(field, op, float(arg))


def _parse_time_field(key: str, value: Any, env: ParseEnv) -> Node | None:
    if key == "time":
        arg = value.get("between") if isinstance(value, dict) else None
        extra = set(value) - {"between"} if isinstance(value, dict) else set()
        if arg is None or extra:
            env.report('time needs exactly: time.between = ["HH:MM", "HH:MM"]', "time")
            return None
        ends = [parse_clock(v) for v in arg] if isinstance(arg, list) and len(arg) == 2 else []
        if len(ends) != 2 or ends[0] is None or ends[1] is None:
            env.report(f'time.between needs two times like ["09:00", "17:30"], got {arg!r}', key)
            return None
        if ends[0] == ends[1]:
            env.report("time.between: start and end are the same time", key)
            return None
        return TimeBetween(env.tz, env.tz_name, ends[0], ends[1])
    if key == "weekday":
        op, arg = ("in" if isinstance(value, list) else "equals"), value
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in ("equals", "in"):
                env.report("weekday supports equals and in", key)
                return None
            op, arg = next(iter(value.items()))
        days = [parse_weekday(d) for d in _as_list(arg)]
        if not days or any(d is None for d in days) or (op == "in") != isinstance(arg, list):
            env.report(f'weekday needs day names like "sat" or ["sat", "sun"], got {arg!r}', key)
            return None
        return WeekdayIn(env.tz, env.tz_name, frozenset(d for d in days if d is not None))
    # business_hours
    arg = value.get("equals") if isinstance(value, dict) and set(value) == {"equals"} else value
    if not isinstance(arg, bool):
        env.report("business_hours needs true or false", key)
        return None
    if env.business_hours is None:
        env.report(
            "business_hours is used but no [settings.business_hours] is defined "
            '(e.g. days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "17:00")',
            key,
        )
        return None
    return InBusinessHours(env.tz, env.tz_name, env.business_hours, arg)
