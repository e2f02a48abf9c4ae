"""Replies while the other side is down: the SMTP relay (aiosmtpd), the
Graph API (its stand-in from tests/standins, WhatsApp Cloud API messages)
and an API channel's ``callback_url`` stop answering, agents reply through
the inbox API, and the outbox retries; then they come back. Every queued
reply must arrive exactly once, counted per channel by a token in its text.

Each service sits behind a :class:`Gate` on a fixed port: down closes the
listening socket (the daemon sees "connection refused") and cuts what is
open; up listens on the same port again."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .daemon import (
    DaemonProc,
    Ports,
    api_channel,
    free_port,
    logged,
    smtp_channel,
    whatsapp_channel,
)
from .load import ApiSender, SmtpSender, WebhookSender, run_senders
from .tally import Account, ReplyAccount

TOKEN = re.compile(r"reply-token-[0-9]+-[0-9]+")


class Gate:
    """127.0.0.1:``port`` forwarded to ``target``, switchable."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._open):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, uw))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        self._open.discard(writer)
        self._open.discard(uw)


class Relay:
    """An SMTP relay that keeps every mail it takes."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(bytes(envelope.original_content))
        return "250 OK relayed"

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="relay.test", loop=loop), "127.0.0.1", 0
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class Callback:
    """The API channel's receiver: keeps every POST."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.port = 0
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def take(request: web.Request) -> web.Response:
            self.bodies.append(json.loads(await request.read()))
            return web.json_response({"id": len(self.bodies)})

        app = web.Application()
        app.router.add_post("/replies", take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def admin_token(config: Path) -> str:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "omnidesk.cli", "tokens", "create", "--role", "admin"),
            *("--user", "alice", "--name", "faults", "-c", str(config)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


async def outbox_states(store_url: str) -> dict[str, collections.Counter[str]]:
    """Per channel: outbox rows by state, and ``attempts`` made in all."""
    from omnidesk.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        rows = await store.read(lambda db: db.all("SELECT channel, state, attempts FROM outbox"))
    finally:
        await store.close()
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for ch, state, attempts in rows:
        out[ch][state] += 1
        out[ch]["attempts"] += attempts
    return out


async def run(
    tmp: Path, *, per_channel: int, down_for: float, say: Any
) -> tuple[list[Account], dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.standins.graph_api import GraphApiStandIn

    relay, graph, callback = Relay(), GraphApiStandIn(), Callback()
    await relay.start()
    await graph.start()
    await callback.start()
    graph_port = int(graph.base_url.rsplit(":", 1)[1])
    gates = {"email": Gate(relay.port), "wa": Gate(graph_port), "api": Gate(callback.port)}
    for g in gates.values():
        await g.up()
    ports = Ports()
    daemon = DaemonProc(
        tmp,
        ports,
        [
            api_channel(f"http://127.0.0.1:{gates['api'].port}/replies"),
            smtp_channel(ports.smtp, relay_port=gates["email"].port),
            whatsapp_channel(f"http://127.0.0.1:{gates['wa'].port}"),
        ],
        processes=1,
        outbox={"max_attempts": 100, "backoff_base": 0.2, "backoff_max": 2.0},
    )
    store_url = daemon.store_url
    daemon.start()
    queued: dict[str, list[str]] = collections.defaultdict(list)
    refused: collections.Counter[str] = collections.Counter()
    try:
        await daemon.wait_up(channels=("email",))
        # Customers write first: one conversation each.
        base = daemon.url
        senders = [
            SmtpSender("out", ports.smtp, workers=1, limit=per_channel),
            ApiSender("out", base, workers=1, limit=per_channel),
            WebhookSender("out", base, workers=1, limit=per_channel),
        ]
        await run_senders(senders, nothing)
        token = admin_token(daemon.config)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            convs = await conversations(c, 3 * per_channel)
            for g in gates.values():
                await g.down()
            say(f"  relay, Graph API and callback down; {len(convs)} conversations get replies")
            for i, (conv_id, channel) in enumerate(convs):
                for k in range(2):
                    tok = f"reply-token-{i}-{k}"
                    r = await c.post(
                        f"/api/v1/conversations/{conv_id}/messages",
                        json={"text": f"We are on it ({tok}).", "kind": "reply", "force": True},
                    )
                    if r.status_code == 201:
                        queued[channel].append(tok)
                    else:
                        refused[f"{channel}:{r.status_code}"] += 1
            await asyncio.sleep(down_for)
            while_down = await outbox_states(store_url)
            for g in gates.values():
                await g.up()
            say(
                f"  back up after {down_for:.0f} s; attempts failed meanwhile: "
                + ", ".join(f"{ch} {st['attempts']}" for ch, st in sorted(while_down.items()))
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = await outbox_states(store_url)
                if not any(st["queued"] or st["sending"] for st in states.values()):
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # a late duplicate would show now
    finally:
        status = daemon.stop()
        for g in gates.values():
            await g.down()
        await relay.stop()
        await graph.stop()
        await callback.stop()
    received = {
        "email": [t for raw in relay.received for t in TOKEN.findall(raw.decode(errors="replace"))],
        "wa": [
            t
            for call in graph.sends()
            if isinstance(call.body, dict)
            for t in TOKEN.findall(json.dumps(call.body))
        ],
        "api": [t for b in callback.bodies for t in TOKEN.findall(b.get("text") or "")],
    }
    states = await outbox_states(store_url)
    accounts = []
    for channel, label in (("email", "smtp-relay"), ("wa", "graph-api"), ("api", "api-callback")):
        got = collections.Counter(received[channel])
        want = set(queued[channel])
        accounts.append(
            ReplyAccount(
                scenario="outbound",
                channel=label,
                offered=len(want),
                acked=len(want),
                stored=len(want & set(got)),
                quarantined=0,
                lost=len(want - set(got)),
                duplicated=sum(n - 1 for n in got.values() if n > 1),
                extra={
                    "failed": states[channel]["failed"],
                    "attempts_while_down": while_down[channel]["attempts"],
                    "attempts": states[channel]["attempts"],
                },
            )
        )
    info = {
        "clean_stop_status": status,
        "refused": dict(refused),
        "errors_logged": logged(daemon.log),
    }
    return accounts, info


async def nothing() -> None:
    """No fault while the customers write."""


async def conversations(c: httpx.AsyncClient, n: int) -> list[tuple[int, str]]:
    """(id, channel) of the customers' conversations, once the pipeline
    has made all ``n``."""
    deadline = time.monotonic() + 60
    while True:
        r = await c.get("/api/v1/conversations", params={"limit": 200})
        r.raise_for_status()
        items = r.json()["items"]
        if len(items) >= n or time.monotonic() > deadline:
            return [(it["id"], it["channel"]) for it in items]
        await asyncio.sleep(0.3)
