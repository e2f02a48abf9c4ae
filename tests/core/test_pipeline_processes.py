"""``[pipeline] processes``: the pipeline in child processes of the daemon.

Real processes (multiprocessing's spawn) on both engines: messages accepted
by the daemon are classified and stored by the child, its results come back
as metrics and live events, a killed child is started again and the queue
loses nothing, a rules reload reaches it, and a stop ends it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

import pytest

from omnidesk.app import PROCESS_WIRING
from omnidesk.config import ConfigError
from omnidesk.model import Category, Envelope
from omnidesk.pipeline import NormalizeFailed, PipelineRunner, process_batch
from omnidesk.pipeline_proc import CHILD_NICE, PipelineProcesses
from omnidesk.rules.classifier import Classifier
from omnidesk.store import sqlite as sqlite_store
from omnidesk.store.inbound import count_pending, peek_pending
from tests.conftest import (
    admin_token,
    children_of,
    is_python,
    make_config,
    message,
    post_inbound,
    process_gone,
    wait_for,
)
from tests.core.test_pipeline_budget import pipeline_with

pytestmark = pytest.mark.slow


async def stored(daemon: Any) -> dict[str, int]:
    def q(db: Any) -> dict[str, int]:
        return {
            "pending": int(db.val("SELECT COUNT(*) FROM inbound WHERE state = 'pending'")),
            "messages": int(db.val("SELECT COUNT(*) FROM messages WHERE direction = 'in'")),
            "distinct": int(
                db.val("SELECT COUNT(DISTINCT external_id) FROM messages WHERE direction = 'in'")
            ),
        }

    result: dict[str, int] = await daemon.store.read(q)
    return result


async def all_stored(daemon: Any, n: int, timeout: float = 60) -> dict[str, int]:
    got: dict[str, int] = {}

    async def done() -> bool:
        got.update(await stored(daemon))
        return got["messages"] >= n and got["pending"] == 0

    await wait_for(done, timeout)
    return got


async def test_child_process_classifies_stores_and_reports_back(
    tmp_path: Path, store_url: str, daemon_factory: Any, client_for: Any
) -> None:
    d = await daemon_factory(make_config(tmp_path, store_url, pipeline={"processes": 1}))
    procs = d.pipeline_processes
    assert isinstance(procs, PipelineProcesses)
    pid = procs.pids[0]
    assert pid is not None and pid != os.getpid() and procs.alive() == 1
    await procs.wait_ready()  # the child opened the store and loaded its models
    async with d.events.subscribe() as live, client_for(d) as c:
        texts = {
            "p-1": "This is unacceptable, the package arrived broken. I want a refund now!",
            "p-2": "How do I change the delivery address of my order?",
            "p-3": "您好，请问这个商品什么时候发货？",
        }
        for ext, text in texts.items():
            r = await post_inbound(c, message(ext, text, address=f"{ext}@example.com"))
            assert r.status_code == 202, r.text
        counts = await all_stored(d, 3)
        # The live feed of this (the daemon's) process got the child's events.
        seen: list[dict[str, Any]] = []
        while len({e.get("conversation_id") for e in seen if e.get("type")}) < 3:
            seen.append(await asyncio.wait_for(live.get(), 10))
    assert counts == {"pending": 0, "messages": 3, "distinct": 3}
    assert d.pipeline.processed == 0, "nothing ran in the daemon's own process"
    async with client_for(d) as c:
        assert (await c.get("/healthz")).json()["pipeline"]["ready"] == 1
    assert procs.batches >= 1

    def categories(db: Any) -> dict[str, str]:
        rows = db.all(
            "SELECT m.external_id, c.category FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id"
        )
        return {r[0]: r[1] for r in rows}

    cats = await d.store.read(categories)
    assert cats["p-1"] == "complaint" and cats["p-2"] == "inquiry" and cats["p-3"] == "inquiry"
    metrics = d.metrics.processed.labels("stored")._value.get()
    assert metrics == 3, "the child's results count in the daemon's metrics"
    await d.stop()
    assert procs.alive() == 0, "stop ends the child"


async def test_killed_child_is_started_again_and_the_queue_loses_nothing(
    tmp_path: Path, store_url: str, daemon_factory: Any, client_for: Any, monkeypatch: Any
) -> None:
    import omnidesk.pipeline_proc as pp

    monkeypatch.setattr(pp, "RESTART_MIN", 0.2)
    d = await daemon_factory(make_config(tmp_path, store_url, pipeline={"processes": 1}))
    procs = d.pipeline_processes
    first = procs.pids[0]
    async with client_for(d) as c:

        async def post(i: int) -> None:
            r = await post_inbound(c, message(f"k-{i}", f"Where is my order number {i}?"))
            assert r.status_code == 202, r.text

        await asyncio.gather(*(post(i) for i in range(0, 150)))
        os.kill(first, signal.SIGKILL)  # most likely mid-batch
        await asyncio.gather(*(post(i) for i in range(150, 300)))
        await wait_for(lambda: _async(procs.pids[0] not in (None, first)), 15)
        counts = await all_stored(d, 300)
        await procs.wait_ready()
        scraped = (await c.get("/metrics", headers=await admin_token(d))).text
        health = (await c.get("/healthz")).json()
    assert "omnidesk_pipeline_processes_ready 1.0" in scraped
    assert "omnidesk_pipeline_process_restarts 1.0" in scraped
    assert counts == {"pending": 0, "messages": 300, "distinct": 300}
    assert procs.alive() == 1 and procs.poisoned == 0  # one death quarantines nothing
    assert health["status"] == "ok"
    assert health["pipeline"] == {
        "ok": True,
        "processes": 1,
        "parse_processes": 0,
        "ready": 1,
        "restarts": 1,
    }


async def _async(value: bool) -> bool:
    return value


async def test_rules_reload_reaches_the_child(
    tmp_path: Path, store_url: str, daemon_factory: Any, client_for: Any, rules_copy: Path
) -> None:
    rules = rules_copy
    cfg = make_config(tmp_path, store_url, pipeline={"processes": 1}, rules={"dir": str(rules)})
    d = await daemon_factory(cfg)
    (rules / "90-parcel.toml").write_text(
        '[[rule]]\nname = "parcels"\n[rule.when]\ntext.contains = ["parcel"]\n'
        '[rule.then]\ntags = ["parcel"]\n'
    )
    assert d.rules.reload() and d.rules.last_error is None
    d.rules_reloaded()
    async with client_for(d) as c:
        r = await post_inbound(c, message("r-1", "My parcel is late"))
        assert r.status_code == 202
        await all_stored(d, 1)

    def tags(db: Any) -> str:
        return str(db.val("SELECT tags FROM conversations"))

    assert "parcel" in await d.store.read(tags), "the child classified with the new rules"


def test_processes_config_is_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigError, match="accept-only"):
        make_config(tmp_path, url, pipeline={"processes": 1, "workers": 0})
    assert make_config(tmp_path, url, pipeline={"processes": 1}).pipeline_processes == 1


async def test_sqlite_takes_one_writer_and_parse_processes(
    tmp_path: Path, store_url: str, daemon_factory: Any, client_for: Any
) -> None:
    d = await daemon_factory(make_config(tmp_path, store_url, pipeline={"processes": 2}))
    procs = d.pipeline_processes
    await procs.wait_ready()
    if store_url.startswith("sqlite"):
        assert (len(procs.pids), procs.parsers) == (1, 1)
        # Ready means the parse process runs already: the first mail does
        # not wait for it to start.
        writer = procs.pids[0]
        assert writer is not None
        assert len([p for p in children_of(writer) if is_python(p)]) == 1
    else:
        assert (len(procs.pids), procs.parsers) == (2, 0)
    async with client_for(d) as c:

        async def post(i: int) -> None:
            r = await post_inbound(c, message(f"w-{i}", f"Is order {i} on its way?"))
            assert r.status_code == 202, r.text

        await asyncio.gather(*(post(i) for i in range(120)))
        counts = await all_stored(d, 120)
        assert counts == {"pending": 0, "messages": 120, "distinct": 120}
        if not procs.parsers:
            return
        # Below the daemon's CPU priority, except the writer's store threads:
        # the one holding the write lock (which the daemon's intake may wait
        # for) keeps the daemon's.
        base = os.getpriority(os.PRIO_PROCESS, 0)
        low = min(base + CHILD_NICE, 19)  # Linux caps niceness at 19
        writer = procs.pids[0]
        assert writer is not None
        threads = {t: _nice(writer, t) for t in _threads(writer)}
        assert threads.pop(writer) == low
        assert sorted(set(threads.values())) == sorted({base, low})
        (parser,) = [p for p in children_of(writer) if is_python(p)]
        assert _nice(parser, parser) == low
        # The writer's parse process: kill it, and the pool is replaced; mail
        # keeps being stored once each.
        os.kill(parser, signal.SIGKILL)
        await asyncio.gather(*(post(i) for i in range(120, 240)))
        counts = await all_stored(d, 240)
    assert counts == {"pending": 0, "messages": 240, "distinct": 240}
    replacement = [p for p in children_of(procs.pids[0]) if is_python(p)]
    assert replacement and parser not in replacement
    # The writer killed: its parse process leaves with it, not orphaned.
    os.kill(procs.pids[0], signal.SIGKILL)
    await wait_for(lambda: _async(all(process_gone(p) for p in replacement)), 10)


def _threads(pid: int) -> list[int]:
    return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]


def _nice(pid: int, tid: int) -> int:
    """A thread's niceness (Linux keeps one per thread): field 19 of its stat."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


