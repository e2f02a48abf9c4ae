"""PostgreSQL restarted under load.

The suite makes a cluster of its own (``initdb`` into a temporary
directory, ``pg_ctl`` on a free port; as root it runs them as the
``postgres`` user, which PostgreSQL requires) and never touches the
machine's server. The daemon (a pipeline process, SMTP, API and webhook
load) keeps running while the server is restarted, alternately with
``-m fast`` (clients disconnected, a clean shutdown) and ``-m immediate``
(a crash: WAL recovery at the next start). Senders retry what was refused
meanwhile (SMTP 451, HTTP 503); afterwards every acknowledged message must
be stored once, and the daemon must have stayed up."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import random
import shutil
import subprocess
import tempfile
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
from .kill import wait_stored
from .load import ApiSender, Sender, SmtpSender, WebhookSender, run_senders
from .tally import Account, account


def pg_bindir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


class Cluster:
    """A throwaway PostgreSQL server: ``start``, ``restart(mode)``, ``destroy``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        # Not under a 0700 folder of root's: the server runs as ``postgres``.
        self.root = Path(tempfile.mkdtemp(prefix="omnidesk-faults-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if r.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)}: {r.stderr.strip()}\n{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-o", opts, *extra
        )

    def restart(self, mode: str) -> float:
        """Seconds the server was away."""
        t0 = time.monotonic()
        if mode == "immediate":
            # pg_ctl restart waits for a clean stop; a crash is stop + start.
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
            self._pg_ctl("start")
        else:
            self._pg_ctl("restart", "-m", mode)
        return time.monotonic() - t0

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
            except (RuntimeError, subprocess.SubprocessError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


async def store_back(url: str, timeout: float = 60) -> float:
    """Seconds until /healthz reports the store reachable again."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as c:
        while time.monotonic() - t0 < timeout:
            try:
                r = await c.get(f"{url}/healthz")
                if r.status_code == 200 and r.json()["store"]["ok"]:
                    return time.monotonic() - t0
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.1)
    return float("inf")


async def run(
    tmp: Path, *, restarts: int, seed: int, say: Any
) -> tuple[list[Account], dict[str, Any]] | None:
    bindir = pg_bindir()
    if bindir is None:
        return None
    rnd = random.Random(seed)
    cluster = Cluster(bindir)
    cluster.start()
    ports = Ports()
    base = ports.url
    channels = [api_channel(), smtp_channel(ports.smtp), whatsapp_channel()]
    daemon = DaemonProc(tmp, ports, channels, store_url=cluster.url, processes=1)
    senders: list[Sender] = [
        SmtpSender("pg", ports.smtp, workers=3),
        ApiSender("pg", base, workers=3),
        WebhookSender("pg", base, workers=2),
    ]
    downs: list[str] = []
    survived = True

    async def restarts_under_load() -> None:
        nonlocal survived
        await asyncio.sleep(rnd.uniform(1.0, 2.5))
        for i in range(restarts):
            mode = "fast" if i % 2 == 0 else "immediate"
            away = await asyncio.to_thread(cluster.restart, mode)
            back = await store_back(base)
            downs.append(f"{mode}:{away:.1f}s+{back:.1f}s")
            say(
                f"  restart {i + 1}/{restarts} (-m {mode}): server away {away:.1f} s,"
                f" the daemon's store back {back:.1f} s later; acked so far "
                + ", ".join(f"{s.channel} {len(s.acked)}" for s in senders)
            )
            survived = survived and daemon.alive()
            await asyncio.sleep(rnd.uniform(1.5, 3.0))

    try:
        daemon.start()
        await daemon.wait_up(channels=("email",))
        await run_senders(senders, restarts_under_load)
        missing = await wait_stored(cluster.url, senders)
        survived = survived and daemon.alive()
        status = daemon.stop()
        accounts = []
        for s in senders:
            a = await account("postgres-restart", s, cluster.url)
            if missing.get(s.channel):
                a.extra["missing"] = missing[s.channel]
            accounts.append(a)
    finally:
        daemon.stop()
        cluster.destroy()
    info = {
        "restarts": ",".join(downs),
        "daemon_survived": survived,
        "clean_stop_status": status,
        "errors_logged": logged(daemon.log),
    }
    return accounts, info
