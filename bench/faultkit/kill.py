"""SIGKILL at random moments under SMTP, IMAP, API and webhook load.

One pipeline layout (``processes`` = 0, 1 or 2) on a fresh SQLite database:
the senders run all along; the daemon is started, killed with SIGKILL at a
random moment (three cycles in four a random time after it serves, the
second of every four while it is still starting: migrations, the in-flight
check, the pipeline processes), ``cycles`` times, then started for good. The senders retry what
was refused, a tenth of what was acknowledged is delivered again, and when
the queue is empty every channel is counted: each acknowledged message
stored, none twice. The IMAP acknowledgement is the ``\\Seen`` flag, read
from Dovecot after every kill."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from .daemon import (
    DaemonProc,
    Ports,
    api_channel,
    imap_channel,
    logged,
    smtp_channel,
    whatsapp_channel,
)
from .load import ApiSender, ImapFeeder, Sender, SmtpSender, WebhookSender, run_senders
from .tally import Account, account, store_counts, stored_key

REDELIVER_SHARE = 0.1


async def wait_stored(
    store_url: str, senders: list[Sender], timeout: float = 180
) -> dict[str, int]:
    """Until nothing is pending and every acknowledged message is in (or
    quarantined), or the timeout; what is still missing per channel."""
    from .tally import STORE_CHANNEL

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        missing = {}
        for s in senders:
            got = await store_counts(store_url, STORE_CHANNEL[s.channel])
            absent = sum(
                1
                for i in s.acked
                if stored_key(s, i) not in got["messages"]
                and stored_key(s, i) not in got["quarantined"]
            )
            if absent or got["pending"]:
                missing[s.channel] = absent + got["pending"]
        if not missing or asyncio.get_running_loop().time() > deadline:
            return missing
        await asyncio.sleep(0.5)


async def run(
    tmp: Path, dovecot: Any, *, processes: int, cycles: int, seed: int, say: Any
) -> tuple[list[Account], dict[str, Any]]:
    rnd = random.Random(seed)
    ports = Ports()
    tag = f"k{processes}s{seed}"
    channels = [
        api_channel(),
        smtp_channel(ports.smtp),
        whatsapp_channel(),
    ]
    senders: list[Sender] = [
        SmtpSender(tag, ports.smtp, workers=3),
        ApiSender(tag, ports.url, workers=3),
        WebhookSender(tag, ports.url, workers=2),
    ]
    feeder: ImapFeeder | None = None
    if dovecot is not None:
        user = dovecot.add_user()
        channels.append(imap_channel(dovecot.port, user.name, user.password))
        feeder = ImapFeeder(tag, dovecot.port, user.name, user.password, rate=15)
        senders.append(feeder)
    daemon = DaemonProc(tmp, ports, channels, processes=processes)
    store_url = daemon.store_url
    seen: set[str] = set()
    kills: list[str] = []
    startup = 3.0

    async def cycles_then_up() -> None:
        nonlocal startup
        for c in range(cycles):
            daemon.start()
            if c % 4 == 1:
                # While it starts: a random moment of the last start-up.
                await asyncio.sleep(rnd.uniform(0.1, startup))
                when = "starting"
            else:
                startup = await daemon.wait_up(channels=("email",))
                await asyncio.sleep(rnd.uniform(0.3, 2.5))
                when = "serving"
            daemon.kill()
            kills.append(when)
            if feeder is not None:
                seen.update(await asyncio.to_thread(feeder.read_seen))
            say(
                f"  processes={processes} kill {c + 1}/{cycles} ({when}):"
                f" acked so far "
                + ", ".join(f"{s.channel} {len(s.acked)}" for s in senders if s is not feeder)
                + (f", imap seen {len(seen)}" if feeder else "")
            )
        daemon.start()
        await daemon.wait_up(channels=("email",))
        await asyncio.sleep(1.0)
        for s in senders:
            if s is not feeder:
                s.redeliver(REDELIVER_SHARE)

    try:
        done = await run_senders(senders, cycles_then_up)
        missing = await wait_stored(store_url, senders)
        if feeder is not None:
            seen.update(await asyncio.to_thread(feeder.read_seen))
        status = daemon.stop()
    finally:
        daemon.kill()  # only if still running (a failed scenario)
    scenario = f"kill/processes={processes}"
    accounts = []
    for s in senders:
        a = await account(scenario, s, store_url, acked=seen if s is feeder else None)
        if not done[s.channel]:
            a.extra["unacknowledged"] = s.outstanding()
        if missing.get(s.channel):
            a.extra["missing"] = missing[s.channel]
        accounts.append(a)
    info = {
        "kills": len(kills),
        "while_starting": kills.count("starting"),
        "clean_stop_status": status,
        "errors_logged": logged(daemon.log),
    }
    return accounts, info
