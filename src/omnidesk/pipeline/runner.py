"""Running the pipeline: ``PipelineRunner`` runs batches whenever the intake
commits (or every ``poll`` seconds), preparing envelopes ahead of the write
transaction where it is the queue's only consumer, in parse processes when
it has them (``pipeline_proc.ParsePool``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ..store import Store
from ..store.inbound import InboundRow, peek_pending
from .batch import process_batch
from .context import BatchResult, PipelineContext
from .normalize import Normalized, NormalizeFailed, prepare_envelope

log = structlog.get_logger("omnidesk.pipeline")


class Parser(Protocol):
    """Prepares envelopes in another process (``pipeline_proc.ParsePool``)."""

    def submit(self, rows: list[InboundRow]) -> asyncio.Future[list[tuple[int, Normalized]]]:
        """(inbound id, prepared item) for each row."""
        ...

    def restart(self) -> None:
        """End the processes (one is stuck on a job) and start new ones."""
        ...

    async def warm(self) -> None:
        """Wait until the processes are up (so a timeout measures parsing,
        not a process start)."""
        ...


PARSE_CHUNK = 16  # envelopes per job handed to a parse process
# How long a job may take in a parse process (16 envelopes take a few ms; a
# 25 MB mail well under a second). Beyond it the processes are replaced and
# the job's rows parsed again one at a time; a row that still takes too
# long on its own goes to quarantine rather than stalling the queue.
PARSE_TIMEOUT = 30.0

# How long a pipeline process lets the other process's queued writes go
# first before it starts a batch: at most YIELD_STEPS x YIELD_STEP seconds.
YIELD_STEPS = 40
YIELD_STEP = 0.0005


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Take a dropped future's outcome (asyncio logs one never retrieved)."""
    if not fut.cancelled():
        fut.exception()


