"""Inbox API latency on a big store: 1,000,000 messages across 100,000 contacts.

Measured over HTTP against the running daemon (SQLite), sequential requests,
p50/p99 per endpoint:

* a page of the inbox, most urgent first (``status=open&sort=urgency``), as an
  admin (every team) and as an agent (their teams only);
* a page of everything, newest first;
* the next page (keyset cursor) of the urgent inbox;
* a whole conversation (thread, decision, audit, contact with history);
* a contact's history on every channel (``GET /api/v1/contacts/{id}``);
* the contact's timeline, newest first, first and next page
  (``GET /api/v1/contacts/{id}/timeline``), as the admin and as the agent.

Both callers act as users (an admin and an agent), so every list page also
carries the caller's new/unread markers (``conversation_reads``, filled with
one read in three conversations per user).

Baselines from the same run: the same requests against an empty store (two
contacts, eight messages), and
``GET /api/v1/me`` (authentication and JSON, no query) as the HTTP floor.
Targets: p99 under 50 ms for an inbox page and under 20 ms for a contact's
history and for a page of their timeline.

The big store is filled with direct bulk SQL (a few minutes the first time)
and cached in ``bench/.cache/`` (gitignored); each run works on a copy.

    python bench/bench_inbox.py [--requests 300] [--messages 1000000] [--contacts 100000]
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from benchrows import record
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from omnidesk.app import Daemon
from omnidesk.config import parse_config
from omnidesk.store import open_store
from omnidesk.store.base import migration_files
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
GENERATOR_VERSION = 2  # 2: the scheduler has caught up in the cached store
console = Console(stderr=True)

TEAMS = {
    "support": ["alice", "bob", "amir", "lena"],
    "complaints": ["carol", "omar"],
    "billing": ["dave", "mia"],
    "vip": ["erin"],
    "china": ["wang", "li"],
}
TEXTS = [
    "Hi, when will order {n} ship? Thanks",
    "This is unacceptable, I want a refund for order {n}, still waiting after 3 weeks",
    "Love the new app, checkout is much faster now",
    "你好，请问订单{n}什么时候发货？",
    "Can I change the delivery address for order {n}?",
    "The product arrived broken and nobody answers my emails. Terrible service.",
    "Thanks, that solved it!",
    "We have sent a replacement for order {n}; tracking follows by e-mail.",
]
CHANNELS = ["email", "chat", "api", "telegram"]
PRIORITIES = [("urgent", 3, 0.03), ("high", 2, 0.15), ("normal", 1, 0.6), ("low", 0, 0.22)]
SLA_MIN = {"urgent": 30, "high": 120, "normal": 480, "low": 1440}


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


def cache_key(messages: int, contacts: int) -> str:
    schema = "|".join(f"{v}:{p.read_text()}" for v, _, p in migration_files("sqlite"))
    digest = hashlib.sha256(f"{GENERATOR_VERSION}|{schema}".encode()).hexdigest()[:12]
    return f"inbox-{messages}-{contacts}-{digest}.db"


def fill(path: Path, messages: int, contacts: int) -> None:
    """Bulk SQL straight into a freshly migrated database."""

    async def migrate() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    rnd = random.Random(42)
    now = time.time()
    year = 365 * 86400
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA cache_size = -1000000")
    conn.execute("BEGIN")
    n_convs = messages // 4
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("contacts", total=contacts)
        batch: list[Any] = []
        ident: list[Any] = []
        for i in range(1, contacts + 1):
            created = now - rnd.random() * year
            attrs = '{"tier":"gold"}' if rnd.random() < 0.05 else "{}"
            batch.append((i, f"Customer {i}", attrs, created, created))
            ident.append((i, "email", f"c{i}@example.com", f"Customer {i}", created))
            if rnd.random() < 0.3:
                ident.append((i, "phone", f"+1555{i:07d}", None, created))
            if len(batch) >= 20000:
                _flush_contacts(conn, batch, ident)
                progress.advance(task, len(batch))
                batch, ident = [], []
        _flush_contacts(conn, batch, ident)
        task = progress.add_task("conversations and messages", total=messages)
        mid = 0
        convs: list[Any] = []
        msgs: list[Any] = []
        for cid in range(1, n_convs + 1):
            contact = rnd.randrange(1, contacts + 1)
            channel = rnd.choice(CHANNELS)
            created = now - rnd.random() * year
            status = rnd.choices(
                ["resolved", "open", "pending", "snoozed"], [0.8, 0.12, 0.05, 0.03]
            )[0]
            pname, prank, _ = rnd.choices(PRIORITIES, [p[2] for p in PRIORITIES])[0]
            category = rnd.choices(["inquiry", "complaint", "feedback"], [0.6, 0.25, 0.15])[0]
            team = rnd.choice(list(TEAMS))
            assignee = None if rnd.random() < 0.25 else rnd.choice(TEAMS[team])
            count = max(1, min(7, int(rnd.expovariate(1 / 4)) + 1))
            last = created
            first_response = None
            for k in range(count):
                mid += 1
                direction = "in" if k % 2 == 0 else "out"
                at = created + k * rnd.randrange(60, 7200)
                last = at
                if direction == "out" and first_response is None:
                    first_response = at
                text = rnd.choice(TEXTS).format(n=rnd.randrange(100000))
                msgs.append(
                    (
                        mid,
                        cid,
                        direction,
                        channel,
                        f"m{mid}" if direction == "in" else None,
                        "email" if direction == "in" else None,
                        f"c{contact}@example.com" if direction == "in" else None,
                        None if direction == "in" else assignee or "system",
                        text,
                        at,
                        None if direction == "in" else "delivered",
                    )
                )
            waiting = status == "open" and first_response is None
            sla = created + SLA_MIN[pname] * 60 if waiting else None
            decision = json.dumps(
                {
                    "category": category,
                    "confidence": 0.8,
                    "priority": pname,
                    "team": team,
                    "rule": "classifier",
                    "explanation": ["bench"],
                }
            )
            convs.append(
                (
                    cid,
                    contact,
                    channel,
                    status,
                    category,
                    round(rnd.random(), 3),
                    pname,
                    prank,
                    team,
                    assignee,
                    "[]",
                    decision,
                    now + 86400 if status == "snoozed" else None,
                    sla,
                    created,
                    last,
                    last,
                    created,
                    first_response,
                    last if status == "resolved" else None,
                    count,
                    msgs[-1][8][:200],
                )
            )
            if len(msgs) >= 50000:
                _flush(conn, convs, msgs)
                progress.advance(task, len(msgs))
                convs, msgs = [], []
            if mid >= messages:
                break
        _flush(conn, convs, msgs)
        progress.advance(task, len(msgs))
    conn.execute("COMMIT")
    console.print("analyze...")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()

    async def index() -> None:
        # The store brings the search index up to date when a write commits
        # (store/sqlite.py): one empty write indexes everything filled above.
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.write(lambda db: None)
        await store.close()

    console.print("search index...")
    asyncio.run(index())
    asyncio.run(catch_up(path))


async def catch_up(path: Path) -> None:
    """Let the scheduler evaluate every open conversation once, as a daemon
    does in its first passes after an upgrade (at most a few thousand a pass):
    measured, a store that is live, not one whose scheduler is still going
    through 100,000 conversations at the same time (that costs minutes of CPU
    once, then never again)."""
    from omnidesk.rules import load_rules
    from omnidesk.service.scheduler import Scheduler

    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        ruleset = load_rules(REPO / "rules")
        sched = Scheduler(store, lambda: ruleset)
        await sched.prepare()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("scheduler's first passes", total=None)
            for _ in range(10_000):  # a bound, not a figure: ~30 passes at 100,000
                res = await sched.tick(sweep=True)
                progress.advance(task, res.looked)
                if not sched.behind:
                    break
    finally:
        await store.close()


def _flush_contacts(conn: sqlite3.Connection, contacts: list[Any], idents: list[Any]) -> None:
    conn.executemany(
        "INSERT INTO contacts (id, name, attributes, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        contacts,
    )
    conn.executemany(
        "INSERT INTO identities (contact_id, kind, address, display_name, data, created_at)"
        " VALUES (?, ?, ?, ?, '{}', ?)",
        idents,
    )


def _flush(conn: sqlite3.Connection, convs: list[Any], msgs: list[Any]) -> None:
    conn.executemany(
        "INSERT INTO conversations (id, contact_id, channel, status, category, confidence,"
        " priority, priority_rank, team, assignee, tags, decision, snoozed_until, sla_due_at,"
        " created_at, updated_at, last_message_at, last_inbound_at, first_response_at,"
        " resolved_at, message_count, last_preview)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        convs,
    )
    conn.executemany(
        "INSERT INTO messages (id, conversation_id, direction, kind, channel, external_id,"
        " sender_kind, sender_address, author, text, created_at, delivery_state)"
        " VALUES (?, ?, ?, 'message', ?, ?, ?, ?, ?, ?, ?, ?)",
        msgs,
    )


async def timed(fn: Callable[[], Awaitable[httpx.Response]], n: int) -> list[float]:
    for _ in range(5):  # warm caches and connections
        (await fn()).raise_for_status()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await fn()
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def seed_reads(path: Path, users: tuple[str, ...] = ("alice", "root")) -> None:
    """Every user has read one conversation in three (the list's new/unread
    markers are then a mix, and the reads table is big). Written before the
    daemon opens the copy, and checkpointed, so the measured reads do not
    wade through a fresh write-ahead log."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for user in users:
                conn.execute(
                    "INSERT OR IGNORE INTO conversation_reads (username, conversation_id, read_at)"
                    " SELECT ?, id, COALESCE(last_message_at, created_at) FROM conversations"
                    " WHERE id % 3 = 0",
                    (user,),
                )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def measure(db: Path, n: int) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    try:
        daemon = Daemon(config(tmp, db))
        await daemon.start()
        try:
            await daemon.store.write(
                create_user, "alice", role="agent", password_hash=None, teams=["support"]
            )
            # Both callers are users, so every list page carries their unread
            # state (their reads were seeded before the daemon started).
            await daemon.store.write(create_user, "root", role="admin", password_hash=None)
            admin = await daemon.store.write(create_token, "admin", username="root")
            agent = await daemon.store.write(create_token, "agent", username="alice")

            def pick(db_: Any) -> tuple[int | None, int | None]:
                conv = db_.val(
                    "SELECT id FROM conversations ORDER BY status = 'open' DESC,"
                    " message_count DESC, id LIMIT 1"
                )
                contact = db_.val(
                    "SELECT contact_id FROM conversations GROUP BY contact_id"
                    " ORDER BY COUNT(*) DESC LIMIT 1"
                )
                return conv, contact

            conv_id, contact_id = await daemon.store.read(pick)
            base = f"http://127.0.0.1:{daemon.web_port}"
            h_admin = {"Authorization": f"Bearer {admin}"}
            h_agent = {"Authorization": f"Bearer {agent}"}
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                urgent = "/api/v1/conversations?status=open&sort=urgency&limit=50"
                first = (await c.get(urgent, headers=h_admin)).json()
                cursor = first.get("next_cursor")
                results: dict[str, list[float]] = {}
                results["HTTP floor: GET /me"] = await timed(
                    lambda: c.get("/api/v1/me", headers=h_admin), n
                )
                results["inbox page, urgent first (admin)"] = await timed(
                    lambda: c.get(urgent, headers=h_admin), n
                )
                results["inbox page, urgent first (agent)"] = await timed(
                    lambda: c.get(urgent, headers=h_agent), n
                )
                if cursor:
                    results["inbox next page (cursor)"] = await timed(
                        lambda: c.get(urgent + f"&cursor={cursor}", headers=h_admin), n
                    )
                results["all conversations, newest first"] = await timed(
                    lambda: c.get("/api/v1/conversations?limit=50", headers=h_admin), n
                )
                if conv_id is not None:
                    results["one conversation (thread+contact)"] = await timed(
                        lambda: c.get(f"/api/v1/conversations/{conv_id}", headers=h_admin), n
                    )
                if contact_id is not None:
                    results["contact history"] = await timed(
                        lambda: c.get(f"/api/v1/contacts/{contact_id}", headers=h_admin), n
                    )
                    line = f"/api/v1/contacts/{contact_id}/timeline"
                    results["contact timeline, first page (admin)"] = await timed(
                        lambda: c.get(line, headers=h_admin), n
                    )
                    if (await c.get(line, headers=h_agent)).status_code == 200:
                        results["contact timeline, first page (agent)"] = await timed(
                            lambda: c.get(line, headers=h_agent), n
                        )
                    page = (await c.get(line, headers=h_admin)).json()
                    if page.get("next"):
                        results["contact timeline, next page"] = await timed(
                            lambda: c.get(line, params={"before": page["next"]}, headers=h_admin),
                            n,
                        )
            return results
        finally:
            await daemon.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--contacts", type=int, default=100_000)
    args = ap.parse_args()

    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / cache_key(args.messages, args.contacts)
    if not cached.exists():
        console.print(
            f"filling {cached.name}: {args.messages:,} messages, {args.contacts:,} contacts"
        )
        t0 = time.perf_counter()
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        fill(partial, args.messages, args.contacts)
        partial.rename(cached)
        console.print(f"filled in {time.perf_counter() - t0:.0f} s (cached for later runs)")
    work = Path(tempfile.mkdtemp(prefix="bench-inbox-db-"))
    try:
        big_db = work / "big.db"
        shutil.copyfile(cached, big_db)
        empty_db = work / "empty.db"
        fill(empty_db, 8, 2)  # one of each thing to fetch, nothing to wade through
        seed_reads(big_db)
        seed_reads(empty_db)
        console.print("measuring the empty store...")
        empty = asyncio.run(measure(empty_db, args.requests))
        console.print("measuring the big store...")
        big = asyncio.run(measure(big_db, args.requests))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(
        title=f"inbox API latency, SQLite, {args.messages:,} messages / {args.contacts:,} contacts"
        f" ({args.requests} sequential requests each)"
    )
    for col in (
        "request",
        "empty p50",
        "empty p99",
        "big p50",
        "big p99",
        "p99 big/empty",
        "target p99",
    ):
        table.add_column(col, justify="right" if col != "request" else "left")
    targets = {"inbox page": 50.0, "contact history": 20.0, "contact timeline": 20.0}
    for name, values in big.items():
        base = empty.get(name)
        target = next((v for k, v in targets.items() if name.startswith(k)), None)
        p99 = pct(values, 99)
        ok = "" if target is None else (f"{target:.0f} ms " + ("ok" if p99 < target else "MISSED"))
        table.add_row(
            name,
            f"{pct(base, 50):.1f} ms" if base else "-",
            f"{pct(base, 99):.1f} ms" if base else "-",
            f"{statistics.median(values):.1f} ms",
            f"{p99:.1f} ms",
            f"{p99 / pct(base, 99):.2f}x" if base else "-",
            ok,
        )
        record(
            "inbox",
            f"{name}, p99, {args.messages:,} messages",
            p99,
            "ms",
            baseline="the same request on an empty store, p99",
            baseline_value=pct(base, 99) if base else None,
            ratio=p99 / pct(base, 99) if base else None,
            ratio_means="latency / baseline latency",
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
