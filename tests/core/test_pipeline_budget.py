"""The pipeline's time budget: a batch ends early so its transaction (SQLite's
only write lock) stays short for the webhook commits waiting behind it; the
rest stays pending and is taken by the next batch, never stalled."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from omnidesk.channels.api import ApiChannel
from omnidesk.channels.base import ChannelContext
from omnidesk.config import ChannelConfig, Options
from omnidesk.intake import Intake
from omnidesk.model import Envelope
from omnidesk.pipeline import PipelineContext, PipelineRunner, process_batch
from omnidesk.rules import load_rules
from omnidesk.store.inbound import count_pending
from tests.conftest import API_SECRET, RULES, message


async def pipeline_with(store: Any, n: int) -> PipelineContext:
    intake = Intake(store)
    opts = Options({"secret": API_SECRET}, file=None, prefix="channels[0]", base_dir=RULES)
    api = ApiChannel(ChannelContext("api", ChannelConfig("api", "api", opts), intake))
    await intake.accept_many(
        [
            Envelope("api", f"b-{i}", json.dumps(message(f"b-{i}", f"question {i}")).encode())
            for i in range(n)
        ]
    )
    rules = load_rules(RULES)
    return PipelineContext(adapters={"api": api}, rules=lambda: rules)


async def test_spent_budget_ends_the_batch_and_leaves_the_rest_pending(store: Any) -> None:
    ctx = await pipeline_with(store, 5)
    res = await store.write(process_batch, ctx, 64, 0.0)
    assert (res.claimed, res.cut, res.stored) == (1, True, 1), "at least one row per batch"
    assert await store.read(count_pending) == 4
    res = await store.write(process_batch, ctx, 64, None)
    assert (res.claimed, res.cut, res.stored) == (4, False, 4)


async def test_drain_goes_on_after_a_cut_batch(store: Any) -> None:
    ctx = await pipeline_with(store, 7)
    runner = PipelineRunner(store, ctx, budget=0.0)
    assert await runner.drain() == 7
    assert await store.read(count_pending) == 0


async def test_budget_ends_a_batch_only_when_a_write_waits(store: Any) -> None:
    ctx = await pipeline_with(store, 6)
    res = await store.write(process_batch, ctx, 64, 0.0, lambda: 0)
    assert (res.claimed, res.cut, res.stored) == (6, False, 6), "nobody waits: no cut"
    assert await store.read(count_pending) == 0


async def test_writes_waiting_counts_writes_queued_behind_the_running_one(
    sqlite_file_store: Any,
) -> None:
    s = sqlite_file_store
    release = threading.Event()
    seen: list[int] = []

    def blocking(db: Any) -> None:
        seen.append(s.writes_waiting())  # type: ignore[attr-defined]
        release.wait(10)
        seen.append(s.writes_waiting())  # type: ignore[attr-defined]

    first = asyncio.create_task(s.write(blocking))
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(s.write(lambda db: db.val("SELECT 1"))) for _ in range(3)]
    await asyncio.sleep(0.05)
    release.set()
    await first
    assert [await t for t in queued] == [1, 1, 1]
    assert seen == [0, 3]
    assert s.writes_waiting() == 0  # type: ignore[attr-defined]


async def test_a_failing_message_is_quarantined_alone_and_rolled_back(
    store: Any, monkeypatch: Any
) -> None:
    """SQLite runs a batch under one savepoint first; a failure redoes it with
    one savepoint per message. Either way: the others are kept, the failing
    one leaves nothing behind but its quarantine entry (and its raw bytes)."""
    import omnidesk.pipeline.batch as batch
    from omnidesk.store.inbound import list_quarantine

    ctx = await pipeline_with(store, 4)
    persist = batch.handle_message

    def failing(db: Any, ctx: Any, adapter: Any, row: Any, msg: Any, res: Any) -> Any:
        out = persist(db, ctx, adapter, row, msg, res)  # contact, conversation, message
        if row.envelope.external_id == "b-2":
            raise RuntimeError("disk says no")
        return out

    monkeypatch.setattr(batch, "handle_message", failing)
    res = await store.write(process_batch, ctx, 64, None)
    assert (res.claimed, res.quarantined) == (4, 1)

    def stored(db: Any) -> list[str]:
        rows = db.all("SELECT external_id FROM messages WHERE direction = 'in' ORDER BY id")
        return [r["external_id"] for r in rows]

    assert await store.read(stored) == ["b-0", "b-1", "b-3"]
    [q] = await store.read(list_quarantine)
    assert q["external_id"] == "b-2" and "disk says no" in q["error"]
    assert await store.read(count_pending) == 0
    convs = await store.read(lambda db: db.val("SELECT COUNT(*) FROM conversations"))
    assert convs == 3, "the failing message's conversation was rolled back"


async def test_a_failing_assignment_leaves_its_conversation_unassigned_with_the_reason(
    store: Any, monkeypatch: Any
) -> None:
    import dataclasses

    import omnidesk.pipeline.route as route
    from omnidesk.config import TeamConfig

    ctx = dataclasses.replace(
        await pipeline_with(store, 3),
        teams={"support": TeamConfig("support", ["alice", "bob"])},
        default_team="support",
    )
    routed = route.routed

    def fails_for_b1(db: Any, conv_id: int, team: Any, agent: Any, why: str, at: float) -> None:
        ext = db.val("SELECT external_id FROM messages WHERE conversation_id = ?", (conv_id,))
        if ext == "b-1" and not why.startswith("assignment failed"):
            raise RuntimeError("agent directory unreachable")
        routed(db, conv_id, team, agent, why, at)

    monkeypatch.setattr(route, "routed", fails_for_b1)
    res = await store.write(process_batch, ctx, 64, None)
    assert (res.claimed, res.stored, res.quarantined) == (3, 3, 0)

    def state(db: Any) -> list[tuple[Any, ...]]:
        rows = db.all(
            "SELECT c.assignee, (SELECT reason FROM audit a WHERE a.conversation_id = c.id"
            " AND a.action = 'routed') AS why FROM conversations c ORDER BY c.id"
        )
        return [(r["assignee"], r["why"]) for r in rows]

    got = await store.read(state)
    assert got[1] == (None, "assignment failed: agent directory unreachable")
    assert got[0][0] in {"alice", "bob"} and got[2][0] in {"alice", "bob"}
