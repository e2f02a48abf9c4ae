"""`rules check`: validation plus the examples that rule files carry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omnidesk.rules import check_rules

from .conftest import SHIPPED_RULES

ROUTING = """
[[rule]]
name = "billing"
when = { text.contains = "invoice" }
then = { team = "billing", tags = ["money"] }

[[example]]
name = "invoice question"
text = "Where is my invoice?"
expect = { team = "billing", tags = ["money"], category = "inquiry", priority = "normal" }

[[example]]
text = "hello there"
channel = "telegram"
sender = "@bob"
expect = { team = "" }
"""


def test_shipped_rules_pass_their_own_examples() -> None:
    report = check_rules(SHIPPED_RULES)
    assert report.problems == []
    assert report.failures == [], report.format()
    assert report.examples_run >= 16
    assert report.ok
    assert report.format().endswith("OK")


def test_passing_examples(rules_dir: Callable[..., Path]) -> None:
    report = check_rules(rules_dir({"50-x.toml": ROUTING}))
    assert report.ok
    assert report.examples_run == 2
    assert report.rules == 1
    assert "2 example(s) run: 2 passed, 0 failed" in report.format()


def test_failing_example_reports_expected_and_got(rules_dir: Callable[..., Path]) -> None:
    body = ROUTING.replace(
        'expect = { team = "" }', 'expect = { team = "care", category = "inquiry" }'
    )
    report = check_rules(rules_dir({"50-x.toml": body}))
    assert not report.ok
    assert report.examples_run == 2
    [failure] = report.failures
    assert failure.expected == {"team": "care"}  # only what was wrong
    assert failure.got == {"team": None}
    assert failure.example.line == 11
    text = report.format()
    assert "50-x.toml:11: example 'hello there': expected team=care, got team=(none)" in text
    assert "classifier: inquiry" in text  # the explanation helps to see why
    assert text.endswith("FAILED")


def test_expected_tags_and_rule(rules_dir: Callable[..., Path]) -> None:
    body = (
        ROUTING
        + """
[[example]]
text = "invoice"
expect = { tags = ["money", "vip"], rule = "billing" }
"""
    )
    report = check_rules(rules_dir({"50-x.toml": body}))
    [failure] = report.failures
    assert set(failure.expected) == {"tags", "rule"}
    assert failure.got == {"tags": ["money"], "rule": "classifier"}


def test_example_inputs_reach_the_rules(rules_dir: Callable[..., Path]) -> None:
    body = """
    [[rule]]
    name = "gold-weekend-chat"
    when = { contact.tier = "gold", channel = "chat", weekday = "sat", language = "de" }
    then = { agent = "ana" }

    [[example]]
    text = "Hallo"
    channel = "chat"
    language = "de"
    contact = { tier = "gold" }
    received_at = 2024-05-04T10:00:00+02:00
    expect = { agent = "ana" }

    [[example]]
    text = "Hallo"
    channel = "chat"
    language = "de"
    contact = { tier = "gold" }
    received_at = 2024-05-06T10:00:00
    expect = { agent = "" }
    """
    report = check_rules(rules_dir({"50-x.toml": body}))
    assert report.ok, report.format()


def test_invalid_rules_are_reported_not_raised(rules_dir: Callable[..., Path]) -> None:
    report = check_rules(rules_dir({"50-x.toml": '[[rule]]\nname = "x"\nthen = { team = 1 }\n'}))
    assert not report.ok
    assert report.examples_run == 0
    assert len(report.problems) == 1
    assert "50-x.toml:3: rule 'x': team needs a name" in report.format()


def test_invalid_example_is_a_problem(rules_dir: Callable[..., Path]) -> None:
    body = '[[example]]\nsubject = "x"\nexpect = { category = "rant" }\n'
    report = check_rules(rules_dir({"50-x.toml": body}))
    assert [p.line for p in report.problems] == [3]
    assert "unknown category 'rant'" in report.problems[0].reason
