"""Hostile uploads: ten chunked 200 MB bodies at once to every route that
answers without a login, and to the API's largest caps, against a daemon in
a process of its own. Its peak resident memory (``VmHWM`` from ``/proc``)
stays under 200 MB, an agent's API calls keep being answered throughout, and
afterwards it logs in and stores messages as before.

Before the capped reader (web/limits.py), one such body to the login API
took the daemon from 277 to 677 MB, and three to the inbound API past a
gigabyte. Figures are printed (``-s`` shows them); only the 200 MB bound and
the answers are asserted, never a time."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.daemon_proc import PASSWORDS, DaemonProc, start_daemon
from tests.security.hostile import chunked_upload
from tests.security.test_webhooks import api_delivery

pytestmark = pytest.mark.slow

BODY = 200 * 1024 * 1024
AT_ONCE = 10
RSS_BOUND_MB = 200
ROUTES = (
    # Unauthenticated: logins, the signed channels' endpoints, the chat widget.
    "/api/v1/session",
    "/login",
    "/logout",
    "/api/v1/inbound/api",
    "/webhooks/tg",
    "/webhooks/sl",
    "/webhooks/fb",
    "/webchat/chat/session",
    "/webchat/chat/messages",
    "/webchat/chat/identify",
    "/webchat/chat/receipts",
    # Bodies are read before authentication: the API's own caps hold too.
    "/api/v1/users",
    "/api/v1/rules/50-routing.toml",
)


@pytest.fixture
def daemon_proc(tmp_path: Path) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path, f"sqlite:///{tmp_path / 'omnidesk.db'}", log_level="warning")
    try:
        yield d
    finally:
        d.stop()


async def test_ten_200mb_bodies_to_every_route_keep_memory_bounded(
    daemon_proc: DaemonProc,
) -> None:
    d = daemon_proc
    admin = d.bearer("root")
    async with httpx.AsyncClient(base_url=d.base, timeout=30) as c:
        for _ in range(20):  # warm up: every route once, as in normal use
            assert (await c.get("/api/v1/conversations", headers=admin)).status_code == 200
    before = d.rss_mb()
    stop = asyncio.Event()
    probes: list[tuple[int, float]] = []

    async def keep_asking() -> None:
        async with httpx.AsyncClient(base_url=d.base, timeout=30) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                r = await c.get("/api/v1/me", headers=admin)
                probes.append((r.status_code, time.monotonic() - t0))
                await asyncio.sleep(0.2)

    prober = asyncio.create_task(keep_asking())
    t0 = time.monotonic()
    outcomes = await asyncio.gather(
        *(chunked_upload(d.port, path, BODY) for path in ROUTES for _ in range(AT_ONCE))
    )
    took = time.monotonic() - t0
    stop.set()
    await prober
    peak = d.peak_rss_mb()
    after = d.rss_mb()

    by_route: dict[str, collections.Counter[str]] = {}
    for i, out in enumerate(outcomes):
        by_route.setdefault(ROUTES[i // AT_ONCE], collections.Counter())[str(out.status)] += 1
    print(f"\n{len(outcomes)} uploads of {BODY >> 20} MB in {took:.1f} s (under shared load)")
    print(f"{'route':<34} answers")
    for path, counts in by_route.items():
        print(f"{path:<34} {dict(counts)}")
    slowest = max(t for _, t in probes)
    print(f"daemon RSS: {before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after")
    print(f"agent API during the attack: {len(probes)} calls, slowest {slowest:.2f} s")

    assert d.alive()
    for i, out in enumerate(outcomes):
        # Refused: too large (413) or the shared budget spent (503); None when
        # the hang-up beat the answer to the client.
        assert out.status in (413, 503, None), (ROUTES[i // AT_ONCE], out)
        assert out.sent < BODY, (ROUTES[i // AT_ONCE], out)  # nobody sent it all
    assert sum(out.status == 413 for out in outcomes) >= len(ROUTES)
    assert peak < RSS_BOUND_MB, f"peak RSS {peak:.0f} MB"
    assert probes and all(status == 200 for status, _ in probes), probes
    # And afterwards, business as usual.
    async with httpx.AsyncClient(base_url=d.base, timeout=30) as c:
        r = await c.post(
            "/api/v1/session", json={"username": "root", "password": PASSWORDS["root"]}
        )
        assert r.status_code == 200
        dv = api_delivery()
        r = await c.post(dv.path, content=dv.body, headers=dv.headers)
        assert r.status_code == 202, r.text
