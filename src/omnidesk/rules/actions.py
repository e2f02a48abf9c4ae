"""Actions: the ``then`` part of a rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnidesk.model import Category, Priority

from .problems import describe, did_you_mean
from .schema import Report

ACTION_KEYS = ("category", "confidence", "priority", "team", "agent", "tags", "remove_tags")
# Only where a conversation is acted on later (time-based rules, SLA policies'
# on_warning / on_breach), not while a message is being filed.
CONVERSATION_ACTION_KEYS = ("status", "reply", "notify", "email")
STATUSES = ("open", "pending", "resolved")
# notify = [...]: these roles, or usernames.
NOTIFY_ROLES = ("assignee", "team", "team_lead", "supervisors")


@dataclass(frozen=True, slots=True)
class Actions:
    category: Category | None = None
    confidence: float | None = None  # with category; default 1.0 (an admin said so)
    priority: Priority | None = None
    team: str | None = None
    agent: str | None = None
    tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    status: str | None = None  # open | pending | resolved
    reply: str | None = None  # a canned reply's shortcut, sent to the customer
    notify: tuple[str, ...] = ()  # NOTIFY_ROLES or usernames, in the inbox
    email: bool = False  # the notifications go by e-mail too

    def describe(self) -> str:
        parts = []
        if self.category is not None:
            conf = "" if self.confidence is None else f" ({self.confidence:g})"
            parts.append(f"category={self.category}{conf}")
        if self.priority is not None:
            parts.append(f"priority={self.priority}")
        if self.team is not None:
            parts.append(f"team={self.team}")
        if self.agent is not None:
            parts.append(f"agent={self.agent}")
        if self.tags:
            parts.append(f"tags+={','.join(self.tags)}")
        if self.remove_tags:
            parts.append(f"tags-={','.join(self.remove_tags)}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.reply is not None:
            parts.append(f"reply={self.reply}")
        if self.notify:
            parts.append(
                f"notify={','.join(self.notify)}" + (" (and e-mail)" if self.email else "")
            )
        return ", ".join(parts) or "nothing"

    def is_empty(self) -> bool:
        return self == Actions()


def _choice(key: str, value: Any, enum: type[Category] | type[Priority], report: Report) -> Any:
    choices = [e.value for e in enum]
    if isinstance(value, str) and value.strip().lower() in choices:
        return enum(value.strip().lower())
    report(
        f"unknown {key} {value!r}{did_you_mean(str(value), choices)}; "
        f"use one of: {', '.join(choices)}",
        str(value),
    )
    return None


def _name(key: str, value: Any, report: Report) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    report(f"{key} needs a name, got {describe(value)}", key)
    return None


def _tags(key: str, value: Any, report: Report) -> tuple[str, ...] | None:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        report(f"{key} needs a tag or a list of tags, got {describe(value)}", key)
        return None
    return tuple(v.strip() for v in values)


def parse_actions(
    raw: Any, report: Report, *, scope: str = "message", what: str = "'then'"
) -> Actions | None:
    """``scope``: "message" (a rule on arriving messages) or "conversation"
    (time-based rules and SLA actions, which may also set the status, send a
    canned reply and notify people)."""
    if not isinstance(raw, dict):
        report(f"{what} must be a table of actions, got {describe(raw)}", what.strip("'"))
        return None
    ok = True
    fields: dict[str, Any] = {}
    allowed = ACTION_KEYS if scope == "message" else (*ACTION_KEYS, *CONVERSATION_ACTION_KEYS)
    for key, value in raw.items():
        parsed: Any
        if key in CONVERSATION_ACTION_KEYS and scope == "message":
            report(
                f"action '{key}' acts on a conversation later: use it in a time-based rule"
                ' (on = "time") or an [[sla]] policy',
                key,
            )
            parsed = None
        elif key == "status":
            parsed = value if value in STATUSES else None
            if parsed is None:
                report(
                    f"unknown status {value!r}{did_you_mean(str(value), STATUSES)};"
                    f" use one of: {', '.join(STATUSES)}",
                    key,
                )
        elif key == "reply":
            parsed = _name(key, value, report)
        elif key == "notify":
            parsed = _tags(key, value, report)
        elif key == "email":
            parsed = value if isinstance(value, bool) else None
            if parsed is None:
                report(f"email needs true or false, got {describe(value)}", key)
        elif key == "category":
            parsed = _choice(key, value, Category, report)
        elif key == "priority":
            parsed = _choice(key, value, Priority, report)
        elif key in ("team", "agent"):
            parsed = _name(key, value, report)
        elif key in ("tags", "remove_tags"):
            parsed = _tags(key, value, report)
        elif key == "confidence":
            parsed = None
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
                parsed = float(value)
            else:
                report(f"confidence needs a number from 0 to 1, got {describe(value)}", key)
        else:
            report(
                f"unknown action '{key}'{did_you_mean(key, allowed)}; "
                f"actions are: {', '.join(allowed)}",
                key,
            )
            parsed = None
        if parsed is None:
            ok = False
        else:
            fields[key] = parsed
    if ok and "confidence" in fields and "category" not in fields:
        report("confidence only makes sense together with category", "confidence")
        ok = False
    if ok and fields.get("email") and not fields.get("notify"):
        report("email = true needs notify = [...] (who gets the e-mail)", "email")
        ok = False
    return Actions(**fields) if ok else None
