"""The daemon's logs hold no e-mail address, phone number or card number of
the test data in clear: ``omnidesk run`` at debug level in a child process,
fed messages carrying them (one malformed, quarantined with its error; one
whose reply delivery fails), contacts imported, exported and erased through
the CLI; then its whole log is grepped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_SECRET, free_port, signed

EMAILS = ["greta.lund@example.se", "hans.meyer@example.de", "imported.ivy@example.com"]
PHONES = ["+4915123456789", "+12025550147"]
CARDS = ["4111111111111111", "5500 0000 0000 0004"]


def omnidesk(*args: str, cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", *args, "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_logs_hold_no_personal_data_in_clear(tmp_path: Path) -> None:
    port = free_port()
    dead = free_port()  # nobody listens: reply deliveries fail and are logged
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[daemon]
data_dir = "{tmp_path}/data"
log_level = "debug"
[storage]
url = "sqlite:///{tmp_path}/data/omnidesk.db"
[web]
port = {port}
[rules]
watch = false
dir = "{Path(__file__).resolve().parents[2] / "rules"}"
[pipeline]
processes = 0
[outbox]
max_attempts = 1
[[channels]]
name = "api"
type = "api"
secret = "{API_SECRET}"
callback_url = "http://127.0.0.1:{dead}/callback"
"""
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            bodies = [
                {
                    "external_id": "l-1",
                    "sender": {"kind": "email", "address": EMAILS[0], "name": "Greta"},
                    "text": f"Card {CARDS[0]}, call {PHONES[0]} or mail {EMAILS[1]}",
                },
                {
                    "external_id": "l-2",
                    "sender": {"kind": "phone", "address": PHONES[1]},
                    "text": f"My other card is {CARDS[1]}",
                },
                {  # not base64: refused with an error naming the field
                    "external_id": "l-3",
                    "sender": {"kind": "email", "address": EMAILS[1]},
                    "text": "",
                    "attachments": [{"filename": EMAILS[1], "data": "%%%"}],
                },
            ]
            for body in bodies:
                raw, headers = signed(body)
                httpx.post(base + "/api/v1/inbound/api", content=raw, headers=headers, timeout=10)
            raw, headers = signed(b"{not json " + EMAILS[1].encode())
            httpx.post(base + "/api/v1/inbound/api", content=raw, headers=headers, timeout=10)
            time.sleep(2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    # The CLI's own logs too: an import, an export and an erasure.
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"email": EMAILS[2], "phone": "+1 202 555 0148", "name": "Ivy"}) + "\n"
    )
    runs = [
        omnidesk("contacts", "import", str(tmp_path / "c.jsonl"), cfg=cfg),
        omnidesk("contacts", "export", "1", "-o", str(tmp_path / "x.zip"), cfg=cfg),
        omnidesk("contacts", "erase", "1", "--confirm", "1", cfg=cfg),
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    text = log.read_text() + "".join(r.stderr + r.stdout for r in runs)
    assert "daemon_started" in text and "contact_erased" in text
    found = [
        s
        for s in [*EMAILS, *PHONES, "+12025550148", *CARDS, CARDS[1].replace(" ", "")]
        if s in text
    ]
    assert not found, f"in clear in the logs: {found}"


@pytest.mark.parametrize("shown", [False, True], ids=["masked", "log_personal_data"])
def test_log_lines_are_masked_unless_asked(shown: bool) -> None:
    """What reaches a log line through structlog (keys, values, the
    traceback's text) and through the standard library's logging: masked,
    unless ``[privacy] log_personal_data = true``."""
    code = f"""
import logging, structlog
from omnidesk import logging as odlog
odlog.configure("debug", json=True, personal_data={shown})
log = structlog.get_logger("t")
log.info("contact_seen", who="{EMAILS[0]}", note="card {CARDS[1]} phone {PHONES[0]}")
try:
    raise ValueError("no such address {EMAILS[1]}")
except ValueError:
    log.exception("failed")
logging.getLogger("lib").warning("lib saw %s", "{EMAILS[2]}")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found = [s for s in [*EMAILS, PHONES[0], CARDS[1]] if s in r.stderr]
    if shown:
        assert found == [*EMAILS, PHONES[0], CARDS[1]]
    else:
        assert not found, r.stderr
        assert "g***@example.se" in r.stderr and "[card ****0004]" in r.stderr
