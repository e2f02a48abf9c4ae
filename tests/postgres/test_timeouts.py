"""A message whose transaction runs past ``[storage] statement_timeout`` (a lock
another transaction holds that long, as when an instance dies in the middle
of a write) is tried again, not quarantined at the first time-out; only a
message that keeps timing out goes to quarantine, raw bytes kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.pipeline.batch import TIMEOUT_ATTEMPTS
from tests.conftest import make_config, message, post_inbound

pytestmark = pytest.mark.postgres

TIMEOUT = 0.3


async def eventually(pred: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def start(tmp_path: Path, pg_url: str, daemon_factory: Any) -> tuple[Daemon, Any]:
    cfg = make_config(tmp_path, pg_url, storage={"url": pg_url, "statement_timeout": TIMEOUT})
    d: Daemon = await daemon_factory(cfg)
    schema = pg_url.split("search_path=")[1]
    locker = await asyncpg.connect(pg_url.split("?")[0], server_settings={"search_path": schema})
    return d, locker


async def counts(d: Daemon) -> dict[str, Any]:
    def q(db: Any) -> dict[str, Any]:
        return {
            "messages": db.val("SELECT COUNT(*) FROM messages WHERE direction = 'in'"),
            "quarantined": db.val("SELECT COUNT(*) FROM quarantine"),
            "pending": db.val("SELECT COUNT(*) FROM inbound WHERE state = 'pending'"),
            "attempts": db.val("SELECT MAX(attempts) FROM inbound"),
        }

    result: dict[str, Any] = await d.store.read(q)
    return result


async def test_a_time_out_is_tried_again_and_the_message_stored(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    d, locker = await start(tmp_path, pg_url, daemon_factory)
    try:
        tx = locker.transaction()
        await tx.start()
        # Nobody may add a message while this transaction lives.
        await locker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
            assert (await post_inbound(c, message("t-1", "Where is my parcel?"))).status_code < 300

        async def timed_out_once() -> bool:
            return int((await counts(d))["attempts"] or 0) >= 1

        await eventually(timed_out_once)
        await tx.rollback()

        async def stored() -> bool:
            return (await counts(d))["messages"] == 1

        await eventually(stored)
        after = await counts(d)
        assert after["quarantined"] == 0 and after["pending"] == 0, after
    finally:
        await locker.close()


async def test_a_message_that_keeps_timing_out_goes_to_quarantine(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    d, locker = await start(tmp_path, pg_url, daemon_factory)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
            assert (await post_inbound(c, message("t-2", "Where is my parcel?"))).status_code < 300

        async def quarantined() -> bool:
            return (await counts(d))["quarantined"] == 1

        await eventually(quarantined)
        await tx.rollback()
        row = await d.store.read(
            lambda db: db.one(
                "SELECT q.error, i.state, length(i.payload) AS size FROM quarantine q"
                " JOIN inbound i ON i.id = q.inbound_id"
            )
        )
        assert row["state"] == "quarantined" and row["size"] > 0
        assert f"tried {TIMEOUT_ATTEMPTS} times, the last one timed out" in row["error"]
        assert "statement timeout" in row["error"]
        assert (await counts(d))["messages"] == 0
    finally:
        await locker.close()
