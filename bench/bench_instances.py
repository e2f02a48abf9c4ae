"""Throughput of one, two and three `omnidesk run` instances on one PostgreSQL
database, beside the SQLite figure, measured in the same run.

For each setup, fresh store, real processes:

* **pipeline**: the instances are up and idle; N envelopes are written to the
  queue at once; messages/s = N / (last processed_at - first processed_at).
* **end to end**: N signed API messages are POSTed over HTTP, spread across
  the instances (64 in flight); messages/s = N / (first POST -> last stored).

CPU seconds per 1,000 messages are read from /proc for the instances, the
PostgreSQL server processes and this (load-generating) process, to show where
the machine's time goes. Then one instance's pipeline is taken apart in
process (one worker, nothing else running): time waiting for statements
versus time in normalization, rules and the rest of the Python.

    python bench/bench_instances.py [--messages 4000] [--pg postgresql://...]

The PostgreSQL server must be reachable (default: OMNIDESK_TEST_PG or
postgresql://postgres@127.0.0.1:5432/test); each setup gets its own schema,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from benchrows import record
from rich.console import Console
from rich.table import Table

from omnidesk.channels.api import SIGNATURE_HEADER, sign
from omnidesk.model import Envelope

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789"
PG = os.environ.get("OMNIDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")
TEXTS = [
    "Hi, when will order {n} ship? Thanks",
    "This is unacceptable, I want a refund for order {n}, still waiting after 3 weeks",
    "Love the new app, checkout is much faster now",
    "你好，请问订单{n}什么时候发货？",
    "送餐太慢了，饭菜都凉了，服务态度很差，我要投诉",
    "Can I change the delivery address for order {n}?",
    "The product arrived broken and nobody answers my emails. Terrible service.",
]


def bodies(n: int, tag: str) -> list[bytes]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        b: dict[str, Any] = {
            "external_id": f"{tag}-{i}",
            "sender": {"address": f"customer{rnd.randrange(n // 3 + 1)}@example.com"},
            "text": rnd.choice(TEXTS).format(n=1000 + i),
            "subject": f"Order {1000 + i}",
        }
        if i % 2:
            b["thread_key"] = f"order-{rnd.randrange(n // 4 + 1)}"
        out.append(json.dumps(b, ensure_ascii=False).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def postgres_cpu() -> float:
    """CPU of every PostgreSQL server process (backends come and go: the
    difference of two readings undercounts those that exited in between)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(d.name))
            except OSError:
                continue
    return total


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@asynccontextmanager
async def pg_schema(url: str) -> Any:
    admin = await asyncpg.connect(url)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}search_path={name}"
    finally:
        await admin.execute(f'DROP SCHEMA "{name}" CASCADE')
        await admin.close()


def config_text(url: str, port: int, tmp: Path, name: str) -> str:
    return "\n".join(
        [
            "[daemon]",
            f"data_dir = {json.dumps(str(tmp / ('data-' + name)))}",
            'log_level = "error"',
            f'instance_name = "{name}"',
            "[storage]",
            f"url = {json.dumps(url)}",
            "[web]",
            'host = "127.0.0.1"',
            f"port = {port}",
            "[rules]",
            f"dir = {json.dumps(str(REPO / 'rules'))}",
            "watch = false",
            "[pipeline]",
            'default_team = "support"',
            "workers = 2",
            "processes = 0",
            "[[teams]]",
            'name = "support"',
            'members = ["a", "b", "c"]',
            "max_open_per_agent = 1000000",
            "[[channels]]",
            'name = "api"',
            'type = "api"',
            f'secret = "{SECRET}"',
        ]
    )


