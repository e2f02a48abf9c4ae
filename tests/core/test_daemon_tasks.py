"""Background tasks of the daemon: a task cancelled before it ever ran (a stop
right after it was spawned) closes its work instead of leaving a coroutine
that is reported as never awaited."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from omnidesk.app import Daemon


async def test_task_cancelled_before_its_first_step_closes_its_work() -> None:
    holder: Any = type("Holder", (), {"_tasks": {}})()
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    coro = work()
    task = Daemon.spawn(holder, coro, "notify")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert started == []
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_spawned_tasks_keep_distinct_names_while_running() -> None:
    holder: Any = type("Holder", (), {"_tasks": {}})()
    gate = asyncio.Event()
    tasks = [Daemon.spawn(holder, gate.wait(), "notify") for _ in range(3)]
    assert sorted(holder._tasks) == ["notify", "notify#1", "notify#2"]
    gate.set()
    await asyncio.gather(*tasks)
