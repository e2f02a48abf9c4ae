"""Parsing a rule's ``when`` table into condition matchers, reporting every mistake
in words an admin can act on."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import regex

from omnidesk.model import Category

from .calendar import parse_clock
from .conditions import (
    Affix,
    All,
    AnyOf,
    BusinessHours,
    Compare,
    Contains,
    Equals,
    InBusinessHours,
    Matches,
    Node,
    Not,
    TimeBetween,
    WeekdayIn,
)
from .fields import (
    ALL_FIELD_NAMES,
    FIELDS,
    NUMBER_OPS,
    TIME_FIELDS,
    WEEKDAY_NAMES,
    Field,
    as_list,
    contact_field,
)
from .keywords import Keyword, parse_keyword
from .problems import describe, did_you_mean
from .text import fold
from .timed import (
    CONVERSATION_FIELD_NAMES,
    CONVERSATION_FIELDS,
    SINCE_FIELDS,
    SinceCompare,
    SlaBreached,
    SlaDueIn,
)

Report = Callable[..., None]  # report(reason, *needles): needles help find the line


@dataclass(slots=True)
class ParseEnv:
    """What a rule's conditions need from the rule and the settings around it."""

    report: Report
    tz: tzinfo
    tz_name: str
    business_hours: BusinessHours | None
    # "message": a rule run on each message; "conversation": a time-based rule
    # or an SLA policy, which may also look at the conversation (rules/timed.py).
    scope: str = "message"


def parse_weekday(value: Any) -> int | None:
    return WEEKDAY_NAMES.get(value.strip().lower()) if isinstance(value, str) else None


def parse_condition(raw: Any, env: ParseEnv) -> Node | None:
    """A ``when`` table (or nested table) -> Node; None after reporting problems."""
    if not isinstance(raw, dict):
        env.report(f"a condition must be a table of fields, got {describe(raw)}")
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
    if key in CONVERSATION_FIELD_NAMES:
        if env.scope != "conversation":
            env.report(
                f"'{key}' is about a conversation, not a message: use it in a time-based"
                ' rule (on = "time") or an [[sla]] policy',
                key,
            )
            return None
        return _parse_conversation_field(key, value, env)
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
        nodes = _contact_nodes("", value, env)
        if any(n is None for n in nodes):
            return None
        ok = [n for n in nodes if n is not None]
        return ok[0] if len(ok) == 1 else All(ok)
    if key in TIME_FIELDS:
        return _parse_time_field(key, value, env)
    field = FIELDS.get(key)
    if field is None:
        known = ALL_FIELD_NAMES
        if env.scope == "conversation":
            known = (*ALL_FIELD_NAMES, *CONVERSATION_FIELD_NAMES)
        env.report(
            f"unknown field '{key}'{did_you_mean(key, known)}; fields are: "
            f"{', '.join(known)} (and all/any/not)",
            key,
        )
        return None
    return _parse_field(field, value, env)


def _contact_nodes(prefix: str, value: dict[str, Any], env: ParseEnv) -> list[Node | None]:
    """``contact.company.plan = "enterprise"`` and
    ``contact.orders.open.at_least = 1``: a table whose keys are no operators
    names a dotted attribute (the company's fields, the purchase summary)."""
    nodes: list[Node | None] = []
    for attr, v in value.items():
        name = f"{prefix}{attr}"
        field = contact_field(name)
        if isinstance(v, dict) and v and not set(v) & set(field.ops):
            nodes.extend(_contact_nodes(f"{name}.", v, env))
        else:
            nodes.append(_parse_field(field, v, env))
    return nodes


def _parse_conversation_field(key: str, value: Any, env: ParseEnv) -> Node | None:
    field = CONVERSATION_FIELDS.get(key)
    if field is not None:
        return _parse_field(field, value, env)
    if key == "sla_breached":
        arg = value.get("equals") if isinstance(value, dict) and set(value) == {"equals"} else value
        if not isinstance(arg, bool):
            env.report("sla_breached needs true or false", key)
            return None
        return SlaBreached(arg)
    # hours_since_*, business_hours_since_*, sla_due_in_hours: number comparisons
    if not isinstance(value, dict) or not value:
        env.report(
            f"{key} needs a comparison, e.g. {key}.at_least = 24 (one of: {', '.join(NUMBER_OPS)})",
            key,
        )
        return None
    nodes: list[Node] = []
    for op, arg in value.items():
        if op not in NUMBER_OPS:
            env.report(
                f"unknown operator '{op}' for {key}{did_you_mean(op, NUMBER_OPS)}; "
                f"use one of: {', '.join(NUMBER_OPS)}",
                op,
            )
            return None
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            env.report(f"{key}.{op} needs a number of hours, got {describe(arg)}", op)
            return None
        if key == "sla_due_in_hours":
            nodes.append(SlaDueIn(op, float(arg)))
        else:
            since, business = SINCE_FIELDS[key]
            nodes.append(SinceCompare(key, since, business, op, float(arg)))
    return nodes[0] if len(nodes) == 1 else All(nodes)


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
        env.report(f"{field}.{op} needs text or a list of texts, got {describe(arg)}", op)
        return None
    return values


def _parse_op(field: Field, op: str, arg: Any, env: ParseEnv) -> Node | None:
    name = field.name
    if op not in field.ops:
        env.report(
            f"unknown operator '{op}' for {name}{did_you_mean(op, field.ops)}; "
            f"use one of: {', '.join(field.ops)}",
            op,
        )
        return None
    if op in ("equals", "in"):
        values = as_list(arg) if op == "in" else [arg]
        if op == "in" and not isinstance(arg, list):
            env.report(f"{name}.in needs a list, got {describe(arg)}", op)
            return None
        if not values:
            env.report(f"{name}.in needs at least one value", op)
            return None
        keys: set[Hashable] = set()
        for v in values:
            key = field.rule_key(v) if isinstance(v, str | int | float | bool) else None
            if key is None:
                env.report(f"{name}: cannot compare with {describe(v)}", name)
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
        env.report(f"{name}.{op} needs a number, got {describe(arg)}", op)
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
        days = [parse_weekday(d) for d in as_list(arg)]
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
