"""SIGKILL of ``omnidesk run`` while SMTP clients are sending: every message
that got 250 is stored, none twice, and the MTA's retries after the restart
add nothing twice either."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from omnidesk.store import open_store
from tests.conftest import RULES, children_of, free_port, is_python, process_gone

from .conftest import SUPPORT, mail

pytestmark = pytest.mark.slow


def write_config(tmp: Path, store_url: str, web: int, smtp: int, processes: int = 0) -> Path:
    cfg = tmp / f"config-{smtp}.toml"
    cfg.write_text(f"""
[daemon]
data_dir = "{tmp / "data"}"
log_level = "warning"
[storage]
url = "{store_url}"
[web]
port = {web}
[rules]
dir = "{RULES}"
watch = false
[pipeline]
batch_size = 16
processes = {processes}
[[teams]]
name = "support"
members = ["alice", "bob"]
[[channels]]
name = "email"
type = "smtp"
port = {smtp}
accept = ["{SUPPORT}"]
""")
    return cfg


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


async def wait_up(web: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited: {log.read_text()[-3000:]}")
            try:
                r = await c.get(f"http://127.0.0.1:{web}/healthz")
                if r.status_code == 200 and r.json()["channels"]["email"]["state"] == "running":
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("daemon did not come up")


async def send_many(
    port: int, mails: list[tuple[bytes, str]], acked: list[str], clients: int = 6
) -> list[str]:
    """Send over several connections; the Message-IDs that got 250 go into
    ``acked`` as they do (and are returned)."""
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for m in mails:
        queue.put_nowait(m)

    async def client() -> None:
        while not queue.empty():
            try:
                smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
                await smtp.connect()
            except (aiosmtplib.SMTPException, OSError):
                return
            try:
                while not queue.empty():
                    raw, mid = queue.get_nowait()
                    try:
                        await smtp.sendmail("ann@example.org", [SUPPORT], raw)
                    except (aiosmtplib.SMTPException, OSError):
                        return
                    acked.append(mid)
            finally:
                smtp.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return acked


async def stored(store_url: str) -> dict[str, Any]:
    store = open_store(store_url)
    await store.open()

    def q(db: Any) -> dict[str, Any]:
        return {
            "pending": db.val("SELECT COUNT(*) FROM inbound WHERE state = 'pending'"),
            "inbound": [r[0] for r in db.all("SELECT external_id FROM inbound")],
            "messages": [
                r[0] for r in db.all("SELECT external_id FROM messages WHERE direction = 'in'")
            ],
        }

    try:
        return await store.read(q)
    finally:
        await store.close()


def python_helpers(pid: int) -> list[int]:
    """The daemon's Python children (pipeline processes, the resource
    tracker) and theirs (parse processes)."""
    helpers = [p for p in children_of(pid) if is_python(p)]
    return helpers + [g for p in helpers for g in children_of(p) if is_python(g)]


async def all_gone(pids: list[int], within: float = 15) -> None:
    """Wait until every one of ``pids`` has exited, at most ``within`` s."""
    deadline = time.monotonic() + within
    while not all(process_gone(p) for p in pids):
        left = [p for p in pids if not process_gone(p)]
        assert time.monotonic() < deadline, f"processes outlived the daemon: {left}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("processes", [0, 2], ids=["in-daemon", "processes"])
async def test_sigkill_while_sending_loses_no_250_and_stores_none_twice(
    tmp_path: Path, store_url: str, processes: int
) -> None:
    log = tmp_path / "daemon.log"
    web, smtp = free_port(), free_port()
    proc = start(write_config(tmp_path, store_url, web, smtp, processes), log)
    helpers: list[int] = []
    mails = [mail(f"order {i} question", f"Where is order {i}?") for i in range(1000)]
    try:
        await wait_up(web, proc, log)
        so_far: list[str] = []
        sender = asyncio.create_task(send_many(smtp, mails, so_far))
        # Mid-load (intake commits and the pipeline busy), whatever this
        # machine's speed: a fixed sleep once let all 1,000 through first.
        deadline = time.monotonic() + 30
        while len(so_far) < 200 and time.monotonic() < deadline and not sender.done():
            await asyncio.sleep(0.005)
        # The pipeline processes and their parse processes, if any.
        helpers = python_helpers(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if processes:
        assert helpers, "the daemon runs its pipeline in processes"
        # With the daemon gone they stop by themselves (their wake pipe closed).
        await all_gone(helpers)
    acked = await sender
    assert 0 < len(acked) < len(mails), f"the kill should land mid-load ({len(acked)} acked)"
    after_kill = await stored(store_url)
    assert set(acked) <= set(after_kill["inbound"]), "every 250 was on disk"

    web, smtp = free_port(), free_port()
    proc = start(write_config(tmp_path, store_url, web, smtp, processes), log)
    try:
        await wait_up(web, proc, log)
        # The sending MTA retries everything it holds, acknowledged or not.
        again = await send_many(smtp, mails, [])
        assert len(again) == len(mails)
        deadline = time.monotonic() + 60
        while True:
            final = await stored(store_url)
            if final["pending"] == 0 and len(final["messages"]) >= len(mails):
                break
            assert time.monotonic() < deadline, f"not processed: {final['pending']} pending"
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(final["inbound"]) == len(set(final["inbound"])) == len(mails)
    assert len(final["messages"]) == len(set(final["messages"])) == len(mails)


async def test_daemon_killed_while_parse_processes_start_leaves_no_process(
    tmp_path: Path,
) -> None:
    """SIGKILL lands while the pipeline process waits for its parse process
    to start (before it reports ready): both end by themselves. (Parse
    processes serve a SQLite pipeline process only.)"""
    store_url = f"sqlite:///{tmp_path / 'omnidesk.db'}"
    web, smtp = free_port(), free_port()
    proc = start(write_config(tmp_path, store_url, web, smtp, 2), tmp_path / "daemon.log")
    helpers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        # The parse process exists from its spawn on; it is ready only once
        # it has imported omnidesk and loaded the language model.
        while time.monotonic() < deadline and proc.poll() is None:
            helpers = python_helpers(proc.pid)
            if len(helpers) >= 3:  # resource tracker, pipeline process, parse process
                break
            await asyncio.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(helpers) >= 3, helpers
    await all_gone(helpers)
