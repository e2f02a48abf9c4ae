"""The service sections of a rules folder: calendars, teams, SLA policies,
time-based rules and their examples; mistakes reported with file and line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from omnidesk.model import RuleInput
from omnidesk.rules import RulesError, check_rules, load_rules
from omnidesk.rules.timed import CALENDAR, CREATED, LAST_AGENT, STATUS
from tests.service.helpers import rules_with


def problems(tmp: Path, text: str) -> list[str]:
    with pytest.raises(RulesError) as exc:
        load_rules(rules_with(tmp, text, keep=False))
    return [str(p) for p in exc.value.problems]


def test_the_shipped_service_rules_load_and_their_examples_pass() -> None:
    report = check_rules(Path(__file__).resolve().parents[2] / "rules")
    assert report.ok, report.format()
    service = load_rules(Path(__file__).resolve().parents[2] / "rules").service
    assert [p.name for p in service.policies] == ["vip", "standard"]
    assert service.calendar_for("china").tz_name == "Asia/Shanghai"
    assert service.calendar_for("support").name == "default"
    assert service.lead("complaints") == "carol"
    assert [r.name for r in service.timed] == [
        "close-stale-pending",
        "urgent-nearly-due",
        "bad-rating-reopens",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[sla]]\nname = "x"\nfirst_response = "8 hours"\n',
            "70-test.toml:3: sla 'x': first_response needs a duration like \"8h\"",
        ),
        (
            '[[sla]]\nname = "x"\nfirst_response = { normall = "1h" }\n',
            "sla 'x': first_response: unknown priority 'normall' (did you mean 'normal'?)",
        ),
        (
            '[[sla]]\nname = "x"\ncalendar = "nowhere"\nresolution = "8h"\n',
            "sla 'x': no [[calendar]] named 'nowhere'",
        ),
        (
            '[[sla]]\nname = "x"\nresolution = "8h"\non_breach = { notfy = ["assignee"] }\n',
            "sla 'x': unknown action 'notfy' (did you mean 'notify'?)",
        ),
        (
            '[[calendar]]\nname = "c"\nhours = { mon = "17:00-09:00" }\n',
            "calendar 'c': hours.mon: needs ranges like",
        ),
        (
            '[[calendar]]\nname = "c"\ntimezone = "Mars/Olympus"\n',
            "calendar 'c': unknown time zone 'Mars/Olympus'",
        ),
        (
            '[[rule]]\nname = "r"\nwhen = { hours_since_created.at_least = 3 }\n'
            'then = { tags = ["x"] }\n',
            "rule 'r': 'hours_since_created' is about a conversation, not a message",
        ),
        (
            '[[rule]]\nname = "r"\nwhen = { text.contains = "hi" }\nthen = { status = "open" }\n',
            "rule 'r': action 'status' acts on a conversation later",
        ),
        (
            '[[rule]]\nname = "r"\non = "time"\nthen = { status = "open" }\n',
            "rule 'r': needs a [rule.when]",
        ),
        (
            '[[rule]]\nname = "r"\non = "time"\nwhen = { hours_since_agent = 3 }\n'
            'then = { status = "closed" }\n',
            "hours_since_agent needs a comparison, e.g. hours_since_agent.at_least = 24",
        ),
        (
            '[[rule]]\nname = "r"\non = "time"\nwhen = { status = "open" }\n'
            'then = { status = "closed" }\n',
            "rule 'r': unknown status 'closed'",
        ),
        (
            "[survey]\nenabled = true\nscale = 4\n",
            "survey: scale needs 2, 3 or 5 (points), got 4",
        ),
        (
            '[survey]\n[survey.text.fr]\nlabels = ["a", "b"]\n',
            "text.fr.labels needs 5 labels",
        ),
    ],
)
def test_mistakes_name_file_line_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(":" in p.split(" ")[0] for p in found)  # file:line first


def test_time_rule_knows_when_it_will_turn(tmp_path: Path) -> None:
    rules = load_rules(
        rules_with(
            tmp_path,
            '[[rule]]\nname = "nudge"\non = "time"\n'
            'when = { status = "pending", business_hours_since_agent.at_least = 4 }\n'
            'then = { tags = ["nudge"] }\n',
            keep=False,
        )
    )
    cal = rules.service.default_calendar  # Mon-Fri 09:00-17:30 UTC
    replied = datetime(2026, 3, 6, 15, 0, tzinfo=UTC).timestamp()  # Friday
    now = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # Saturday

    def look(at: datetime) -> tuple[list[str], float | None]:
        inp = RuleInput(
            channel="api",
            channel_type="api",
            sender="",
            received_at=at,
            conversation={STATUS: "pending", CREATED: replied, LAST_AGENT: replied, CALENDAR: cal},
        )
        hits, turn = rules.timed_matches(rules.conversation_context(inp, "inquiry"))
        return [r.name for r, _ in hits], turn

    fired, turn = look(now)
    assert fired == []
    # 2.5 business hours on Friday, 1.5 on Monday: it turns on Monday at 10:30.
    assert turn == datetime(2026, 3, 9, 10, 30, tzinfo=UTC).timestamp()
    fired, _ = look(datetime(2026, 3, 9, 10, 30, tzinfo=UTC))
    assert fired == ["nudge"]


def test_time_rule_examples_fail_with_the_reason(tmp_path: Path) -> None:
    report = check_rules(
        rules_with(
            tmp_path,
            '[[rule]]\nname = "close"\non = "time"\n'
            'when = { status = "pending", hours_since_agent.at_least = 72 }\n'
            'then = { status = "resolved" }\n\n'
            '[[example]]\nname = "too early"\non = "time"\n'
            'conversation = { status = "pending", last_agent_reply = 2026-03-02T10:00:00Z }\n'
            'later = "2d"\nexpect = { fired = ["close"] }\n',
            keep=False,
        )
    )
    assert not report.ok
    out = report.format()
    assert "example 'too early': expected fired=[close], got fired=[]" in out
    assert "no time-based rule fires" in out
