"""Two daemons on one PostgreSQL database, their schedulers ticking at the same
moments on the same (controllable) clock: a time-based rule and an SLA breach
each fire once in all, with one audit entry, one notice and one message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnidesk.app import Daemon
from omnidesk.config import Config
from omnidesk.model import Envelope
from omnidesk.outbox import queue_reply
from omnidesk.service.clock import ManualClock
from omnidesk.store.actions import set_status
from omnidesk.store.audit import audit_for_conversation
from omnidesk.store.canned import save_canned
from omnidesk.store.conversations import message_rows
from omnidesk.store.service import notifications_for
from tests.conftest import settle
from tests.service.helpers import berlin, control_time, rules_with

pytestmark = pytest.mark.postgres

RULES = """
[[rule]]
name = "nudge-pending"
on = "time"
when = { status = "pending", hours_since_agent.at_least = 48 }
then = { tags = ["nudged"], notify = ["assignee"], reply = "nudge" }

[[sla]]
name = "all"
first_response = "2h"
on_breach = { tags = ["late"], notify = ["assignee"] }
"""


async def test_two_instances_fire_each_action_once(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    daemon_factory: Callable[..., Any],
) -> None:
    from tests.conftest import make_config

    clock = ManualClock(berlin(2026, 3, 2, 10, 0))
    control_time(monkeypatch, clock)
    rules = rules_with(tmp_path, RULES, keep=False)
    daemons: list[Daemon] = []
    for name in ("one", "two"):
        cfg: Config = make_config(
            tmp_path / name,
            pg_url,
            rules={"dir": str(rules), "watch": False},
            daemon={"data_dir": str(tmp_path / name / "data"), "instance_name": name},
        )
        d = await daemon_factory(cfg, web=False)
        d.scheduler.clock = clock
        daemons.append(d)
    a, b = daemons
    # The daemons started on the wall clock: the service counts from the
    # manual clock's now instead (breaches before that would only be noted).
    await a.store.write(
        lambda db: db.run(
            "UPDATE channel_state SET value = ? WHERE channel = 'service' AND key = 'reports_from'",
            (repr(clock.now()),),
        )
    )
    for d in daemons:
        await d.scheduler.prepare()
    await a.store.write(
        save_canned, actor="admin:root", shortcut="nudge", title="Nudge", body="Still there?"
    )
    body = {
        "external_id": "x1",
        "sender": {"address": "ann@example.com", "kind": "email"},
        "text": "Where is my parcel?",
    }
    await a.intake.accept(Envelope("api", "x1", json.dumps(body).encode(), "application/json"))
    await settle(a)

    async def both(**kw: Any) -> None:
        results = await asyncio.gather(a.scheduler.tick(**kw), b.scheduler.tick(**kw))
        fired.extend(r.fired for r in results)

    fired: list[int] = []
    # The first response is late: both instances look at the same moments.
    for minute in range(0, 3 * 60, 2):
        clock.set(berlin(2026, 3, 2, 10, 0) + minute * 60)
        await both(sweep=True)
    await a.store.write(queue_reply, 1, text="On its way", author="agent:alice")
    await a.store.write(set_status, 1, "pending", actor="agent:alice")
    replied = clock.now()
    for minute in range(47 * 60 + 50, 48 * 60 + 20):
        clock.set(replied + minute * 60)
        await both(sweep=True)
    audit = await a.store.read(audit_for_conversation, 1)
    actions = [x["action"] for x in audit]
    assert actions.count("sla_breach") == 1, actions
    assert actions.count("rule_fired") == 1, actions
    assert sum(fired) == 2  # one instance's tick did each, the other's found it done
    conv_msgs = await a.store.read(message_rows, 1)
    assert [m["text"] for m in conv_msgs if m["auto"] == "rule:nudge-pending"] == ["Still there?"]
    assignee = next(x for x in audit if x["action"] == "routed")["detail"]["assignee"]
    kinds = [n["kind"] for n in await a.store.read(notifications_for, assignee)]
    assert sorted(kinds) == ["rule", "sla_breach"]
