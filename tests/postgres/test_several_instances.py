"""Several daemon instances on one PostgreSQL database, in one test process:
work is split without doubles, a new thread or contact is created once,
assignment stays fair and within caps, live events cross instances, a
single-consumer channel has exactly one owner and a successor, and a reply
leaves once. (The multi-process test with SIGKILL is test_instances.py.)"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from omnidesk.app import Daemon
from omnidesk.model import Envelope
from omnidesk.outbox import queue_reply
from omnidesk.store import Db
from omnidesk.store.inbound import count_pending, insert_envelopes
from tests.conftest import PG_URL, make_config, message

pytestmark = pytest.mark.postgres

DROPINS = Path(__file__).with_name("dropins")


async def eventually(pred: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def instances(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> Callable[..., Awaitable[list[Daemon]]]:
    async def start(n: int = 2, **sections: Any) -> list[Daemon]:
        out = []
        for i in range(n):
            own = {"data_dir": str(tmp_path / f"i{i}" / "data"), "instance_name": f"i{i}"}
            daemon = {**own, **sections.get("daemon", {})}
            cfg = make_config(tmp_path / f"i{i}", pg_url, **{**sections, "daemon": daemon})
            out.append(await daemon_factory(cfg))
        return out

    return start


def envs(bodies: list[dict[str, Any]]) -> list[Envelope]:
    return [
        Envelope("api", b["external_id"], json.dumps(b).encode(), "application/json")
        for b in bodies
    ]


async def settle_all(daemons: list[Daemon]) -> None:
    await asyncio.gather(*(d.pipeline.drain() for d in daemons))

    async def done() -> bool:
        return await daemons[0].store.read(count_pending) == 0

    await eventually(done)
    await asyncio.gather(*(d.pipeline.drain() for d in daemons))


async def facts(d: Daemon, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return await d.store.read(lambda db: [dict(r) for r in db.all(sql, params)])


async def test_instances_starting_together_all_start(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    """Migrations and the teams seeded from [[teams]] are made once while
    three instances start at the same moment."""
    cfgs = [
        make_config(tmp_path / f"s{i}", pg_url, daemon={"data_dir": str(tmp_path / f"s{i}")})
        for i in range(3)
    ]
    daemons = await asyncio.gather(*(daemon_factory(c) for c in cfgs))
    teams = await facts(daemons[0], "SELECT name FROM teams ORDER BY name")
    assert [t["name"] for t in teams] == sorted(t.name for t in cfgs[0].teams)


async def test_one_thread_one_conversation_one_contact_across_instances(
    instances: Callable[..., Awaitable[list[Daemon]]],
) -> None:
    a, b = await instances(2)
    # 30 new threads, 6 messages each, from 30 new senders: written to the
    # queue at once, then both instances drain it together.
    bodies = [
        message(
            f"t{t}-m{m}",
            f"Question {m} about order {t}",
            address=f"user{t}@example.com",
            thread_key=f"order-{t}",
        )
        for m in range(6)
        for t in range(30)
    ]
    await a.store.write(insert_envelopes, envs(bodies))
    await settle_all([a, b])
    convs = await facts(a, "SELECT thread_key, contact_id, message_count FROM conversations")
    assert len(convs) == 30
    assert {c["message_count"] for c in convs} == {6}
    assert len({c["contact_id"] for c in convs}) == 30
    assert await a.store.read(lambda db: db.val("SELECT COUNT(*) FROM contacts")) == 30
    assert await a.store.read(lambda db: db.val("SELECT COUNT(*) FROM messages")) == 180
    # Both did some of the work.
    assert a.pipeline.processed > 0 and b.pipeline.processed > 0
    assert a.pipeline.processed + b.pipeline.processed == 180


async def test_round_robin_alternates_across_instances(
    instances: Callable[..., Awaitable[list[Daemon]]],
) -> None:
    teams = [
        {
            "name": "support",
            "members": ["alice", "bob"],
            "strategy": "round_robin",
            "max_open_per_agent": 1000,
        }
    ]
    daemons = await instances(3, teams=teams)
    bodies = [
        message(f"rr{i}", f"Hello, when do you open on day {i}?", address=f"c{i}@example.com")
        for i in range(90)
    ]
    # Spread over the three instances' intakes at once.
    await asyncio.gather(*(daemons[i % 3].intake.accept(e) for i, e in enumerate(envs(bodies))))
    await settle_all(daemons)
    # In the order the assignments were made (their audit rows are written
    # under the team's lock).
    rows = await facts(
        daemons[0],
        "SELECT c.team, c.assignee FROM conversations c JOIN audit a"
        " ON a.conversation_id = c.id AND a.action = 'routed' ORDER BY a.id",
    )
    support = [r["assignee"] for r in rows if r["team"] == "support"]
    assert len(support) >= 80, rows  # the shipped rules send a greeting to support
    counts = Counter(support)
    assert abs(counts["alice"] - counts["bob"]) <= 1, counts
    # Strict alternation: the pointer was never read stale.
    assert all(x != y for x, y in itertools.pairwise(support)), support
    routed = await facts(
        daemons[0],
        "SELECT conversation_id, COUNT(*) AS n FROM audit WHERE action = 'routed'"
        " GROUP BY conversation_id",
    )
    assert len(routed) == len(rows) and {r["n"] for r in routed} == {1}


async def test_least_loaded_never_exceeds_the_cap_across_instances(
    instances: Callable[..., Awaitable[list[Daemon]]],
) -> None:
    teams = [
        {
            "name": "support",
            "members": ["alice", "bob", "carol"],
            "strategy": "least_loaded",
            "max_open_per_agent": 4,
        }
    ]
    daemons = await instances(3, teams=teams, pipeline={"default_team": "support"})
    bodies = [
        message(f"ll{i}", f"Where is parcel {i}?", address=f"p{i}@example.com") for i in range(60)
    ]
    await asyncio.gather(*(daemons[i % 3].intake.accept(e) for i, e in enumerate(envs(bodies))))
    await settle_all(daemons)
    rows = await facts(
        daemons[0], "SELECT assignee, COUNT(*) AS n FROM conversations GROUP BY assignee"
    )
    loads = {r["assignee"]: r["n"] for r in rows}
    assert loads.get("alice") == loads.get("bob") == loads.get("carol") == 4, loads
    assert sum(loads.values()) == 60


async def test_live_events_reach_subscribers_on_other_instances(
    instances: Callable[..., Awaitable[list[Daemon]]],
) -> None:
    a, b = await instances(2)
    async with b.events.subscribe() as on_b, a.events.subscribe() as on_a:
        await a.intake.accept(envs([message("ev1", "Is the shop open today?")])[0])
        await a.pipeline.drain()
        seen_b = await asyncio.wait_for(on_b.get(), 10)
        seen_a = await asyncio.wait_for(on_a.get(), 10)
        assert seen_b == seen_a
        assert seen_b["type"] == "conversation.created"
        assert (await asyncio.wait_for(on_b.get(), 10))["type"] == "message.created"
        assert (await asyncio.wait_for(on_a.get(), 10))["type"] == "message.created"
        await asyncio.sleep(0.3)
        # An instance does not hear its own events twice. (The scheduler may
        # publish what it worked out since: the SLA due time, as an update.)
        for q in (on_a, on_b):
            rest = [q.get_nowait() for _ in range(q.qsize())]
            again = [e for e in rest if e["type"] in ("conversation.created", "message.created")]
            assert not again, rest
            assert all(e["type"] == "conversation.updated" for e in rest), rest


async def test_webhooks_and_replies_on_any_instance(
    instances: Callable[..., Awaitable[list[Daemon]]], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    channels = [
        {"name": "api", "type": "api", "secret": "test-secret-" + "x" * 16},
        {"name": "mail", "type": "spool", "folder": str(spool)},
    ]
    a, b = await instances(2, channels=channels, daemon={"channels_dir": str(DROPINS)})
    for i in range(20):
        (spool / f"in{i}.json").write_text(
            json.dumps({"from": f"s{i}@example.com", "text": f"Question {i}"})
        )

    async def stored() -> bool:
        n = await a.store.read(lambda db: db.val("SELECT COUNT(*) FROM conversations"))
        return int(n) == 20

    await eventually(stored)
    conv_ids = await a.store.read(lambda db: [r[0] for r in db.all("SELECT id FROM conversations")])

    def reply_all(db: Db) -> None:
        for cid in conv_ids:
            queue_reply(db, cid, text=f"Answer to #{cid}", author="agent:alice")

    await b.store.write(reply_all)
    a.outbox.wake()
    b.outbox.wake()

    async def delivered() -> bool:
        n = await a.store.read(
            lambda db: db.val("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
        )
        return int(n) == 20

    await eventually(delivered)
    await asyncio.sleep(0.3)
    sent = (spool / "sent.jsonl").read_text().splitlines()
    assert sorted(json.loads(s)["text"] for s in sent) == sorted(
        f"Answer to #{c}" for c in conv_ids
    )


async def test_single_consumer_channel_has_one_owner_and_a_successor(
    instances: Callable[..., Awaitable[list[Daemon]]], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    channels = [{"name": "mail", "type": "spool", "folder": str(spool)}]
    daemons = await instances(3, channels=channels, daemon={"channels_dir": str(DROPINS)})

    def states() -> list[str]:
        return [d.adapters["mail"].health().state for d in daemons]

    async def one_running() -> bool:
        return states().count("running") == 1

    await eventually(one_running)
    assert sorted(states()) == ["running", "standby", "standby"]
    owner = daemons[states().index("running")]

    # Its database session dies (network cut, server restart): it notices,
    # stands by, and exactly one instance runs the channel again.
    assert owner.store._lock_conn is not None  # type: ignore[attr-defined]
    pid = owner.store._lock_conn.get_server_pid()  # type: ignore[attr-defined]
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()

    async def settled_ownership() -> bool:
        # Exactly one runs the channel, and it is the one holding the lock.
        held = ["channel:mail" in d.store.locks_held() for d in daemons]  # type: ignore[attr-defined]
        return await one_running() and held == [s == "running" for s in states()]

    await asyncio.sleep(0.5)
    await eventually(settled_ownership)

    # The owner stops for good: another takes over within seconds and the
    # mailbox keeps flowing.
    owner = daemons[states().index("running")]
    await owner.stop()
    rest = [d for d in daemons if d is not owner]
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def taken_over() -> bool:
        return [d.adapters["mail"].health().state for d in rest].count("running") == 1

    await eventually(taken_over)
    assert loop.time() - t0 < 5
    (spool / "late.json").write_text(json.dumps({"from": "late@example.com", "text": "hi"}))

    async def stored() -> bool:
        n = await rest[0].store.read(lambda db: db.val("SELECT COUNT(*) FROM messages"))
        return int(n) == 1

    await eventually(stored)
