"""Cutting a long reply into the pieces a provider takes, by its own measure
of length: UTF-16 code units (Telegram's 4,096, Twilio's 1,600 characters of
an SMS body), cut at a paragraph, line or word when one is near the limit."""

from __future__ import annotations


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_units(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` UTF-16 units, cut at a line break or a space
    when one is in the second half of the piece (a character outside the
    Basic Multilingual Plane counts two units and is never cut in half)."""
    pieces: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        # The longest prefix within the limit (a character may be two units).
        cut = min(len(rest), limit)
        while utf16_len(rest[:cut]) > limit:
            cut -= 1
        window = rest[:cut]
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > cut // 2:
                cut = at + len(sep)
                break
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n")
    if rest.strip() or not pieces:
        pieces.append(rest)
    return [p for p in pieces if p.strip()] or [text]
