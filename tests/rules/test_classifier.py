"""The phrase classifier: weights, longest phrase, negation, contrast, confidence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.model import Category, Decision
from omnidesk.rules import RuleSet, load_rules

from .conftest import inp

CLASSIFIER = """
[classifier]
negators = ["not", "never", "*n't", "不", "没"]
negation_window = 2
contrast = ["but", "但是"]
contrast_weight = 2

[[classifier.phrases]]
category = "complaint"
weight = 3
phrases = ["refund*", "not happy", "不满意", "太慢"]

[[classifier.phrases]]
category = "complaint"
weight = 1
phrases = ["late", "problem"]

[[classifier.phrases]]
category = "feedback"
weight = 2
negated = "complaint"
phrases = ["happy", "helpful", "满意", "好吃", "不错"]

[[classifier.phrases]]
category = "inquiry"
weight = 1
phrases = ["how do i", "?", "吗"]
"""


@pytest.fixture
def classify(rules_dir: Callable[..., Path]) -> Callable[..., Decision]:
    rs = load_rules(rules_dir({"00-classifier.toml": CLASSIFIER}, classifier=False))
    return lambda text, **kw: rs.evaluate(inp(text, **kw))


def test_weights_pick_the_category(classify: Callable[..., Decision]) -> None:
    assert classify("I want a refund").category is Category.COMPLAINT
    assert classify("so helpful").category is Category.FEEDBACK
    assert classify("how do i reset it?").category is Category.INQUIRY


def test_no_phrase_gives_the_default_at_one_third(classify: Callable[..., Decision]) -> None:
    d = classify("lorem ipsum")
    assert d.category is Category.INQUIRY
    assert d.confidence == pytest.approx(1 / 3)
    assert d.rule == "classifier"
    assert d.explanation == ["classifier: inquiry 0.33, no phrase matched (default)"]


def test_confidence_grows_with_evidence(classify: Callable[..., Decision]) -> None:
    weak = classify("it was late")
    strong = classify("late again, refund now, not happy")
    assert weak.category is strong.category is Category.COMPLAINT
    assert 0.5 < weak.confidence < strong.confidence < 1.0


def test_subject_counts_too(classify: Callable[..., Decision]) -> None:
    assert classify("", subject="Refund").category is Category.COMPLAINT


def test_longer_phrase_hides_the_shorter_one_inside_it(classify: Callable[..., Decision]) -> None:
    d = classify("I am not happy")
    assert d.category is Category.COMPLAINT
    assert "'not happy' (+3.0)" in d.explanation[0]
    assert "'happy'" not in d.explanation[0]
    d = classify("我很不满意")
    assert d.category is Category.COMPLAINT
    assert "'满意'" not in d.explanation[0]


def test_negated_compliment_counts_for_complaint(classify: Callable[..., Decision]) -> None:
    d = classify("the agent was not very helpful")
    assert d.category is Category.COMPLAINT
    assert "'helpful' negated by 'not' (+2.0)" in d.explanation[0]
    assert classify("it wasn't helpful").category is Category.COMPLAINT
    assert classify("菜不太好吃").category is Category.COMPLAINT


def test_negation_has_a_reach(classify: Callable[..., Decision]) -> None:
    # three words between "not" and "happy": beyond negation_window = 2
    assert classify("not that it matters much, happy").category is Category.FEEDBACK
    assert classify("never mind the price and all, helpful").category is Category.FEEDBACK
    # punctuation ends the reach
    assert classify("not bad. helpful").category is Category.FEEDBACK


def test_negated_phrase_without_negated_category_counts_for_nothing(
    classify: Callable[..., Decision],
) -> None:
    d = classify("there is not a problem")
    assert d.category is Category.INQUIRY
    assert "ignored 'problem' (negated by 'not')" in d.explanation[0]


def test_negator_inside_a_longer_phrase_negates_nothing(
    classify: Callable[..., Decision],
) -> None:
    # 不错 ("not bad") is praise; its 不 must not turn the following 好吃 into a complaint
    d = classify("不错好吃")
    assert d.category is Category.FEEDBACK
    assert "negated" not in d.explanation[0]


def test_a_negator_that_negates_a_phrase_is_no_evidence_itself(
    rules_dir: Callable[..., Path],
) -> None:
    # 没有 is both a negator and a (weak) complaint phrase; negating 问题 it says nothing
    rs = load_rules(
        rules_dir(
            {
                "00.toml": """
