"""``omnidesk imap backfill CHANNEL --since DATE`` as a user runs it: a
subprocess against a config file, a progress bar, a summary; run twice it
stores nothing twice; the daemon then processes the mail without sending
acknowledgements for last month's messages."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from omnidesk.channels.imap import parse_since
from omnidesk.config import load_config
from tests.conftest import RULES, settle

from .conftest import Dovecot, Relay, mail, rows

pytestmark = pytest.mark.dovecot

DAY = 86400.0


def write_config(tmp: Path, store_url: str, dovecot: Dovecot, user: Any, relay: Relay) -> Path:
    cfg = tmp / "omnidesk.toml"
    cfg.write_text(f"""
[daemon]
data_dir = "{tmp / "data"}"
log_level = "warning"
[storage]
url = "{store_url}"
[web]
port = 0
[rules]
dir = "{RULES}"
watch = false
[pipeline]
processes = 0
[outbox]
backoff_base = 0.05
[[channels]]
name = "inbox"
type = "imap"
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
username = "{user.name}"
password = "env:TEST_IMAP_PASSWORD"
first_sync = "none"
from_address = "support@example.com"
auto_acknowledge = "We received your message."
[channels.relay]
host = "127.0.0.1"
port = {relay.port}
tls = "none"
""")
    return cfg


def backfill(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", "imap", "backfill", *args, "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TEST_IMAP_PASSWORD": "secret", "COLUMNS": "120"},
    )


async def test_backfill_command(
    tmp_path: Path,
    store_url: str,
    dovecot: Dovecot,
    relay: Relay,
    daemon_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "secret")
    user = dovecot.add_user()
    now = time.time()
    recent = [mail(f"recent {i}", sender=f"c{i}@example.org") for i in range(3)]
    ancient, ancient_id = mail("two months old")
    for raw, _ in recent:
        await asyncio.to_thread(dovecot.append, user, raw, when=now - 10 * DAY)
    await asyncio.to_thread(dovecot.append, user, ancient, when=now - 60 * DAY)
    cfg = write_config(tmp_path, store_url, dovecot, user, relay)

    first = await asyncio.to_thread(backfill, cfg, "inbox", "--since", "30d")
    assert first.returncode == 0, first.stderr
    assert "3 messages since" in first.stdout and "3 new" in first.stdout
    assert "INBOX" in first.stdout  # the progress bar names the folder
    again = await asyncio.to_thread(backfill, cfg, "inbox", "--since", "30d", "--no-mark")
    assert again.returncode == 0, again.stderr
    assert "0 new, 3 already stored" in again.stdout

    flags = await asyncio.to_thread(dovecot.flags, user)
    assert all("\\Seen" in flags[mid] for _, mid in recent)
    assert "\\Seen" not in flags[ancient_id]

    # The daemon processes what the command accepted; nobody gets an
    # acknowledgement for mail from ten days ago.
    daemon = await daemon_factory(load_config(cfg), web=False)
    await settle(daemon)
    found = await rows(daemon, "SELECT external_id FROM messages WHERE direction = 'in'")
    assert sorted(r["external_id"] for r in found) == sorted(mid for _, mid in recent)
    await asyncio.sleep(0.3)
    assert relay.received == []


async def test_backfill_command_errors(
    tmp_path: Path, store_url: str, dovecot: Dovecot, relay: Relay
) -> None:
    user = dovecot.add_user()
    cfg = write_config(tmp_path, store_url, dovecot, user, relay)
    unknown = await asyncio.to_thread(backfill, cfg, "nosuch", "--since", "7d")
    assert unknown.returncode == 2 and "no enabled channel named 'nosuch'" in unknown.stderr
    bad_date = await asyncio.to_thread(backfill, cfg, "inbox", "--since", "last tuesday")
    assert bad_date.returncode == 2 and "2026-01-31" in bad_date.stderr
    user.password = "changed"
    (dovecot.root / "users" / user.name).write_text(f"{user.name}:{{PLAIN}}changed::::::\n")
    refused = await asyncio.to_thread(backfill, cfg, "inbox", "--since", "7d", "-q")
    assert refused.returncode == 1 and "login as" in refused.stderr


def test_parse_since() -> None:
    assert parse_since("2026-01-31").isoformat() == "2026-01-31"
    assert (time.time() - time.mktime(parse_since("7d").timetuple())) // DAY in (6, 7)
    with pytest.raises(ValueError):
        parse_since("yesterday")
