"""Many clients at once, and slow ones.

* 500 SMTP connections opened at the same moment, each then sending one
  mail: every one must be greeted and get its ``250`` (the listener's
  ``max_connections`` is set above 500 here; its default, 100, answers the
  rest ``421`` so their MTAs come back later).
* Slow-loris: a few hundred SMTP and HTTP connections that trickle a byte a
  second and never finish a command or a request's headers, while ordinary
  senders (SMTP and the signed API) go on. The ordinary senders' rate is
  measured before (the baseline, same run) and during; every one of their
  messages must be acknowledged.

The daemon's memory (with its pipeline process) is sampled all along: idle,
peak, and after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from .daemon import DaemonProc, Ports, api_channel, logged, smtp_channel
from .kill import wait_stored
from .load import ApiSender, Sender, SmtpSender, expect, mail, run_senders, transaction
from .tally import account

MAX_CONNECTIONS = 2000
MEMORY_BOUND_MB = 150  # growth over idle allowed while the slow clients hang on


async def smtp_burst(port: int, n: int, tag: str) -> dict[str, Any]:
    """``n`` connections opened together; all greeted, then one mail each."""
    greeted = asyncio.Event()
    ready = 0
    errors: dict[str, int] = {}

    def fail(exc: BaseException) -> None:
        key = type(exc).__name__
        errors[key] = errors.get(key, 0) + 1

    async def one(i: int) -> str | None:
        nonlocal ready
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
            await expect(reader, b"220", timeout=60)
            writer.write(b"EHLO crowd.example.org\r\n")
            await expect(reader, b"250", timeout=60)
            ready += 1
            if ready == n:
                greeted.set()
            await asyncio.wait_for(greeted.wait(), 120)
            ident = f"{tag}-crowd-{i}"
            answer = await transaction(reader, writer, mail(ident, i))
            return ident if answer.startswith(b"250") else None
        except (OSError, TimeoutError, ConnectionError) as exc:
            fail(exc)
            greeted.set()  # one failed: the others go on without it
            return None
        finally:
            if writer is not None:
                writer.close()

    t0 = time.monotonic()
    got = await asyncio.gather(*(one(i) for i in range(n)))
    acked = [g for g in got if g]
    return {"acked": acked, "greeted": ready, "errors": errors, "secs": time.monotonic() - t0}


class Loris:
    """Connections that send one byte a second and never finish."""

    def __init__(self) -> None:
        self.open = 0
        self.closed_by_server = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def start(self, port: int, n: int, opening: bytes, trickle: bytes) -> None:
        self._tasks += [asyncio.ensure_future(self._one(port, opening, trickle)) for _ in range(n)]

    async def _one(self, port: int, opening: bytes, trickle: bytes) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
        except (OSError, TimeoutError):
            return
        self.open += 1
        try:
            writer.write(opening)
            i = 0
            while not self._stop.is_set():
                writer.write(trickle[i % len(trickle) : i % len(trickle) + 1])
                await writer.drain()
                i += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._stop.wait()
                if reader.at_eof():
                    self.closed_by_server += 1
                    return
        except OSError:
            self.closed_by_server += 1
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def rate_of(senders: list[Sender], seconds: float) -> dict[str, float]:
    """Acknowledged messages per second of each sender over ``seconds``."""
    before = {s.channel: len(s.acked) for s in senders}
    await asyncio.sleep(seconds)
    return {s.channel: (len(s.acked) - before[s.channel]) / seconds for s in senders}


async def run(
    tmp: Path, *, connections: int, loris: int, seconds: float, say: Any
) -> dict[str, Any]:
    ports = Ports()
    channels = [api_channel(), smtp_channel(ports.smtp, max_connections=MAX_CONNECTIONS)]
    daemon = DaemonProc(tmp, ports, channels, processes=1)
    base, store_url = daemon.url, daemon.store_url
    out: dict[str, Any] = {}
    try:
        daemon.start()
        await daemon.wait_up(channels=("email",))
        await asyncio.sleep(2.0)  # the pipeline process ready, the idle figure settled
        out["rss_idle_mb"] = daemon.rss()
        daemon.start_sampling()

        burst = await smtp_burst(ports.smtp, connections, "crowd")
        out["burst"] = burst
        out["rss_after_burst_mb"] = daemon.rss()
        say(
            f"  {connections} SMTP connections at once: {burst['greeted']} greeted,"
            f" {len(burst['acked'])} got 250 in {burst['secs']:.1f} s;"
            f" peak {daemon.peak_rss:.0f} MB (idle {out['rss_idle_mb']:.0f} MB)"
        )

        senders: list[Sender] = [SmtpSender("loris", ports.smtp, 2), ApiSender("loris", base, 2)]
        slow = Loris()

        async def with_and_without() -> None:
            await asyncio.sleep(1.0)
            out["baseline"] = await rate_of(senders, seconds)
            slow.start(ports.smtp, loris, b"EHLO ", b"slowly.example.org")
            slow.start(
                ports.web, loris, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaaaaaa"
            )
            await asyncio.sleep(1.0)  # all of them connected
            out["loris_open"] = slow.open
            peak_before = daemon.peak_rss
            out["during"] = await rate_of(senders, seconds)
            out["loris_open_at_end"] = slow.open
            out["rss_loris_mb"] = daemon.rss()
            out["peak_during_loris_mb"] = max(daemon.peak_rss, peak_before)
            await slow.stop()

        done = await run_senders(senders, with_and_without, drain=60)
        out["senders"] = {
            s.channel: {
                "offered": len(s.offered),
                "acked": len(s.acked),
                "refusals": dict(s.refusals),
                "done": done[s.channel],
            }
            for s in senders
        }
        say(
            f"  slow-loris: {out['loris_open']} slow connections (SMTP and HTTP);"
            " others per second before / during: "
            + ", ".join(
                f"{ch} {out['baseline'][ch]:.0f} / {out['during'][ch]:.0f}" for ch in out["during"]
            )
            + f"; memory {out['rss_loris_mb']:.0f} MB"
        )
        crowd = Sender("crowd")
        crowd.channel = "smtp"
        crowd.offered = [f"crowd-crowd-{i}" for i in range(connections)]
        crowd.acked = set(burst["acked"])
        missing = await wait_stored(store_url, [crowd, *senders])
        out["rss_end_mb"] = daemon.rss()
        out["peak_rss_mb"] = daemon.peak_rss
        out["alive"] = daemon.alive()
        out["clean_stop_status"] = daemon.stop()
        out["accounts"] = [await account("crowd/smtp-500", crowd, store_url)] + [
            await account("crowd/slow-loris", s, store_url) for s in senders
        ]
        for a in out["accounts"]:
            if missing.get(a.channel):
                a.extra["missing"] = missing[a.channel]
    finally:
        daemon.stop()
    out["errors_logged"] = logged(daemon.log)
    return out
