"""Snoozed conversations wake up (open again) when their time comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from .events import Event
from .model import now_ts
from .store import Store
from .store.actions import next_wake, wake_snoozed

log = structlog.get_logger(__name__)


async def snooze_waker(
    store: Store, publish: Callable[[list[Event]], None], *, interval: float = 15.0
) -> None:
    """Every ``interval`` seconds at most (sooner when a wake-up is due
    sooner), open the snoozed conversations whose time has come."""
    while True:
        try:
            events = await store.write(wake_snoozed)
            if events:
                log.info("snoozed_woke", conversations=len(events))
                publish(events)
            due = await store.read(next_wake)
        except Exception:
            log.exception("snooze_waker_error")
            due = None
        wait = interval if due is None else min(interval, max(0.2, due - now_ts()))
        await asyncio.sleep(wait)
