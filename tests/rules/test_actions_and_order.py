"""What rules do (then), in which order they run, and stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omnidesk.model import Category, Decision, Priority
from omnidesk.rules import load_rules

from .conftest import inp

Decide = Callable[..., Decision]


def test_every_action(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "all-actions"
        when = { text.contains = "hello" }
        [rule.then]
        category = "feedback"
        confidence = 0.9
        priority = "urgent"
        team = "care"
        agent = "alice"
        tags = ["greeting", "vip"]
        """,
        "hello",
    )
    assert d.category is Category.FEEDBACK
    assert d.confidence == 0.9
    assert d.priority is Priority.URGENT
    assert d.team == "care"
    assert d.assignee == "alice"
    assert d.tags == ["greeting", "vip"]
    assert d.rule == "all-actions"
    assert d.rules_fired == ["all-actions"]


def test_category_from_a_rule_has_full_confidence_by_default(decide: Decide) -> None:
    d = decide('[[rule]]\nname = "r"\nthen = { category = "complaint" }\n', "hi")
    assert (d.category, d.confidence, d.rule) == (Category.COMPLAINT, 1.0, "r")


def test_no_rule_matches_gives_the_classifier_decision(decide: Decide) -> None:
    d = decide('[[rule]]\nname = "r"\nwhen = { channel = "x" }\nthen = { team = "t" }\n', "hi")
    assert d.rule == "classifier"
    assert d.rules_fired == []
    assert (d.priority, d.team, d.assignee) == (Priority.NORMAL, None, None)
    assert d.explanation[0].startswith("classifier: inquiry")


def test_later_rules_override_and_tags_accumulate(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "a"
        then = { team = "first", priority = "high", tags = ["a", "shared"] }

        [[rule]]
        name = "b"
        then = { team = "second", tags = ["b", "SHARED"] }
        """,
        "x",
    )
    assert d.team == "second"
    assert d.priority is Priority.HIGH  # b did not touch it
    assert d.tags == ["a", "shared", "b"]  # tags are case-insensitive, kept once


def test_remove_tags(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "r"
        then = { remove_tags = ["Spam"], tags = ["checked"] }
        """,
        "x",
        tags=frozenset({"spam", "web"}),
    )
    assert d.tags == ["web", "checked"]


def test_order_overrides_position_in_file(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "written-first"
        order = 5
        then = { team = "first" }

        [[rule]]
        name = "written-second"
        then = { team = "second" }
        """,
        "x",
    )
    # order 0 (the default) runs before order 5, so written-first has the last word
    assert d.rules_fired == ["written-second", "written-first"]
    assert d.team == "first"


def test_files_run_in_name_order(rules_dir: Callable[..., Path]) -> None:
    d = rules_dir(
        {
            "20-b.toml": '[[rule]]\nname = "b"\nthen = { team = "b" }\n',
            "10-a.toml": '[[rule]]\nname = "a"\nthen = { team = "a" }\n',
        }
    )
    rs = load_rules(d)
    assert [r.name for r in rs.rules] == ["a", "b"]
    assert rs.evaluate(inp("x")).team == "b"
    assert rs.files == [str(d / n) for n in ("00-classifier.toml", "10-a.toml", "20-b.toml")]


def test_stop_ends_evaluation_after_its_own_actions(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "spam"
    stop = true
    when = { text.contains = "casino" }
    then = { tags = ["spam"], priority = "low" }

    [[rule]]
    name = "everyone"
    then = { team = "care" }
    """
    d = decide(rules, "best casino bonus")
    assert d.rules_fired == ["spam"]
    assert d.tags == ["spam"] and d.team is None
    assert d.explanation[-1].endswith("stopped further rules")
    # stop only acts when its rule matched
    assert decide(rules, "hello").team == "care"


def test_stop_rule_without_actions(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "ignore-internal"
        stop = true
        when = { sender_domain = "example.com" }

        [[rule]]
        name = "route"
        then = { team = "care" }
        """,
        "x",
    )
    assert d.rules_fired == ["ignore-internal"] and d.team is None


def test_disabled_rule_is_validated_but_not_run(decide: Decide) -> None:
    d = decide(
        """
        [[rule]]
        name = "off"
        enabled = false
        then = { team = "never" }
        """,
        "x",
    )
    assert d.team is None and d.rules_fired == []


def test_teams_and_agents_are_collected_for_config_cross_checks(
    rules_dir: Callable[..., Path],
) -> None:
    rs = load_rules(
        rules_dir(
            {
                "50-x.toml": """
                [[rule]]
                name = "a"
                then = { team = "billing" }
                [[rule]]
                name = "b"
                then = { team = "vip", agent = "bob" }
                """
            }
        )
    )
    assert rs.teams == {"billing", "vip"}
    assert rs.agents == {"bob"}


def test_describe_lists_rules_in_evaluation_order(decide: Decide, rules_dir) -> None:  # type: ignore[no-untyped-def]
    rs = load_rules(
        rules_dir(
            {
                "50-x.toml": """
                [[rule]]
                name = "late"
                order = 9
                stop = true
                when = { channel = "mail" }
                then = { team = "t" }
                [[rule]]
                name = "early"
                then = { tags = ["x"] }
                """
            }
        )
    )
    lines = rs.describe()
    assert "early" in lines[0] and "late" in lines[1]
    assert "when channel = mail then team=t [stop]" in lines[1]
