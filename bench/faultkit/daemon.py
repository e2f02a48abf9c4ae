"""``omnidesk run`` in a child process: the configuration file, start, wait
until it serves, SIGKILL, a clean stop, and its memory (the daemon with its
pipeline and parse processes)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomlkit

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
API_SECRET = "faults-api-secret-" + "x" * 16
META_SECRET = "faults-app-secret-0123456789"
NUMBER_ID = "109876543210"
SUPPORT = "support@example.com"
# Secrets reach the daemon through its environment, as in production.
SECRETS_ENV = {"FAULTS_API_SECRET": API_SECRET, "FAULTS_META_SECRET": META_SECRET}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> None:
    """Hundreds of client sockets here and as many connections in the daemon
    (a child inherits the limit): lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Ports:
    web: int = field(default_factory=free_port)
    smtp: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        """The daemon's web server."""
        return f"http://127.0.0.1:{self.web}"


def api_channel(callback_url: str | None = None) -> dict[str, Any]:
    ch: dict[str, Any] = {"name": "api", "type": "api", "secret": "env:FAULTS_API_SECRET"}
    if callback_url:
        ch["callback_url"] = callback_url
        ch["timeout"] = 2.0
    return ch


def smtp_channel(port: int, relay_port: int | None = None, **extra: Any) -> dict[str, Any]:
    ch: dict[str, Any] = {
        "name": "email",
        "type": "smtp",
        "port": port,
        "accept": [SUPPORT],
        "from_address": SUPPORT,
        **extra,
    }
    if relay_port is not None:
        ch["relay"] = {"host": "127.0.0.1", "port": relay_port, "tls": "none", "timeout": 2.0}
    return ch


def whatsapp_channel(api_base_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
        "name": "wa",
        "type": "whatsapp",
        "app_secret": "env:FAULTS_META_SECRET",
        "verify_token": "faults",
        "access_token": "test-access-token",
        "phone_number_id": NUMBER_ID,
        "api_base_url": api_base_url,
        "check_token": False,
        "timeout": 2.0,
    }


def imap_channel(port: int, user: str, password: str) -> dict[str, Any]:
    return {
        "name": "inbox",
        "type": "imap",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": user,
        "password": password,
        "from_address": SUPPORT,
        "first_sync": "all",
        "timeout": 5,
        "backoff_base": 0.2,
        "backoff_max": 2.0,
    }


def write_config(
    path: Path,
    *,
    data_dir: Path,
    store_url: str,
    web_port: int,
    channels: list[dict[str, Any]],
    processes: int = 0,
    outbox: dict[str, Any] | None = None,
) -> Path:
    doc: dict[str, Any] = {
        "daemon": {"data_dir": str(data_dir), "log_level": "warning"},
        "storage": {"url": store_url},
        "web": {"host": "127.0.0.1", "port": web_port},
        "rules": {"dir": str(RULES), "watch": False},
        "pipeline": {"batch_size": 16, "processes": processes},
        "outbox": outbox or {},
        "teams": [{"name": "support", "members": ["alice", "bob"]}],
        "channels": channels,
    }
    path.write_text(tomlkit.dumps(doc))
    return path


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


# Loaded here, not in the child: between fork and exec only the call is safe.
_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the suite itself ends, even by
    SIGKILL (a CI time limit), so no daemon outlives it (Linux prctl)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class DaemonProc:
    """One ``omnidesk run -c tmp/config.toml`` with ``channels``; its output
    goes to ``tmp/daemon.log``, its data to ``data_dir`` (``tmp/data``), its
    store is ``store_url`` (SQLite in ``tmp/omnidesk.db``)."""

    def __init__(
        self,
        tmp: Path,
        ports: Ports,
        channels: list[dict[str, Any]],
        *,
        store_url: str | None = None,
        processes: int = 0,
        outbox: dict[str, Any] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url or f"sqlite:///{tmp / 'omnidesk.db'}"
        self.config = write_config(
            tmp / "config.toml",
            data_dir=data_dir or tmp / "data",
            store_url=self.store_url,
            web_port=ports.web,
            channels=channels,
            processes=processes,
            outbox=outbox,
        )
        self.log = tmp / "daemon.log"
        self.web_port = ports.web
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.peak_rss = 0.0
        self._sampler: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {**os.environ, **SECRETS_ENV}
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    async def wait_up(self, timeout: float = 90, channels: tuple[str, ...] = ()) -> float:
        """Until /healthz answers (and ``channels`` run); seconds since start."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as c:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"the daemon exited:\n{self.tail()}")
                try:
                    r = await c.get(f"{self.url}/healthz")
                    states = r.json().get("channels", {})
                    if r.status_code == 200 and all(
                        states.get(ch, {}).get("state") == "running" for ch in channels
                    ):
                        return time.monotonic() - self.started_at
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the daemon did not come up in {timeout:.0f} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, and wait for it (its pipeline processes stop by
        themselves when their pipe to the daemon closes)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.stop_sampling()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: the daemon drains and stops; its exit status."""
        self.stop_sampling()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"the daemon ignored SIGTERM for {timeout:.0f} s") from None
        return int(self.proc.returncode)

    def rss(self) -> float:
        return rss_mb(self.pid) if self.alive() else 0.0

    def start_sampling(self, every: float = 0.1) -> None:
        """Track the peak of ``rss()`` in the background."""

        async def sample() -> None:
            while self.alive():
                self.peak_rss = max(self.peak_rss, self.rss())
                await asyncio.sleep(every)

        self.stop_sampling()
        self._sampler = asyncio.ensure_future(sample())

    def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None


def logged(log: Path, levels: tuple[str, ...] = ("error", "critical")) -> dict[str, int]:
    """Events the daemon logged at ``levels`` (JSON lines), by name; lines
    that are not JSON and start a traceback count as ``traceback``."""
    import collections
    import json

    seen: collections.Counter[str] = collections.Counter()
    if not log.exists():
        return {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("level") in levels:
                seen[str(rec.get("event"))] += 1
        elif line.startswith("Traceback"):
            seen["traceback"] += 1
    return dict(seen)