class _ThreadParser:
    """A Parser in this process (for the runner's bookkeeping), failing on
    request."""

    def __init__(self, ctx: Any, fail: bool = False) -> None:
        self.ctx, self.fail = ctx, fail
        self.jobs: list[list[int]] = []

    def submit(self, rows: list[Any]) -> Any:
        from omnidesk.pipeline import prepare_envelope

        self.jobs.append([r.id for r in rows])
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("parse process died"))
        else:
            fut.set_result([(r.id, prepare_envelope(self.ctx, r)) for r in rows])
        return fut


async def test_runner_parses_the_next_batch_ahead_and_survives_a_failed_job(
    sqlite_file_store: Any,
) -> None:
    st = sqlite_file_store
    ctx = await pipeline_with(st, 40)
    parser = _ThreadParser(ctx)
    runner = PipelineRunner(st, ctx, batch_size=16, prenormalize=True, parser=parser)
    res = await runner.run_once()
    assert res.stored == 16
    assert sum(len(j) for j in parser.jobs) == 32, "this batch and the next one"
    await runner.run_once()
    assert sum(len(j) for j in parser.jobs) == 40, "nothing parsed twice"
    assert await st.read(count_pending) == 8

    broken = PipelineRunner(st, ctx, batch_size=16, prenormalize=True)
    broken.parser = _ThreadParser(ctx, fail=True)
    assert await broken.drain() == 8, "normalized in the transaction instead"
    assert await st.read(count_pending) == 0


