"""A bad rules directory is refused with every problem listed by file, line and reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.rules import Problem, RulesError, load_rules

MakeDir = Callable[..., Path]


def problems(rules_dir: MakeDir, files: dict[str, str], classifier: bool = True) -> list[Problem]:
    with pytest.raises(RulesError) as err:
        load_rules(rules_dir(files, classifier=classifier))
    assert str(err.value) == "\n".join(str(p) for p in err.value.problems)
    return err.value.problems


def only(rules_dir: MakeDir, body: str) -> Problem:
    found = problems(rules_dir, {"50-x.toml": body})
    assert len(found) == 1, found
    assert found[0].file.endswith("50-x.toml")
    return found[0]


def test_toml_syntax_error_has_the_line(rules_dir: MakeDir) -> None:
    p = only(rules_dir, '[[rule]]\nname = "a"\nthen = { team = "x" \n')
    assert p.line == 3
    assert p.reason.startswith("TOML syntax error")


def test_unknown_operator_points_at_its_line_and_suggests(rules_dir: MakeDir) -> None:
    p = only(
        rules_dir,
        """
        [[rule]]
        name = "billing"

        [rule.when]
        channel = "mail"
        text.contans = "refund"

        [rule.then]
        team = "billing"
        """,
    )
    assert p.line == 6
    assert "rule 'billing'" in p.reason
    assert "unknown operator 'contans'" in p.reason and "did you mean 'contains'" in p.reason


def test_unknown_field(rules_dir: MakeDir) -> None:
    p = only(rules_dir, '[[rule]]\nname = "a"\nwhen = { bdy = "x" }\nthen = { team = "t" }\n')
    assert p.line == 3
    assert "unknown field 'bdy'" in p.reason


def test_bad_regex_names_the_pattern(rules_dir: MakeDir) -> None:
    p = only(
        rules_dir,
        """
        [[rule]]
        name = "orders"
        then = { tags = ["order"] }
        when = { text.matches = 'order (\\d+' }
        """,
    )
    assert p.line == 4
    assert "bad regular expression" in p.reason and "order (" in p.reason


def test_unknown_category_and_priority(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "50-x.toml": """
            [[rule]]
            name = "a"
            when = { category = "complain" }
            then = { priority = "urgnt" }
            """
        },
    )
    reasons = [(p.line, p.reason) for p in found]
    assert len(found) == 2
    assert reasons[0][0] == 3 and "unknown category 'complain'" in reasons[0][1]
    assert reasons[1][0] == 4 and "unknown priority 'urgnt'" in reasons[1][1]
    assert "did you mean 'urgent'" in reasons[1][1]


def test_unknown_rule_key_and_action(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "50-x.toml": """
            [[rule]]
            name = "a"
            priorty = 3
            then = { teams = "x" }
            """
        },
    )
    assert [p.line for p in found] == [3, 4]
    assert "unknown key 'priorty'" in found[0].reason
    assert "unknown action 'teams'" in found[1].reason and "'team'" in found[1].reason


def test_duplicate_rule_names_across_files(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "10-a.toml": '[[rule]]\nname = "same"\nthen = { team = "a" }\n',
            "20-b.toml": '[[rule]]\nname = "other"\nthen = { team = "b" }\n\n'
            '[[rule]]\nname = "same"\nthen = { team = "b" }\n',
        },
    )
    assert len(found) == 1
    assert found[0].file.endswith("20-b.toml") and found[0].line == 6
    assert "10-a.toml:1" in found[0].reason


def test_every_problem_in_every_file_is_reported(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "10-a.toml": '[[rule]]\nname = "a"\nwhen = { time.between = ["25:00", "x"] }\n'
            'then = { team = "a" }\n',
            "20-b.toml": "[[rule]]\nthen = { team = 3 }\n",
            "30-c.toml": "not toml at all = = =\n",
        },
    )
    where = {(Path(p.file).name, p.line) for p in found}
    assert ("10-a.toml", 3) in where
    assert ("20-b.toml", 1) in where  # missing name: the rule's header
    assert ("20-b.toml", 2) in where  # team must be text
    assert ("30-c.toml", 1) in where
    assert len(found) == 4


def test_rule_that_does_nothing(rules_dir: MakeDir) -> None:
    p = only(rules_dir, '[[rule]]\nname = "idle"\nwhen = { channel = "x" }\n')
    assert "does nothing" in p.reason and p.line == 1


def test_single_bracket_rule_table_is_explained(rules_dir: MakeDir) -> None:
    p = only(rules_dir, '[rule]\nname = "a"\nthen = { team = "x" }\n')
    assert "[[rule]] (two brackets)" in p.reason


def test_unknown_section(rules_dir: MakeDir) -> None:
    p = only(rules_dir, '[[rules]]\nname = "a"\n')
    assert p.line == 1 and "unknown section 'rules'" in p.reason


def test_bad_timezone_and_undefined_business_hours(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "50-x.toml": """
            [[rule]]
            name = "a"
            timezone = "Mars/Olympus"
            when = { business_hours = false }
            then = { tags = ["x"] }
            """
        },
    )
    assert [p.line for p in found] == [3, 4]
    assert "unknown time zone 'Mars/Olympus'" in found[0].reason
    assert "no [settings.business_hours]" in found[1].reason


def test_setting_defined_in_two_files(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "10-a.toml": '[settings]\ntimezone = "UTC"\n',
            "20-b.toml": '[settings]\ntimezone = "Europe/Paris"\n',
        },
    )
    assert len(found) == 1 and "already set in" in found[0].reason
    assert found[0].file.endswith("20-b.toml") and found[0].line == 2


def test_bad_values_for_operators(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "50-x.toml": """
            [[rule]]
            name = "a"
            then = { tags = ["x"] }
            [rule.when]
            confidence.below = "low"
            channel.in = "mail"
            text.contains = ""
            weekday = "someday"
            category.contains = "compl"
            """
        },
    )
    reasons = [p.reason for p in found]
    assert len(found) == 5
    assert any("confidence.below needs a number" in r for r in reasons)
    assert any("channel.in needs a list" in r for r in reasons)
    assert any("empty phrase" in r for r in reasons)
    assert any("weekday needs day names" in r for r in reasons)
    assert any("unknown operator 'contains' for category" in r for r in reasons)


def test_classifier_problems(rules_dir: MakeDir) -> None:
    found = problems(
        rules_dir,
        {
            "00-classifier.toml": """
            [classifier]
            default = "question"

            [[classifier.phrases]]
            category = "complaint"
            phrases = ["refund"]

            [[classifier.phrases]]
            category = "anger"
            phrases = ["mad"]

            [[classifier.phrases]]
            category = "feedback"
            phrases = ["thanks", "Refund"]
            """
        },
        classifier=False,
    )
    assert [p.line for p in found] == [2, 9, 14]
    assert "unknown category 'question'" in found[0].reason
    assert "category needs one of" in found[1].reason
    assert "phrase 'refund' is already listed at" in found[2].reason


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"no \*\.toml rule files"):
        load_rules(tmp_path)
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope")


def test_editor_swap_files_are_ignored(rules_dir: MakeDir) -> None:
    d = rules_dir(
        {".#50-x.toml": "garbage = = =", "50-x.toml": '[[rule]]\nname = "a"\nstop = true\n'}
    )
    assert [r.name for r in load_rules(d).rules] == ["a"]


def test_problem_str_is_file_colon_line_colon_reason() -> None:
    assert str(Problem("rules/a.toml", 7, "bad")) == "rules/a.toml:7: bad"
    assert str(Problem("rules/a.toml", None, "bad")) == "rules/a.toml: bad"
