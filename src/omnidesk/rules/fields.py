"""The fields a condition can look at, and how their values compare."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from . import context
from .context import Context
from .text import fold

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = {
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


def as_list(value: Any) -> list[Any]:
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


def contact_field(attr: str) -> Field:
    return Field(
        f"contact.{attr}",
        lambda ctx: as_list(ctx.inp.contact.get(attr)),
        TEXT_OPS + NUMBER_OPS,
    )


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("channel", lambda c: [c.inp.channel], TEXT_OPS),
        Field("channel_type", lambda c: [c.inp.channel_type], TEXT_OPS),
        Field("sender", lambda c: [c.inp.sender], TEXT_OPS),
        Field("sender_domain", _sender_domain, TEXT_OPS),
        Field("sender_name", lambda c: as_list(c.inp.sender_name), TEXT_OPS),
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