async def test_reading_ahead_reads_in_full_only_rows_not_known(sqlite_file_store: Any) -> None:
    st = sqlite_file_store
    await pipeline_with(st, 6)
    ids, rows = await st.read(peek_pending, 4)
    assert len(ids) == 4 and ids == sorted(ids)
    assert [r.id for r in rows] == ids and all(r.envelope.payload for r in rows)
    # The next look ahead knows the first three: only the rest is read.
    more, rows = await st.read(peek_pending, 6, frozenset(ids[:3]))
    assert more[:4] == ids and len(more) == 6
    assert [r.id for r in rows] == more[3:]
    # A row done meanwhile is neither listed nor read.
    await st.write(lambda db: db.run("UPDATE inbound SET state = 'done' WHERE id = ?", (more[4],)))
    left, rows = await st.read(peek_pending, 6, frozenset(more[:4]))
    assert left == more[:4] + more[5:]
    assert [r.id for r in rows] == [more[5]]


# -- the pieces -----------------------------------------------------------------
async def test_prepared_items_are_used_once_and_failures_quarantined(store: Any) -> None:
    ctx = await pipeline_with(store, 3)
    runner = PipelineRunner(store, ctx)
    rows = await store.read(lambda db: [r for r in db.all("SELECT id FROM inbound ORDER BY id")])
    first = int(rows[0][0])
    prepared: dict[int, Any] = {first: NormalizeFailed("prepared says no")}
    res = await store.write(process_batch, ctx, 64, None, None, prepared)
    assert (res.claimed, res.quarantined, res.stored) == (3, 1, 2)
    assert prepared == {}, "used entries are taken out"
    reason = await store.read(lambda db: db.val("SELECT error FROM quarantine"))
    assert reason == "prepared says no"
    assert await runner.drain() == 0


