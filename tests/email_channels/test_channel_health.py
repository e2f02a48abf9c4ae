"""Channel health that tells the truth, against real peers.

An SMTP relay that refuses replies (451) turns /readyz to 503 naming the
channel's outbound side once the failures last past the channel's own
threshold, and back to 200 when the relay takes the reply; the admins hear
of both by a signed webhook, and the log has one line for each change. A
Dovecot that is stopped turns /readyz to 503 naming the IMAP channel's
inbound side, and back when it is started again; the admins hear of both by
e-mail through the channel's relay.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from omnidesk.app import Daemon
from omnidesk.channels.api import SIGNATURE_HEADER, verify
from tests.conftest import agent_api, agent_reply, settle, wait_for

from .conftest import (
    Relay,
    Tls,
    imap_channel,
    mail,
    new_dovecot,
    relay_options,
    rows,
    send_smtp,
    smtp_channel,
    smtp_port,
)

HOOK_SECRET = "hook-secret-" + "y" * 16


class Hook:
    """The admins' alert webhook: keeps what it receives, with whether the
    signature was good."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/alerts"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        bad = verify(HOOK_SECRET, body, request.headers.get(SIGNATURE_HEADER))
        self.received.append({**json.loads(body), "signature_problem": bad})
        return web.Response(status=204)


def client_for(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=15)


async def status_is(c: httpx.AsyncClient, code: int) -> bool:
    return (await c.get("/readyz")).status_code == code


