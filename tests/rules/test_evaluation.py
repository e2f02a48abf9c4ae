"""Scoring against labelled messages (what `omnidesk classify eval` prints)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.rules import RuleSet, evaluate_labelled, load_rules

# Rules that make the prediction depend on one word, so the metrics can be worked out
# by hand.
CONTROLLED = """
[[rule]]
name = "c"
when = { text.contains = "xc" }
then = { category = "complaint" }

[[rule]]
name = "f"
when = { text.contains = "xf" }
then = { category = "feedback" }

[[rule]]
name = "i"
when = { text.contains = "xi" }
then = { category = "inquiry" }
"""


@pytest.fixture
def ruleset(rules_dir: Callable[..., Path]) -> RuleSet:
    return load_rules(rules_dir({"50-x.toml": CONTROLLED}))


def rec(label: str, predicted: str, **kw: object) -> dict[str, object]:
    return {"text": f"x{predicted[0]}", "label": label, **kw}


def test_multiclass_metrics_worked_out_by_hand(ruleset: RuleSet) -> None:
    records = [
        rec("complaint", "complaint"),
        rec("complaint", "complaint"),
        rec("complaint", "inquiry"),
        rec("feedback", "feedback"),
        rec("feedback", "complaint"),
        rec("inquiry", "inquiry", subject="s", channel="chat"),
        rec("inquiry", "inquiry"),
        rec("inquiry", "feedback"),
    ]
    report = evaluate_labelled(ruleset, records)
    assert not report.binary
    assert report.total == 8
    assert report.accuracy == pytest.approx(5 / 8)
    c, f, i = (report.per_class[k] for k in ("complaint", "feedback", "inquiry"))
    assert (c.precision, c.recall, c.f1, c.support) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert (f.precision, f.recall, f.f1, f.support) == pytest.approx((1 / 2, 1 / 2, 1 / 2, 2))
    assert (i.precision, i.recall, i.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert report.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert report.confusion["complaint"] == {"inquiry": 1, "feedback": 0, "complaint": 2}
    assert report.confusion["inquiry"]["feedback"] == 1


def test_binary_when_labels_say_not_complaint(ruleset: RuleSet) -> None:
    records = [
        rec("complaint", "complaint"),
        rec("complaint", "complaint"),
        rec("complaint", "inquiry"),
        rec("not_complaint", "complaint"),
        rec("not_complaint", "feedback"),
        rec("feedback", "inquiry"),  # other labels count as not_complaint
    ]
    report = evaluate_labelled(ruleset, records)
    assert report.binary
    assert report.labels == ["complaint", "not_complaint"]
    assert report.confusion == {
        "complaint": {"complaint": 2, "not_complaint": 1},
        "not_complaint": {"complaint": 1, "not_complaint": 2},
    }
    assert report.per_class["complaint"].f1 == pytest.approx(2 / 3)
    assert report.macro_f1 == pytest.approx(2 / 3)
    assert report.accuracy == pytest.approx(4 / 6)


def test_macro_f1_ignores_classes_absent_from_the_labels(ruleset: RuleSet) -> None:
    # no inquiry labels: a stray inquiry prediction costs recall, not a zero-F1 class
    report = evaluate_labelled(
        ruleset,
        [rec("complaint", "complaint"), rec("feedback", "feedback"), rec("feedback", "inquiry")],
    )
    assert report.per_class["inquiry"].support == 0
    assert report.macro_f1 == pytest.approx((1.0 + 2 / 3) / 2)


def test_to_dict_has_the_cli_keys(ruleset: RuleSet) -> None:
    d = evaluate_labelled(ruleset, [rec("complaint", "complaint")]).to_dict()
    assert {"macro_f1", "accuracy", "per_class", "confusion", "labels"} <= set(d)
    assert set(d["per_class"]["complaint"]) == {"precision", "recall", "f1", "support"}
    assert d["confusion"]["complaint"]["complaint"] == 1


def test_format_is_a_readable_table(ruleset: RuleSet) -> None:
    text = evaluate_labelled(
        ruleset, [rec("complaint", "complaint"), rec("inquiry", "feedback")]
    ).format()
    assert "precision" in text and "recall" in text and "support" in text
    assert "macro-F1" in text and "accuracy 0.500" in text
    assert "confusion (rows: true label, columns: predicted)" in text


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"text": "x", "label": "angry"}, "record 2: label must be one of"),
        ({"label": "complaint"}, "record 2: 'text' must be a string"),
        ("just text", "record 2: expected an object"),
    ],
)
def test_malformed_records_are_named(ruleset: RuleSet, record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_labelled(ruleset, [rec("complaint", "complaint"), record])  # type: ignore[list-item]