async def test_sqlite_runner_normalizes_before_its_transaction(
    sqlite_file_store: Any, monkeypatch: Any
) -> None:
    st = sqlite_file_store
    ctx = await pipeline_with(st, 4)
    calls: list[int] = []
    api = ctx.adapters["api"]
    original = api.normalize

    def counting(env: Any) -> Any:
        calls.append(threading.get_ident())
        return original(env)

    api.normalize = counting  # type: ignore[method-assign]
    # The classifier's keyword pass too (RuleSet.preview): the transaction
    # only runs the rules that look at the contact.
    classified: list[int] = []
    classify = Classifier.classify

    def counting_classify(self: Classifier, c: Any) -> Any:
        classified.append(threading.get_ident())
        return classify(self, c)

    monkeypatch.setattr(Classifier, "classify", counting_classify)
    runner = PipelineRunner(st, ctx, prenormalize=True)
    assert await runner.drain() == 4
    assert len(calls) == 4, "each envelope normalized once"
    assert set(calls) == {threading.get_ident()}, "outside the writer thread"
    assert classified and set(classified) == {threading.get_ident()}
    assert await st.read(count_pending) == 0
    decisions = await st.read(lambda db: db.all("SELECT decision FROM conversations"))
    assert len(decisions) == 4 and all("classifier:" in r[0] for r in decisions)


async def test_writer_waits_for_another_connections_lock(
    sqlite_file_store: Any, monkeypatch: Any
) -> None:
    st = sqlite_file_store
    other = sqlite3.connect(st.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's batch, say
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    t0 = time.monotonic()
    release.start()
    assert await st.write(lambda db: db.val("SELECT 1")) == 1
    waited = time.monotonic() - t0
    assert 0.15 < waited < 2.0, waited
    release.join()

    monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT", 0.1)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await st.write(lambda db: db.val("SELECT 1"))
    other.execute("COMMIT")
    assert st.writes_waiting() == 0, "a write that gave up is not counted as waiting"
    other.close()


async def test_shared_counters_tell_another_process_a_write_waits(sqlite_file_store: Any) -> None:
    import multiprocessing

    st = sqlite_file_store
    counters = multiprocessing.RawArray("q", 2)
    st.share_waiting(counters)
    assert sqlite_store.shared_writes_waiting(counters) == 0
    gate = threading.Event()
    seen: list[int] = []

    def slow(db: Any) -> None:
        gate.wait(5)

    def look(db: Any) -> None:
        seen.append(sqlite_store.shared_writes_waiting(counters))

    first = asyncio.ensure_future(st.write(slow))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(st.write(look))
    await asyncio.sleep(0.05)
    assert sqlite_store.shared_writes_waiting(counters) == 1, "one queued behind"
    gate.set()
    await asyncio.gather(first, second)
    assert seen == [0] and sqlite_store.shared_writes_waiting(counters) == 0


@pytest.fixture
def client_for() -> Any:
    import httpx

    def make(d: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10)

    return make


class _GoneParser:
    def submit(self, rows: list[Any]) -> Any:
        raise RuntimeError("parse processes failed 3 times in a row: given up")


async def test_runner_parses_by_itself_once_the_parse_processes_are_given_up(
    sqlite_file_store: Any,
) -> None:
    st = sqlite_file_store
    ctx = await pipeline_with(st, 20)
    runner = PipelineRunner(st, ctx, batch_size=8, prenormalize=True, parser=_GoneParser())
    assert await runner.drain() == 20
    assert runner.parser is None, "not asked again"


async def test_a_parse_pool_that_cannot_start_is_given_up(tmp_path: Path) -> None:
    from omnidesk.pipeline_proc import ParsePool
    from omnidesk.store.inbound import InboundRow

    # A channel type nobody provides: the parse process fails to initialise.
    cfg = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        channels=[{"name": "odd", "type": "no-such-type"}],
    )
    pool = ParsePool(cfg, 1, wiring=PROCESS_WIRING)
    row = InboundRow(1, Envelope("odd", "e-1", b"{}"), 0, False)
    outcomes = []
    try:
        for _ in range(ParsePool.MAX_BREAKS + 1):
            try:
                fut = pool.submit([row])
            except RuntimeError:
                outcomes.append("given up")
                break
            try:
                await fut
                outcomes.append("ok")
            except BrokenExecutor:  # the job of a pool that could not start
                outcomes.append("broken")
    finally:
        pool.close()
    assert outcomes == ["broken"] * ParsePool.MAX_BREAKS + ["given up"]
    assert pool.breaks == ParsePool.MAX_BREAKS


