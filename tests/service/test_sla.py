"""SLA clocks in business hours, driven by a controllable clock: due times
across the end of the day, a weekend and a holiday in a calendar's time
zone; warnings and breaches run the policy's actions once; acknowledgements
are no response; next-response clocks; the inbox's due time follows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from omnidesk.rules.service import SlaPolicy
from omnidesk.service.clock import ManualClock
from omnidesk.store import Store
from omnidesk.store.service import get_state, notifications_for
from tests.service.helpers import BERLIN, berlin, make_desk, rules_with

POLICY = """
[[calendar]]
name = "default"
timezone = "Europe/Berlin"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "09:00"
to = "17:30"
holidays = [2026-12-25]

[teams.support]
lead = "bob"

[[rule]]
name = "complaints-high"
when = { category = "complaint" }
then = { priority = "high" }

[[sla]]
name = "test"
first_response = { normal = "8h", high = "2h", urgent = "30m" }
next_response = "4h"
resolution = "40h"
warn_before = "1h"
on_breach = { priority = "urgent", tags = ["sla-breached"], notify = ["assignee", "team_lead"] }
"""


def local(ts: float | None) -> str:
    assert ts is not None
    return datetime.fromtimestamp(ts, BERLIN).strftime("%a %Y-%m-%d %H:%M")


@pytest.fixture
def clock(clock_at: Callable[[float], ManualClock]) -> ManualClock:
    return clock_at(berlin(2026, 3, 3, 12, 32))  # a Tuesday


async def test_due_times_in_business_hours_weekend_and_holiday(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    await desk.message("Where can I find my invoice?")
    await desk.tick()
    state = await store.read(get_state, 1)
    assert state is not None and state["policy"] == "test"
    # 8 business hours from Tuesday 12:32 end on Wednesday at 12:02, not at 20:32.
    assert local(state["first_due"]) == "Wed 2026-03-04 12:02"
    assert local(state["resolution_due"]) == "Tue 2026-03-10 10:02"
    conv = await desk.conversation()
    assert conv["sla_due_at"] == state["first_due"]  # what the inbox sorts on
    # Friday afternoon: the weekend does not count.
    clock.set(berlin(2026, 3, 6, 16, 0))
    await desk.message("Another question, from Ben", address="ben@example.com")
    await desk.tick()
    assert local((await store.read(get_state, 2))["first_due"]) == "Mon 2026-03-09 15:30"
    # Thursday before Christmas: Christmas Day (a Friday) and the weekend do not count.
    clock.set(berlin(2026, 12, 24, 16, 0))
    await desk.message("And one at Christmas", address="cy@example.com")
    await desk.tick()
    assert local((await store.read(get_state, 3))["first_due"]) == "Mon 2026-12-28 15:30"


async def test_acknowledgement_is_not_a_first_response(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    desk.ctx.auto_ack = {"api": "Thanks {name}, we got it (#{conversation_id})."}
    await desk.message("Do you deliver to Norway?")
    conv = await desk.conversation()
    # The acknowledgement went out ...
    assert conv["message_count"] == 2
    # ... and nobody has answered yet.
    assert conv["first_response_at"] is None and conv["last_reply_at"] is None
    assert conv["awaiting_since"] == conv["created_at"]
    await desk.tick()
    assert (await store.read(get_state, 1))["first_due"] is not None
    clock.advance(600)
    await desk.reply("Yes, we do.", author="agent:alice")
    conv = await desk.conversation()
    assert conv["first_response_at"] == clock.now()
    assert conv["awaiting_since"] is None
    await desk.tick()
    [met] = await desk.audit(action="sla_met")
    assert "first response after 10 business min" in met["reason"]


async def test_warning_and_breach_run_the_policy_once(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    await desk.message("My parcel is lost, this is unacceptable", thread="c1")
    await desk.tick()
    conv = await desk.conversation()
    assert conv["priority"] == "high"  # 2 business hours
    state = await store.read(get_state, 1)
    assert local(state["first_due"]) == "Tue 2026-03-03 14:32"
    # The next look is booked for the warning, an hour before.
    assert local(state["check_at"]) == "Tue 2026-03-03 13:32"
    clock.set(berlin(2026, 3, 3, 13, 40))
    await desk.tick()
    [warning] = await desk.audit(action="sla_warning")
    assert "first response due in 52 business min" in warning["reason"]
    # Past the due time: the policy's breach actions, once.
    for minute in range(10):
        clock.set(berlin(2026, 3, 3, 14, 33 + minute))
        await desk.tick()
    [breach] = await desk.audit(action="sla_breach")
    assert breach["actor"] == "sla:test"
    conv = await desk.conversation()
    assert conv["priority"] == "urgent" and "sla-breached" in conv["tags"]
    assignee = conv["assignee"]
    for who in {assignee, "bob"}:
        notes = await store.read(notifications_for, who)
        assert [n["kind"] for n in notes].count("sla_breach") == 1, who
    assert len(await desk.audit(action="sla_warning")) == 1
    # Now urgent (30 min): the first-response target is the one it breached;
    # the breach of the same clock does not fire again.
    clock.advance(3 * 3600)
    await desk.tick(sweep=True)
    assert len(await desk.audit(action="sla_breach")) == 1
    # The late answer is recorded as such.
    await desk.reply("Sorry, here it is.", author="agent:carol")
    await desk.tick()
    [late] = await desk.audit(action="sla_breached")
    assert "(late)" in late["reason"]


async def test_next_response_clock_runs_after_each_customer_message(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    await desk.message("Question one", thread="n1")
    clock.advance(1800)
    await desk.reply("Answer one", author="agent:alice")
    await desk.tick()
    assert (await store.read(get_state, 1))["next_start"] is None
    clock.set(berlin(2026, 3, 3, 16, 0))
    await desk.message("Follow-up", thread="n1")
    clock.advance(600)
    await desk.message("Another follow-up before any answer", thread="n1")
    await desk.tick()
    state = await store.read(get_state, 1)
    # From the first unanswered message: 1.5 h today, 2.5 h tomorrow.
    assert local(state["next_start"]) == "Tue 2026-03-03 16:00"
    assert local(state["next_due"]) == "Wed 2026-03-04 11:30"
    clock.set(berlin(2026, 3, 4, 9, 30))
    await desk.reply("Answer two", author="agent:alice")
    await desk.tick()
    state = await store.read(get_state, 1)
    assert state["next_start"] is None
    met = [a for a in await desk.audit() if a["action"] == "sla_met"]
    assert len(met) == 1  # the first response; next responses go to the reports
    from omnidesk.store import reports

    q = reports.Query(datetime(2026, 3, 1).date(), datetime(2026, 3, 31).date())
    got = await store.read(reports.totals, q, ["next_response", "sla_next_response_met"])
    assert got[("next_response", "")] == (1, 2 * 3600)  # 16:00-17:30 and 09:00-09:30
    assert got[("sla_next_response_met", "")][0] == 1


async def test_resolved_owes_nothing_and_reopened_owes_again(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    await desk.message("Hello there", thread="r1")
    await desk.tick()
    await desk.set_status("resolved")
    await desk.tick()
    conv = await desk.conversation()
    assert conv["sla_due_at"] is None
    clock.advance(3600)
    await desk.message("One more thing", thread="r1")
    await desk.tick()
    conv = await desk.conversation()
    assert conv["status"] == "open" and conv["sla_due_at"] is not None


async def test_config_targets_apply_without_policies_in_the_rules(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    fallback = SlaPolicy.from_minutes({"normal": 60})
    desk = await make_desk(store, rules_with(tmp_path, "", keep=False), clock, fallback=fallback)
    await desk.message("What are your opening hours?")
    await desk.tick()
    state = await store.read(get_state, 1)
    assert state["policy"] == "default"
    # 10-settings.toml: Mon-Fri 09:00-17:30 UTC; 11:32 UTC + 1 h.
    assert state["first_due"] == clock.now() + 3600


async def test_breaches_from_before_the_service_counted_are_noted_not_acted_on(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    # An upgrade finds a conversation overdue since last week: no notice storm.
    import dataclasses

    desk = await make_desk(store, rules_with(tmp_path, POLICY, keep=False), clock)
    await desk.message("An old question nobody answered")
    clock.advance(7 * 86400)
    desk.scheduler.settings = dataclasses.replace(desk.scheduler.settings, reports_from=clock.now())
    await desk.tick(sweep=True)
    state = await store.read(get_state, 1)
    assert state["fired"]["sla:first_response:breach"] == repr(
        (await desk.conversation())["created_at"]
    )
    assert await desk.audit(action="sla_breach") == []
    assert (await desk.conversation())["sla_due_at"] < clock.now()  # still shown overdue