@contextmanager
def instances(url: str, k: int, tmp: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    procs = []
    try:
        for i in range(k):
            port = free_port()
            cfg = tmp / f"i{i}.toml"
            cfg.write_text(config_text(url, port, tmp, f"i{i}"))
            p = subprocess.Popen(
                [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=(tmp / f"i{i}.log").open("ab"),
            )
            procs.append((p, port))
        yield procs
    finally:
        for p, _ in procs:
            p.terminate()
        for p, _ in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def wait_up(client: httpx.AsyncClient, procs: list[tuple[Any, int]]) -> None:
    deadline = time.monotonic() + 60
    for p, port in procs:
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"instance on port {port} exited ({p.returncode})")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("instances did not start")
            await asyncio.sleep(0.1)


async def db_conn(url: str) -> Any:
    """(query function, close) for either engine, from this process."""
    from omnidesk.store import open_store

    store = open_store(url, pool_size=2)
    await store.open()
    return store


async def run_setup(url: str, k: int, n: int) -> dict[str, float]:
    from omnidesk.store.inbound import insert_envelopes

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d, instances(url, k, Path(d)) as procs:
        async with httpx.AsyncClient(timeout=30) as client:
            await wait_up(client, procs)
            store = await db_conn(url)
            try:
                # -- pipeline only --------------------------------------------
                envs = [
                    Envelope("api", json.loads(b)["external_id"], b, "application/json")
                    for b in bodies(n, "p")
                ]
                cpu0 = [cpu_seconds(p.pid) for p, _ in procs]
                pg0 = postgres_cpu()
                for i in range(0, n, 1000):
                    await store.write(insert_envelopes, envs[i : i + 1000])
                await wait_done(store, n, "p-%")
                first, last = await store.read(
                    lambda db: tuple(
                        db.one(
                            "SELECT MIN(processed_at), MAX(processed_at) FROM inbound"
                            " WHERE external_id LIKE 'p-%'"
                        )
                    )
                )
                out["pipeline"] = n / max(1e-6, last - first)
                out["cpu_instances_pipeline"] = sum(
                    cpu_seconds(p.pid) - c for (p, _), c in zip(procs, cpu0, strict=True)
                )
                out["cpu_pg_pipeline"] = postgres_cpu() - pg0

                # -- end to end over HTTP ------------------------------------
                msgs = bodies(n, "h")
                cpu0 = [cpu_seconds(p.pid) for p, _ in procs]
                pg0, me0 = postgres_cpu(), self_cpu()
                t0 = time.perf_counter()
                await post_all(msgs, [port for _, port in procs])
                await wait_done(store, n, "h-%")
                out["e2e"] = n / (time.perf_counter() - t0)
                out["cpu_instances_e2e"] = sum(
                    cpu_seconds(p.pid) - c for (p, _), c in zip(procs, cpu0, strict=True)
                )
                out["cpu_pg_e2e"] = postgres_cpu() - pg0
                out["cpu_client_e2e"] = self_cpu() - me0
            finally:
                await store.close()
    return out


async def wait_done(store: Any, n: int, pattern: str) -> None:
    def done(db: Any) -> int:
        return int(
            db.val(
                "SELECT COUNT(*) FROM inbound WHERE state <> 'pending' AND external_id LIKE ?",
                (pattern,),
            )
        )

    deadline = time.monotonic() + 600
    while await store.read(done) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the pipeline did not finish")
        await asyncio.sleep(0.05)


async def post_all(msgs: list[bytes], ports: list[int]) -> None:
    """64 requests in flight over kept-alive connections. aiohttp rather than
    httpx: it costs the load generator about a third of the CPU per request,
    which on two cores is CPU the instances get."""
    import aiohttp

    queue = list(enumerate(msgs))
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker() -> None:
            while queue:
                i, body = queue.pop()
                port = ports[i % len(ports)]
                async with session.post(
                    f"http://127.0.0.1:{port}/api/v1/inbound/api",
                    data=body,
                    headers={SIGNATURE_HEADER: sign(SECRET, body)},
                ) as r:
                    if r.status >= 300:
                        raise RuntimeError(f"{r.status}: {await r.text()}")

        await asyncio.gather(*(worker() for _ in range(64)))


async def profile_one(url: str, n: int) -> dict[str, float]:
    """One PostgreSQL instance's pipeline, in process, one worker: where a
    message's time goes."""
    import structlog

    from omnidesk.app import Daemon
    from omnidesk.config import parse_config
    from omnidesk.pipeline import decide as decide_stage
    from omnidesk.store import postgres as pg
    from omnidesk.store.inbound import insert_envelopes

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    spent = {"db": 0.0, "statements": 0.0, "decide": 0.0, "normalize": 0.0}
    wait = pg._PgDb._wait

    def timed_wait(self: Any, method: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return wait(self, method, *args)
        finally:
            spent["db"] += time.perf_counter() - t
            spent["statements"] += 1

    decide = decide_stage.decide

    def timed_decide(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        db0 = spent["db"]
        try:
            return decide(*a, **kw)
        finally:
            spent["decide"] += time.perf_counter() - t - (spent["db"] - db0)

    with tempfile.TemporaryDirectory() as d:
        cfg = parse_config(
            {
                "daemon": {"data_dir": d, "log_level": "error"},
                "storage": {"url": url},
                "rules": {"dir": str(REPO / "rules"), "watch": False},
                "pipeline": {"workers": 0, "default_team": "support"},
                "teams": [{"name": "support", "members": ["a", "b", "c"]}],
                "channels": [{"name": "api", "type": "api", "secret": SECRET}],
            },
            base_dir=Path(d),
        )
        daemon = Daemon(cfg)
        await daemon.start(web=False)
        adapter = daemon.adapters["api"]
        normalize = adapter.normalize

        def timed_normalize(env: Envelope) -> Any:
            t = time.perf_counter()
            try:
                return normalize(env)
            finally:
                spent["normalize"] += time.perf_counter() - t

        envs = [
            Envelope("api", json.loads(b)["external_id"], b, "application/json")
            for b in bodies(n, "x")
        ]
        await daemon.store.write(insert_envelopes, envs)
        pg._PgDb._wait = timed_wait  # type: ignore[method-assign]
        decide_stage.decide = timed_decide
        adapter.normalize = timed_normalize  # type: ignore[method-assign]
        try:
            t0 = time.perf_counter()
            await daemon.pipeline.drain()
            total = time.perf_counter() - t0
        finally:
            pg._PgDb._wait = wait  # type: ignore[method-assign]
            decide_stage.decide = decide
        await daemon.stop()
    spent["total"] = total
    return {k: v / n for k, v in spent.items()}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--pg", default=PG)
    ap.add_argument("--instances", default="1,2,3")
    args = ap.parse_args()
    n = args.messages
    console = Console()
    console.print(
        f"{n} messages per setup; {os.cpu_count()} CPU cores on this machine, shared by the"
        " instances, PostgreSQL and this load generator; load average before:"
        f" {os.getloadavg()[0]:.2f}"
    )
    results: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as d:
        console.print("SQLite, 1 instance ...")
        results.append(("SQLite", 1, await run_setup(f"sqlite:///{d}/bench.db", 1, n)))
    for k in [int(x) for x in args.instances.split(",")]:
        console.print(f"PostgreSQL, {k} instance(s) ...")
        async with pg_schema(args.pg) as url:
            results.append(("PostgreSQL", k, await run_setup(url, k, n)))

    base = next(r for e, k, r in results if e == "PostgreSQL" and k == 1)
    sqlite = results[0][2]
    table = Table(title=f"messages/s, {n} signed API messages per setup (2 pipeline workers each)")
    for col in ("store", "instances", "pipeline", "vs 1 PG", "vs SQLite", "end to end",
                "vs 1 PG ", "vs SQLite "):  # fmt: skip
        table.add_column(col, justify="left" if col == "store" else "right")
    cpu = Table(title="where the CPU went during end to end: CPU seconds per 1,000 messages")
    for col in ("store", "instances", "omnidesk", "postgres", "load generator", "total"):
        cpu.add_column(col, justify="left" if col == "store" else "right")
    for engine, k, r in results:
        table.add_row(
            engine,
            str(k),
            f"{r['pipeline']:,.0f}",
            f"{r['pipeline'] / base['pipeline']:.2f}x",
            f"{r['pipeline'] / sqlite['pipeline']:.2f}x",
            f"{r['e2e']:,.0f}",
            f"{r['e2e'] / base['e2e']:.2f}x",
            f"{r['e2e'] / sqlite['e2e']:.2f}x",
        )
        for key, label in (("pipeline", "pipeline"), ("e2e", "end to end")):
            record(
                "instances",
                f"{engine}, {k} instance(s), {label}",
                r[key],
                "msgs/s",
                baseline=f"PostgreSQL, 1 instance, {label}",
                baseline_value=base[key],
                ratio=r[key] / base[key],
            )
        parts = [r["cpu_instances_e2e"], r["cpu_pg_e2e"] if engine == "PostgreSQL" else 0.0,
                 r["cpu_client_e2e"]]  # fmt: skip
        cpu.add_row(
            engine,
            str(k),
            *(f"{v * 1000 / n:.2f}" for v in parts),
            f"{sum(parts) * 1000 / n:.2f}",
        )
    console.print(table)
    console.print(cpu)

    async with pg_schema(args.pg) as url:
        prof = await profile_one(url, min(n, 2000))
    t = Table(title="one PostgreSQL instance, one pipeline worker, in process: ms per message")
    for col in ("part", "ms", "share"):
        t.add_column(col, justify="left" if col == "part" else "right")
    other = prof["total"] - prof["db"] - prof["decide"] - prof["normalize"]
    for part, v in (
        (f"waiting for PostgreSQL ({prof['statements']:.1f} statements)", prof["db"]),
        ("rules: classify and route decision", prof["decide"]),
        ("normalize (API channel parser)", prof["normalize"]),
        ("other Python (pipeline, store functions, bridge)", other),
        ("total", prof["total"]),
    ):
        t.add_row(part, f"{v * 1000:.2f}", f"{v / prof['total']:.0%}")
    console.print(t)
    console.print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine skews)")


if __name__ == "__main__":
    asyncio.run(main())
