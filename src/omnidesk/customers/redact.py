"""Masking what must not be kept or shown.

* ``mask_cards``: payment card numbers (13-19 digits, spaces or dashes
  between groups allowed) that pass the Luhn check become ``[card ****1234]``;
  a number that fails the check (an order number, a phone) is left alone.
* ``Redactor``: what ``[privacy] redact_card_numbers`` and
  ``redact_patterns`` ask, applied to a message before it is stored.
* ``mask_personal``: e-mail addresses, phone numbers and card numbers in a
  log line, on by default (``[privacy] log_personal_data``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from ..model import Message

_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_CARD_BYTES = re.compile(rb"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number: + and 7-15 digits, or 9+ digits with separators; not a
# plain run of digits shorter than that (ids, counts, ports).
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ()./-]{6,18}\d|(?<![\w])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return f"[card ****{digits[-4:]}]"
    return m.group(0)


def mask_cards(text: str) -> str:
    if not any(c.isdigit() for c in text):
        return text
    return _CARD.sub(_card, text)


def _card_bytes(m: re.Match[bytes]) -> bytes:
    digits = re.sub(rb"\D", b"", m.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits.decode()):
        # Same length, so offsets in the raw input (MIME, JSON) stay valid.
        return re.sub(rb"\d", b"*", m.group(0)[:-4]) + m.group(0)[-4:]
    return m.group(0)


class Redactor:
    """Masks card numbers and configured patterns in a message before it is
    stored: its text, full text, HTML and subject, and in the raw input kept
    beside it (card numbers only there, digit for digit, so the raw bytes keep
    their length; a card number inside base64 or quoted-printable is not
    seen there)."""

    def __init__(self, cards: bool, patterns: Sequence[re.Pattern[str]] = ()) -> None:
        self.cards = cards
        self.patterns = tuple(patterns)

    def text(self, value: str) -> str:
        if self.cards:
            value = mask_cards(value)
        for p in self.patterns:
            value = p.sub("[redacted]", value)
        return value

    def message(self, msg: Message) -> Message:
        changes: dict[str, Any] = {}
        for name in ("text", "full_text", "html", "subject"):
            value = getattr(msg, name)
            if isinstance(value, str) and value:
                new = self.text(value)
                if new != value:
                    changes[name] = new
        return dataclasses.replace(msg, **changes) if changes else msg

    def raw(self, payload: bytes) -> bytes:
        if not self.cards:
            return payload
        return _CARD_BYTES.sub(_card_bytes, payload)


def _mask_email(m: re.Match[str]) -> str:
    local, _, domain = m.group(0).partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return f"[phone ***{digits[-2:]}]"


def mask_personal(text: str) -> str:
    """A log line without e-mail addresses (``a***@example.com``), phone
    numbers (``[phone ***67]``) or card numbers in clear."""
    if "@" in text:
        text = _EMAIL.sub(_mask_email, text)
    if any(c.isdigit() for c in text):
        text = mask_cards(text)
        text = _PHONE.sub(_mask_phone, text)
    return text
