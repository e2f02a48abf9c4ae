"""/readyz tells the truth about the store and the pipeline, and every
pipeline layout reports its batches on /metrics.

A pipeline process stopped with SIGSTOP (alive, ready, doing nothing: the
case /healthz calls fine) turns /readyz to 503 once mail has waited past
``[health] pipeline_stall_seconds``, and back to 200 when it goes on. A
PostgreSQL that stops answering (a proxy in front of it refuses and cuts
connections) is a 503 at once, and 200 again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from omnidesk.app import Daemon
from omnidesk.config import Config
from omnidesk.store.inbound import count_pending
from tests.conftest import admin_token, make_config, message, post_inbound, wait_for

FAST = {"pipeline_stall_seconds": 1, "check_interval": 0.1}


async def readiness(c: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    r = await c.get("/readyz")
    return r.status_code, r.json()


async def metrics(daemon: Daemon, c: httpx.AsyncClient) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample on /metrics: (name, sorted labels) -> value."""
    r = await c.get("/metrics", headers=await admin_token(daemon))
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def client_for(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=15)


async def all_processed(daemon: Daemon) -> bool:
    return not await daemon.store.read(count_pending)


@pytest.mark.slow
async def test_readyz_503_for_a_stopped_pipeline_process_and_back(
    config_factory: Callable[..., Config], daemon_factory: Any
) -> None:
    daemon: Daemon = await daemon_factory(config_factory(pipeline={"processes": 1}, health=FAST))
    procs = daemon.pipeline_processes
    assert procs is not None
    await procs.wait_ready()
    async with client_for(daemon) as c:

        async def ready_again() -> bool:
            return (await readiness(c))[0] == 200

        # Ready once the pipeline process is (a start slower than the 1 s
        # threshold is itself a problem until then).
        await wait_for(ready_again, timeout=30)
        status, body = await readiness(c)
        assert (status, body["ready"], body["problems"]) == (200, True, [])

        pid = procs.pids[0]
        assert pid is not None
        stopped = False
        try:
            for attempt in range(3):
                os.kill(pid, signal.SIGSTOP)
                stopped = True
                try:
                    # Stopped between two batches, not inside SQLite's write
                    # transaction (which would hold the intake too): try again.
                    async with asyncio.timeout(5):
                        r = await post_inbound(c, message(f"stall-{attempt}", "Where is my order?"))
                    break
                except TimeoutError:
                    os.kill(pid, signal.SIGCONT)
                    stopped = False
                    await asyncio.sleep(0.5)
            else:
                raise AssertionError("the pipeline process always held the write lock")
            assert r.status_code == 202
            # /healthz says the process lives (and the pipeline process is
            # "ready"); /readyz says the mail is not moving.
            assert (await c.get("/healthz")).json()["pipeline"]["ok"] is True

            async def stalled() -> bool:
                return (await readiness(c))[0] == 503

            await wait_for(stalled, timeout=30)
            status, body = await readiness(c)
            assert body["ready"] is False
            [problem] = body["problems"]
            assert problem["component"] == "pipeline"
            assert "envelopes pending and none processed for" in problem["message"]
            seen = await metrics(daemon, c)
            assert seen[("omnidesk_ready", ())] == 0
            assert seen[("omnidesk_pipeline_stalled", ())] == 1
            assert seen[("omnidesk_pipeline_seconds_without_progress", ())] >= 1
        finally:
            if stopped:
                os.kill(pid, signal.SIGCONT)

        await wait_for(ready_again, timeout=30)
        assert await all_processed(daemon)
        seen = await metrics(daemon, c)
        assert seen[("omnidesk_ready", ())] == 1
        assert seen[("omnidesk_pipeline_stalled", ())] == 0


@pytest.mark.slow
@pytest.mark.parametrize("processes", [0, 1, 2])
async def test_every_pipeline_layout_reports_its_batches(
    processes: int, config_factory: Callable[..., Config], daemon_factory: Any
) -> None:
    """In the daemon's process, in one pipeline process and in two (SQLite:
    a writer and a parse process; PostgreSQL: two pipeline processes), the
    batches show on /metrics as omnidesk_pipeline_batch_seconds."""
    daemon: Daemon = await daemon_factory(config_factory(pipeline={"processes": processes}))
    if daemon.pipeline_processes is not None:
        await daemon.pipeline_processes.wait_ready()
    async with client_for(daemon) as c:
        for i in range(5):
            r = await post_inbound(c, message(f"layout-{i}", f"Question number {i}"))
            assert r.status_code == 202
        # Wait for the layout's own pipeline (settle() would drain it here).
        await wait_for(lambda: all_processed(daemon), timeout=30)
        seen = await metrics(daemon, c)
    if daemon.pipeline_processes is not None:
        assert daemon.pipeline_processes.batches >= 1  # the children did the work
    assert seen[("omnidesk_pipeline_batch_seconds_count", ())] >= 1
    assert seen[("omnidesk_pipeline_batch_seconds_sum", ())] > 0
    assert seen[("omnidesk_pipeline_processed_total", (("outcome", "stored"),))] == 5