[classifier]
negators = ["没有"]
[[classifier.phrases]]
category = "complaint"
weight = 2
phrases = ["没有"]
[[classifier.phrases]]
category = "complaint"
weight = 2
negated = "feedback"
phrases = ["问题"]
"""
            },
            classifier=False,
        )
    )
    praise = rs.evaluate(inp("用了一个月，没有问题"))
    assert praise.category is Category.FEEDBACK, praise.explanation
    assert "for complaint" not in praise.explanation[0], praise.explanation
    assert rs.evaluate(inp("没有筷子")).category is Category.COMPLAINT


def test_contrast_makes_what_follows_weigh_more(classify: Callable[..., Decision]) -> None:
    # 好吃 (+2) vs 太慢 (+3): complaint either way, and doubled after 但是
    d = classify("好吃，但是太慢")
    assert "'太慢' after '但是' (+6.0)" in d.explanation[0]
    # feedback 2 + 2 = 4 against complaint 1 (x2 after "but") = 2
    assert classify("happy and helpful but late").category is Category.FEEDBACK
    assert classify("late but happy").category is Category.FEEDBACK
    # questions are not opinions: no contrast boost
    assert "'?' (+1.0)" in classify("ok but how?").explanation[0]


def test_a_phrase_counts_once_however_often_it_appears(
    classify: Callable[..., Decision],
) -> None:
    once = classify("late")
    many = classify("late late late late")
    assert once.confidence == many.confidence


def test_wildcard_phrase_explains_the_words_it_matched(classify: Callable[..., Decision]) -> None:
    assert "'refunded' (refund*) (+3.0)" in classify("they refunded half").explanation[0]


def test_ties_go_to_complaint(classify: Callable[..., Decision]) -> None:
    # "happy" +2 (feedback) vs "late" +1 and "problem" +1 (complaint)
    assert classify("happy, late, problem").category is Category.COMPLAINT


def test_min_score_and_default_are_configurable(rules_dir: Callable[..., Path]) -> None:
    rs = load_rules(
        rules_dir(
            {
                "00-c.toml": """
                [classifier]
                default = "feedback"
                min_score = 2

                [[classifier.phrases]]
                category = "complaint"
                weight = 1.5
                phrases = ["late"]
                """
            },
            classifier=False,
        )
    )
    d = rs.evaluate(inp("late"))
    assert d.category is Category.FEEDBACK
    assert "evidence below min_score" in d.explanation[0] or "default" in d.explanation[0]


def test_phrases_from_several_files_add_up(rules_dir: Callable[..., Path]) -> None:
    d = rules_dir(
        {
            "00-classifier.toml": CLASSIFIER,
            "05-german.toml": """
            [classifier]
            negators = ["nicht"]

            [[classifier.phrases]]
            category = "complaint"
            weight = 3
            phrases = ["unverschämt", "rückerstattung"]

            [[classifier.phrases]]
            category = "feedback"
            weight = 2
            negated = "complaint"
            phrases = ["zufrieden"]
            """,
        },
        classifier=False,
    )
    rs: RuleSet = load_rules(d)
    assert rs.evaluate(inp("Das ist unverschämt")).category is Category.COMPLAINT
    assert rs.evaluate(inp("Ich bin nicht zufrieden")).category is Category.COMPLAINT
    assert rs.evaluate(inp("sehr zufrieden")).category is Category.FEEDBACK


def test_shipped_classifier_handles_negation_both_languages(shipped: RuleSet) -> None:
    def cat(text: str) -> Category:
        return shipped.evaluate(inp(text)).category

    assert cat("I am not happy with this at all") is Category.COMPLAINT
    assert cat("Really happy with the service, thank you so much!") is Category.FEEDBACK
    assert cat("很满意，下次还会再来") is Category.FEEDBACK
    assert cat("很不满意") is Category.COMPLAINT
    # a complaint about something that did not happen stays a complaint
    assert cat("They never refunded me") is Category.COMPLAINT
    assert cat("还没有退款") is Category.COMPLAINT
    assert cat("不好吃") is Category.COMPLAINT
    assert cat("味道不错") is Category.FEEDBACK
    assert cat("请问可以开发票吗？") is Category.INQUIRY
    assert cat("How can I change my delivery address?") is Category.INQUIRY


def test_shipped_chinese_phrases_beyond_food_delivery(shipped: RuleSet) -> None:
    """Written for shops, books, electronics, clothes, hotels, banks and telecoms."""

    def cat(text: str) -> Category:
        return shipped.evaluate(inp(text)).category

    for text in (
        "书的内容空洞无聊，看了一半就看不下去了",
        "键盘有异响，风扇噪音很大",
        "衣服起球了，洗一次就掉色",
        "前台态度冷淡，入住等了半个小时",
        "手续费太高，转账还经常失败",
        "信号不好，打电话老是掉线",
        "性价比不高，不值这个价",
    ):
        assert cat(text) is Category.COMPLAINT, text
    for text in (
        "故事很感人，一口气看完了",
        "电池很耐用，充一次用两天",
        "房间干净整洁，床很舒服",
        "一点也不贵，很划算",  # 不贵: a complaint word negated is praise
        "没有失望，比想象的好",
        "包装完好，东西没有损坏",
    ):
        assert cat(text) is Category.FEEDBACK, text


def test_explanation_format_matches_the_documented_shape(shipped: RuleSet) -> None:
    line = shipped.evaluate(inp("Still waiting for my refund. Unacceptable.")).explanation[0]
    assert line.startswith("classifier: complaint ")
    assert "'still waiting' (+2.0)" in line
    assert "'refund' (refund*)" in line
    assert "'unacceptable' (+3.0)" in line


def test_min_score_per_category_passes_to_the_next_best(rules_dir: Callable[..., Path]) -> None:
    rs = load_rules(
        rules_dir(
            {
                "00-c.toml": """
                [classifier]
                min_score = { complaint = 1.5 }

                [[classifier.phrases]]
                category = "complaint"
                weight = 1
                phrases = ["still", "again"]

                [[classifier.phrases]]
                category = "feedback"
                weight = 0.5
                phrases = ["thanks"]
                """
            },
            classifier=False,
        )
    )
    assert rs.evaluate(inp("still here")).category is Category.INQUIRY  # 1 < 1.5: default
    assert rs.evaluate(inp("still here, thanks")).category is Category.FEEDBACK
    assert rs.evaluate(inp("still broken again, thanks")).category is Category.COMPLAINT


def test_min_score_table_is_validated(rules_dir: Callable[..., Path]) -> None:
    from omnidesk.rules import RulesError

    with pytest.raises(RulesError, match="min_score: unknown category 'anger'"):
        load_rules(
            rules_dir({"00-c.toml": "[classifier]\nmin_score = { anger = 1 }\n"}, classifier=False)
        )


def test_a_phrase_after_a_degree_adverb_fused_with_it_matches(shipped: RuleSet) -> None:
    """The segmenter's dictionary fuses some degree adverbs with what follows (挺好吃,
    特别感谢, 十分满意, 很漂亮): the phrase after one matches as after 很 in 很/好吃."""
    for text in ("挺好吃的", "特别感谢！", "十分满意", "衣服很漂亮"):
        assert shipped.evaluate(inp(text)).category is Category.FEEDBACK, text
    # 太阳 ("sun") is no 太 ("too"), 最好 ("had better") no 好
    assert "no phrase matched" in shipped.evaluate(inp("今天太阳很大")).explanation[0]


def test_a_chinese_statement_no_phrase_decides_gets_chinese_statement(
    rules_dir: Callable[..., Path],
) -> None:
    rs = load_rules(
        rules_dir(
            {
                "00-classifier.toml": CLASSIFIER.replace(
                    "[classifier]", '[classifier]\nchinese_statement = "complaint"'
                )
            },
            classifier=False,
        )
    )
    d = rs.evaluate(inp("我要的是排骨饭，送来的是鸡肉饭"))
    assert d.category is Category.COMPLAINT
    assert d.explanation[0] == "classifier: complaint 0.33, no phrase matched (chinese_statement)"
    # a question stays an inquiry, and text in other languages keeps the default
    assert rs.evaluate(inp("送来的是鸡肉饭吗")).category is Category.INQUIRY
    assert rs.evaluate(inp("lorem ipsum")).category is Category.INQUIRY
    plain = load_rules(rules_dir({"00-classifier.toml": CLASSIFIER}, classifier=False))
    assert plain.evaluate(inp("我要的是排骨饭，送来的是鸡肉饭")).category is Category.INQUIRY


def test_chinese_statement_must_be_a_category(rules_dir: Callable[..., Path]) -> None:
    with pytest.raises(Exception, match="chinese_statement"):
        load_rules(
            rules_dir(
                {
                    "00-classifier.toml": CLASSIFIER.replace(
                        "[classifier]", '[classifier]\nchinese_statement = "angry"'
                    )
                },
                classifier=False,
            )
        )


def test_shipped_rules_leave_a_chinese_request_an_inquiry(shipped: RuleSet) -> None:
    """``chinese_statement`` is not set in the shipped rules: a request that asks
    nothing in words no phrase knows stays the default, not a complaint."""
    for text in ("帮我查一下快递", "我想改一下地址"):
        d = shipped.evaluate(inp(text))
        assert d.category is Category.INQUIRY, text
        assert "(default)" in d.explanation[0]
