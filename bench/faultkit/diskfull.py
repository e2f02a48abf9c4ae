"""The SQLite disk fills up under load, then space returns.

The database and the data directory live on a small tmpfs of their own
(mounting one needs root; elsewhere the scenario says so and is skipped).
SMTP and API senders write; a ballast file then takes all but a few hundred
KB of the filesystem. While it is full the daemon must refuse clearly (SMTP
``451``, the API ``503`` with ``Retry-After``, a log line naming the cause),
stay up and quarantine nothing; when the ballast goes, the senders' retries
are taken, every acknowledged message is stored once, and SQLite's
``PRAGMA integrity_check`` says ``ok``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from .daemon import DaemonProc, Ports, api_channel, logged, smtp_channel
from .kill import wait_stored
from .load import ApiSender, Sender, SmtpSender, run_senders
from .tally import Account, account

SIZE_MB = 48
MARGIN = 256 * 1024  # bytes left free when the ballast goes in


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def fill(path: Path, leave: int) -> int:
    """A ballast file taking all free space but ``leave`` bytes."""
    free = shutil.disk_usage(path.parent).free - leave
    with path.open("wb") as f:
        chunk = b"\0" * (1 << 20)
        written = 0
        while written < free:
            n = min(len(chunk), free - written)
            try:
                f.write(chunk[:n])
            except OSError:
                break
            written += n
    return written


def mount_tmpfs(mnt: Path) -> None:
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "omnidesk-faults", str(mnt)],
        check=True,
        timeout=30,
    )


def umount(mnt: Path) -> None:
    with contextlib.suppress(subprocess.SubprocessError):
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


async def health(url: str) -> str:
    """/healthz's status and what it says of the store, e.g. ``200/store-ok``."""
    async with httpx.AsyncClient(timeout=10) as c:
        try:
            r = await c.get(f"{url}/healthz")
            return f"{r.status_code}/store-{'ok' if r.json()['store']['ok'] else 'down'}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return f"none/{type(exc).__name__}"


async def run(
    tmp: Path, *, full_for: float, say: Any
) -> tuple[list[Account], dict[str, Any]] | None:
    if not can_mount():
        return None
    mnt = tmp / "mnt"
    mount_tmpfs(mnt)
    ports = Ports()
    base = ports.url
    db_file = mnt / "omnidesk.db"
    daemon = DaemonProc(
        tmp,
        ports,
        [api_channel(), smtp_channel(ports.smtp)],
        store_url=f"sqlite:///{db_file}",
        data_dir=mnt / "data",
        processes=1,
    )
    smtp = SmtpSender("full", ports.smtp, workers=3)
    smtp.padding = 8000  # fills the disk in fewer messages
    senders: list[Sender] = [smtp, ApiSender("full", base, workers=3)]
    ballast = mnt / "ballast"
    seen: dict[str, Any] = {}

    async def full_then_space() -> None:
        await asyncio.sleep(1.5)
        before = {s.channel: len(s.acked) for s in senders}
        taken = await asyncio.to_thread(fill, ballast, MARGIN)
        say(f"  ballast {taken / 1e6:.1f} MB: {MARGIN // 1024} KB left on the database's disk")
        # Until the refusals start, then a while longer.
        t0 = time.monotonic()
        while not any(s.refusals for s in senders) and time.monotonic() - t0 < 60:
            await asyncio.sleep(0.1)
        refused_at = {s.channel: len(s.acked) for s in senders}
        await asyncio.sleep(full_for)
        seen["health_while_full"] = await health(base)
        seen["alive_while_full"] = daemon.alive()
        seen["acked_while_full"] = {
            s.channel: len(s.acked) - refused_at[s.channel] for s in senders
        }
        ballast.unlink()
        say(
            "  full: acked before the ballast "
            + ", ".join(f"{k} {v}" for k, v in before.items())
            + f"; refusals {', '.join(f'{s.channel} {dict(s.refusals)}' for s in senders)};"
            f" /healthz while full {seen['health_while_full']}; space back"
        )
        seen["refusals_full"] = {s.channel: dict(s.refusals) for s in senders}

    try:
        daemon.start()
        await daemon.wait_up(channels=("email",))
        await run_senders(senders, full_then_space)
        missing = await wait_stored(daemon.store_url, senders)
        status = daemon.stop()
        integrity = await asyncio.to_thread(check, db_file)
        accounts = []
        for s in senders:
            a = await account("disk-full", s, daemon.store_url)
            if missing.get(s.channel):
                a.extra["missing"] = missing[s.channel]
            accounts.append(a)
    finally:
        daemon.stop()
        umount(mnt)
    api = senders[1]
    assert isinstance(api, ApiSender)
    info = {
        **seen,
        "integrity": integrity,
        "clean_stop_status": status,
        "api_retry_after": ",".join(sorted(api.retry_after)) or "none",
        "errors_logged": logged(daemon.log),
    }
    return accounts, info


def check(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as c:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])
