"""Chinese by words: phrases match whole words, traditional folds to simplified,
negation counts words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omnidesk.model import Category, Decision
from omnidesk.rules import load_rules
from omnidesk.rules.text import fold
from omnidesk.rules.words import segment, word_bounds, words_between

from .conftest import inp

REPROACHES = """
[classifier]
[[classifier.phrases]]
category = "complaint"
weight = 3
phrases = ["硬", "油"]
"""


def test_a_character_inside_a_longer_word_is_not_a_phrase(
    rules_dir: Callable[..., Path],
) -> None:
    rs = load_rules(rules_dir({"00-classifier.toml": REPROACHES}, classifier=False))
    # 硬朗 (sturdy) and 加油 (go for it) are praise; 硬 and 油 alone are reproaches.
    assert rs.evaluate(inp("这个手机很硬朗，加油！")).category == Category.INQUIRY
    assert rs.evaluate(inp("米饭太硬了，菜也很油")).category == Category.COMPLAINT


def test_phrases_match_whole_words_in_longer_text(decide: Callable[..., Decision]) -> None:
    d = decide("", "申请退款三次了")
    assert d.category == Category.COMPLAINT
    assert "'退款'" in d.explanation[0]


def test_traditional_characters_match_simplified_phrases(
    decide: Callable[..., Decision],
) -> None:
    assert fold("服務態度很差") == "服务态度很差"
    # 滿意 (traditional) is the listed 满意.
    assert decide("", "非常滿意").category == Category.FEEDBACK


def test_negation_reaches_over_words_not_characters(decide: Callable[..., Decision]) -> None:
    # 不 + 特别 非常 (two words, four characters) + 满意: within the window of three
    # words, beyond three characters.
    d = decide("", "我不特别非常满意")
    assert d.category == Category.COMPLAINT, d.explanation
    text = "不是特别非常十分满意"
    assert words_between(text, 2, text.index("满意")) == 3


def test_segmentation_keeps_every_character() -> None:
    text = "送餐太慢了, my order 还没到"
    assert "".join(segment(text)) == text
    assert {0, len(text)} <= word_bounds(text)
