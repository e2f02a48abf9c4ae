"""A message whose transaction runs past ``[storage] statement_timeout`` (a lock
another transaction holds that long, as when an instance dies in the middle
of a write) is tried again, not quarantined at the first time-out; only a
message that keeps timing out goes to quarantine, raw bytes kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.pipeline.batch import TIMEOUT_ATTEMPTS
from tests.conftest import make_config, message, post_inbound, wait_for

pytestmark = pytest.mark.postgres

TIMEOUT = 0.3


async def start(tmp_path: Path, pg_url: str, daemon_factory: Any, ext: str) -> tuple[Daemon, Any]:
    """The daemon, and a message posted to it while another session's open
    transaction (returned) keeps anyone from adding a message."""
    cfg = make_config(tmp_path, pg_url, storage={"url": pg_url, "statement_timeout": TIMEOUT})
    d: Daemon = await daemon_factory(cfg)
    schema = pg_url.split("search_path=")[1]
    locker = await asyncpg.connect(pg_url.split("?")[0], server_settings={"search_path": schema})
    tx = locker.transaction()
    await tx.start()
    await locker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        assert (await post_inbound(c, message(ext, "Where is my parcel?"))).status_code < 300
    return d, (locker, tx)


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
    d, (locker, tx) = await start(tmp_path, pg_url, daemon_factory, "t-1")
    try:

        async def timed_out_once() -> bool:
            return int((await counts(d))["attempts"] or 0) >= 1

        await wait_for(timed_out_once, timeout=20)
        await tx.rollback()

        async def stored() -> bool:
            return (await counts(d))["messages"] == 1

        await wait_for(stored, timeout=20)
        after = await counts(d)
        assert after["quarantined"] == 0 and after["pending"] == 0, after
    finally:
        await locker.close()


async def test_a_message_that_keeps_timing_out_goes_to_quarantine(
    tmp_path: Path, pg_url: str, daemon_factory: Any
) -> None:
    d, (locker, tx) = await start(tmp_path, pg_url, daemon_factory, "t-2")
    try:

        async def quarantined() -> bool:
            return (await counts(d))["quarantined"] == 1

        await wait_for(quarantined, timeout=20)
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
