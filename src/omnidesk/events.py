"""Live updates inside one process: a tiny publish/subscribe bus.

Subscribers (the inbox live feed) get every event published after the
transaction that caused it committed. Another instance's events arrive
through the store's notifications and are re-published here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Event = dict[str, Any]


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._queue_size = queue_size

    def publish(self, event: Event) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                # A subscriber too slow to keep up gets a resync marker instead
                # of blocking everyone else.
                while not q.empty():
                    q.get_nowait()
                q.put_nowait({"type": "resync"})

    def publish_many(self, events: list[Event]) -> None:
        for e in events:
            self.publish(e)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        q: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
