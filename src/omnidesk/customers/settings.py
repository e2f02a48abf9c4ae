"""``[customers]`` (typed fields) and ``[privacy]`` (erasure, retention,
redaction, logs) in the config file.

Parsed from the config's ``Options`` tables (passed in: this package imports
only the domain), so every key read is checked and an unknown one refused
with the file and key named, like the rest of the config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .fields import CustomerFields, FieldDef, FieldError, FieldSet, make_field

DAY = 86400.0


class Table(Protocol):
    """What of ``config.Options`` this module uses."""

    def table(self, name: str) -> Table: ...
    def keys(self) -> Any: ...
    def string(self, name: str, default: Any = ..., *, choices: tuple[str, ...] = ()) -> Any: ...
    def strings(self, name: str, default: Any = ...) -> Any: ...
    def boolean(self, name: str, default: Any = ...) -> Any: ...
    def number(self, name: str, default: Any = ..., *, min: float | None = None) -> Any: ...
    def duration(self, name: str, default: Any = ...) -> Any: ...
    def error(self, name: str, reason: str) -> Exception: ...
    def check_unused(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Conversations last active more than ``days`` ago, on ``channels`` (any
    when empty) and in ``categories`` (any when empty), are deleted or
    redacted."""

    name: str
    days: float
    action: str  # delete | redact
    channels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    erase_messages: str = "redact"  # redact | remove
    redact_card_numbers: bool = False
    redact_patterns: tuple[re.Pattern[str], ...] = ()
    # E-mail addresses, phone numbers and card numbers are masked in logs
    # unless this is true (a debugging session on a test system).
    log_personal_data: bool = False
    retention: tuple[RetentionPolicy, ...] = ()
    retention_every: float = DAY

    @property
    def redacting(self) -> bool:
        return self.redact_card_numbers or bool(self.redact_patterns)


def _fields(t: Table) -> FieldSet:
    out: dict[str, FieldDef] = {}
    for name in list(t.keys()):
        o = t.table(name)
        type_ = o.string("type", choices=("text", "number", "date", "enum", "boolean"))
        label = o.string("label", None)
        # (choices are read for enum fields only: elsewhere they are refused as unknown)
        choices = o.strings("choices", []) if type_ == "enum" else []
        o.check_unused()
        try:
            out[name] = make_field(name, type_, label, choices)
        except FieldError as exc:
            raise t.error(name, str(exc)) from None
    return FieldSet(out)


def parse_customers(t: Table) -> CustomerFields:
    contact = _fields(t.table("fields"))
    company = _fields(t.table("company_fields"))
    t.check_unused()
    return CustomerFields(contact, company)


def parse_privacy(t: Table) -> PrivacySettings:
    erase = t.string("erase_messages", "redact", choices=("redact", "remove"))
    cards = t.boolean("redact_card_numbers", False)
    patterns = []
    for p in t.strings("redact_patterns", []):
        try:
            patterns.append(re.compile(p))
        except re.error as exc:
            raise t.error("redact_patterns", f"{p!r} is not a regular expression: {exc}") from None
        if patterns[-1].search("") is not None:
            raise t.error("redact_patterns", f"{p!r} matches the empty text")
    log_pd = t.boolean("log_personal_data", False)
    every = t.duration("retention_every", DAY)
    policies = []
    ret = t.table("retention")
    for name in list(ret.keys()):
        o = ret.table(name)
        days = o.number("days", min=1)
        action = o.string("action", choices=("delete", "redact"))
        channels = tuple(o.strings("channels", []))
        categories = tuple(o.strings("categories", []))
        o.check_unused()
        policies.append(RetentionPolicy(name, float(days), action, channels, categories))
    t.check_unused()
    return PrivacySettings(erase, cards, tuple(patterns), log_pd, tuple(policies), float(every))


__all__ = ["PrivacySettings", "RetentionPolicy", "parse_customers", "parse_privacy"]
