"""Normalizing sender identities so the same person meets themself across
channels: e-mail addresses lower-cased, phone numbers in E.164 (WhatsApp sends
``15551234567``, a web form ``(555) 123-4567``: both become ``+15551234567``)."""

from __future__ import annotations

import phonenumbers

from .model import Identity


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """E.164 for a phone number, or None when it is not one. Numbers without a
    leading ``+`` are read as international (how WhatsApp and most providers
    send them) unless a default region is given."""
    text = raw.strip()
    if not text:
        return None
    attempts: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        attempts.append((text, None))
    else:
        if default_region:
            attempts.append((text, default_region))
        attempts.append(("+" + text.lstrip("0"), None))
    for cand, region in attempts:
        try:
            num = phonenumbers.parse(cand, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return None


def normalize_identity(
    kind: str, address: str, display_name: str | None = None, data: dict[str, object] | None = None
) -> Identity:
    kind = kind.strip().lower()
    addr = address.strip()
    if kind == "email":
        addr = addr.lower()
    elif kind == "phone":
        addr = normalize_phone(addr) or addr
    name = display_name.strip() if display_name else None
    return Identity(kind=kind, address=addr, display_name=name or None, data=dict(data or {}))


# A visitor who gave no name (a website chat's random id) is shown by a
# readable alias made from a stable seed (the contact's id): "Amber Otter".
_ALIAS_ADJECTIVES = (
    "Amber", "Azure", "Brave", "Bright", "Calm", "Coral", "Crimson", "Curious", "Gentle",
    "Golden", "Happy", "Indigo", "Jade", "Kind", "Lively", "Lucky", "Mellow", "Misty",
    "Nimble", "Olive", "Quiet", "Rapid", "Ruby", "Sage", "Silver", "Sunny", "Swift",
    "Teal", "Violet", "Warm", "Witty", "Zesty",
)  # fmt: skip
_ALIAS_ANIMALS = (
    "Badger", "Bear", "Beaver", "Crane", "Dolphin", "Eagle", "Falcon", "Finch", "Fox",
    "Gecko", "Hare", "Heron", "Koala", "Lark", "Lynx", "Marten", "Moose", "Otter", "Owl",
    "Panda", "Puffin", "Raven", "Robin", "Seal", "Sparrow", "Stork", "Swan", "Tiger",
    "Turtle", "Whale", "Wolf", "Wren",
)  # fmt: skip


def visitor_alias(seed: int) -> str:
    """A readable, stable alias for a nameless visitor (1,024 of them, so
    two visitors may share one: the contact id tells them apart)."""
    n = (seed * 2654435761) % 2**32  # spread neighbouring ids apart
    return f"{_ALIAS_ADJECTIVES[n % 32]} {_ALIAS_ANIMALS[(n // 32) % 32]}"
