"""Three `omnidesk run` processes on one PostgreSQL database take 10,000
messages from several channels while the owner of the single-consumer
channels is killed with SIGKILL halfway.

Channels: the signed API channel over HTTP, spread across the three
instances (a client whose instance died retries on another, as a webhook
sender would); a single-consumer drop-in channel polling a spool folder; and
an IMAP mailbox on Dovecot (the real adapter, one owner at a time).

Afterwards: every accepted message is stored exactly once, nothing is left
pending or quarantined, every conversation was routed once, one thread is
one conversation, no contact was made twice, round robin stayed strict and
no agent went over the least-loaded cap, and the dead instance's channels
were taken over by a survivor within seconds.
"""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import httpx
import pytest

from tests.conftest import API_SECRET, RULES, free_port, signed, until_done
from tests.email_channels.conftest import Dovecot, dovecot, imap_channel, mail, tls  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DROPINS = Path(__file__).with_name("dropins")
API_MESSAGES = 7000
SPOOL_MESSAGES = 2000
IMAP_MESSAGES = 1000
COMPLAINTS_CAP = 40
TEXTS = [
    "Hello, when will order {n} ship?",
    "Can I change the delivery address for order {n}?",
    "This is unacceptable, I want a refund for order {n}, still waiting after 3 weeks",
    "The product arrived broken and nobody answers my emails. Terrible service.",
    "你好，请问订单{n}什么时候发货？",
    "Love the new app, checkout is much faster now",
]