@pytest.mark.postgres
async def test_readyz_503_while_the_store_does_not_answer(
    pg_url: str, tmp_path: Path, daemon_factory: Any
) -> None:
    """PostgreSQL behind a proxy that then refuses new connections and cuts
    the open ones: /readyz answers 503 naming the store, 200 when it is back."""
    from tests.email_channels.conftest import Proxy

    parts = urlsplit(pg_url)
    proxy = Proxy(parts.port or 5432)
    await proxy.start()
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    url = urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))
    try:
        daemon: Daemon = await daemon_factory(
            make_config(tmp_path, url, storage={"statement_timeout": 2}, health=FAST)
        )
        async with client_for(daemon) as c:
            assert (await readiness(c))[0] == 200
            proxy.refuse = True
            proxy.cut()

            async def down() -> bool:
                return (await readiness(c))[0] == 503

            await wait_for(down, timeout=15)
            _, body = await readiness(c)
            assert [p["component"] for p in body["problems"]] == ["store"]
            assert body["problems"][0]["message"].startswith("the store does not answer")
            assert "postgres@" not in body["problems"][0]["message"]  # no credentials
            proxy.refuse = False

            async def back() -> bool:
                return (await readiness(c))[0] == 200

            await wait_for(back, timeout=20)
            r = await post_inbound(c, message("after-outage", "Still there?"))
            assert r.status_code == 202
    finally:
        proxy.refuse = False
        with contextlib.suppress(Exception):
            await proxy.stop()


def test_health_settings_errors_name_the_key(tmp_path: Path) -> None:
    """A mistake in [health] is one ConfigError naming the key, at load time
    or, for what needs the channels built, when the daemon is built."""
    from omnidesk.config import ConfigError

    url = f"sqlite:///{tmp_path / 'omnidesk.db'}"
    cases = [
        ({"channels": {"nope": {"failure_seconds": 5}}}, "health.channels.nope"),
        ({"channels": {"api": {"failure": 5}}}, "health.channels.api.failure"),
        ({"channels": {"api": {}}}, "health.channels.api.failure_seconds"),
        ({"pipeline_stall_seconds": 0}, "health.pipeline_stall_seconds"),
        ({"notify_webhook": "ops.example.com/hook"}, "health.notify_webhook"),
        ({"notify_email": ["not an address"]}, "health.notify_email"),
        ({"notify_email_channel": "mail"}, "health.notify_email_channel"),
        ({"check_interval": "often"}, "health.check_interval"),
    ]
    for section, key in cases:
        with pytest.raises(ConfigError) as err:
            make_config(tmp_path, url, health=section)
        assert err.value.key == key, (section, str(err.value))
    # Alerts by e-mail need an e-mail channel with a relay; this config has
    # only the API channel.
    cfg = make_config(tmp_path, url, health={"notify_email": ["ops@example.com"]})
    with pytest.raises(ConfigError) as err:
        Daemon(cfg)
    assert err.value.key == "health.notify_email"
    assert "e-mail channel" in err.value.reason
    cfg = make_config(
        tmp_path, url, health={"notify_email": ["ops@example.com"], "notify_email_channel": "api"}
    )
    with pytest.raises(ConfigError) as err:
        Daemon(cfg)
    assert err.value.key == "health.notify_email_channel"


def test_reasons_carry_no_addresses_and_stay_short() -> None:
    """What goes to logs, /readyz and alerts: a relay's refusal names the
    customer; the reason keeps the code and loses the address."""
    from omnidesk.health import scrub

    reason = "relay refused the recipient: ann.lee+x@example.org: 450 mailbox busy <bob@ex.net>"
    assert scrub(reason) == "relay refused the recipient: <address>: 450 mailbox busy <<address>>"
    assert len(scrub("x" * 5000)) == 300
