from __future__ import annotations

import asyncio
import sqlite3

from omnidesk.intake import Intake
from omnidesk.model import Envelope
from omnidesk.store import Store
from omnidesk.store.inbound import count_pending


def env(i: int, channel: str = "api") -> Envelope:
    return Envelope(channel=channel, external_id=f"m{i}", payload=b'{"x": %d}' % i)


async def test_concurrent_accepts_share_commits(store: Store) -> None:
    intake = Intake(store)
    results = await asyncio.gather(*(intake.accept(env(i)) for i in range(500)))
    assert all(results)
    assert intake.accepted == 500
    # group commit: far fewer transactions than messages
    assert intake.groups < 50
    assert await store.read(count_pending) == 500


async def test_duplicate_is_a_successful_no_op(store: Store) -> None:
    intake = Intake(store)
    assert await intake.accept(env(1)) is True
    assert await intake.accept(env(1)) is False
    # same external id on another channel is a different message
    assert await intake.accept(env(1, channel="other")) is True
    # duplicates inside one group
    res = await asyncio.gather(intake.accept(env(7)), intake.accept(env(7)))
    assert sorted(res) == [False, True]
    assert await store.read(count_pending) == 3


async def test_accept_returns_only_after_commit(store: Store, store_url: str) -> None:
    intake = Intake(store)
    await intake.accept(env(42))
    if store_url.startswith("sqlite"):
        # An independent connection (another process could do the same) sees it.
        path = store_url[len("sqlite:///") :]
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT payload, state FROM inbound WHERE external_id = 'm42'"
            ).fetchone()
        assert row == (b'{"x": 42}', "pending")
    else:
        assert await store.read(count_pending) == 1


async def test_failed_commit_is_reported_not_acknowledged(store: Store) -> None:
    intake = Intake(store)
    await store.close()  # the database goes away
    try:
        raised = False
        try:
            await intake.accept(env(1))
        except Exception as exc:
            raised = "could not store" in str(exc)
        assert raised
    finally:
        await store.open()