def toml_value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def write_config(
    path: Path, url: str, port: int, name: str, channels: list[dict[str, Any]]
) -> None:
    teams = [
        {"name": "support", "members": ["alice", "bob"], "strategy": "round_robin",
         "sticky": False, "max_open_per_agent": 100000},
        {"name": "complaints", "members": ["carol", "dave"], "strategy": "least_loaded",
         "sticky": False, "max_open_per_agent": COMPLAINTS_CAP},
        {"name": "china", "members": ["wang", "li"], "strategy": "round_robin"},
        {"name": "billing", "members": ["erin"], "strategy": "least_loaded"},
        {"name": "escalations", "members": ["frank"], "strategy": "least_loaded"},
        {"name": "vip", "members": ["gina"], "strategy": "least_loaded"},
    ]  # fmt: skip
    lines = [
        "[daemon]",
        f"data_dir = {toml_value(str(path.parent / ('data-' + name)))}",
        'log_level = "warning"',
        f"instance_name = {toml_value(name)}",
        f"channels_dir = {toml_value(str(DROPINS))}",
        "[storage]",
        f"url = {toml_value(url)}",
        "pool_size = 6",
        "[web]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "[rules]",
        f"dir = {toml_value(str(RULES))}",
        "watch = false",
        "[pipeline]",
        'default_team = "support"',
        "workers = 2",
        "processes = 0",
        # Its agents never sign in: assignment may not wait for them to be online.
        "[assignment]",
        "only_online = false",
    ]
    for t in teams:
        lines.append("[[teams]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in t.items()]
    for ch in channels:
        lines.append("[[channels]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in ch.items()]
    path.write_text("\n".join(lines) + "\n")


class Instance:
    def __init__(self, cfg: Path, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.alive = True

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.alive = False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def health(client: httpx.AsyncClient, inst: Instance) -> dict[str, Any] | None:
    try:
        r = await client.get(f"{inst.base}/healthz", timeout=5)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def owners(client: httpx.AsyncClient, insts: list[Instance], channel: str) -> list[int]:
    out = []
    for i, inst in enumerate(insts):
        if not inst.alive:
            continue
        h = await health(client, inst)
        if h and h["channels"][channel]["state"] == "running":
            out.append(i)
    return out


def imap_deliver(dv: Dovecot, user: Any, n: int, done: threading.Event) -> None:
    """Like an MTA: many messages into the mailbox while the daemons run."""
    m = imaplib.IMAP4("127.0.0.1", dv.port, timeout=30)
    m.login(user.name, user.password)
    try:
        for i in range(n):
            raw, _ = mail(
                f"Order {i}",
                TEXTS[i % len(TEXTS)].format(n=5000 + i),
                sender=f"Mail Customer {i % 300} <mail{i % 300}@example.org>",
                msgid=f"imap-{i}@example.org",
            )
            typ, data = m.append("INBOX", None, None, raw)
            assert typ == "OK", data
    finally:
        m.logout()
        done.set()


def spool_deliver(folder: Path, n: int, done: threading.Event) -> None:
    for start in range(0, n, 100):
        for i in range(start, min(n, start + 100)):
            body = {
                "from": f"spool{i % 400}@example.net",
                "name": f"Spool {i % 400}",
                "text": TEXTS[i % len(TEXTS)].format(n=9000 + i),
                "thread": f"spool-thread-{i % 250}",
            }
            tmp = folder / f".{i}.tmp"
            tmp.write_text(json.dumps(body))
            tmp.rename(folder / f"sp-{i:05d}.json")  # atomic: never read half-written
        time.sleep(0.05)
    done.set()


async def test_three_instances_one_killed_halfway(
    tmp_path: Path,
    pg_url: str,
    dovecot: Dovecot,  # noqa: F811
) -> None:
    user = dovecot.add_user()
    spool = tmp_path / "spool"
    spool.mkdir()
    channels = [
        {"name": "api", "type": "api", "secret": API_SECRET},
        {"name": "drop", "type": "spool", "folder": str(spool), "interval": 0.05},
        imap_channel(dovecot, user, name="mailbox", idle=True, poll_interval=1.0),
    ]
    ports = [free_port() for _ in range(3)]
    insts = []
    for i, port in enumerate(ports):
        cfg = tmp_path / f"i{i}.toml"
        write_config(cfg, pg_url, port, f"i{i}", channels)
        insts.append(Instance(cfg, port, tmp_path / f"i{i}.log"))
    schema = parse_qs(urlsplit(pg_url).query)["search_path"][0]
    db = await asyncpg.connect(pg_url.split("?")[0], server_settings={"search_path": schema})
    client = httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=64))
    try:
        await _run(tmp_path, insts, client, db, dovecot, user, spool)
    finally:
        await client.aclose()
        await db.close()
        for inst in insts:
            inst.stop()


async def _run(
    tmp_path: Path,
    insts: list[Instance],
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    dv: Dovecot,
    user: Any,
    spool: Path,
) -> None:
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    while not all([await health(client, i) for i in insts]):
        for inst in insts:
            assert inst.proc.poll() is None, inst.log.read_text()[-3000:]
        assert loop.time() - t_start < 30, "instances did not start"
        await asyncio.sleep(0.1)
    while not (await owners(client, insts, "mailbox") and await owners(client, insts, "drop")):
        assert loop.time() - t_start < 30, "no instance took the single-consumer channels"
        await asyncio.sleep(0.1)
    assert len(await owners(client, insts, "mailbox")) == 1
    assert len(await owners(client, insts, "drop")) == 1

    imap_done, spool_done = threading.Event(), threading.Event()
    feeders = [
        threading.Thread(target=imap_deliver, args=(dv, user, IMAP_MESSAGES, imap_done)),
        threading.Thread(target=spool_deliver, args=(spool, SPOOL_MESSAGES, spool_done)),
    ]
    for f in feeders:
        f.start()

    rnd = random.Random(11)
    bodies = []
    for i in range(API_MESSAGES):
        b: dict[str, Any] = {
            "external_id": f"api-{i}",
            "sender": {"address": f"c{rnd.randrange(1500)}@example.com", "kind": "email"},
            "text": TEXTS[rnd.randrange(len(TEXTS))].format(n=1000 + i),
        }
        if i % 3 == 0:  # a third in threads, hit from several instances at once
            b["thread_key"] = f"order-{rnd.randrange(400)}"
        bodies.append(b)
    accepted: set[str] = set()
    queue = list(range(API_MESSAGES))
    killed: dict[str, Any] = {}

    # aiohttp for the load: a third of httpx's CPU per request, and the two
    # cores are shared with three instances, PostgreSQL and Dovecot.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64),
        timeout=aiohttp.ClientTimeout(total=20),
    )

    async def post(i: int) -> None:
        raw, headers = signed(bodies[i])
        for attempt in range(20):
            live = [x for x in insts if x.alive]
            inst = live[(i + attempt) % len(live)]
            try:
                async with session.post(
                    f"{inst.base}/api/v1/inbound/api", data=raw, headers=headers
                ) as r:
                    status, text = r.status, await r.text()
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)  # that instance is gone: the next one
                continue
            if status < 300:
                accepted.add(bodies[i]["external_id"])
                return
            assert status >= 500, text
            await asyncio.sleep(0.05)
        raise AssertionError(f"message {i} was never accepted")

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            await post(i)
            if len(accepted) >= API_MESSAGES // 2 and not killed:
                killed["at"] = loop.time()  # claimed before the first await
                await kill_mailbox_owner()

    async def kill_mailbox_owner() -> None:
        [victim] = await owners(client, insts, "mailbox")
        drop_owner = await owners(client, insts, "drop")
        insts[victim].kill()
        killed.update(victim=victim, drop_too=drop_owner == [victim], at=loop.time())
        # A survivor must run the mailbox (and the spool, if the victim had it) soon.
        while not await owners(client, insts, "mailbox"):
            assert loop.time() - killed["at"] < 15, "the mailbox was not taken over"
            await asyncio.sleep(0.1)
        killed["takeover"] = loop.time() - killed["at"]

    t_load = loop.time()
    try:
        await asyncio.gather(*(worker() for _ in range(48)))
    finally:
        await session.close()
    t_posted = loop.time()
    assert killed, "the kill never happened"
    takeover = killed["takeover"]
    assert takeover < 10, f"takeover took {takeover:.1f} s"
    assert len(await owners(client, insts, "mailbox")) == 1
    assert len(await owners(client, insts, "drop")) == 1

    # Everything flows in and through the pipeline.
    async def count(sql: str, *args: Any) -> int:
        return int(await db.fetchval(sql, *args))

    async def progress() -> tuple[int, int, int]:
        return (
            await count("SELECT COUNT(*) FROM messages WHERE direction = 'in'"),
            await count("SELECT COUNT(*) FROM inbound WHERE state = 'pending'"),
            len(list(spool.glob("*.json"))),
        )

    def finished(state: tuple[int, int, int]) -> bool:
        n, pending, left = state
        return n >= API_MESSAGES + SPOOL_MESSAGES + IMAP_MESSAGES and not pending and not left

    # However long it takes on a loaded machine, as long as it moves.
    state = await until_done(progress, finished, stall=60, every=0.25)
    if not finished(state):
        stored = dict(
            await db.fetch(
                "SELECT channel, COUNT(*) FROM messages WHERE direction = 'in' GROUP BY channel"
            )
        )
        taken = dict(await db.fetch("SELECT channel, COUNT(*) FROM inbound GROUP BY channel"))
        states = dict(await db.fetch("SELECT state, COUNT(*) FROM inbound GROUP BY state"))
        logs = "\n".join(
            line
            for inst in insts
            for line in inst.log.read_text(errors="replace").splitlines()
            if "warning" in line or "error" in line
        )
        raise AssertionError(
            "stuck for 60 s: {} stored, {} pending, {} in spool".format(*state)
            + f"; stored by channel {stored}, taken in {taken}, inbound states {states},"
            + f" killed {killed}; warnings and errors:\n{logs[-6000:]}"
        )
    t_done = loop.time()
    for f in feeders:
        f.join(10)

    # Exactly once, per channel.
    per_channel = {
        r["channel"]: (r["n"], r["distinct_ids"])
        for r in await db.fetch(
            "SELECT channel, COUNT(*) AS n, COUNT(DISTINCT external_id) AS distinct_ids"
            " FROM messages WHERE direction = 'in' GROUP BY channel"
        )
    }
    assert per_channel == {
        "api": (API_MESSAGES, API_MESSAGES),
        "drop": (SPOOL_MESSAGES, SPOOL_MESSAGES),
        "mailbox": (IMAP_MESSAGES, IMAP_MESSAGES),
    }
    api_ids = {
        r[0] for r in await db.fetch("SELECT external_id FROM messages WHERE channel = 'api'")
    }
    assert api_ids == accepted
    states = dict(await db.fetch("SELECT state, COUNT(*) FROM inbound GROUP BY state"))
    assert states == {"done": API_MESSAGES + SPOOL_MESSAGES + IMAP_MESSAGES}, states

    # Routed once each; one conversation per thread; no contact twice.
    assert (
        await count(
            "SELECT COUNT(*) FROM conversations c WHERE (SELECT COUNT(*) FROM audit a"
            " WHERE a.conversation_id = c.id AND a.action = 'routed') <> 1"
        )
        == 0
    )
    assert (
        await count(
            "SELECT COUNT(*) FROM (SELECT channel, thread_key FROM conversations"
            " WHERE thread_key IS NOT NULL GROUP BY channel, thread_key HAVING COUNT(*) > 1) t"
        )
        == 0
    )
    assert (
        await count(
            "SELECT COUNT(*) FROM contacts k WHERE NOT EXISTS"
            " (SELECT 1 FROM identities i WHERE i.contact_id = k.id)"
        )
        == 0
    )
    # Caps and round robin held while three instances assigned at once.
    loads = dict(
        await db.fetch(
            "SELECT assignee, COUNT(*) FROM conversations WHERE team = 'complaints'"
            " AND assignee IS NOT NULL GROUP BY assignee"
        )
    )
    assert loads and max(loads.values()) <= COMPLAINTS_CAP, loads
    support = [
        r[0]
        for r in await db.fetch(
            "SELECT c.assignee FROM conversations c JOIN audit a ON a.conversation_id = c.id"
            " AND a.action = 'routed' WHERE c.team = 'support' ORDER BY a.id"
        )
    ]
    assert len(support) > 100
    assert all(a != b for a, b in itertools.pairwise(support))
    print(
        f"\n{API_MESSAGES + SPOOL_MESSAGES + IMAP_MESSAGES} messages, instance {killed['victim']}"
        f" killed, mailbox taken over in {takeover:.1f} s,"
        f" {await count('SELECT COUNT(*) FROM conversations')} conversations;"
        f" start {t_load - t_start:.1f} s, HTTP posting {t_posted - t_load:.1f} s,"
        f" all stored {t_done - t_load:.1f} s"
    )
