"""Text normalisation shared by keyword patterns and the messages they are matched against.

Both sides go through :func:`fold`, so matching is case-insensitive, width-insensitive
(full-width ``ＲＥＦＵＮＤ`` and ``！`` become ``refund`` and ``!``), apostrophe-insensitive
(``don’t`` is ``don't``), whitespace-insensitive (``still   waiting`` is ``still waiting``)
and blind to traditional versus simplified Chinese (``態度`` is ``态度``).
"""

from __future__ import annotations

import re
import unicodedata

from .words import to_simplified

# Longer inputs are cut before matching: a pasted log file must not stall the pipeline,
# and what decides a message's category is near its top.
MAX_TEXT = 50_000

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})
_SPACE = re.compile(r"\s+")


def fold(value: str) -> str:
    value = unicodedata.normalize("NFKC", value[:MAX_TEXT]).casefold().translate(_QUOTES)
    return to_simplified(_SPACE.sub(" ", value).strip())


def is_spaceless(ch: str) -> bool:
    """Characters of scripts written without spaces between words (CJK, kana, Hangul
    syllables glued to particles, Thai, Lao, Khmer, Myanmar): keywords match inside them
    as plain substrings."""
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF  # CJK radicals, punctuation, kana, Han
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0xF900 <= o <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= o <= 0xFF9F  # half-width katakana
        or 0x20000 <= o <= 0x3FFFF  # Han extensions
        or 0x0E00 <= o <= 0x0EFF  # Thai, Lao
        or 0x1000 <= o <= 0x109F  # Myanmar
        or 0x1780 <= o <= 0x17FF  # Khmer
    )


def is_word_char(ch: str) -> bool:
    """A character that continues a space-separated word: a keyword must not start or
    end next to one (``refund`` does not match ``refunds``)."""
    return (ch.isalnum() or ch == "_") and not is_spaceless(ch)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF


def is_kana(ch: str) -> bool:
    return 0x3040 <= ord(ch) <= 0x30FF or 0xFF66 <= ord(ch) <= 0xFF9F


def is_hangul(ch: str) -> bool:
    return 0xAC00 <= ord(ch) <= 0xD7AF or 0x1100 <= ord(ch) <= 0x11FF
