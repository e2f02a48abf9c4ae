"""``omnidesk run`` in a process of its own, with every channel that takes
HTTP, for the tests that need a real daemon from the outside: its memory
(``/proc``), its log file, and callers that block (schemathesis runs its
requests synchronously, which an in-process daemon on the test's event loop
could not answer).

Providers' APIs are pointed at a closed port: these tests send what an
attacker sends, to the daemon's own endpoints, and never need an answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
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

from omnidesk.accounts import hash_password
from omnidesk.store import open_store
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user
from tests.conftest import RULES

NOWHERE = "http://127.0.0.1:9"  # nothing listens there
OTHER_TEAMS = ("billing", "vip", "escalations", "china")  # teams the shipped rules name
SECRETS = {
    "api": "api-secret-0f3a9c1e7b5d2f4a",
    "tg_token": "123456:tg-bot-token-5e8d1c7a9b3f",
    "tg_secret": "tg-secret-token-7c2e9a4b1d6f",
    "slack_bot": "xoxb-slack-bot-token-3a7f1c9e5d2b",
    "slack_signing": "slack-signing-secret-8b4d2f6a1c9e",
    "meta_app": "meta-app-secret-6d1f8b3a9c2e",
    "meta_verify": "meta-verify-token-2c9e5a7f1b4d",
    "meta_access": "meta-access-token-9a3c7e1f5b2d",
    "webchat": "webchat-secret-4f8b2d6a9c1e3b7d",
}
PASSWORDS = {
    "root": "root-pass-5c8e1a7f",
    "alice": "alice-pass-3b9d2f6a",
    "carol": "carol-pass-7e1a4c9b",
}


def _channels() -> list[dict[str, Any]]:
    s = SECRETS
    return [
        {"name": "api", "type": "api", "secret": s["api"]},
        {
            "name": "tg",
            "type": "telegram",
            "mode": "webhook",
            "token": s["tg_token"],
            "secret_token": s["tg_secret"],
            "api_base_url": NOWHERE,
            "set_webhook": False,
        },
        {
            "name": "sl",
            "type": "slack",
            "bot_token": s["slack_bot"],
            "signing_secret": s["slack_signing"],
            "api_base_url": NOWHERE + "/api/",
            "fetch_profiles": False,
        },
        {
            "name": "fb",
            "type": "messenger",
            "app_secret": s["meta_app"],
            "verify_token": s["meta_verify"],
            "access_token": s["meta_access"],
            "page_id": "1000",
            "api_base_url": NOWHERE,
            "check_token": False,
        },
        {"name": "chat", "type": "webchat", "secret": s["webchat"]},
    ]


CHANNELS = _channels()  # every channel that takes HTTP, by name: api, tg, sl, fb, chat


def channels_toml() -> str:
    def value(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    return "".join(
        "\n[[channels]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in ch.items())
        for ch in CHANNELS
    )


@dataclass
class DaemonProc:
    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)  # name -> bearer secret

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


async def _seed(store_url: str, teams: Any) -> dict[str, str]:
    """Teams (the daemon would seed them at start, but accounts name them
    first), three accounts with a token each, and a token without a user."""
    from omnidesk.store.users import seed_teams

    store = open_store(store_url)
    await store.open()
    try:
        await store.write(seed_teams, teams)
        tokens = {}
        for name, role, teams in (
            ("root", "admin", []),
            ("alice", "agent", ["support"]),
            ("carol", "agent", ["complaints"]),
        ):
            pw = hash_password(PASSWORDS[name])
            await store.write(
                lambda db, n=name, r=role, t=teams, h=pw: create_user(
                    db, n, role=r, password_hash=h, teams=t
                )
            )
            tokens[name] = await store.write(create_token, role, name="tests", username=name)
        # A token made without a user, as `omnidesk tokens create --role admin` makes.
        tokens["ci"] = await store.write(create_token, "admin", name="ci")
        return tokens
    finally:
        await store.close()


def start_daemon(
    tmp: Path, store_url: str, *, log_level: str = "info", web: dict[str, Any] | None = None
) -> DaemonProc:
    """Write a config, create accounts, start ``omnidesk run`` and wait until
    it serves (its log is JSON lines in ``tmp/daemon.log``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:  # a free port (port 0 would need the log to find it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp / "config.toml"
    web_keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (web or {}).items())
    config.write_text(
        f"""
[daemon]
data_dir = "{tmp / "data"}"
log_level = "{log_level}"

[storage]
url = "{store_url}"

[web]
host = "127.0.0.1"
port = {port}
{web_keys}
[rules]
dir = "{RULES}"
watch = false

[pipeline]
default_team = "support"

[[teams]]
name = "support"
members = ["alice"]

[[teams]]
name = "complaints"
members = ["carol"]
"""
        + "".join(f'\n[[teams]]\nname = "{t}"\nmembers = []\n' for t in OTHER_TEAMS)
        + channels_toml()
    )
    from omnidesk.config import load_config

    tokens = asyncio.run(_seed(store_url, load_config(config).teams))
    log = tmp / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole
        )
    deadline = time.monotonic() + 60
    base = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"daemon did not start:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + "/healthz", timeout=5).status_code in (200, 503):
                break
        if time.monotonic() > deadline:
            raise AssertionError("daemon does not answer /healthz")
        time.sleep(0.1)
    return DaemonProc(proc, base, port, log, tokens)