async def test_a_mail_that_hangs_its_parse_process_is_quarantined(
    tmp_path: Path, sqlite_file_store: Any
) -> None:
    """A message on which a parse process never finishes (a parser in an
    endless loop): the job times out, the processes are replaced, the job's
    rows are parsed again one at a time, and the one that hangs on its own
    goes to quarantine with its raw bytes; the rest are stored, once each."""
    from omnidesk.app import build_adapters
    from omnidesk.intake import Intake
    from omnidesk.pipeline import PipelineContext
    from omnidesk.pipeline_proc import ParsePool
    from omnidesk.rules import load_rules

    dropins = tmp_path / "dropins"
    dropins.mkdir()
    (dropins / "hanging.py").write_text(HANGING_CHANNEL)
    cfg = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'own.db'}",
        daemon={"data_dir": str(tmp_path / "data"), "channels_dir": str(dropins)},
        channels=[{"name": "h", "type": "hanging"}],
    )
    st = sqlite_file_store
    intake = Intake(st)
    adapters, _ = build_adapters(cfg, intake, st)
    rules = load_rules(cfg.rules_dir)
    ctx = PipelineContext(adapters=adapters, rules=lambda: rules)
    payloads = [f"Where is order {i}?".encode() for i in range(6)]
    payloads[3] = b"HANG"
    envs = [Envelope("h", f"m{i}", p, content_type="text/plain") for i, p in enumerate(payloads)]
    assert await intake.accept_many(envs) == [True] * 6
    pool = ParsePool(cfg, 1, wiring=PROCESS_WIRING)
    pids = []
    restart = pool.restart

    def restarted() -> None:
        pids.extend(p.pid for p in (pool._executor._processes or {}).values())
        restart()

    pool.restart = restarted  # type: ignore[method-assign]
    await pool.warm()  # the 2 s timeout measures parsing, not the processes' start
    runner = PipelineRunner(
        st, ctx, batch_size=4, prenormalize=True, parser=pool, parse_timeout=2.0
    )
    try:
        assert await asyncio.wait_for(runner.drain(), 60) == 6
    finally:
        pool.close()
    assert len(pids) == 2, "replaced after the job of six, then after the one alone"
    assert runner.parser is pool and not runner._suspects

    def outcome(db: Any) -> tuple[list[Any], list[Any]]:
        q = db.all(
            "SELECT i.external_id, i.payload, q.error FROM quarantine q"
            " JOIN inbound i ON i.id = q.inbound_id"
        )
        return q, db.all("SELECT external_id FROM messages ORDER BY external_id")

    quarantined, messages = await st.read(outcome)
    assert [(r[0], bytes(r[1])) for r in quarantined] == [("m3", b"HANG")]
    assert "parsing took longer than 2 s" in quarantined[0][2]
    assert [m[0] for m in messages] == ["m0", "m1", "m2", "m4", "m5"]
    for pid in pids:
        await wait_for(lambda pid=pid: _async(process_gone(pid)), 10)


