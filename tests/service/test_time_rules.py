"""Time-based rules under the scheduler, on a controllable clock: a rule fires
once when its condition starts to hold, not every minute while it holds, and
again only in a new episode; its actions (a canned reply, tags, notices, a
status) are audited with the rule's name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.config import AssignmentConfig
from omnidesk.service.clock import ManualClock
from omnidesk.store import Store
from omnidesk.store.canned import save_canned
from omnidesk.store.conversations import message_rows
from omnidesk.store.service import get_state, notifications_for
from omnidesk.store.users import save_team
from tests.service.helpers import berlin, make_desk, rules_with

RULES = """
[[rule]]
name = "nudge-pending"
on = "time"
when = { status = "pending", hours_since_agent.at_least = 48 }
then = { tags = ["nudged"], notify = ["assignee"], reply = "nudge" }

[[rule]]
name = "nearly-due"
on = "time"
when = { status = "open", sla_due_in_hours.below = 1 }
then = { tags = ["nearly-due"] }

[[sla]]
name = "all"
first_response = "4h"
"""


@pytest.fixture
def clock(clock_at: Callable[[float], ManualClock]) -> ManualClock:
    return clock_at(berlin(2026, 3, 2, 10, 0))  # a Monday


async def test_a_time_rule_fires_once_per_episode(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    await store.write(
        save_canned,
        actor="admin:root",
        shortcut="nudge",
        title="Nudge",
        body="Hello {contact.first_name}, do you still need help with this?",
    )
    await desk.message("Can I change my delivery address?", thread="t1")
    await desk.reply("Sure: which address should it go to?")
    await desk.set_status("pending")
    await desk.tick()
    conv = await desk.conversation()
    state = await store.read(get_state, 1)
    # Nothing to do for 48 hours: the next look is booked for then.
    assert state["check_at"] == conv["last_reply_at"] + 48 * 3600
    # A tick every minute around the threshold, then every hour for a day.
    start = conv["last_reply_at"]
    for minute in range(47 * 60 + 50, 48 * 60 + 30):
        clock.set(start + minute * 60)
        await desk.tick()
    for hour in range(49, 73):
        clock.set(start + hour * 3600)
        await desk.tick(sweep=True)
    fired = await desk.audit(action="rule_fired")
    assert [a["actor"] for a in fired] == ["rule:nudge-pending"]
    assert fired[0]["at"] == start + 48 * 3600
    assert "hours_since_agent 48.0 at least 48" in fired[0]["reason"]
    conv = await desk.conversation()
    assert "nudged" in conv["tags"] and conv["status"] == "pending"
    msgs = await store.read(message_rows, 1)
    nudges = [m for m in msgs if m["auto"] == "rule:nudge-pending"]
    assert [m["text"] for m in nudges] == ["Hello Ann, do you still need help with this?"]
    # The canned reply is automatic: it is no agent reply, the rule still holds
    # and does not fire again.
    assert conv["last_reply_at"] == start
    assert len(await store.read(notifications_for, conv["assignee"])) == 1
    # The customer writes: the episode ends. A new one starts when the
    # conversation waits on them again, and fires 48 hours into it.
    await desk.message("Yes: 12 Elm Street", thread="t1")
    await desk.tick()
    assert "rule:nudge-pending" not in (await store.read(get_state, 1))["fired"]
    await desk.reply("Done, it will go to Elm Street.")
    await desk.set_status("pending")
    second = clock.now()
    for hour in range(1, 50):
        clock.set(second + hour * 3600)
        await desk.tick()
    fired = await desk.audit(action="rule_fired")
    assert [a["actor"] for a in fired] == ["rule:nudge-pending"] * 2


async def test_an_sla_condition_fires_before_the_due_time(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    await desk.message("Is the shop open on Sunday?")
    await desk.tick()
    due = (await store.read(get_state, 1))["first_due"]
    for minute in range(0, 4 * 60 + 10, 5):
        clock.set(berlin(2026, 3, 2, 10, 0) + minute * 60)
        await desk.tick()
        check = (await store.read(get_state, 1))["check_at"]
        if check is not None and check < clock.now() + 300:
            clock.set(check)  # as the scheduler's loop would, on time
            await desk.tick()
    [fired] = await desk.audit(action="rule_fired")
    # Looked at the second the hour left went below 1, not at the next sweep.
    assert fired["actor"] == "rule:nearly-due" and fired["at"] == due - 3600 + 1
    assert "nearly-due" in (await desk.conversation())["tags"]


async def test_an_action_that_cannot_be_done_is_audited(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    # No canned reply "nudge" exists: the rule's other actions still happen.
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    await desk.message("Question", thread="t2")
    await desk.reply("Answer")
    await desk.set_status("pending")
    clock.advance(49 * 3600)
    await desk.tick(sweep=True)
    [failed] = await desk.audit(action="action_failed")
    assert "no canned reply with the shortcut 'nudge'" in failed["reason"]
    assert "nudged" in (await desk.conversation())["tags"]


async def test_a_rule_added_later_is_applied_to_conversations_already_waiting(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    from omnidesk.rules import load_rules

    desk = await make_desk(store, rules_with(tmp_path, "", keep=False), clock)
    await desk.message("Question", thread="w")
    await desk.reply("Answer")
    await desk.set_status("pending")
    await desk.tick()
    assert (await store.read(get_state, 1))["check_at"] is None  # nothing to wait for
    clock.advance(60 * 3600)
    await desk.tick(sweep=True)
    assert await desk.audit(action="rule_fired") == []
    # An admin adds the nudge rule: the pending conversation is looked at again.
    new = load_rules(
        rules_with(tmp_path, RULES.replace('reply = "nudge"', 'status = "open"'), keep=False)
    )
    desk.scheduler.rules = lambda: new
    await desk.tick()
    [fired] = await desk.audit(action="rule_fired")
    assert fired["actor"] == "rule:nudge-pending"


async def test_a_pass_is_not_triggered_again_by_its_own_events(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    """The events a pass publishes (a new due time) reach every listener,
    the scheduler's own too: they must not make it look at the same
    conversations again, while anyone else's events still do."""
    import asyncio

    from omnidesk.events import EventBus

    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    bus = EventBus()
    desk.scheduler.publish = bus.publish_many
    listening = asyncio.ensure_future(desk.scheduler._listen(bus))
    try:
        while bus.subscriber_count == 0:
            await asyncio.sleep(0.01)
        await desk.message("Where is my parcel?", thread="t1")
        res = await desk.tick()
        assert res.looked == 1 and res.events, "the new conversation's due time is published"
        await asyncio.sleep(0.05)
        assert desk.scheduler._dirty == set()
        assert (await desk.tick()).looked == 0
        bus.publish({"type": "conversation.updated", "conversation_id": 1})
        await asyncio.sleep(0.05)
        assert desk.scheduler._dirty == {1}
    finally:
        listening.cancel()


