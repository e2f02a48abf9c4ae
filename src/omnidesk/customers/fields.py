"""Typed contact and company fields: their definitions and the check every
write goes through (the web form, the API, an import).

A field is text, number, date (``YYYY-MM-DD``), enum (one of its choices) or
boolean, with a label for the UI. Values are kept in the contact's (or the
company's) ``attributes`` as JSON: numbers as numbers, dates as ISO text,
booleans as true/false, so rules compare them as they are
(``contact.lifetime_value.above = 1000``). Attributes nobody defined stay
free-form text, numbers or booleans, as before fields existed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TYPES = ("text", "number", "date", "enum", "boolean")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Names the contact's own columns, its company and its purchase summary use.
RESERVED = frozenset({"name", "company", "orders", "email", "phone", "id", "satisfaction"})
MAX_TEXT = 1000
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}


class FieldError(ValueError):
    """A value a field does not take; the message names the field and the value."""


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: str
    label: str
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """The value as stored, or FieldError. ``None`` and "" clear the field."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        shown = repr(value) if not isinstance(value, str) else repr(value[:60])
        if self.type == "text":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise FieldError(f"{self.name}: {shown} is not text")
            text = str(value).strip()
            if len(text) > MAX_TEXT:
                raise FieldError(f"{self.name}: longer than {MAX_TEXT} characters")
            return text
        if self.type == "number":
            if isinstance(value, bool):
                raise FieldError(f"{self.name}: {shown} is not a number")
            if isinstance(value, int | float):
                return value
            try:
                n = float(str(value).strip().replace(",", ""))
            except ValueError:
                raise FieldError(f"{self.name}: {shown} is not a number") from None
            if n != n or n in (float("inf"), float("-inf")):
                raise FieldError(f"{self.name}: {shown} is not a number")
            return int(n) if n.is_integer() and abs(n) < 2**53 else n
        if self.type == "date":
            day = str(value).strip()[:10] if isinstance(value, str) else ""
            try:
                return dt.date.fromisoformat(day).isoformat()
            except ValueError:
                raise FieldError(f"{self.name}: {shown} is not a date (YYYY-MM-DD)") from None
        if self.type == "enum":
            text = str(value).strip()
            for choice in self.choices:
                if choice.casefold() == text.casefold():
                    return choice
            raise FieldError(f"{self.name}: {shown} is not one of {', '.join(self.choices)}")
        # boolean
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise FieldError(f"{self.name}: {shown} is not true or false")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "label": self.label}
        if self.choices:
            d["choices"] = list(self.choices)
        return d


@dataclass(frozen=True, slots=True)
class FieldSet:
    """The fields of one kind of record (contacts, or companies)."""

    fields: Mapping[str, FieldDef] = field(default_factory=dict)

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every value checked: defined fields by their type, other
        attributes as free-form text, numbers or booleans. ``None`` values
        stay ``None`` (they remove the attribute)."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key.strip() or len(key) > 64:
                raise FieldError(f"{key!r}: a field name is 1-64 characters")
            f = self.fields.get(key)
            if f is not None:
                out[key] = f.check(value)
            elif value is None or isinstance(value, bool | int | float):
                out[key] = value
            elif isinstance(value, str):
                if len(value) > MAX_TEXT:
                    raise FieldError(f"{key}: longer than {MAX_TEXT} characters")
                out[key] = value
            else:
                raise FieldError(f"{key}: must be text, a number or true/false")
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [f.describe() for f in self.fields.values()]


@dataclass(frozen=True, slots=True)
class CustomerFields:
    contact: FieldSet = field(default_factory=FieldSet)
    company: FieldSet = field(default_factory=FieldSet)

    def describe(self) -> dict[str, Any]:
        return {"contact": self.contact.describe(), "company": self.company.describe()}


def make_field(name: str, type_: str, label: str | None, choices: list[str]) -> FieldDef:
    """One field's definition, or FieldError saying what is wrong with it."""
    if not NAME.fullmatch(name):
        raise FieldError("a field name is lower-case letters, digits and _ (a letter first)")
    if name in RESERVED:
        raise FieldError(f"{name!r} is taken by omnidesk itself ({', '.join(sorted(RESERVED))})")
    if type_ not in TYPES:
        raise FieldError(f"type must be one of {', '.join(TYPES)} (got {type_!r})")
    if type_ == "enum" and not choices:
        raise FieldError("an enum field needs choices = [...]")
    if type_ != "enum" and choices:
        raise FieldError("choices are for enum fields only")
    return FieldDef(name, type_, label or name.replace("_", " ").capitalize(), tuple(choices))