async def test_parse_processes_preview_with_the_writer_s_rules_only(tmp_path: Path) -> None:
    """A parse process does the rules' keyword work for the rules the writer
    names, and none for rules it does not have."""
    from omnidesk.pipeline_proc import ParsePool
    from omnidesk.rules import load_rules
    from omnidesk.store.inbound import InboundRow

    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    writers = load_rules(cfg.rules_dir)
    asked = [writers.fingerprint]
    pool = ParsePool(cfg, 1, lambda: asked[0], wiring=PROCESS_WIRING)
    body = json.dumps(message("p-1", "This is unacceptable, I want a refund")).encode()
    row = InboundRow(1, Envelope("api", "p-1", body), 0, False)
    try:
        [(_, item)] = await pool.submit([row])
        asked[0] = "rules the parse process does not have"
        [(_, unknown)] = await pool.submit([row])
    finally:
        pool.close()
    preview = item.rules_preview
    assert preview is not None and preview.fingerprint == writers.fingerprint
    assert preview.category == Category.COMPLAINT
    assert "refund*" in preview.hit_ids["text"]
    assert unknown.rules_preview is None and unknown.text == item.text


POISON_CHANNEL = '''
"""A test channel whose parser crashes the interpreter on one message."""
import os

from omnidesk.channels.base import ChannelAdapter
from omnidesk.identity import normalize_identity
from omnidesk.model import Message


class PoisonAdapter(ChannelAdapter):
    type = "poison"

    async def start(self) -> None:
        self.set_health(True, "running")

    async def stop(self) -> None:
        pass

    async def send(self, message):
        raise NotImplementedError

    def normalize(self, envelope):
        if envelope.payload == b"POISON":
            os.abort()  # as a crashing C extension would: SIGABRT, no exception
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=normalize_identity("email", envelope.external_id + "@example.com"),
            text=envelope.payload.decode(),
        )
'''

# The same, hanging instead: a parser in an endless loop on one message.
HANGING_CHANNEL = (
    POISON_CHANNEL.replace('"poison"', '"hanging"')
    .replace("POISON", "HANG")
    .replace("os.abort()  # as a crashing C extension would", "while True: pass  #")
)


async def test_a_message_that_kills_the_pipeline_process_is_quarantined(
    tmp_path: Path, store_url: str, daemon_factory: Any
) -> None:
    """A message on which the pipeline process dies of a signal (here
    SIGABRT, as a crash in a C extension): after the second death with it in
    flight the daemon quarantines it, raw bytes kept, and the queue goes on;
    the messages around it are stored once each."""
    dropins = tmp_path / "dropins"
    dropins.mkdir()
    (dropins / "poison.py").write_text(POISON_CHANNEL)
    cfg = make_config(
        tmp_path,
        store_url,
        daemon={"data_dir": str(tmp_path / "data"), "channels_dir": str(dropins)},
        pipeline={"processes": 1, "batch_size": 4},
        channels=[{"name": "p", "type": "poison"}],
    )
    d = await daemon_factory(cfg, web=False)
    procs = d.pipeline_processes
    await procs.wait_ready()
    payloads = [b"Where is order 1?", b"Where is order 2?", b"POISON", b"Where is order 3?"]
    envs = [
        Envelope(channel="p", external_id=f"m{i}", payload=p, content_type="text/plain")
        for i, p in enumerate(payloads)
    ]
    assert await d.intake.accept_many(envs) == [True] * 4

    async def settled() -> bool:
        got = await stored(d)
        return got["pending"] == 0 and got["messages"] == 3

    await wait_for(settled, 60)
    assert procs.restarts == 2 and procs.poisoned == 1

    def quarantined(db: Any) -> list[Any]:
        return db.all(
            "SELECT i.external_id, i.payload, q.error FROM quarantine q"
            " JOIN inbound i ON i.id = q.inbound_id"
        )

    (row,) = await d.store.read(quarantined)
    assert row[0] == "m2" and bytes(row[1]) == b"POISON"
    assert "died (SIGABRT)" in row[2]
    assert (await stored(d))["distinct"] == 3
    assert d.metrics.processed.labels("quarantined")._value.get() == 1
    await procs.wait_ready()  # the third child runs
    assert procs.alive() == 1
