"""The website chat over real HTTP, SQLite: visitor messages accepted per second
with p50/p99 latency, and the time an agent's reply takes to reach the
visitor's open stream.

The daemon runs in a child process (this script with ``--serve``); this
process drives it over keep-alive connections (aiohttp), so the client's own
CPU does not slow the server down.

1. Visitor messages: ``POST /webchat/site/messages`` (token signature, Origin
   check, rate limits, durable group-committed accept) from many visitors.
   Baseline, the same run and daemon: signed ``POST /api/v1/inbound/api``
   bodies (HMAC check, durable accept), the API channel's cost for the same
   job. Measured accept-only (``pipeline.workers = 0``) and with the pipeline
   classifying and routing everything as it arrives.
2. Reply delivery: an agent answers through the API while the visitor's
   ``/events`` stream is open; the time until the reply arrives on the stream.
   Baseline: the agent's own request (``POST .../messages`` until its 201).

    python bench/bench_webchat.py [--messages 4000] [--concurrency 16] [--replies 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchrows import record
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
API_SECRET = "bench-secret-0123456789"
CHAT_SECRET = "bench-chat-secret-0123456789"
SITE = "https://shop.example.com"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# -- the daemon (child process) -----------------------------------------------------


def config(workdir: Path, workers: int) -> dict[str, Any]:
    return {
        "daemon": {"data_dir": str(workdir / "data"), "log_level": "warning"},
        "storage": {"url": f"sqlite:///{workdir / 'bench.db'}"},
        "web": {"host": "127.0.0.1", "port": 0},
        "rules": {"dir": str(REPO / "rules"), "watch": False},
        "teams": [{"name": "support", "members": ["a", "b", "c"]}],
        "pipeline": {"default_team": "support", "workers": workers, "processes": 0},
        "channels": [
            {"name": "api", "type": "api", "secret": API_SECRET},
            {
                "name": "site",
                "type": "webchat",
                "secret": CHAT_SECRET,
                "allowed_origins": [SITE],
                "rate_limit": 1_000_000,
                "ip_rate_limit": 1_000_000,
            },
        ],
    }


async def serve(workdir: Path, workers: int) -> None:
    from omnidesk import logging as odlog
    from omnidesk.app import Daemon
    from omnidesk.config import parse_config

    odlog.configure("warning", json=True)
    daemon = Daemon(parse_config(config(workdir, workers), base_dir=REPO))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await daemon.start()
    print(json.dumps({"port": daemon.web_port}), flush=True)
    await stop.wait()
    await daemon.stop()


async def admin_token(workdir: Path) -> str:
    """Created before the daemon starts (it migrates the same file)."""
    from omnidesk.config import parse_config
    from omnidesk.store import open_store
    from omnidesk.store.tokens import create_token

    cfg = parse_config(config(workdir, 0), base_dir=REPO)
    store = open_store(cfg.storage_url)
    await store.open()
    try:
        return await store.write(create_token, "admin", name="bench")
    finally:
        await store.close()


class Child:
    def __init__(self, workdir: Path, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(workdir), "--workers", str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(json.loads(self.proc.stdout.readline())["port"])
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


# -- the client side ------------------------------------------------------------------


async def drive(
    session: Any, base: str, reqs: list[tuple[str, bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float]]:
    queue = list(reversed(reqs))
    latencies: list[float] = []

    async def client() -> None:
        while queue:
            path, body, headers = queue.pop()
            t = time.perf_counter()
            async with session.post(base + path, data=body, headers=headers) as r:
                await r.read()
                if r.status != 202:
                    raise AssertionError(f"{path}: {r.status}")
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


async def visitor_tokens(session: Any, base: str, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        async with session.post(
            f"{base}/webchat/site/session", json={}, headers={"Origin": SITE}
        ) as r:
            body = await r.json()
            out.append((body["token"], body["visitor"]))
    return out


def api_requests(n: int, run: str) -> list[tuple[str, bytes, dict[str, str]]]:
    from omnidesk.channels.api import sign

    reqs = []
    for i in range(n):
        raw = json.dumps(
            {
                "external_id": f"{run}-api-{i}",
                "sender": {"address": f"c{i % max(1, n // 3)}@example.com", "kind": "email"},
                "text": f"Where is order {1000 + i}?",
            }
        ).encode()
        headers = {
            "X-Omnidesk-Signature": sign(API_SECRET, raw),
            "Content-Type": "application/json",
        }
        reqs.append(("/api/v1/inbound/api", raw, headers))
    return reqs


def chat_requests(
    n: int, run: str, tokens: list[tuple[str, str]]
) -> list[tuple[str, bytes, dict[str, str]]]:
    reqs = []
    for i in range(n):
        body = json.dumps({"client_id": f"{run}-{i:08d}", "text": f"Where is order {1000 + i}?"})
        headers = {
            "Origin": SITE,
            "Authorization": f"Bearer {tokens[i % len(tokens)][0]}",
            "Content-Type": "application/json",
        }
        reqs.append(("/webchat/site/messages", body.encode(), headers))
    return reqs


async def replies(session: Any, base: str, db: Path, auth: str, n: int) -> list[list[float]]:
    [(token, visitor)] = await visitor_tokens(session, base, 1)
    headers = {"Origin": SITE, "Authorization": f"Bearer {token}"}
    async with session.post(
        f"{base}/webchat/site/messages",
        json={"client_id": uuid.uuid4().hex, "text": "Hello, a question"},
        headers=headers,
    ) as r:
        assert r.status == 202
    conv_id = None
    while conv_id is None:
        await asyncio.sleep(0.05)
        with sqlite3.connect(db) as c:
            row = c.execute(
                "SELECT id FROM conversations WHERE thread_key = ?", (visitor,)
            ).fetchone()
        conv_id = row[0] if row else None
    arrived: dict[int, float] = {}
    got = asyncio.Event()

    async def listen() -> None:
        async with session.get(
            f"{base}/webchat/site/events", params={"token": token}, headers={"Origin": SITE}
        ) as resp:
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event.get("direction") == "out":
                        arrived[event["id"]] = time.perf_counter()
                        got.set()

    listener = asyncio.ensure_future(listen())
    await asyncio.sleep(0.3)
    request: list[float] = []
    to_stream: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        async with session.post(
            f"{base}/api/v1/conversations/{conv_id}/messages",
            json={"text": f"Answer {i}"},
            headers={"Authorization": f"Bearer {auth}"},
        ) as r:
            mid = (await r.json())["id"]
        t1 = time.perf_counter()
        while mid not in arrived:
            got.clear()
            await asyncio.wait_for(got.wait(), 10)
        request.append(t1 - t0)
        to_stream.append(arrived[mid] - t0)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    return [request, to_stream]


async def drained(db: Path) -> None:
    while True:
        with sqlite3.connect(db) as c:
            (pending,) = c.execute(
                "SELECT COUNT(*) FROM inbound WHERE state = 'pending'"
            ).fetchone()
        if not pending:
            return
        await asyncio.sleep(0.1)


async def main(args: argparse.Namespace) -> None:
    import aiohttp

    results: list[tuple[str, float, list[float]]] = []
    reply_lat: list[list[float]] = []
    for workers in (0, 1):
        label = "accept-only" if workers == 0 else "with pipeline"
        with tempfile.TemporaryDirectory() as d:
            auth = await admin_token(Path(d))
            child = Child(Path(d), workers)
            try:
                conn = aiohttp.TCPConnector(limit=args.concurrency + 2)
                async with aiohttp.ClientSession(connector=conn) as session:
                    tokens = await visitor_tokens(session, child.base, max(1, args.messages // 3))
                    run = f"w{workers}"
                    for what, reqs in (
                        ("baseline: signed API POST", api_requests(args.messages, run)),
                        ("web chat message POST", chat_requests(args.messages, run, tokens)),
                    ):
                        secs, lat = await drive(session, child.base, reqs, args.concurrency)
                        results.append((f"{what}, {label}", secs, lat))
                        if workers:
                            # The next run starts with no backlog from this one.
                            await drained(Path(d) / "bench.db")
                    if workers == 1:
                        reply_lat = await replies(
                            session, child.base, Path(d) / "bench.db", auth, args.replies
                        )
            finally:
                child.stop()

    n = args.messages
    t = Table(title=f"visitor messages over HTTP, SQLite, {n} each, {args.concurrency} connections")
    for col in ("what", "messages/s", "p50 ms", "p99 ms", "vs baseline"):
        t.add_column(col, justify="left" if col == "what" else "right")
    for i, (what, secs, lat) in enumerate(results):
        base_secs = results[i - i % 2][1]
        t.add_row(
            what,
            f"{n / secs:,.0f}",
            f"{pct(lat, 0.5) * 1000:.1f}",
            f"{pct(lat, 0.99) * 1000:.1f}",
            f"{base_secs / secs:.2f}x",
        )
        record(
            "webchat",
            what,
            n / secs,
            "msgs/s",
            baseline=results[i - i % 2][0],
            baseline_value=n / base_secs,
            ratio=base_secs / secs,
        )
    Console().print(t)

    t = Table(title=f"agent reply to the visitor's open stream, {args.replies} replies")
    for col in ("what", "p50 ms", "p99 ms", "mean ms", "vs baseline (p50)"):
        t.add_column(col, justify="left" if col == "what" else "right")
    request, to_stream = reply_lat
    for what, lat in (
        ("baseline: the agent's POST until 201", request),
        ("reply POST until it arrives on the stream", to_stream),
    ):
        t.add_row(
            what,
            f"{pct(lat, 0.5) * 1000:.1f}",
            f"{pct(lat, 0.99) * 1000:.1f}",
            f"{statistics.mean(lat) * 1000:.1f}",
            f"{pct(lat, 0.5) / pct(request, 0.5):.2f}x",
        )
        record(
            "webchat",
            what + ", p50",
            pct(lat, 0.5) * 1000,
            "ms",
            baseline="the agent's POST until 201, p50",
            baseline_value=pct(request, 0.5) * 1000,
            ratio=pct(lat, 0.5) / pct(request, 0.5),
            ratio_means="latency / baseline latency",
        )
    Console().print(t)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--replies", type=int, default=200)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parsed = ap.parse_args()
    if parsed.serve:
        asyncio.run(serve(parsed.serve, parsed.workers))
    else:
        asyncio.run(main(parsed))
