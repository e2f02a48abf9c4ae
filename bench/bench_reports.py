"""Reports and the scheduler on a big SQLite store: 1,000,000 conversations,
5,000,000 messages, 100,000 of the conversations open, a year of history.

Measured:

* **every report over HTTP** (``GET /api/v1/reports/{name}``, as a supervisor),
  sequential requests, p50/p99, for the default period (the last 30 days) and
  for a whole year. Target: p99 under 300 ms.
* **the scheduler** (``Scheduler.tick``), CPU seconds (``time.process_time``):
  the tick that runs every few seconds over the 100,000 open conversations
  with nothing due (a sweep for changes plus the due query; target under 1 s),
  the same with 1,000 conversations changed, and the first ticks after an
  upgrade, which evaluate every open conversation (at most 4,000 a tick: the
  longest tick and their sum).
* ``omnidesk reports rebuild`` over the whole store (one transaction).

Baselines from the same run: the same report requests on an empty store (the
floor of HTTP, authentication and JSON); the figures of the yearly volume and
first-response reports computed straight from the conversations table, as a
report without the daily figures would (in process, no HTTP); and a bare scan
of the open conversations' ids and update times (the floor of any sweep).

The big store is filled with bulk SQL (several minutes the first time; the
search index is left out: reports do not use it) and cached in
``bench/.cache/`` (gitignored); each run works on a copy.

    python bench/bench_reports.py [--requests 100] [--conversations 1000000]
        [--messages 5000000] [--open 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_inbox import pct, timed  # the same request timing as the inbox bench
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from omnidesk.app import Daemon
from omnidesk.config import parse_config
from omnidesk.rules import load_rules
from omnidesk.service.clock import ManualClock
from omnidesk.service.evaluate import Settings
from omnidesk.service.rebuild import rebuild
from omnidesk.service.reports import REPORTS
from omnidesk.service.scheduler import Scheduler
from omnidesk.store import open_store
from omnidesk.store.base import migration_files
from omnidesk.store.tokens import create_token

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
GENERATOR_VERSION = 2
console = Console(stderr=True)

TEAMS = {
    "support": ["alice", "bob", "amir", "lena", "tom", "ivy"],
    "complaints": ["carol", "omar", "sara"],
    "billing": ["dave", "mia"],
    "vip": ["erin"],
    "china": ["wang", "li"],
}
CHANNELS = ["email", "chat", "api", "telegram", "whatsapp"]
TEXTS = [
    "Hi, when will order {n} ship?",
    "This is unacceptable, I want a refund for order {n}",
    "Love the new app, checkout is much faster now",
    "Can I change the delivery address for order {n}?",
    "Thanks, that solved it!",
    "We have sent a replacement for order {n}.",
]
PRIORITIES = [("urgent", 3, 0.03), ("high", 2, 0.15), ("normal", 1, 0.6), ("low", 0, 0.22)]


def config(tmp: Path, db: Path) -> Any:
    return parse_config(
        {
            "daemon": {"data_dir": str(tmp / "data"), "log_level": "error"},
            "storage": {"url": f"sqlite:///{db}"},
            "web": {"host": "127.0.0.1", "port": 0},
            "rules": {"dir": str(REPO / "rules"), "watch": False},
            "pipeline": {"default_team": "support", "workers": 0},
            "teams": [{"name": n, "members": m} for n, m in TEAMS.items()],
            "channels": [{"name": c, "type": "api", "secret": "x" * 20} for c in CHANNELS],
        },
        base_dir=tmp,
    )


def cache_key(convs: int, messages: int, open_: int) -> str:
    schema = "|".join(f"{v}:{p.read_text()}" for v, _, p in migration_files("sqlite"))
    digest = hashlib.sha256(f"{GENERATOR_VERSION}|{schema}".encode()).hexdigest()[:12]
    return f"reports-{convs}-{messages}-{open_}-{digest}.db"


def fill(path: Path, n_convs: int, n_messages: int, n_open: int) -> None:
    """Bulk SQL straight into a freshly migrated database."""

    async def migrate() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    rnd = random.Random(7)
    now = time.time()
    year = 365 * 86400
    n_contacts = max(1, n_convs // 5)
    # Messages per conversation: 1 to 12, exactly n_messages in all.
    per_conv = max(1, n_messages // n_convs)
    counts = [
        max(1, min(12, per_conv + rnd.randint(-per_conv + 1, per_conv - 1))) for _ in range(n_convs)
    ]
    diff = n_messages - sum(counts)
    while diff:
        i = rnd.randrange(n_convs)
        step = 1 if diff > 0 else -1
        if 1 <= counts[i] + step <= 12:
            counts[i] += step
            diff -= step
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA cache_size = -1000000")
    conn.execute("BEGIN")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("contacts", total=n_contacts)
        rows = []
        for i in range(1, n_contacts + 1):
            created = now - rnd.random() * year
            attrs = '{"tier":"gold"}' if rnd.random() < 0.05 else "{}"
            rows.append((i, f"Customer {i}", attrs, created, created))
            if len(rows) >= 50000:
                conn.executemany(
                    "INSERT INTO contacts (id, name, attributes, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                progress.advance(task, len(rows))
                rows = []
        conn.executemany(
            "INSERT INTO contacts (id, name, attributes, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        task = progress.add_task("conversations, messages, surveys", total=n_convs)
        # The open ones are the newest: a backlog is what came in lately.
        open_from = n_convs - n_open
        mid = 0
        convs: list[Any] = []
        msgs: list[Any] = []
        surveys: list[Any] = []
        for cid in range(1, n_convs + 1):
            created = now - year + year * (cid / n_convs) - rnd.random() * 3600
            if cid > open_from:
                status = rnd.choices(["open", "pending", "snoozed"], [0.8, 0.15, 0.05])[0]
            else:
                status = "resolved"
            pname, prank, _ = rnd.choices(PRIORITIES, [p[2] for p in PRIORITIES])[0]
            category = rnd.choices(["inquiry", "complaint", "feedback"], [0.6, 0.25, 0.15])[0]
            team = rnd.choice(list(TEAMS))
            assignee = rnd.choice(TEAMS[team]) if rnd.random() < 0.9 else None
            channel = rnd.choice(CHANNELS)
            contact = rnd.randrange(1, n_contacts + 1)
            count = counts[cid - 1]
            at = created
            first = last_reply = last_customer = awaiting = None
            for k in range(count):
                mid += 1
                direction = "in" if k % 2 == 0 else "out"
                if k:
                    at += rnd.expovariate(1 / 7200)
                if direction == "out":
                    first = first or at
                    last_reply, awaiting = at, None
                else:
                    last_customer = at
                    awaiting = awaiting or at
                msgs.append(
                    (
                        mid,
                        cid,
                        direction,
                        channel,
                        f"m{mid:09d}" if direction == "in" else None,
                        "email" if direction == "in" else None,
                        f"c{contact}@example.com" if direction == "in" else None,
                        None if direction == "in" else assignee or "system",
                        TEXTS[rnd.randrange(len(TEXTS))].format(n=rnd.randrange(100000)),
                        at,
                        None if direction == "in" else "delivered",
                    )
                )
            resolved = at + rnd.expovariate(1 / 36000) if status == "resolved" else None
            convs.append(
                (
                    cid,
                    contact,
                    channel,
                    status,
                    category,
                    pname,
                    prank,
                    team,
                    assignee,
                    created,
                    resolved or at,
                    at,
                    last_customer,
                    first,
                    resolved,
                    count,
                    last_customer,
                    awaiting if status != "resolved" else None,
                    last_reply,
                    resolved or created,
                )
            )
            if resolved is not None and rnd.random() < 0.15:
                sent = resolved + 60
                answered = sent + rnd.random() * 86400 if rnd.random() < 0.4 else None
                rating = rnd.choices([1, 2, 3, 4, 5], [1, 1, 2, 4, 5])[0] if answered else None
                loyal = rnd.randrange(0, 11) if answered else None
                surveys.append(
                    (
                        cid,
                        contact,
                        channel,
                        resolved,
                        "answered" if answered else "sent",
                        5,
                        1,
                        sent,
                        sent,
                        sent + 28 * 86400,
                        rating,
                        loyal,
                        answered,
                        team,
                        assignee,
                        category,
                        resolved,
                    )
                )
            if len(msgs) >= 100000:
                _flush(conn, convs, msgs, surveys)
                progress.advance(task, len(convs))
                convs, msgs, surveys = [], [], []
        _flush(conn, convs, msgs, surveys)
        progress.advance(task, len(convs))
    # Reports do not search: the search index stays out of the bench's store.
    conn.execute("DELETE FROM messages_fts_pending")
    conn.execute("COMMIT")
    console.print(f"{mid:,} messages; analyze...")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _flush(conn: sqlite3.Connection, convs: list[Any], msgs: list[Any], surveys: list[Any]) -> None:
    conn.executemany(
        "INSERT INTO conversations (id, contact_id, channel, status, category, priority,"
        " priority_rank, team, assignee, created_at, updated_at, last_message_at,"
        " last_inbound_at, first_response_at, resolved_at, message_count, last_customer_at,"
        " awaiting_since, last_reply_at, status_at, tags)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]')",
        convs,
    )
    conn.executemany(
        "INSERT INTO messages (id, conversation_id, direction, kind, channel, external_id,"
        " sender_kind, sender_address, author, text, created_at, delivery_state)"
        " VALUES (?, ?, ?, 'message', ?, ?, ?, ?, ?, ?, ?, ?)",
        msgs,
    )
    conn.executemany(
        "INSERT INTO surveys (conversation_id, contact_id, channel, resolved_at, state, scale,"
        " ask_loyalty, send_at, sent_at, expires_at, rating, loyalty_score, answered_at, team,"
        " agent, category, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        surveys,
    )


async def http_reports(db: Path, n: int) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        daemon = Daemon(config(tmp, db))
        await daemon.start()
        daemon.scheduler.interval = 3600.0  # no ticks in the middle of the measurement
        try:
            token = await daemon.store.write(create_token, "supervisor", name="bench")
            tz = daemon.rules.current.service.default_calendar.tz
            today = datetime.now(UTC).astimezone(tz).date()
            year_ago = (today - timedelta(days=364)).isoformat()
            out: dict[str, list[float]] = {}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.web_port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
            ) as c:
                for name in REPORTS:
                    out[f"{name} (30 days)"] = await timed(
                        lambda name=name: c.get(f"/api/v1/reports/{name}"), n
                    )
                    out[f"{name} (a year)"] = await timed(
                        lambda name=name: c.get(f"/api/v1/reports/{name}?from={year_ago}"), n
                    )
            return out
        finally:
            await daemon.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def naive(db: Path) -> dict[str, float]:
    """The yearly volume and median first response straight from the
    conversations table (the floor of a report without daily figures): ms."""
    conn = sqlite3.connect(db)
    now = time.time()
    out = {}
    t0 = time.perf_counter()
    conn.execute(
        "SELECT date(created_at, 'unixepoch') AS d, channel, COUNT(*) FROM conversations"
        " WHERE created_at >= ? GROUP BY d, channel",
        (now - 365 * 86400,),
    ).fetchall()
    out["volume, a year, from the conversations"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    waits = [
        r[0]
        for r in conn.execute(
            "SELECT first_response_at - created_at FROM conversations WHERE created_at >= ?"
            " AND first_response_at IS NOT NULL",
            (now - 365 * 86400,),
        )
    ]
    statistics.median(waits)
    statistics.quantiles(waits, n=10)
    out["median first response, a year, from the conversations (calendar time)"] = (
        time.perf_counter() - t0
    ) * 1000
    conn.close()
    return out


async def scheduler_ticks(db: Path) -> dict[str, float]:
    """CPU seconds of scheduler ticks over the open conversations."""
    store = open_store(f"sqlite:///{db}")
    await store.open()
    try:
        ruleset = load_rules(REPO / "rules")
        sched = Scheduler(store, lambda: ruleset, clock=ManualClock(), settings=Settings())
        await sched.prepare()
        out: dict[str, float] = {}
        t0 = time.process_time()
        await store.read(
            lambda db_: db_.all(
                "SELECT id, updated_at FROM conversations"
                " WHERE status IN ('open', 'pending', 'snoozed')"
            )
        )
        out["baseline: scan the open conversations' ids and update times"] = (
            time.process_time() - t0
        )
        # After an upgrade every open conversation is evaluated once, in
        # passes of at most TICK_LIMIT (each under a second of CPU).
        passes: list[float] = []
        looked = 0
        with console.status("first ticks: every open conversation evaluated..."):
            while not passes or sched.behind:
                res = await sched.tick(sweep=True if not passes else None)
                passes.append(res.seconds)
                looked += res.looked
        out[f"first ticks after an upgrade: the longest of {len(passes)}"] = max(passes)
        out[f"first ticks after an upgrade: all {looked:,} evaluated"] = sum(passes)
        steady = []
        for _ in range(5):
            steady.append((await sched.tick(sweep=True)).seconds)
        out["tick with a sweep, nothing changed or due (median of 5)"] = statistics.median(steady)
        quiet = []
        for _ in range(5):
            quiet.append((await sched.tick(sweep=False)).seconds)
        out["tick between sweeps, nothing due (median of 5)"] = statistics.median(quiet)
        ids = await store.read(
            lambda db_: [
                int(r["id"])
                for r in db_.all(
                    "SELECT id FROM conversations WHERE status = 'open' ORDER BY id DESC LIMIT 1000"
                )
            ]
        )
        await store.write(
            lambda db_: db_.many(
                "UPDATE conversations SET updated_at = updated_at + 1 WHERE id = ?",
                [(i,) for i in ids],
            )
        )
        changed = await sched.tick(sweep=True)
        out[f"tick with a sweep, {changed.looked:,} changed"] = changed.seconds
        return out
    finally:
        await store.close()


async def rebuild_once(db: Path) -> tuple[float, Any]:
    store = open_store(f"sqlite:///{db}")
    await store.open()
    try:
        ruleset = load_rules(REPO / "rules")
        total = await store.read(lambda db_: int(db_.val("SELECT COUNT(*) FROM conversations")))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reports rebuild", total=total)
            loop = asyncio.get_running_loop()

            def advance(_what: str, n: int) -> None:
                loop.call_soon_threadsafe(progress.advance, task, n)

            t0 = time.perf_counter()
            tally = await store.write(rebuild, ruleset, time.time(), progress=advance)
            return time.perf_counter() - t0, tally
    finally:
        await store.close()


def empty_store(tmp: Path) -> Path:
    db = tmp / "empty.db"

    async def go() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        await store.close()

    asyncio.run(go())
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--conversations", type=int, default=1_000_000)
    ap.add_argument("--messages", type=int, default=5_000_000)
    ap.add_argument("--open", type=int, default=100_000)
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / cache_key(args.conversations, args.messages, args.open)
    if not cached.exists():
        console.print(f"filling {cached.name} (once; cached)...")
        t0 = time.perf_counter()
        part = cached.with_suffix(".part")
        part.unlink(missing_ok=True)
        fill(part, args.conversations, args.messages, args.open)
        part.rename(cached)
        console.print(f"filled in {time.perf_counter() - t0:.0f} s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        db = tmp / "big.db"
        console.print("copying the store...")
        shutil.copy(cached, db)
        for suffix in ("-wal", "-shm"):
            if Path(str(cached) + suffix).exists():
                shutil.copy(Path(str(cached) + suffix), Path(str(db) + suffix))
        seconds, tally = asyncio.run(rebuild_once(db))
        ticks = asyncio.run(scheduler_ticks(db))
        big = asyncio.run(http_reports(db, args.requests))
        small = asyncio.run(http_reports(empty_store(tmp), args.requests))
        floors = naive(db)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    t = Table(title=f"reports over HTTP, {args.requests} sequential requests each (ms)")
    for col in ("report", "p50", "p99", "empty store p50", "empty store p99", "p99 < 300"):
        t.add_column(col, justify="right" if col != "report" else "left")
    for name, values in big.items():
        e = small[name]
        t.add_row(
            name,
            f"{pct(values, 50):.1f}",
            f"{pct(values, 99):.1f}",
            f"{pct(e, 50):.1f}",
            f"{pct(e, 99):.1f}",
            "yes" if pct(values, 99) < 300 else "NO",
        )
    console.print(t)
    b = Table(title="baseline: computed from the conversations table, in process (ms)")
    b.add_column("what")
    b.add_column("ms", justify="right")
    for k, v in floors.items():
        b.add_row(k, f"{v:.0f}")
    console.print(b)
    s = Table(title=f"scheduler over {args.open:,} open conversations (CPU seconds)")
    s.add_column("tick")
    s.add_column("CPU s", justify="right")
    for k, v in ticks.items():
        s.add_row(k, f"{v:.3f}")
    console.print(s)
    console.print(
        f"reports rebuild: {tally.conversations:,} conversations, {tally.messages:,} messages,"
        f" {tally.surveys:,} surveys -> {len(tally.rows):,} rows in {seconds:.0f} s"
    )
    print(
        json.dumps(
            {
                "http_ms": {k: [pct(v, 50), pct(v, 99)] for k, v in big.items()},
                "empty_ms": {k: [pct(v, 50), pct(v, 99)] for k, v in small.items()},
                "naive_ms": floors,
                "scheduler_cpu_s": ticks,
                "rebuild_s": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
