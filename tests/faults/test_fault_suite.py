"""The fault suite's short run (``bench/faults.py --short``) as a CI test:
SIGKILL under load in every pipeline layout, the relay and provider APIs
down, PostgreSQL restarted, the disk full, 500 connections and slow-loris
clients. Every acknowledged message stored, none twice, each scenario's
accounting line printed exactly; figures are the suite's, not asserted."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

INBOUND = re.compile(
    r"ACCOUNT scenario=(?P<scenario>\S+) channel=(?P<channel>\S+) offered=(?P<offered>\d+)"
    r" acked=(?P<acked>\d+) stored=(?P<stored>\d+) quarantined=(?P<quarantined>\d+)"
    r" lost=(?P<lost>\d+) duplicated=(?P<duplicated>\d+) pending=(?P<pending>\d+)(?: \S+=\S+)*"
)
REPLIES = re.compile(
    r"ACCOUNT scenario=(?P<scenario>\S+) channel=(?P<channel>\S+) queued=(?P<queued>\d+)"
    r" delivered=(?P<delivered>\d+) lost=(?P<lost>\d+) duplicated=(?P<duplicated>\d+)"
    r" failed=(?P<failed>\d+)(?: \S+=\S+)*"
)
RESULT = re.compile(r"RESULT scenario=(?P<scenario>\S+) ok=(?P<ok>yes|NO)(?: \S+=\S+)*")
TOTAL = re.compile(r"TOTAL acked=(\d+) lost=(\d+) duplicated=(\d+) checks=(\d+) failed=(\d+)")


def expected_lines() -> set[tuple[str, str]]:
    """(scenario, channel) of every accounting line the run must print."""
    dovecot = Path(shutil.which("dovecot") or "/usr/sbin/dovecot").exists()
    require_service(dovecot, "Dovecot", "apt-get install -y dovecot-imapd")
    sys.path.insert(0, str(REPO / "bench"))
    from faultkit.postgres import pg_bindir

    require_service(
        pg_bindir() is not None, "PostgreSQL server binaries", "apt-get install -y postgresql"
    )
    want = set()
    for p in (0, 1, 2):
        for ch in ("smtp", "api", "webhook", *(("imap",) if dovecot else ())):
            want.add((f"kill/processes={p}", ch))
    want |= {("outbound", ch) for ch in ("smtp-relay", "graph-api", "api-callback")}
    want |= {("postgres-restart", ch) for ch in ("smtp", "api", "webhook")}
    if os.geteuid() == 0:  # the disk-full scenario mounts a tmpfs
        want |= {("disk-full", ch) for ch in ("smtp", "api")}
    want |= {("crowd/smtp-500", "smtp"), ("crowd/slow-loris", "smtp"), ("crowd/slow-loris", "api")}
    return want


def test_short_fault_suite_loses_and_duplicates_no_acknowledged_message() -> None:
    want = expected_lines()
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faults.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=1700,
        cwd=REPO,
    )
    out = run.stdout
    tail = f"\n--- stdout ---\n{out[-6000:]}\n--- stderr ---\n{run.stderr[-3000:]}"
    lines = out.splitlines()
    accounts = [ln for ln in lines if ln.startswith("ACCOUNT ")]
    seen: set[tuple[str, str]] = set()
    for line in accounts:
        m = INBOUND.fullmatch(line) or REPLIES.fullmatch(line)
        assert m is not None, f"not an accounting line: {line!r}{tail}"
        f = m.groupdict()
        seen.add((f["scenario"], f["channel"]))
        assert f["lost"] == "0" and f["duplicated"] == "0", line + tail
        if "acked" in f:
            # Every acknowledged message is in the store (or quarantined with
            # its bytes, which none of these faults should cause).
            assert int(f["acked"]) > 0, line
            assert f["quarantined"] == "0" and f["pending"] == "0", line
            assert int(f["stored"]) == int(f["acked"]) == int(f["offered"]), line
        else:
            assert int(f["queued"]) > 0 and f["delivered"] == f["queued"], line
            assert f["failed"] == "0", line
    assert seen == want, f"missing {want - seen}, unexpected {seen - want}{tail}"
    results = {m["scenario"]: m["ok"] for ln in lines if (m := RESULT.fullmatch(ln))}
    assert results and all(ok == "yes" for ok in results.values()), f"{results}{tail}"
    total = TOTAL.fullmatch(lines[-1])
    assert total is not None, tail
    acked, lost, duplicated, checks, failed = map(int, total.groups())
    assert acked > 0 and lost == duplicated == failed == 0, lines[-1]
    assert checks == len(accounts) + len(results)
    assert run.returncode == 0, tail
