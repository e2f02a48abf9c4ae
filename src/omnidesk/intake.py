"""Durable accept with group commit.

``accept()`` returns only after the envelope is committed to the ``inbound``
table. Accepts that arrive while a commit is in flight wait for the next one
and share it, so durability costs one fsync per group, not per message; under
load groups grow by themselves. A (channel, external_id) seen before is a
no-op that still succeeds (the caller acknowledges, nothing is stored twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from .channels.base import Accept, IntakeError
from .model import Envelope
from .store import Store
from .store.inbound import insert_envelopes

log = structlog.get_logger(__name__)


class Intake(Accept):
    def __init__(
        self,
        store: Store,
        *,
        on_commit: Callable[[int], None] | None = None,
        max_group: int = 1000,
        max_payload: int = 50 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._max_group = max_group
        self._max_payload = max_payload
        self._queue: list[tuple[Envelope, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.groups = 0  # commits made (for metrics and the benchmark)
        self.accepted = 0
        self.duplicates = 0

    async def accept(self, envelope: Envelope) -> bool:
        # shield: a caller that gives up (client hung up) must not cancel the
        # commit other callers share.
        return await asyncio.shield(self._enqueue([envelope])[0])

    async def accept_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        futures = self._enqueue(envelopes)
        return list(await asyncio.shield(asyncio.gather(*futures)))

    def _enqueue(self, envelopes: Sequence[Envelope]) -> list[asyncio.Future[bool]]:
        for env in envelopes:
            if not env.external_id:
                raise IntakeError("envelope without external_id")
            if len(env.payload) > self._max_payload:
                raise IntakeError(f"payload of {len(env.payload)} bytes exceeds the limit")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = []
        for env in envelopes:
            fut = loop.create_future()
            self._queue.append((env, fut))
            futures.append(fut)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="intake-flush")
        return futures

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
            envs = [e for e, _ in group]
            try:
                results = await self._store.write(insert_envelopes, envs)
            except Exception as exc:
                # Answer the callers first (they must not acknowledge), then log.
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(IntakeError(f"could not store: {exc}"))
                log.error("intake_commit_failed", error=str(exc), envelopes=len(envs))
                continue
            except BaseException:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(IntakeError("intake stopped before commit"))
                raise
            self.groups += 1
            new = sum(results)
            self.accepted += new
            self.duplicates += len(results) - new
            for (_, fut), res in zip(group, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
            if self._on_commit is not None and new:
                self._on_commit(new)

    async def drain(self) -> None:
        """Wait for in-flight commits (at shutdown)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
