"""The fault suite: one command that breaks a running daemon in the ways
production does and counts what happened to every acknowledged message.

    python bench/faults.py --short     # a few minutes; CI runs this (tests/faults/)
    python bench/faults.py --long      # on demand: 20 kill cycles per pipeline layout
    python bench/faults.py --only kill,disk-full [--seed N] [--keep]

Scenarios (each against ``omnidesk run`` in a child process, real clients):

* ``kill``: SIGKILL at random moments under SMTP, IMAP (Dovecot), API and
  webhook load, for every pipeline layout (``processes`` = 0, 1, 2); 2 cycles
  each in the short run, 20 in the long one (faultkit/kill.py).
* ``outbound``: the SMTP relay, a provider API (the Graph API stand-in) and
  an API channel's callback down while agents reply, then back: every queued
  reply delivered exactly once (faultkit/outbound.py).
* ``postgres``: a PostgreSQL cluster of the suite's own (initdb, pg_ctl, a
  temporary directory; never the machine's server) restarted under load
  (faultkit/postgres.py).
* ``disk-full``: the SQLite database on a filesystem that fills up: a clear
  refusal (SMTP 451, HTTP 503 with Retry-After), no corruption, everything
  taken once space returns (faultkit/diskfull.py).
* ``crowd``: 500 concurrent SMTP connections; slow-loris clients on SMTP and
  HTTP while others are served; the daemon's memory (faultkit/crowd.py).

Output: an ``ACCOUNT`` line per scenario and channel (offered, acked,
stored, quarantined, lost, duplicated; for replies queued and delivered), a
``RESULT`` line per scenario's other checks, and a last ``TOTAL`` line
(docs/RELIABILITY.md explains the fields). Exit status 1 when any
acknowledged message was lost or stored twice, or a check failed; a scenario
that breaks is reported as failed and the others still run. Figures depend
on the machine; the accounting does not. Needs the test extras
(``pip install -e '.[test]'``: the Dovecot set-up and the Graph API stand-in
live in ``tests/``); the disk-full scenario needs root to mount its tmpfs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO)]

from faultkit.daemon import raise_fd_limit  # noqa: E402
from faultkit.tally import Account  # noqa: E402

SCENARIOS = ("kill", "outbound", "postgres", "disk-full", "crowd")
LAYOUTS = (0, 1, 2)


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GB RAM, Python {platform.python_version()}"


@contextlib.contextmanager
def dovecot_server(tmp: Path) -> Iterator[Any]:
    """Dovecot for the IMAP load (None where it is not installed)."""
    from bench_email import start_dovecot

    d = start_dovecot(tmp)
    try:
        yield d
    finally:
        if d is not None:
            d.stop()
            shutil.rmtree(d.root, ignore_errors=True)


class Report:
    def __init__(self) -> None:
        self.accounts: list[Account] = []
        self.results: list[dict[str, Any]] = []

    def add(self, accounts: list[Account]) -> None:
        for a in accounts:
            self.accounts.append(a)
            say(a.line())

    def result(self, scenario: str, ok: bool, **fields: Any) -> None:
        self.results.append({"scenario": scenario, "ok": ok, **fields})
        say(
            f"RESULT scenario={scenario} ok={'yes' if ok else 'NO'} "
            + " ".join(f"{k}={v}" for k, v in fields.items())
        )

    def failed(self) -> list[str]:
        bad = [f"{a.scenario}/{a.channel}" for a in self.accounts if not a.ok()]
        return bad + [r["scenario"] for r in self.results if not r["ok"]]

    def total(self) -> str:
        acked = sum(a.acked for a in self.accounts)
        lost = sum(a.lost for a in self.accounts)
        dup = sum(a.duplicated for a in self.accounts)
        return (
            f"TOTAL acked={acked} lost={lost} duplicated={dup}"
            f" checks={len(self.accounts) + len(self.results)} failed={len(self.failed())}"
        )


@dataclass
class Options:
    long: bool
    cycles: int
    seed: int


async def scenario_kill(report: Report, tmp: Path, o: Options) -> None:
    from faultkit import kill

    with dovecot_server(tmp) as dovecot:
        if dovecot is None:
            say("note: Dovecot not installed (dovecot-imapd): no IMAP load")
        for p in LAYOUTS:
            say(f"kill: processes={p}, {o.cycles} SIGKILL cycles under load ...")
            accounts, info = await kill.run(
                tmp / f"processes-{p}",
                dovecot,
                processes=p,
                cycles=o.cycles,
                seed=o.seed + p,
                say=say,
            )
            report.add(accounts)
            report.result(
                f"kill/processes={p}",
                info["clean_stop_status"] == 0,
                kills=info["kills"],
                while_starting=info["while_starting"],
                clean_stop_status=info["clean_stop_status"],
                errors_logged=_events(info["errors_logged"]),
            )


async def scenario_outbound(report: Report, tmp: Path, o: Options) -> None:
    from faultkit import outbound

    say("outbound: relay, Graph API and API callback down while agents reply ...")
    accounts, info = await outbound.run(
        tmp, per_channel=10 if o.long else 4, down_for=15 if o.long else 4, say=say
    )
    report.add(accounts)
    report.result(
        "outbound",
        info["clean_stop_status"] == 0 and not info["refused"],
        replies_refused=_events(info["refused"]),
        clean_stop_status=info["clean_stop_status"],
        errors_logged=_events(info["errors_logged"]),
    )


async def scenario_postgres(report: Report, tmp: Path, o: Options) -> None:
    from faultkit import postgres

    say("postgres: a cluster of the suite's own restarted under load ...")
    got = await postgres.run(tmp, restarts=6 if o.long else 2, seed=o.seed, say=say)
    if got is None:
        say("note: no PostgreSQL server binaries (initdb, pg_ctl): scenario skipped")
        report.result("postgres-restart", not os.environ.get("CI"), skipped="no-initdb")
    else:
        accounts, info = got
        report.add(accounts)
        report.result(
            "postgres-restart",
            info["daemon_survived"] and info["clean_stop_status"] == 0,
            restarts=info["restarts"],
            daemon_survived="yes" if info["daemon_survived"] else "NO",
            clean_stop_status=info["clean_stop_status"],
            errors_logged=_events(info["errors_logged"]),
        )


async def scenario_disk_full(report: Report, tmp: Path, o: Options) -> None:
    from faultkit import diskfull

    say("disk-full: the SQLite database's filesystem fills up under load ...")
    got = await diskfull.run(tmp, full_for=8 if o.long else 3, say=say)
    if got is None:
        say("note: mounting a small tmpfs needs root: disk-full scenario skipped")
        report.result("disk-full", True, skipped="not-root")
    else:
        accounts, info = got
        report.add(accounts)
        refusals = info.get("refusals_full", {})
        report.result(
            "disk-full",
            info.get("alive_while_full", False)
            and info["integrity"] == "ok"
            and info["clean_stop_status"] == 0
            and all(refusals.get(ch) for ch in ("smtp", "api"))
            and "503" in refusals.get("api", {})
            and info["api_retry_after"] != "none"
            and not any(a.quarantined for a in accounts),
            integrity=info["integrity"],
            refused_while_full=";".join(f"{ch}:{_events(r)}" for ch, r in sorted(refusals.items())),
            api_retry_after=info["api_retry_after"],
            healthz_while_full=info.get("health_while_full"),
            clean_stop_status=info["clean_stop_status"],
            errors_logged=_events(info["errors_logged"]),
        )


async def scenario_crowd(report: Report, tmp: Path, o: Options) -> None:
    from faultkit import crowd

    say("crowd: 500 SMTP connections at once, then slow-loris on SMTP and HTTP ...")
    out = await crowd.run(
        tmp,
        connections=500,
        loris=300 if o.long else 150,
        seconds=10 if o.long else 4,
        say=say,
    )
    report.add(out["accounts"])
    burst = out["burst"]
    report.result(
        "crowd/smtp-500",
        len(burst["acked"]) == 500 and not burst["errors"],
        greeted=burst["greeted"],
        got_250=len(burst["acked"]),
        seconds=f"{burst['secs']:.1f}",
        client_errors=_events(burst["errors"]),
        rss_idle_mb=f"{out['rss_idle_mb']:.0f}",
        rss_after_mb=f"{out['rss_after_burst_mb']:.0f}",
    )
    growth = out["peak_during_loris_mb"] - out["rss_idle_mb"]
    report.result(
        "crowd/slow-loris",
        out["alive"]
        and out["clean_stop_status"] == 0
        and all(v["done"] and not v["refusals"] for v in out["senders"].values())
        and all(out["during"].values())
        and growth < crowd.MEMORY_BOUND_MB,
        slow_connections=out["loris_open"],
        still_open_at_end=out["loris_open_at_end"],
        others_per_s_before=_rates(out["baseline"]),
        others_per_s_during=_rates(out["during"]),
        rss_idle_mb=f"{out['rss_idle_mb']:.0f}",
        rss_peak_mb=f"{out['peak_rss_mb']:.0f}",
        growth_during_loris_mb=f"{growth:.0f}",
        bound_mb=crowd.MEMORY_BOUND_MB,
        errors_logged=_events(out["errors_logged"]),
    )


SCENARIO_RUNS = {
    "kill": scenario_kill,
    "outbound": scenario_outbound,
    "postgres": scenario_postgres,
    "disk-full": scenario_disk_full,
    "crowd": scenario_crowd,
}


async def main(args: argparse.Namespace) -> int:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    raise_fd_limit()
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        say(f"faults.py: unknown scenario {', '.join(sorted(unknown))} (one of {SCENARIOS})")
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    random.seed(seed)
    o = Options(long=args.long, cycles=args.cycles or (20 if args.long else 2), seed=seed)
    started = time.monotonic()
    say(
        f"fault suite, {'long' if o.long else 'short'} run, seed {seed},"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}"
    )
    report = Report()
    tmp = Path(tempfile.mkdtemp(prefix="omnidesk-faults-"))
    try:
        for name in SCENARIOS:
            if name not in only:
                continue
            try:
                await SCENARIO_RUNS[name](report, tmp / name, o)
            except Exception as exc:
                # One broken scenario is a failure to report, not the end of the run.
                say(traceback.format_exc())
                report.result(name, False, error=type(exc).__name__)
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"took {time.monotonic() - started:.0f} s")
    failed = report.failed()
    if failed:
        say("FAILED: " + ", ".join(failed))
    say(report.total())
    return 1 if failed else 0


def _rates(rates: dict[str, float]) -> str:
    return ",".join(f"{k}:{v:.0f}" for k, v in sorted(rates.items()))


def _events(counts: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "none"


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="the CI run (the default)")
    mode.add_argument("--long", action="store_true", help="20 kill cycles per layout and more")
    ap.add_argument("--only", help=f"comma-separated scenarios of {', '.join(SCENARIOS)}")
    ap.add_argument("--cycles", type=int, help="SIGKILL cycles per layout")
    ap.add_argument("--seed", type=int, help="random seed (printed; reuse to repeat a run)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    sys.exit(asyncio.run(main(ap.parse_args())))


if __name__ == "__main__":
    cli()
