"""A controllable clock for the whole of omnidesk, rules folders with a test
file added, and a pipeline plus scheduler on one store (no HTTP)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omnidesk import model
from omnidesk.channels.api import ApiChannel
from omnidesk.channels.base import ChannelContext
from omnidesk.config import ChannelConfig, Options, TeamConfig
from omnidesk.intake import Intake
from omnidesk.model import Envelope
from omnidesk.pipeline import PipelineContext, process_batch
from omnidesk.rules import RuleSet, load_rules
from omnidesk.service.clock import ManualClock
from omnidesk.service.evaluate import Settings
from omnidesk.service.scheduler import Scheduler, TickResult
from omnidesk.service.surveys import capture_chat_answer
from omnidesk.store import Store
from omnidesk.store.users import seed_teams
from tests.conftest import RULES

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*a: int) -> float:
    return datetime(*a, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def control_time(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    """Every ``now_ts`` omnidesk's modules imported reads ``clock`` (the web
    layer is imported first, so that none binds the manual clock for good:
    ``omnidesk.model.now_ts`` itself stays the real one)."""
    import omnidesk.web.app  # noqa: F401

    real = model.now_ts
    for name, mod in list(sys.modules.items()):
        if (
            name.startswith("omnidesk")
            and name != "omnidesk.model"
            and getattr(mod, "now_ts", None) is real
        ):
            monkeypatch.setattr(mod, "now_ts", clock.now)


def rules_with(tmp: Path, text: str, name: str = "70-test.toml", keep: bool = True) -> Path:
    """The shipped rules (or, ``keep=False``, only the classifier and settings)
    plus one file of the test's own."""
    dst = tmp / f"rules-{len(list(tmp.glob('rules-*')))}"
    shutil.copytree(RULES, dst)
    if not keep:
        for p in dst.glob("*.toml"):
            if not p.name.startswith(("00-", "10-")):
                p.unlink()
    (dst / name).write_text(text, encoding="utf-8")
    return dst


TEAMS = [
    TeamConfig("support", ["alice", "bob"]),
    TeamConfig("complaints", ["carol"], strategy="least_loaded"),
    TeamConfig("escalations", ["frank"], strategy="least_loaded"),
]


@dataclass
class Desk:
    """Messages in through the API channel's parser and the pipeline, a
    scheduler on a manual clock."""

    store: Store
    rules: RuleSet
    clock: ManualClock
    intake: Intake
    ctx: PipelineContext
    scheduler: Scheduler
    n: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    async def message(
        self, text: str, address: str = "ann@example.com", thread: str | None = None, **extra: Any
    ) -> None:
        self.n += 1
        body: dict[str, Any] = {
            "external_id": f"m{self.n}",
            "sender": {"address": address, "kind": extra.pop("kind", "email"), "name": "Ann"},
            "text": text,
            **extra,
        }
        if thread:
            body["thread_key"] = thread
        env = Envelope("api", f"m{self.n}", json.dumps(body).encode(), "application/json")
        await self.intake.accept(env)
        await self.intake.drain()
        res = await self.store.write(process_batch, self.ctx, 50)
        self.events += res.events
        self.scheduler.on_events(res.events)  # as the daemon's event bus does

    async def reply(self, text: str, cid: int = 1, author: str = "agent:alice") -> None:
        """An agent's reply, as the inbox API queues it (and tells the scheduler)."""
        from omnidesk.outbox import queue_reply

        await self.store.write(queue_reply, cid, text=text, author=author)
        self.scheduler.mark([cid])

    async def set_status(self, status: str, cid: int = 1) -> None:
        from omnidesk.store.actions import set_status

        await self.store.write(set_status, cid, status, actor="agent:alice")
        self.scheduler.mark([cid])

    async def tick(self, **kw: Any) -> TickResult:
        return await self.scheduler.tick(**kw)

    async def conversation(self, cid: int = 1) -> dict[str, Any]:
        from omnidesk.store.conversations import get_conversation_row

        conv = await self.store.read(get_conversation_row, cid)
        assert conv is not None
        return conv

    async def audit(self, cid: int = 1, action: str | None = None) -> list[dict[str, Any]]:
        from omnidesk.store.audit import audit_for_conversation

        rows = await self.store.read(audit_for_conversation, cid)
        return [a for a in rows if action is None or a["action"] == action]


async def make_desk(
    store: Store,
    rules_dir: Path,
    clock: ManualClock,
    *,
    fallback: Any = None,
    adapter_type: str = "api",
    assignment: Any = None,
) -> Desk:
    await store.write(seed_teams, TEAMS)
    intake = Intake(store)
    opts = Options({"secret": "s" * 20}, file=None, prefix="channels[0]", base_dir=RULES)
    adapter = ApiChannel(ChannelContext("api", ChannelConfig("api", "api", opts), intake))
    ruleset = load_rules(rules_dir)

    def answer(db: Any, conv: Any, msg: Any, now: float) -> bool:
        return capture_chat_answer(db, conv, msg.text, now, ruleset.service) is not None

    ctx = PipelineContext(
        adapters={"api": adapter},
        rules=lambda: ruleset,
        teams={t.name: t for t in TEAMS},
        teams_in_db=True,
        default_team="support",
        survey_answer=answer,
    )
    sched = Scheduler(
        store,
        lambda: ruleset,
        clock=clock,
        settings=Settings(fallback_policy=fallback, channel_types={"api": adapter_type}),
        public_url="http://desk.test",
        assignment=assignment,
    )
    await sched.prepare()
    return Desk(store, ruleset, clock, intake, ctx, sched)


Backdate = Callable[..., Any]


async def set_times(store: Store, cid: int, **cols: float) -> None:
    """Move a conversation's times (and mark it changed for the scheduler)."""
    sets = ", ".join(f"{k} = ?" for k in cols)
    await store.write(
        lambda db: db.run(
            f"UPDATE conversations SET {sets}, updated_at = updated_at + 0.5 WHERE id = ?",
            (*cols.values(), cid),
        )
    )
