"""Chinese by words: segmentation and the traditional-to-simplified table.

Chinese is written without spaces, so a phrase searched as a plain substring fires
inside longer words: 硬 ("hard", a reproach for food) inside 硬朗 ("sturdy"), 油
("greasy") inside 加油 ("go for it"). The text is cut into words with jieba's
dictionary and HMM (``rjieba``, the Rust port: about 4 µs for a 50-character review)
and a Chinese phrase matches only where a word starts and where a word ends. A phrase
of several words (太慢, 不满意) still matches across them; a character inside a word
does not.

Traditional characters are folded to simplified ones first (one character for one,
from OpenCC's table), so ``服務態度很差`` matches the phrase ``服务态度`` and the
segmenter, whose dictionary is simplified, sees words it knows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import rjieba

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def _load_t2s() -> dict[int, int]:
    table: dict[int, int] = {}
    text = resources.files("omnidesk.rules").joinpath("data/t2s.txt").read_text("utf-8")
    for line in text.splitlines():
        if len(line) == 2:
            table[ord(line[0])] = ord(line[1])
    return table


_T2S = _load_t2s()


def has_han(text: str) -> bool:
    return _HAN.search(text) is not None


def to_simplified(text: str) -> str:
    """Traditional characters replaced one for one (the length stays the same, so
    positions found in the result are positions in ``text``)."""
    return text.translate(_T2S) if has_han(text) else text


@lru_cache(maxsize=512)
def segment(text: str) -> tuple[str, ...]:
    """The words of ``text`` in order; joined they give ``text`` back (spaces and
    punctuation are tokens of their own). Cached: the keyword pass, negation and the
    trained model ask about the same text."""
    return tuple(rjieba.cut(text))


# Degree adverbs the dictionary fuses with what follows them (挺好吃, 特别感谢, 十分满意,
# 很漂亮, 挺快): the word after one is a word of its own for the phrases, so 好吃,
# 感谢, 满意 match there as they do after 很 in 很/好吃. Not 太 (a phrase of its own, and
# 太阳 is "sun"), nor 最 (最好: "had better"), nor 好 (好吃, 好多).
_DEGREE = (
    "非常", "特别", "十分", "比较", "相当", "超级", "极其", "格外", "灰常",
    "挺", "很", "蛮", "超", "真",
)  # fmt: skip


def _cut_degree(token: str) -> int:
    """Where the word after a leading degree adverb starts in ``token`` (0: none)."""
    for prefix in _DEGREE:
        if token.startswith(prefix) and len(token) > len(prefix):
            return len(prefix)
    return 0


@lru_cache(maxsize=512)
def word_bounds(text: str) -> frozenset[int]:
    """Offsets in ``text`` where a word starts or ends (and where a word follows a
    degree adverb fused with it)."""
    bounds = {0}
    at = 0
    for token in segment(text):
        cut = _cut_degree(token) if has_han(token) else 0
        if cut:
            bounds.add(at + cut)
        at += len(token)
        bounds.add(at)
    return frozenset(bounds)


def words_between(text: str, start: int, end: int) -> int:
    """How many words (not spaces or punctuation) lie in ``text[start:end]``."""
    if start >= end:
        return 0
    bounds = sorted(b for b in word_bounds(text) if start < b < end)
    count = 0
    prev = start
    for b in [*bounds, end]:
        if any(ch.isalnum() for ch in text[prev:b]):
            count += 1
        prev = b
    return count
