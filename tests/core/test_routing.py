from __future__ import annotations

from omnidesk.config import TeamConfig
from omnidesk.routing import choose_assignee


def team(strategy: str, cap: int = 2, sticky: bool = True) -> TeamConfig:
    return TeamConfig(
        "t", ["a", "b", "c"], strategy=strategy, max_open_per_agent=cap, sticky=sticky
    )


def test_round_robin_rotates_after_the_last_assigned() -> None:
    t = team("round_robin", cap=10)
    picks = []
    last = None
    for _ in range(5):
        last = choose_assignee(t, loads={}, rr_last=last).agent
        picks.append(last)
    assert picks == ["a", "b", "c", "a", "b"]


def test_round_robin_skips_agents_at_cap() -> None:
    assert choose_assignee(team("round_robin"), loads={"b": 2}, rr_last="a").agent == "c"


def test_least_loaded_picks_fewest_open_then_listing_order() -> None:
    t = team("least_loaded", cap=10)
    assert choose_assignee(t, loads={"a": 3, "b": 1, "c": 1}).agent == "b"
    assert choose_assignee(t, loads={"a": 0, "b": 0, "c": 0}).agent == "a"


def test_everyone_at_cap_waits_in_team_queue() -> None:
    res = choose_assignee(team("least_loaded"), loads={"a": 2, "b": 2, "c": 2})
    assert res.agent is None and "cap" in res.reason


def test_returning_contact_goes_back_to_previous_agent_under_cap() -> None:
    t = team("round_robin")
    assert choose_assignee(t, loads={"c": 1}, rr_last="a", previous="c").agent == "c"
    # at the cap: normal rotation instead
    assert choose_assignee(t, loads={"c": 2}, rr_last="a", previous="c").agent == "b"
    # not a member (moved teams): normal rotation
    assert choose_assignee(t, loads={}, rr_last="a", previous="zed").agent == "b"
    # sticky off
    assert (
        choose_assignee(
            team("round_robin", sticky=False), loads={}, rr_last="a", previous="c"
        ).agent
        == "b"
    )


def test_manual_strategy_assigns_nobody() -> None:
    assert choose_assignee(team("manual"), loads={}).agent is None