async def channel_metrics(api: httpx.AsyncClient, channel: str) -> dict[tuple[str, str], float]:
    text = (await api.get("/metrics")).text
    return {
        (s.name, s.labels["direction"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("channel") == channel and "direction" in s.labels
    }


async def channel_healthy(api: httpx.AsyncClient, channel: str) -> float:
    text = (await api.get("/metrics")).text
    [value] = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "omnidesk_channel_healthy" and s.labels == {"channel": channel}
    ]
    return value


async def test_refusing_relay_turns_readyz_503_naming_the_channel_and_back(
    email_daemon: Any, relay: Relay
) -> None:
    hook = Hook()
    await hook.start()
    try:
        with capture_logs() as logs:
            await _refusing_relay(email_daemon, relay, hook)
    finally:
        await hook.stop()
    changes = [
        (e["event"], e["direction"])
        for e in logs
        if e["event"] in ("health_problem", "health_recovered") and e.get("channel") == "email"
    ]
    # one line when the problem appeared, one when it cleared: not one a check
    assert changes == [("health_problem", "outbound"), ("health_recovered", "outbound")]


async def _refusing_relay(email_daemon: Any, relay: Relay, hook: Hook) -> None:
    daemon: Daemon = await email_daemon(
        smtp_channel(**relay_options(relay)),
        health={
            # the channel's own threshold, not the (long) default
            "channel_failure_seconds": 3600,
            "channels": {"email": {"failure_seconds": 0.5}},
            "check_interval": 0.1,
            "notify_webhook": hook.url,
            "notify_webhook_secret": HOOK_SECRET,
        },
        outbox={"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 1000},
    )
    raw, _ = mail("Where is my parcel?", sender="Ann <ann@example.org>")
    assert await asyncio.to_thread(send_smtp, smtp_port(daemon), raw) == {}
    await settle(daemon)
    [conv] = await rows(daemon, "SELECT id FROM conversations")
    relay.answer = "451 4.3.0 Try again later"
    api = await agent_api(daemon)
    async with api, client_for(daemon) as c:
        assert await status_is(c, 200)
        reply = await agent_reply(api, conv["id"], "It left our warehouse today.")

        await wait_for(lambda: status_is(c, 503), timeout=15)
        body = (await c.get("/readyz")).json()
        [problem] = body["problems"]
        assert (problem["component"], problem["channel"], problem["direction"]) == (
            "channel",
            "email",
            "outbound",
        )
        assert "channel email: outbound delivery failing" in problem["message"]
        assert "451" in problem["message"]
        assert "ann@example.org" not in json.dumps(body)
        seen = await channel_metrics(api, "email")
        assert seen[("omnidesk_channel_failing", "outbound")] == 1
        assert seen[("omnidesk_channel_failing_seconds", "outbound")] >= 0.5
        assert seen[("omnidesk_channel_failing", "inbound")] == 0  # the listener is fine
        assert ("omnidesk_channel_last_success_timestamp", "outbound") not in seen
        # /healthz (still 200: the process lives) shows the failing replies too.
        health = (await c.get("/healthz")).json()
        assert health["status"] == "degraded"
        assert health["channels"]["email"]["outbound"]["ok"] is False
        assert await channel_healthy(api, "email") == 0

        async def alerted(n: int) -> bool:
            return len(hook.received) >= n

        await wait_for(lambda: alerted(1))
        down = hook.received[0]
        assert down["ready"] is False and down["signature_problem"] is None
        assert [(p["channel"], p["direction"]) for p in down["appeared"]] == [("email", "outbound")]

        relay.answer = None  # the relay takes mail again
        await wait_for(lambda: status_is(c, 200), timeout=15)
        assert (await c.get("/readyz")).json()["problems"] == []
        await relay.wait(1)
        assert "Where is my parcel?" in relay.received[0].message["Subject"]
        conversation = (await api.get(f"/api/v1/conversations/{conv['id']}")).json()
        sent = next(m for m in conversation["messages"] if m["id"] == reply["id"])
        assert sent["delivery_state"] == "sent"
        seen = await channel_metrics(api, "email")
        assert seen[("omnidesk_channel_failing", "outbound")] == 0
        assert seen[("omnidesk_channel_last_success_timestamp", "outbound")] > down["at"]
        assert (await c.get("/healthz")).json()["channels"]["email"]["outbound"]["ok"] is True
        assert await channel_healthy(api, "email") == 1

        await wait_for(lambda: alerted(2))
        up = hook.received[1]
        assert up["ready"] is True and up["problems"] == []
        assert [(p["channel"], p["direction"]) for p in up["resolved"]] == [("email", "outbound")]
        assert len(hook.received) == 2


@pytest.mark.dovecot
async def test_stopped_imap_server_turns_readyz_503_and_back(
    email_daemon: Any, relay: Relay, tls: Tls
) -> None:
    dovecot = new_dovecot(tls)  # its own: this test stops it
    await asyncio.to_thread(dovecot.start)
    try:
        user = dovecot.add_user()
        daemon: Daemon = await email_daemon(
            imap_channel(dovecot, user, **relay_options(relay)),
            health={
                "channel_failure_seconds": 0.5,
                "check_interval": 0.1,
                "notify_email": ["ops@example.com"],
            },
        )
        inbox = daemon.adapters["inbox"]

        async def connected() -> bool:
            return inbox.inbound_health().state == "running"

        await wait_for(connected)
        async with client_for(daemon) as c:
            assert await status_is(c, 200)
            await asyncio.to_thread(dovecot.stop)
            # Dovecot's imap process ends an IDLE session (with BYE) about
            # 10 s after its master stopped; new connections are refused.
            await wait_for(lambda: status_is(c, 503), timeout=30)
            [problem] = (await c.get("/readyz")).json()["problems"]
            assert (problem["channel"], problem["direction"]) == ("inbox", "inbound")
            assert "channel inbox: inbound (connection or poll) failing" in problem["message"]
            [alert] = await relay.wait(1)
            assert alert.rcpt_tos == ["ops@example.com"]
            assert alert.message["Auto-Submitted"] == "auto-generated"
            assert "not ready: channel inbox: inbound" in alert.message["Subject"]

            await asyncio.to_thread(dovecot.start)
            await wait_for(lambda: status_is(c, 200), timeout=15)
            await relay.wait(2)
            again = relay.received[1].message
            assert again["Subject"].endswith("ready again")
            assert "channel inbox: inbound" in again.get_content()  # resolved: named

            # and the mailbox is read again
            raw, mid = mail("Back online?")
            await asyncio.to_thread(dovecot.append, user, raw)

            async def stored() -> bool:
                got = await rows(daemon, "SELECT external_id FROM inbound")
                return mid in {r["external_id"] for r in got}

            await wait_for(stored, timeout=15)
    finally:
        await asyncio.to_thread(dovecot.stop)
        shutil.rmtree(dovecot.root, ignore_errors=True)