async def test_a_pass_takes_at_most_its_limit_and_the_rest_follows(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    """More conversations to look at than a pass takes (after an upgrade,
    after a burst): each pass stays within its limit, the next pass goes on
    (sweeping again when the sweep was full) until every one was looked at."""
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    for i in range(7):
        await desk.message(f"Question {i}", thread=f"t{i}")
    desk.scheduler._dirty.clear()  # only the sweep finds them, as after an upgrade
    looked: list[int] = []
    while not looked or desk.scheduler.behind:
        looked.append((await desk.tick(sweep=True if not looked else None, limit=3)).looked)
        assert len(looked) < 10, looked
    assert max(looked) <= 3 and sum(looked) == 7
    assert (await desk.tick(sweep=True)).looked == 0


CLOSE_PENDING = """
[[rule]]
name = "close-pending"
on = "time"
when = { status = "pending", hours_since_agent.at_least = 1 }
then = { status = "resolved" }
"""


async def test_a_rule_that_resolves_frees_the_place_for_the_oldest_waiting(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    """Capacity freed by a time rule (not by a person) drains the team's
    queue at once, in the scheduler's transaction (issue 25 item 2)."""
    desk = await make_desk(
        store,
        rules_with(tmp_path, CLOSE_PENDING, keep=False),
        clock,
        assignment=AssignmentConfig(only_online=False),
    )
    await store.write(save_team, "support", members=["alice"], max_open_per_agent=1)
    await desk.message("Where is parcel 1?", thread="t1")
    await desk.reply("It left our warehouse today.")
    await desk.set_status("pending")
    await desk.message("Where is parcel 2?", address="ben@example.com", thread="t2")
    await desk.message("Where is parcel 3?", address="cai@example.com", thread="t3")
    assert [(await desk.conversation(c))["assignee"] for c in (1, 2, 3)] == ["alice", None, None]
    clock.set(clock.now() + 2 * 3600)
    res = await desk.tick(sweep=True)
    assert (await desk.conversation(1))["status"] == "resolved"
    # The oldest waiting conversation took the freed place; the next waits.
    assert (await desk.conversation(2))["assignee"] == "alice"
    assert (await desk.conversation(3))["assignee"] is None
    assert any(e.get("assigned_from_queue") and e["conversation_id"] == 2 for e in res.events)
