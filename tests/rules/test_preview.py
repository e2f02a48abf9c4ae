"""``RuleSet.preview``: the rules' work on subject and text done ahead of the write
transaction (and in a parse process) gives the decision a full evaluation gives, and a
preview of other rules or other text is never used."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from omnidesk.model import Category
from omnidesk.pipeline_proc import ParseRules
from omnidesk.rules import RuleSet, load_rules
from omnidesk.rules.conditions import Matches

from .conftest import SHIPPED_RULES, inp, write
from .test_corpora import TWITTER, WAIMAI, banking77, clinc150, twitter, waimai

# Chinese messages of our own (the Chinese review set stays outside the repository).
CHINESE = [
    "送餐太慢了，等了一个多小时，饭都凉了",
    "态度很差，再也不点了",
    "还没有退款，已经一个星期了",
    "菜里有头发，太恶心了，要求退款",
    "东西坏了，客服也不理人",
    "味道不错，送得也快",
    "很满意，下次还会再来",
    "包装很好，谢谢骑手",
    "分量足，好吃，推荐",
    "服务很周到，点赞",
    "请问可以开发票吗？",
    "几点开始营业？",
    "可以送到学校宿舍吗？",
    "怎么修改收货地址？",
    "我的订单什么时候到？",
    "不好吃",
    "很不满意",
]


def _records(source: str) -> Iterator[dict[str, str]]:
    if source == "vendored":
        return itertools.chain(
            itertools.islice(banking77(), 600),
            itertools.islice(clinc150(), 600),
            ({"text": text} for text in CHINESE),
        )
    return itertools.chain(
        itertools.islice(twitter(), 600), itertools.islice(waimai(binary=False), 600)
    )


@pytest.mark.parametrize(
    "source",
    ["vendored", pytest.param("complaint sets", marks=pytest.mark.corpus(TWITTER, WAIMAI))],
)
def test_a_preview_gives_the_full_evaluation_s_decision(shipped: RuleSet, source: str) -> None:
    categories = set()
    for n, record in enumerate(_records(source)):
        # Subjects too, and contact attributes: the rules on them run in full.
        message = inp(
            record["text"],
            subject="Re: order" if n % 3 else "",
            contact={"tier": "vip"} if n % 5 == 0 else {},
        )
        preview = shipped.preview(message.subject, message.text)
        # It crosses processes (a parse process makes it for the writer).
        carried = pickle.loads(pickle.dumps(preview))
        full = shipped.evaluate(message)
        assert shipped.evaluate(message, preview) == full, record["text"]
        assert shipped.evaluate(message, carried) == full, record["text"]
        categories.add(full.category)
    assert categories == set(Category), "every category came up"


def test_a_preview_of_other_rules_or_other_text_is_not_used(
    shipped: RuleSet, rules_dir: Callable[..., Path]
) -> None:
    # The same files but one more phrase: another fingerprint, another verdict.
    changed = rules_dir(
        {
            p.name: p.read_text(encoding="utf-8")
            for p in SHIPPED_RULES.glob("*.toml")
            if p.name != "00-classifier.toml"
        }
        | {
            "00-classifier.toml": (SHIPPED_RULES / "00-classifier.toml")
            .read_text(encoding="utf-8")
            .replace("phrases = [\n  # anger", 'phrases = [\n  "parcel",\n  # anger', 1)
        }
    )
    newer = load_rules(changed)
    assert newer.fingerprint != shipped.fingerprint
    message = inp("Where is my parcel?", subject="Parcel")
    assert shipped.evaluate(message).category == Category.INQUIRY
    assert newer.evaluate(message).category == Category.COMPLAINT
    stale = shipped.preview(message.subject, message.text)
    assert newer.evaluate(message, stale) == newer.evaluate(message)
    # Another message's preview, under the same rules.
    other = newer.preview("Thanks", "Thank you, all good now")
    assert newer.evaluate(message, other) == newer.evaluate(message)
    assert newer.evaluate(replace(message, subject="Thanks"), other).category == (
        newer.evaluate(replace(message, subject="Thanks")).category
    )
    # Rule sets built in code have no files: each is its own.
    assert RuleSet().fingerprint != RuleSet().fingerprint


def test_parse_rules_follow_the_writer_and_do_not_reload_in_vain(
    rules_dir: Callable[..., Path],
) -> None:
    shipped = {p.name: p.read_text(encoding="utf-8") for p in SHIPPED_RULES.glob("*.toml")}
    directory = rules_dir(shipped)
    writers = load_rules(directory).fingerprint
    # The files changed before the parse process started, and the writer has
    # not reloaded (or refused the edit): no preview, and the files are not
    # parsed again for every job.
    write(directory, {"90-parcel.toml": PARCEL_RULE})
    parse = ParseRules(directory)
    assert parse.ruleset is not None and parse.loads == 1
    for _ in range(5):
        assert parse.matching(writers) is None
    assert parse.loads == 1
    # The writer reloads: the parse process has those rules already.
    writers = load_rules(directory).fingerprint
    assert parse.matching(writers) is parse.ruleset
    # Another edit, and the writer reloads: the parse process follows, once.
    write(directory, {"90-parcel.toml": PARCEL_RULE.replace('"parcel"]', '"parcel", "box"]')})
    writers = load_rules(directory).fingerprint
    for _ in range(3):
        got = parse.matching(writers)
        assert got is not None and got.fingerprint == writers
    assert parse.loads == 2
    message = inp("my box")
    assert "parcels" in got.evaluate(message, got.preview("", "my box")).rules_fired
    # Files that fail validation: nothing to preview with, tried once.
    write(directory, {"90-parcel.toml": "[[rule]]\nname = 'x'\n[rule.when]\nnope = 1\n"})
    broken = ParseRules(directory)
    assert broken.ruleset is None
    for _ in range(3):
        assert broken.matching(writers) is None
    assert broken.loads == 1


PARCEL_RULE = """
    [[rule]]
    name = "parcels"
    [rule.when]
    text.contains = ["parcel"]
    [rule.then]
    tags = ["parcel"]
