"""Every ``contains`` phrase of every rule, the classifier's phrases and its negators,
compiled into one Aho-Corasick automaton.

One pass over a field finds all of them at once, overlapping matches included (``不满意``
yields both ``不满意`` and ``满意``; the classifier keeps the longer). The cost of a pass
grows with the length of the text and the number of hits, not with the number of phrases,
which is what keeps 1,000 rules nearly as cheap as 10.

Phrase syntax: a word or phrase, matched case-insensitively on whole words: for scripts
written with spaces by the letters around it, for Chinese by the words the segmenter cut
(``words.py``: 硬 does not match inside 硬朗), and as a plain substring inside Japanese,
Korean or Thai text. A ``*`` at either end lifts the word boundary on that side:
``refund*`` matches ``refunds`` and ``refunded``, ``*n't`` matches ``don't`` and ``isn't``,
``退款*`` matches 退款单.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from .text import fold, is_cjk, is_word_char
from .words import word_bounds


@dataclass(frozen=True, slots=True)
class Keyword:
    pattern: str  # the folded phrase with its wildcards: the keyword's identity
    core: str  # what is searched for
    left: bool  # needs a word boundary before
    right: bool  # needs a word boundary after
    # Chinese at that end (no wildcard): must start / end where the segmenter put a
    # word boundary.
    seg_left: bool = False
    seg_right: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    keyword: str  # Keyword.pattern
    start: int
    end: int  # exclusive


def parse_keyword(raw: str) -> Keyword:
    """Raises ValueError with a reason an admin can act on."""
    pattern = fold(raw)
    core = pattern.strip("*").strip()
    if not core:
        raise ValueError(f"empty phrase {raw!r}")
    if "*" in core:
        raise ValueError(f"phrase {raw!r}: '*' is only allowed at the start or end")
    left_wild = pattern.startswith("*")
    right_wild = pattern.endswith("*")
    pattern = ("*" if left_wild else "") + core + ("*" if right_wild else "")
    return Keyword(
        pattern=pattern,
        core=core,
        left=not left_wild and is_word_char(core[0]),
        right=not right_wild and is_word_char(core[-1]),
        seg_left=not left_wild and is_cjk(core[0]),
        seg_right=not right_wild and is_cjk(core[-1]),
    )


class KeywordMatcher:
    """Immutable once built; ``scan`` is safe to call from many threads."""

    def __init__(self, keywords: Iterable[Keyword]) -> None:
        by_core: dict[str, dict[str, Keyword]] = {}
        for kw in keywords:
            by_core.setdefault(kw.core, {})[kw.pattern] = kw
        self.size = sum(len(v) for v in by_core.values())
        self._automaton: ahocorasick.Automaton | None = None
        if by_core:
            automaton = ahocorasick.Automaton()
            for core, variants in by_core.items():
                automaton.add_word(core, (len(core), tuple(variants.values())))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, folded: str) -> list[Hit]:
        """All hits in ``folded`` (a :func:`fold`-ed string), in order of their end."""
        if self._automaton is None or not folded:
            return []
        hits: list[Hit] = []
        last = len(folded) - 1
        bounds: frozenset[int] | None = None  # segmented on the first Chinese hit
        for end, (length, variants) in self._automaton.iter(folded):
            start = end - length + 1
            before_is_word = start > 0 and is_word_char(folded[start - 1])
            after_is_word = end < last and is_word_char(folded[end + 1])
            for kw in variants:
                if (kw.left and before_is_word) or (kw.right and after_is_word):
                    continue
                if kw.seg_left or kw.seg_right:
                    if bounds is None:
                        bounds = word_bounds(folded)
                    if (kw.seg_left and start not in bounds) or (
                        kw.seg_right and end + 1 not in bounds
                    ):
                        continue
                hits.append(Hit(kw.pattern, start, end + 1))
        return hits