class PipelineRunner:
    """Runs batches whenever the intake commits (or every ``poll`` seconds,
    which also picks up work from other instances and crash leftovers)."""

    def __init__(
        self,
        store: Store,
        ctx: PipelineContext,
        *,
        batch_size: int = 64,
        poll: float = 1.0,
        budget: float | None = 0.002,
        on_result: Callable[[BatchResult], None] | None = None,
        prenormalize: bool = False,
        others_waiting: Callable[[], int] | None = None,
        parser: Parser | None = None,
        in_flight: Any = None,
        parse_timeout: float = PARSE_TIMEOUT,
    ) -> None:
        self.store = store
        # A pipeline process's two shared ids (``multiprocessing.RawArray``):
        # the inbound row being prepared (slot 0) and the one being processed
        # (slot 1). If the process dies of a signal, the daemon knows which
        # message it was handling (pipeline_proc.py: a poison message).
        self.in_flight = in_flight
        self.ctx = ctx
        self.batch_size = batch_size
        # The budget frees SQLite's single write lock for webhook commits (and
        # any other write, an SMTP 250 included) queued behind a batch; with
        # none queued the batch runs to batch_size. 15 ms at first; 2 ms gave,
        # in the same sessions, 1,496 webhook deliveries/s at p99 16 ms with
        # the pipeline in the daemon instead of 730/s at 36 ms, 1,257-1,484
        # SMTP mails accepted/s instead of 517-585 (in a pipeline process:
        # the intake's commits waited 4-5 ms at p90 for the lock instead of
        # 13-17 ms), and no less stored per second (bench_pipeline 2,217 vs
        # 2,162 msgs/s end to end).
        # On PostgreSQL nothing waits behind a batch, and a batch cut short
        # would keep the rest of its claimed rows locked away from the other
        # instances until it commits.
        self.budget = budget if store.dialect == "sqlite" else None
        self._waiting: Callable[[], int] | None = getattr(store, "writes_waiting", None)
        # A pipeline process shares SQLite's write lock with the daemon's
        # intake in another process: its batches end early, and the next one
        # waits a moment, while that process has writes queued.
        self._others_waiting = others_waiting
        if others_waiting is not None:
            own = self._waiting
            self._waiting = lambda: others_waiting() + (own() if own is not None else 0)
        # Normalize (parse MIME and the like) before the write transaction
        # rather than inside it, so the write lock is held for the database
        # work only. Only where this runner is the sole consumer of the queue
        # (a SQLite pipeline process): elsewhere another batch may take the
        # rows it normalized.
        self.prenormalize = prenormalize and store.dialect == "sqlite"
        self._prepared: dict[int, Normalized] = {}
        # Parse processes (``[pipeline] processes`` > 1 on SQLite) prepare the
        # rows ahead of the batch being written, in parallel with it.
        self.parser = parser if self.prenormalize else None
        self._parsing: dict[int, asyncio.Future[list[tuple[int, Normalized]]]] = {}
        self.parse_timeout = parse_timeout
        # Rows of a job that took too long: parsed again one per job.
        self._suspects: set[int] = set()
        self.poll = poll
        self.on_result = on_result
        self._wake = asyncio.Event()
        self.processed = 0
        self._running = 0  # batches in flight in this process
        self._idle = asyncio.Event()
        self._idle.set()

    def wake(self, _n: int = 0) -> None:
        self._wake.set()

    async def _let_others_write(self) -> None:
        assert self._others_waiting is not None
        for _ in range(YIELD_STEPS):
            if not self._others_waiting():
                return
            await asyncio.sleep(YIELD_STEP)

    async def _prepare(self) -> dict[int, Normalized]:
        while True:
            prepared = await self._prepare_once()
            if prepared is not None:
                return prepared
            # The parse processes were replaced: the next job's timeout must
            # not count their start (imports, language model) on a busy machine.
            assert self.parser is not None
            await self.parser.warm()

    async def _prepare_once(self) -> dict[int, Normalized] | None:
        """The rows of the next batch prepared, or None after a job took
        too long (the parse processes were replaced: read and submit again)."""
        ahead = 2 if self.parser is not None else 1
        # Only rows not prepared or parsing already are read in full: most of
        # those ahead were read by the batch before.
        known = frozenset(self._prepared.keys() | self._parsing.keys())
        pending, todo = await self.store.read(peek_pending, self.batch_size * ahead, known)
        ids = set(pending)
        for stale in [k for k in self._prepared if k not in ids]:
            del self._prepared[stale]
        for stale in [k for k in self._parsing if k not in ids]:
            del self._parsing[stale]
        if self.parser is None:
            rules = self.ctx.rules()
            for r in todo:
                if self.in_flight is not None:
                    self.in_flight[0] = r.id
                self._prepared[r.id] = prepare_envelope(self.ctx, r, rules)
            if self.in_flight is not None:
                self.in_flight[0] = 0
            return self._prepared
        self._suspects &= ids - known  # so each is in todo
        # After a job took too long: its rows one at a time, in new parse
        # processes with nothing queued before them, until none is left.
        suspect = next((r for r in todo if r.id in self._suspects), None)
        if suspect is not None:
            self._suspects.discard(suspect.id)
            jobs, awaited = [[suspect]], [suspect.id]
        else:
            jobs = [todo[i : i + PARSE_CHUNK] for i in range(0, len(todo), PARSE_CHUNK)]
            awaited = pending[: self.batch_size]
        for chunk in jobs:
            try:
                fut = self.parser.submit(chunk)
            except Exception:
                # No parse process to be had: parse here from now on (the
                # transaction normalizes what is not prepared).
                log.exception("parse_processes_unavailable")
                self.parser = None
                break
            for r in chunk:
                self._parsing[r.id] = fut
        # Wait for this batch's rows; the next batch's go on parsing meanwhile.
        for row_id in awaited:
            fut_ = self._parsing.get(row_id)
            if fut_ is None or row_id in self._prepared:
                continue
            try:
                # asyncio.timeout, not wait_for (see run): a stop must not be swallowed.
                async with asyncio.timeout(self.parse_timeout):
                    items = await asyncio.shield(fut_)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                # A parse process is stuck (a mail that sends a parser into
                # a loop, say), or the job waits behind one that is. A
                # suspect alone with nothing before it is the one: it goes
                # to quarantine (raw bytes kept) rather than stall the queue.
                if suspect is not None:
                    self._prepared[suspect.id] = NormalizeFailed(
                        f"parsing took longer than {self.parse_timeout:g} s"
                        " (parse process restarted)"
                    )
                else:
                    self._suspects.update(k for k, f in self._parsing.items() if f is fut_)
                log.error(
                    "parse_job_timed_out", alone=suspect is not None, timeout=self.parse_timeout
                )
                # The old processes' jobs are dropped; their rows are
                # submitted again to the new ones.
                for f in set(self._parsing.values()):
                    f.add_done_callback(_retrieve)
                self._parsing.clear()
                if self.parser is not None:  # not given up meanwhile
                    self.parser.restart()
                return None
            except Exception:
                # Normalized in the transaction instead.
                log.exception("parse_process_failed")
                items = []
            for k in [k for k, f in self._parsing.items() if f is fut_]:
                del self._parsing[k]
            self._prepared.update(items)
        return None if suspect is not None else self._prepared

    async def run_once(self) -> BatchResult:
        t0 = time.perf_counter()
        self._running += 1
        self._idle.clear()
        try:
            prepared = await self._prepare() if self.prenormalize else None
            if self._others_waiting is not None:
                await self._let_others_write()
            res = await self.store.write(
                process_batch,
                self.ctx,
                self.batch_size,
                self.budget,
                self._waiting,
                prepared,
                self.in_flight,
            )
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
        if res.claimed:
            self.processed += res.claimed - res.deferred
            res.seconds = time.perf_counter() - t0
            log.debug(
                "batch",
                claimed=res.claimed,
                stored=res.stored,
                quarantined=res.quarantined,
                deferred=res.deferred,
                seconds=round(res.seconds, 4),
            )
            if self.on_result is not None:
                self.on_result(res)
        return res

    async def drain(self) -> int:
        """Process until nothing is pending; returns envelopes processed."""
        total = 0
        while True:
            res = await self.run_once()
            total += res.claimed - res.deferred
            if res.deferred:
                # Another instance holds a lock these need: it commits soon.
                await asyncio.sleep(0.02)
                continue
            if res.claimed < self.batch_size and not res.cut:
                if self._running:
                    # PostgreSQL claims skip rows another batch of this
                    # process has locked: wait for it, then look again.
                    await self._idle.wait()
                    continue
                return total

    async def run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                # A database hiccup: log and come back; pending rows stay pending.
                log.exception("pipeline_error")
                await asyncio.sleep(self.poll)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that lands as the event is set, and this loop would never end.
            try:
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
