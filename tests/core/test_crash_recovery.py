"""Acknowledged messages survive SIGKILL and are processed exactly once.

These run the real ``omnidesk run`` command in a subprocess and kill it hard.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.model import Envelope
from omnidesk.store import open_store
from omnidesk.store.inbound import insert_envelopes
from tests.conftest import API_SECRET, RULES, free_port, message, signed, until_done
from tests.core.test_pipeline_processes import POISON_CHANNEL

pytestmark = pytest.mark.slow


def write_config(tmp: Path, store_url: str, port: int, workers: int) -> Path:
    cfg = tmp / f"config-{workers}.toml"
    cfg.write_text(f"""
[daemon]
data_dir = "{tmp / "data"}"
log_level = "warning"
[storage]
url = "{store_url}"
[web]
port = {port}
[rules]
dir = "{RULES}"
watch = false
[pipeline]
workers = {workers}
processes = 0
batch_size = 16
[[teams]]
name = "support"
members = ["alice", "bob"]
[[channels]]
name = "api"
type = "api"
secret = "env:TEST_API_SECRET"
""")
    return cfg


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEST_API_SECRET": API_SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited: {log.read_text()[-3000:]}")
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("daemon did not become healthy")


async def counts(store_url: str) -> dict[str, Any]:
    store = open_store(store_url)
    await store.open()

    def q(db: Any) -> dict[str, Any]:
        return {
            "inbound": db.val("SELECT COUNT(*) FROM inbound"),
            "pending": db.val("SELECT COUNT(*) FROM inbound WHERE state = 'pending'"),
            "messages": db.val("SELECT COUNT(*) FROM messages WHERE direction = 'in'"),
            "distinct": db.val(
                "SELECT COUNT(DISTINCT external_id) FROM messages WHERE direction = 'in'"
            ),
        }

    try:
        return await store.read(q)
    finally:
        await store.close()


async def post_many(
    port: int,
    n: int,
    prefix: str,
    acked: list[str] | None = None,
) -> list[str]:
    """Post n messages concurrently (8 at a time); return the ids that got 202
    (appended to ``acked`` as they come, when given)."""
    acked = [] if acked is None else acked
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:

        async def one(i: int) -> None:
            ext = f"{prefix}-{i}"
            raw, headers = signed(message(ext, f"Hello, question number {i} about my order"))
            async with sem:
                try:
                    r = await c.post("/api/v1/inbound/api", content=raw, headers=headers)
                except httpx.HTTPError:
                    return
                if r.status_code == 202:
                    acked.append(ext)

        await asyncio.gather(*(one(i) for i in range(n)))
    return acked


async def wait_processed(store_url: str, expected: int) -> dict[str, Any]:
    """The counts once nothing is pending and ``expected`` messages are
    stored, or as they were when the pipeline stopped making progress."""
    return await until_done(
        lambda: counts(store_url),
        lambda c: c["pending"] == 0 and c["messages"] >= expected,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a daemon the test started, whatever state it is in: SIGTERM, then
    SIGKILL if it has not stopped, so no failed test leaves one running."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


async def test_accepted_message_survives_sigkill_before_pipeline(
    tmp_path: Path, store_url: str
) -> None:
    port = free_port()
    log = tmp_path / "daemon.log"
    # An accept-only instance: the pipeline does not run, so the kill is
    # guaranteed to land before any processing.
    proc = start(write_config(tmp_path, store_url, port, workers=0), log)
    try:
        await wait_healthy(port, proc, log)
        acked = await post_many(port, 50, "k")
        assert len(acked) == 50
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = await counts(store_url)
    assert before["pending"] == 50 and before["messages"] == 0

    port2 = free_port()
    proc = start(write_config(tmp_path, store_url, port2, workers=1), log)
    try:
        await wait_healthy(port2, proc, log)
        after = await wait_processed(store_url, 50)
        # redelivery of everything after the restart changes nothing
        again = await post_many(port2, 50, "k")
        assert len(again) == 50
        final = await wait_processed(store_url, 50)
    finally:
        stop(proc)
    assert after["messages"] == 50 and after["distinct"] == 50
    assert final["inbound"] == 50 and final["messages"] == 50 and final["pending"] == 0


async def test_sigkill_during_load_loses_no_acknowledged_message(
    tmp_path: Path, store_url: str
) -> None:
    port = free_port()
    log = tmp_path / "daemon.log"
    proc = start(write_config(tmp_path, store_url, port, workers=1), log)
    try:
        await wait_healthy(port, proc, log)
        acked: list[str] = []
        poster = asyncio.create_task(post_many(port, 3000, "load", acked))
        # Kill while messages are arriving and the pipeline is busy: once a
        # hundred are acknowledged, however long that takes on this machine.
        while len(acked) < 100 and not poster.done():
            await asyncio.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    await poster
    assert 100 <= len(acked) < 3000, f"the kill should land mid-load ({len(acked)} acked)"

    port2 = free_port()
    proc = start(write_config(tmp_path, store_url, port2, workers=1), log)
    try:
        await wait_healthy(port2, proc, log)
        final = await wait_processed(store_url, len(acked))
    finally:
        stop(proc)
    store = open_store(store_url)
    await store.open()

    def ids(db: Any) -> list[str]:
        return [r[0] for r in db.all("SELECT external_id FROM messages WHERE direction = 'in'")]

    try:
        stored = await store.read(ids)
    finally:
        await store.close()
    assert set(acked) <= set(stored), "every acknowledged message is stored"
    assert len(stored) == len(set(stored)), "none is stored twice"
    assert final["pending"] == 0


async def test_message_that_crashes_the_daemon_is_quarantined_on_the_third_start(
    tmp_path: Path, store_url: str
) -> None:
    """With the pipeline in the daemon's process a message that aborts the
    interpreter takes the daemon down; a supervisor (here the test) starts it
    again into the same message. The second start still tries it (one end
    without a clean stop may be a kill -9), the third quarantines it with its
    bytes and stores the rest once each."""
    dropins = tmp_path / "dropins"
    dropins.mkdir()
    (dropins / "poison.py").write_text(POISON_CHANNEL)
    cfg = write_config(tmp_path, store_url, free_port(), workers=1)
    cfg.write_text(
        cfg.read_text().replace("[storage]", f'channels_dir = "{dropins}"\n[storage]')
        + '[[channels]]\nname = "p"\ntype = "poison"\n'
    )
    store = open_store(store_url)
    await store.open()
    payloads = [b"Where is order 1?", b"Where is order 2?", b"POISON", b"Where is order 3?"]
    envs = [
        Envelope(channel="p", external_id=f"m{i}", payload=p, content_type="text/plain")
        for i, p in enumerate(payloads)
    ]
    try:
        assert await store.write(insert_envelopes, envs) == [True] * 4
    finally:
        await store.close()
    log = tmp_path / "daemon.log"
    for attempt in (1, 2):
        proc = start(cfg, log)
        try:
            ended = await asyncio.to_thread(proc.wait, 120)
        except subprocess.TimeoutExpired:
            ended = None
        finally:
            stop(proc)
        assert ended == -signal.SIGABRT, f"start {attempt}: {log.read_text()[-2000:]}"
    proc = start(cfg, log)
    try:
        got = await wait_processed(store_url, 3)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        stop(proc)
    assert got["pending"] == 0 and got["messages"] == got["distinct"] == 3
    store = open_store(store_url)
    await store.open()
    try:
        rows = await store.read(
            lambda db: db.all(
                "SELECT i.external_id, i.payload, q.error FROM quarantine q"
                " JOIN inbound i ON i.id = q.inbound_id"
            )
        )
    finally:
        await store.close()
    assert [(r[0], bytes(r[1])) for r in rows] == [("m2", b"POISON")]
    assert "stopped without shutting down" in rows[0][2]
    assert "pipeline_interrupted" in log.read_text()
