"""The satisfaction and loyalty figure per contact: the formula on its inputs,
and the figure at work: on the contact and the conversation in the API, and in
rules (a complaint from a contact at risk goes to the retention team)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.service.clock import ManualClock
from omnidesk.service.satisfaction import contact_figure, figure
from omnidesk.service.surveys import record_answer
from omnidesk.store import Store
from tests.service.helpers import berlin, make_desk, rules_with

NOW = 1_800_000_000.0
DAY = 86400.0


def test_figure_from_ratings_loyalty_complaints_speed_and_purchases() -> None:
    # Only what is known takes part, weights scaled to add up to 1.
    happy = figure(
        ratings=[(5, 5, NOW)],
        loyalty=[(10, NOW)],
        complaints_year=0,
        complaints_90d=0,
        complaint_open=False,
        resolution_hours=[2.0],
        attributes={"orders": 12},
        now=NOW,
    )
    assert happy is not None and happy.score == 100.0 and not happy.at_risk
    # An old bad rating weighs less than a new good one (half-life 180 days).
    mixed = figure(
        ratings=[(5, 5, NOW), (1, 5, NOW - 360 * DAY)],
        loyalty=[],
        complaints_year=0,
        complaints_90d=0,
        complaint_open=False,
        resolution_hours=[],
        attributes={},
        now=NOW,
    )
    assert mixed is not None and mixed.satisfaction == pytest.approx(80.0)
    # Complaints and slow answers pull it down; a detractor with a recent
    # complaint is at risk whatever the score.
    angry = figure(
        ratings=[(2, 5, NOW)],
        loyalty=[(3, NOW)],
        complaints_year=2,
        complaints_90d=1,
        complaint_open=True,
        resolution_hours=[300.0, 240.0, 500.0],
        attributes={"orders": "many"},
        now=NOW,
    )
    # (25 x .35 + 30 x .25 + 25 x .2 + 0 x .1) / .9
    assert angry is not None and angry.score == 23.6 and angry.at_risk
    assert angry.inputs["components"]["complaints"] == 25.0
    assert "purchases" not in angry.inputs["components"]  # not a number: left out
    assert (
        figure(
            ratings=[],
            loyalty=[],
            complaints_year=0,
            complaints_90d=0,
            complaint_open=False,
            resolution_hours=[],
            attributes={},
            now=NOW,
        )
        is None
    )


RULES = """
[[rule]]
name = "at-risk-complaints-to-retention"
order = 100
when = { category = "complaint", contact.at_risk = true }
then = { team = "retention", tags = ["retention"] }

[survey]
enabled = true
require_reply = false
quiet_days = 0
"""


@pytest.fixture
def clock(clock_at: Callable[[float], ManualClock]) -> ManualClock:
    return clock_at(berlin(2026, 3, 2, 10, 0))


async def test_a_contact_at_risk_is_routed_to_retention(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    await desk.message("My parcel never arrived, this is unacceptable", thread="a")
    await desk.reply("Sorry, we are looking into it.")
    await desk.set_status("resolved")
    await desk.tick()
    sid = await store.read(lambda db: db.val("SELECT id FROM surveys"))
    await store.write(
        record_answer, sid, service=desk.rules.service, rating=1, via="link", now=clock.now()
    )
    fig = await store.read(contact_figure, 1)
    assert fig is not None and fig["at_risk"] and fig["inputs"]["ratings"] == 1
    # The same customer complains again: the rule sees contact.at_risk.
    clock.advance(3 * DAY)
    await desk.message("Still nothing. I want my money back, this is a disgrace.", thread="b")
    conv = await desk.conversation(2)
    assert conv["team"] == "retention" and "retention" in conv["tags"]
    assert "rule 'at-risk-complaints-to-retention'" in " ".join(conv["decision"]["explanation"])
