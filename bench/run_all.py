"""Every benchmark in one command: each ``bench/bench_*.py`` in turn (its own
output as it goes), then the daemon's memory under load, then one table of
every row with its same-run baseline and the ratio.

    python bench/run_all.py                 # the full runs (long: the inbox bench
                                            # fills 1,000,000 messages the first time)
    python bench/run_all.py --quick         # small sizes, one pass each: a few minutes
    python bench/run_all.py --only rules,mime [--markdown results.md]

The rows come from the benches themselves (``bench/benchrows.py``), so the
table says exactly what each bench printed. Memory: ``omnidesk run`` in a
child process with one pipeline process (the example configuration's
layout), SMTP, API and WhatsApp webhook load from this process; its resident
memory with its pipeline process, idle (the baseline) and at its peak,
sampled every 0.1 s. A bench that fails is reported with its exit status and
the run goes on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO)]

from benchrows import DEFAULT_RATIO, ENV, record  # noqa: E402

# name: (script, quick arguments); the full run uses each bench's defaults.
BENCHES: dict[str, tuple[str, list[str]]] = {
    "pipeline": ("bench_pipeline.py", ["--messages", "1000", "--repeat", "1"]),
    "rules": ("bench_rules.py", []),
    "mime": ("bench_mime.py", ["--seconds", "0.6"]),
    "email": ("bench_email.py", ["--messages", "400", "--repeat", "1", "--no-peer"]),
    "webhooks": ("bench_webhooks.py", ["--deliveries", "1000", "--warmup", "200", "--rounds", "1"]),
    "webchat": ("bench_webchat.py", ["--messages", "400", "--replies", "30"]),
    "inbox": ("bench_inbox.py", ["--messages", "20000", "--contacts", "2000", "--requests", "60"]),
    "instances": ("bench_instances.py", ["--messages", "400", "--instances", "1,2"]),
    "import": ("bench_import.py", ["--contacts", "10000"]),
}


def run_bench(name: str, quick: bool, rows_file: Path) -> tuple[int, float]:
    script, quick_args = BENCHES[name]
    args = quick_args if quick else []
    print(f"\n=== {name}: python bench/{script} {' '.join(args)}", flush=True)
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env={**os.environ, ENV: str(rows_file)},
        cwd=REPO,
    )
    return r.returncode, time.monotonic() - t0


async def memory_under_load(seconds: float) -> dict[str, float]:
    """The daemon idle, then under SMTP, API and webhook load."""
    from faultkit.daemon import (
        DaemonProc,
        Ports,
        api_channel,
        raise_fd_limit,
        smtp_channel,
        whatsapp_channel,
    )
    from faultkit.kill import wait_stored
    from faultkit.load import ApiSender, Sender, SmtpSender, WebhookSender, run_senders

    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="omnidesk-rss-") as d:
        ports = Ports()
        channels = [api_channel(), smtp_channel(ports.smtp), whatsapp_channel()]
        daemon = DaemonProc(Path(d), ports, channels, processes=1)
        senders: list[Sender] = [
            SmtpSender("rss", ports.smtp, workers=8),
            ApiSender("rss", daemon.url, workers=8),
            WebhookSender("rss", daemon.url, workers=4),
        ]
        try:
            daemon.start()
            await daemon.wait_up(channels=("email",))
            await asyncio.sleep(3.0)  # the pipeline process ready and settled
            idle = daemon.rss()
            daemon.start_sampling()
            t0 = time.monotonic()
            await run_senders(senders, lambda: asyncio.sleep(seconds))
            took = time.monotonic() - t0
            await wait_stored(daemon.store_url, senders)
            peak = daemon.peak_rss
            after = daemon.rss()
        finally:
            daemon.stop()
    acked = sum(len(s.acked) for s in senders)
    return {"idle": idle, "peak": peak, "after": after, "acked": acked, "rate": acked / took}


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def machine() -> str:
    from faults import machine as describe

    return describe()


def markdown(rows: list[dict[str, Any]], header: str, failed: dict[str, int]) -> str:
    out = [
        header,
        "",
        "| bench | row | figure | baseline (same run) | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        base = f"{r['baseline']}: {fmt(r['baseline_value'])} {r['unit']}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        if r["ratio"] is not None and r["ratio_means"] != DEFAULT_RATIO:
            ratio += f" ({r['ratio_means']})"
        out.append(
            f"| {r['bench']} | {r['what']} | {fmt(r['value'])} {r['unit']} | {base} | {ratio} |"
        )
    for name, status in failed.items():
        out.append(f"| {name} | FAILED (exit status {status}) | - | - | - |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one pass each")
    ap.add_argument("--only", help=f"comma-separated, of {', '.join(BENCHES)}, memory")
    ap.add_argument("--load-seconds", type=float, help="memory: seconds of load (30; quick 8)")
    ap.add_argument("--markdown", type=Path, help="also write the table here, as Markdown")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else [*BENCHES, "memory"]
    unknown = set(names) - {*BENCHES, "memory"}
    if unknown:
        print(f"run_all.py: unknown bench {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    header = (
        f"{'quick' if args.quick else 'full'} run of {started:%Y-%m-%d %H:%M} UTC,"
        f" {machine()}, load average {os.getloadavg()[0]:.2f} at the start"
    )
    print(header, flush=True)
    failed: dict[str, int] = {}
    took: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="omnidesk-bench-rows-") as d:
        rows_file = Path(d) / "rows.jsonl"
        os.environ[ENV] = str(rows_file)  # memory's rows too
        for name in names:
            if name == "memory":
                continue
            status, took[name] = run_bench(name, args.quick, rows_file)
            if status != 0:
                failed[name] = status
        if "memory" in names:
            secs = args.load_seconds or (8.0 if args.quick else 30.0)
            print(f"\n=== memory: the daemon idle, then {secs:.0f} s of load", flush=True)
            t0 = time.monotonic()
            m = await_memory(secs)
            took["memory"] = time.monotonic() - t0
            print(
                f"idle {m['idle']:.0f} MB, peak {m['peak']:.0f} MB under load"
                f" ({m['acked']:,} messages acknowledged, {m['rate']:,.0f}/s), {m['after']:.0f} MB"
                " after it",
                flush=True,
            )
            record(
                "memory",
                "daemon + pipeline process, peak RSS under SMTP, API and webhook load",
                m["peak"],
                "MB",
                baseline="the same daemon idle",
                baseline_value=m["idle"],
                ratio=m["peak"] / m["idle"],
            )
        rows = load_rows(rows_file)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"every bench row with its same-run baseline: {header}")
    for col in ("bench", "row", "figure", "baseline (same run)", "ratio"):
        table.add_column(col, justify="right" if col in ("figure", "ratio") else "left")
    for r in rows:
        table.add_row(
            r["bench"],
            r["what"],
            f"{fmt(r['value'])} {r['unit']}",
            f"{r['baseline']}: {fmt(r['baseline_value'])} {r['unit']}",
            f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-",
        )
    for name, status in failed.items():
        table.add_row(name, f"[red]FAILED[/red] (exit status {status})", "-", "-", "-")
    Console(width=200).print(table)
    print("took: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
    if args.markdown:
        args.markdown.write_text(markdown(rows, header, failed), encoding="utf-8")
        print(f"written to {args.markdown}")
    return 1 if failed else 0


def await_memory(seconds: float) -> dict[str, float]:
    return asyncio.run(memory_under_load(seconds))


if __name__ == "__main__":
    sys.exit(main())