"""


def test_regular_expressions_on_subject_and_text_are_searched_in_the_preview(
    shipped: RuleSet, monkeypatch: Any
) -> None:
    # The shipped rules: /card number/ on the text, /auto-reply/ on the subject.
    both = {
        "card": inp("My card 4111 1111 1111 1111 was charged twice", subject="Automatic reply: x"),
        "plain": inp("Where is my order?", subject="Order"),
    }
    previews = {
        k: pickle.loads(pickle.dumps(shipped.preview(m.subject, m.text))) for k, m in both.items()
    }
    full = {k: shipped.evaluate(m) for k, m in both.items()}
    assert "auto-reply" in full["card"].tags and "auto-reply" not in full["plain"].tags
    assert any(found is not None for found in previews["card"].matched.values())
    assert previews["plain"].matched and not any(previews["plain"].matched.values())

    searched: list[str] = []
    real = Matches._search

    def counting(self: Matches, ctx: Any) -> Any:
        searched.append(self.key)
        return real(self, ctx)

    monkeypatch.setattr(Matches, "_search", counting)
    for k, m in both.items():
        assert shipped.evaluate(m, previews[k]) == full[k]
    assert searched == [], "the transaction searched again"
    # Without a preview each condition is searched once, explained or not.
    shipped.evaluate(both["card"])
    assert searched and len(searched) == len(set(searched))


def test_nested_regular_expressions_are_searched_in_the_preview(
    rules_dir: Callable[..., Path],
) -> None:
    rs = load_rules(
        rules_dir(
            {
                "10-nested.toml": """
                [[rule]]
                name = "nested"
                when = { any = [
                    { not = { subject.matches = "^ticket" } },
                    { all = [{ channel = "chat" }, { text.matches = "order \\\\d+" }] },
                ] }
                then = { tags = ["hit"] }
                """
            }
        )
    )
    preview = rs.preview("Ticket 1", "my order 42 is late")
    # Both patterns, one under not and one under all inside any, were searched.
    assert sorted(v for v in preview.matched.values() if v is not None) == [
        (0, "Ticket"),
        (0, "order 42"),
    ]
