"""The pipeline in processes of its own: ``[pipeline] processes = N``.

One Python process has one interpreter lock: a busy SMTP listener and the
pipeline behind it (MIME parsing, rules, storing) share one core however many
the machine has. With ``processes`` the daemon starts N child processes that
run the pipeline; the daemon itself keeps the channels, the intake, the outbox
and the web server. The queue stays the database's ``inbound`` table, so
nothing about durability changes: a child that dies leaves its rows pending,
the daemon starts another one, and the redo stores each message once.

Between the daemon and each child:

* a wake pipe (daemon -> child, raw bytes): ``w`` after an intake commit or
  a quarantine retry, ``r`` after the rules were reloaded through the web
  API; end of file (the daemon is gone) stops the child;
* a results pipe (child -> daemon): one JSON object per batch (counts,
  its duration, auto-acknowledgements queued, live events), which the daemon turns into
  metrics, an outbox wake-up and events for the web UI, as for a batch of
  its own;
* with SQLite, two shared counters of the daemon's writes (queued, begun):
  a child ends its batch early and waits a moment before the next one while
  the daemon has a write queued, so an intake commit (an SMTP ``250``, a
  webhook's ``200``) never waits for a whole batch. A SQLite child also
  normalizes envelopes before taking the write lock (it is the queue's only
  consumer), which keeps the lock for the database work only;
* two shared ids per child: the inbound row it is preparing and the one it
  is processing. A child killed by a signal (a crash of the interpreter or
  of a library it calls, the kernel's out-of-memory killer) while the same
  row was in flight twice has met a poison message: the daemon quarantines
  that row (its raw bytes stay) before it starts the next child, so one
  message cannot stop the queue.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import mmap
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from .config import Config
from .events import Event
from .pipeline import BatchResult, ChannelParser, Normalized, PipelineContext, prepare_envelope
from .rules import RuleSet
from .store import Store
from .store.inbound import InboundRow

log = structlog.get_logger(__name__)

RESTART_MIN = 1.0  # seconds before a child that died is started again, doubling
RESTART_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long before dying restarts after RESTART_MIN again
STOP_TIMEOUT = 10.0  # seconds a child gets to finish its batch at shutdown
# Added to the daemon's niceness: the lowest CPU priority (Linux caps it at 19).
# The daemon's event loop is one busy core at most, so on two cores the
# pipeline still has the other; against the daemon on a shared core it yields
# almost all (weight 15 against 1024, where +10 left it 110). In an SMTP burst
# with `processes = 2` that let 13% more mail be accepted a second, with the
# rate stored end to end unchanged (bench/bench_email.py setup, 4 runs each).
CHILD_NICE = 19
POISON_AFTER = 2  # deaths with the same row in flight before it is quarantined
# Deaths that a message can cause; a child that exits with a status instead
# failed by itself (its store, its configuration), not on a message.
FATAL_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGKILL}
)


def count_deaths(deaths: dict[int, int], slots: Any) -> tuple[list[int], list[int]]:
    """A pipeline died with these in-flight ``slots``: count a death for
    each row in them. Returns (the rows, those now at ``POISON_AFTER``)."""
    ids = sorted({int(i) for i in slots if i})
    for i in ids:
        deaths[i] = deaths.get(i, 0) + 1
    return ids, [i for i in ids if deaths[i] >= POISON_AFTER]


class InFlightFile:
    """The pipeline's two in-flight slots (see ``PipelineRunner.in_flight``)
    for a pipeline in the daemon's own process: a small file mapped into
    memory, so what the slots held when the process died (a crash, the OOM
    killer, kill -9) is there for the next start to read, at the cost of a
    memory store per message. Deaths per inbound id are counted in a JSON
    file beside it; a row in flight at ``POISON_AFTER`` unclean ends is
    returned by ``interrupted`` for quarantine."""

    def __init__(self, path: Path) -> None:
        self.deaths_path = path.with_name(path.name + ".deaths.json")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 16:
                os.ftruncate(fd, 16)
            self._map = mmap.mmap(fd, 16)
        finally:
            os.close(fd)
        self.slots = memoryview(self._map).cast("q")

    def interrupted(self) -> tuple[list[int], list[int]]:
        """(the rows in flight when the last run ended without a clean stop,
        those of them in flight at ``POISON_AFTER`` such ends); counts the
        deaths and clears the slots."""
        if not any(self.slots):
            return [], []
        try:
            deaths = {int(k): int(v) for k, v in json.loads(self.deaths_path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            deaths = {}
        ids, poison = count_deaths(deaths, self.slots)
        # Only the rows of this end are remembered: an earlier one's rows that
        # were then processed are not suspects any more.
        kept = {str(i): deaths[i] for i in ids if i not in poison}
        self.deaths_path.write_text(json.dumps(kept))
        self.clear()
        return ids, poison

    def clear(self) -> None:
        self.slots[0] = self.slots[1] = 0

    def close(self) -> None:
        """After a clean stop: nothing was in flight."""
        self.clear()
        self.slots.release()
        self._map.close()


@dataclass(frozen=True, slots=True)
class ProcessWiring:
    """How a pipeline or parse process builds what it runs: the composition
    root (``app.py``) hands its own builders in, so a child builds exactly as
    the daemon does while this module imports no root. Module-level
    functions: they reach a spawned child by name."""

    # The channels, to normalize only (never started, no intake), and their
    # auto-acknowledgement texts; the store is None in a parse process.
    adapters: Callable[[Config, Store | None], tuple[dict[str, ChannelParser], dict[str, str]]]
    # The pipeline's context: (config, adapters, current rules, acks).
    context: Callable[
        [Config, Mapping[str, ChannelParser], Callable[[], RuleSet], Mapping[str, str]],
        PipelineContext,
    ]
    # Where trained classifier models are installed.
    model_dir: Callable[[Config], Path]


@dataclass
class _Child:
    index: int
    process: Any = None  # multiprocessing.Process
    wake: Connection | None = None  # our end, written raw and non-blocking
    results: Connection | None = None
    restarts: int = 0
    restart_handle: asyncio.TimerHandle | None = None
    ready: bool = False  # said so after opening the store and loading the models
    started_at: float = 0.0
    in_flight: Any = None  # RawArray("q", 2): the rows it prepares / processes, 0 = none
    recovering: asyncio.Task[None] | None = None  # quarantining a poison row, then restart


class PipelineProcesses:
    """The daemon's side: starts, feeds, watches and stops the children."""

    def __init__(
        self,
        config: Config,
        n: int,
        on_result: Callable[[BatchResult], None],
        *,
        wiring: ProcessWiring,
        share_waiting: Callable[[Any], None] | None = None,
        quarantine: Callable[[list[int], str], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.wiring = wiring
        self.quarantine = quarantine
        self._deaths: dict[int, int] = {}  # inbound id -> deaths while it was in flight
        # SQLite writes one transaction at a time: one pipeline process
        # writes, and the others parse for it (ParsePool) instead of waiting
        # for the write lock. PostgreSQL: N pipeline processes.
        self.parsers = 0
        if config.storage_url.startswith("sqlite") and n > 1:
            n, self.parsers = 1, n - 1
        self.n = n
        self.on_result = on_result
        self._ctx = mp.get_context("spawn")  # no fork of a process with threads
        self._counters: Any = None
        if share_waiting is not None:
            self._counters = self._ctx.RawArray("q", 2)
            share_waiting(self._counters)
        self._children = [_Child(i) for i in range(n)]
        self._stopping = False
        self.batches = 0  # results received (tests and metrics)
        self.restarts = 0  # children started again after they died
        self.poisoned = 0  # rows quarantined because children died on them

    @property
    def pids(self) -> list[int | None]:
        return [c.process.pid if c.process is not None else None for c in self._children]

    def alive(self) -> int:
        return sum(1 for c in self._children if c.process is not None and c.process.is_alive())

    def status(self) -> dict[str, Any]:
        """For /healthz: ok when every child is up and ready."""
        ready = sum(1 for c in self._children if c.ready and c.process is not None)
        return {
            "ok": ready == self.n,
            "processes": self.n,
            "parse_processes": self.parsers,
            "ready": ready,
            "restarts": self.restarts,
        }

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every child has opened the store and loaded its models."""
        async with asyncio.timeout(timeout):
            while not all(c.ready for c in self._children):
                await asyncio.sleep(0.02)

    async def start(self) -> None:
        atexit.register(self._atexit)
        for child in self._children:
            self._spawn(child)

    def _atexit(self) -> None:
        # Before multiprocessing's own exit hook, which joins every child:
        # a child still waiting for wake-ups would make that wait endless.
        for child in self._children:
            if child.wake is not None:
                child.wake.close()
                child.wake = None

    def _spawn(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        wake_r, wake_w = self._ctx.Pipe(duplex=False)
        res_r, res_w = self._ctx.Pipe(duplex=False)
        if child.in_flight is None:
            child.in_flight = self._ctx.RawArray("q", 2)
        child.in_flight[0] = child.in_flight[1] = 0
        proc = self._ctx.Process(
            target=child_main,
            args=(
                self.config,
                self.wiring,
                child.index,
                wake_r,
                res_w,
                self._counters,
                self.parsers,
                child.in_flight,
            ),
            name=f"omnidesk-pipeline-{child.index}",
            # Not daemonic: it starts parse processes of its own. It ends
            # when its wake pipe closes (the daemon is gone, however it went),
            # and _atexit closes the pipes of a daemon that exits unstopped.
            daemon=False,
        )
        proc.start()
        wake_r.close()
        res_w.close()
        os.set_blocking(wake_w.fileno(), False)
        child.process, child.wake, child.results = proc, wake_w, res_r
        child.started_at = loop.time()
        loop.add_reader(res_r.fileno(), self._read_results, child)
        loop.add_reader(proc.sentinel, self._exited, child)
        log.info("pipeline_process_started", index=child.index, pid=proc.pid)
        self._send(child, b"w")  # whatever is pending already

    def _read_results(self, child: _Child) -> None:
        conn = child.results
        if conn is None:
            return
        try:
            while conn.poll():
                data = json.loads(conn.recv_bytes())
                if data.get("ready"):
                    child.ready = True
                    continue
                self.batches += 1
                self.on_result(_result_from(data))
        except (EOFError, OSError):
            # The child is gone; _exited (its sentinel) deals with it.
            asyncio.get_running_loop().remove_reader(conn.fileno())
        except Exception:
            log.exception("pipeline_result_unreadable", index=child.index)

    def _exited(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        proc = child.process
        if proc is None:
            return
        loop.remove_reader(proc.sentinel)
        self._read_results(child)  # what it sent before it went
        self._close(child)
        child.ready = False
        # Its sentinel closed as it exited; the exit status (which signal)
        # may take a moment more to be there.
        proc.join(1.0)
        if self._stopping:
            return
        if loop.time() - child.started_at > STABLE_AFTER:
            child.restarts = 0  # it had been running fine: not a crash loop
        delay = min(RESTART_MAX, RESTART_MIN * 2**child.restarts)
        child.restarts += 1
        self.restarts += 1
        suspects, poison = self._suspects(child, proc.exitcode)
        log.error(
            "pipeline_process_exited",
            index=child.index,
            pid=proc.pid,
            exitcode=proc.exitcode,
            restart_in=delay,
            in_flight=suspects or None,
        )
        if poison and self.quarantine is not None:
            how = signal.Signals(-(proc.exitcode or 0)).name
            reason = (
                f"the pipeline process died ({how}) while handling this message"
                f" {POISON_AFTER} times: the interpreter or a library it calls crashed on it,"
                " or it took more memory than the machine has"
            )
            child.recovering = asyncio.create_task(
                self._recover(child, poison, reason, delay), name="pipeline-poison"
            )
            return
        child.restart_handle = loop.call_later(delay, self._respawn, child)

    def _suspects(self, child: _Child, exitcode: int | None) -> tuple[list[int], list[int]]:
        """The rows in flight when a child died of a signal, each counted,
        and those of them to quarantine (``count_deaths``)."""
        if child.in_flight is None or exitcode is None or exitcode >= 0:
            return [], []
        if -exitcode not in FATAL_SIGNALS:
            return [], []
        return count_deaths(self._deaths, child.in_flight)

    async def _recover(self, child: _Child, poison: list[int], reason: str, delay: float) -> None:
        assert self.quarantine is not None
        try:
            await self.quarantine(poison, reason)
        except Exception:
            # The next child meets it again; a later death tries again.
            log.exception("pipeline_poison_quarantine_failed", inbound_ids=poison)
        else:
            self.poisoned += len(poison)
            log.error("pipeline_poison_quarantined", inbound_ids=poison, reason=reason)
            for i in poison:
                self._deaths.pop(i, None)
        finally:
            child.recovering = None
        if not self._stopping:
            child.restart_handle = asyncio.get_running_loop().call_later(
                delay, self._respawn, child
            )

    def _respawn(self, child: _Child) -> None:
        child.restart_handle = None
        if not self._stopping:
            self._spawn(child)

    def _close(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        if child.results is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(child.results.fileno())
            child.results.close()
            child.results = None
        if child.wake is not None:
            child.wake.close()
            child.wake = None
        child.process = None

    def _send(self, child: _Child, what: bytes) -> None:
        if child.wake is None:
            return
        try:
            os.write(child.wake.fileno(), what)
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the child will look
        except OSError:
            pass  # the child is gone: _exited restarts it

    def wake(self, _n: int = 0) -> None:
        for child in self._children:
            self._send(child, b"w")

    def reload_rules(self) -> None:
        for child in self._children:
            self._send(child, b"r")

    async def stop(self) -> None:
        self._stopping = True
        procs = []
        for child in self._children:
            if child.recovering is not None:
                await asyncio.wait([child.recovering], timeout=STOP_TIMEOUT)
            if child.restart_handle is not None:
                child.restart_handle.cancel()
            proc = child.process
            if proc is None:
                continue
            asyncio.get_running_loop().remove_reader(proc.sentinel)
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
            procs.append((child, proc))
        for child, proc in procs:
            await asyncio.to_thread(proc.join, STOP_TIMEOUT)
            if proc.is_alive():
                log.error("pipeline_process_did_not_stop", index=child.index, pid=proc.pid)
                proc.kill()
                await asyncio.to_thread(proc.join, STOP_TIMEOUT)
            self._read_results(child)
            self._close(child)
        atexit.unregister(self._atexit)


def _result_from(data: dict[str, Any]) -> BatchResult:
    return BatchResult(
        claimed=data["claimed"],
        stored=data["stored"],
        quarantined=data["quarantined"],
        skipped=data["skipped"],
        deferred=data["deferred"],
        outbox_queued=data["outbox_queued"],
        events=data["events"],
        seconds=data.get("seconds", 0.0),
    )


def _result_to(res: BatchResult) -> bytes:
    events: list[Event] = res.events
    return json.dumps(
        {
            "claimed": res.claimed,
            "stored": res.stored,
            "quarantined": res.quarantined,
            "skipped": res.skipped,
            "deferred": res.deferred,
            "outbox_queued": res.outbox_queued,
            "events": events,
            "seconds": res.seconds,
        },
        default=str,
    ).encode()


# -- the child ---------------------------------------------------------------
def child_main(
    config: Config,
    wiring: ProcessWiring,
    index: int,
    wake: Connection,
    results: Connection,
    counters: Any,
    parsers: int = 0,
    in_flight: Any = None,
) -> None:
    """A pipeline process's entry point (spawned, so it imports afresh)."""
    from . import logging as odlog

    odlog.configure(config.log_level, personal_data=config.privacy.log_personal_data)
    structlog.contextvars.bind_contextvars(pipeline_process=index)
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops
    # its children itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_serve(config, wiring, wake, results, counters, parsers, in_flight))
    except Exception:
        log.exception("pipeline_process_failed")
        raise SystemExit(1) from None


async def _serve(
    config: Config,
    wiring: ProcessWiring,
    wake: Connection,
    results: Connection,
    counters: Any,
    parsers: int,
    in_flight: Any = None,
) -> None:
    from .pipeline import PipelineRunner
    from .rules import RulesHolder, load_language_model, load_rules
    from .store import open_store
    from .store.sqlite import shared_writes_waiting

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    store = open_store(config.storage_url, **_store_options(config))
    await store.open()
    # Below the daemon's CPU priority: in a burst, accepting (which a sending
    # MTA or a webhook provider waits on) goes first and the pipeline catches
    # up after (bench/bench_email.py). Linux keeps a niceness per thread and
    # a new thread takes its creator's: the store's threads, started above,
    # keep the daemon's, so a transaction holding the write lock (which the
    # daemon's intake may be waiting for) is not the one left without CPU.
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE)
    rules = RulesHolder(
        config.rules_dir, load_rules(config.rules_dir), model_dir=wiring.model_dir(config)
    )
    # The adapters normalize here; they are never started (the daemon runs
    # the channels).
    adapters, acks = wiring.adapters(config, store)
    await asyncio.to_thread(load_language_model)

    def send(res: BatchResult) -> None:
        results.send_bytes(_result_to(res))

    pool = (
        ParsePool(config, parsers, lambda: rules.current.fingerprint, wiring=wiring)
        if parsers
        else None
    )
    runner = PipelineRunner(
        store,
        wiring.context(config, adapters, lambda: rules.current, acks),
        batch_size=config.pipeline_batch,
        on_result=send,
        prenormalize=True,
        others_waiting=(lambda: shared_writes_waiting(counters)) if counters is not None else None,
        parser=pool,
        in_flight=in_flight,
    )

    def on_wake() -> None:
        try:
            got = os.read(wake.fileno(), 4096)
        except BlockingIOError:
            return
        if not got:  # the daemon is gone
            stop.set()
            return
        if b"r" in got:
            rules.reload()
        runner.wake()

    os.set_blocking(wake.fileno(), False)
    loop.add_reader(wake.fileno(), on_wake)
    tasks: list[asyncio.Task[None]] = []
    # Whatever ends this process from here (the daemon gone while the parse
    # processes start, say) ends its parse processes too: a pool left
    # running keeps the interpreter from exiting.
    try:
        if pool is not None:
            await pool.warm()
        if stop.is_set():
            return  # the daemon went away meanwhile
        tasks.append(asyncio.create_task(runner.run(), name="pipeline"))
        if config.rules_watch:
            tasks.append(asyncio.create_task(rules.watch(), name="rules-watch"))
        try:
            results.send_bytes(b'{"ready": true}')
        except BrokenPipeError:
            return  # the daemon is gone
        log.info("pipeline_process_ready", pid=os.getpid(), store=store.dialect)
        await stop.wait()
    finally:
        loop.remove_reader(wake.fileno())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pool is not None:
            pool.close()
        await store.close()
        results.close()


# -- parse processes ---------------------------------------------------------
class ParsePool:
    """Processes that prepare envelopes (``prepare_envelope``: MIME parsing,
    HTML to text, language, the rules' work on subject and text) for a SQLite
    pipeline process, which meanwhile writes the batch before. Results are
    plain data (NormalizeFailed carries strings). ``rules_fingerprint`` gives
    the fingerprint of the rules the pipeline process runs; a parse process
    previews with the rules it loads from the same directory only while they
    are the same (``ParseRules``). A pool that breaks (a parse process killed) is replaced; the
    rows it had are normalized in the transaction instead. One that breaks
    MAX_BREAKS times in a row without finishing a job (it cannot start, say)
    is given up: ``submit`` raises and the pipeline parses by itself."""

    MAX_BREAKS = 3

    def __init__(
        self,
        config: Config,
        n: int,
        rules_fingerprint: Callable[[], str] | None = None,
        *,
        wiring: ProcessWiring,
    ) -> None:
        self.config = config
        self.wiring = wiring
        self.n = n
        self.rules_fingerprint = rules_fingerprint
        self.breaks = 0
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.n,
            mp_context=mp.get_context("spawn"),
            initializer=_parser_init,
            initargs=(self.config, self.wiring),
        )

    def submit(self, rows: list[InboundRow]) -> asyncio.Future[list[tuple[int, Normalized]]]:
        fp = self.rules_fingerprint() if self.rules_fingerprint is not None else None
        try:
            fut = self._executor.submit(_parse_rows, rows, fp)
        except BrokenExecutor:
            self.breaks += 1
            self._executor.shutdown(wait=False, cancel_futures=True)
            if self.breaks >= self.MAX_BREAKS:
                raise RuntimeError(
                    f"parse processes failed {self.breaks} times in a row: given up"
                ) from None
            log.error("parse_processes_broken", restarting=self.n)
            self._executor = self._start()
            fut = self._executor.submit(_parse_rows, rows, fp)
        fut.add_done_callback(self._done)
        return asyncio.wrap_future(fut)

    def restart(self) -> None:
        """Replace the processes (one is stuck on a job: the runner's
        ``parse_timeout``); the jobs they had are dropped."""
        self.close()
        self._executor = self._start()

    async def warm(self, timeout: float = 60.0) -> None:
        """Start the parse processes now rather than at the first mail: a
        process imports omnidesk and loads the language model first (about
        0.3 s), which the first mail after a start would otherwise wait for,
        with the queue behind it. One job per process (the executor starts
        one for each job no idle process can take)."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    *(asyncio.wrap_future(self._executor.submit(os.getpid)) for _ in range(self.n))
                )
        except Exception:
            # Submitting mail replaces a broken pool, or gives it up.
            log.exception("parse_processes_not_started")

    def _done(self, fut: Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.breaks = 0

    def close(self) -> None:
        # shutdown() alone can leave a worker waiting for a job forever (its
        # stop sentinel never arrives once this process is exiting), and the
        # exit then waits for that worker: end the workers outright. Nothing
        # of theirs needs keeping; unfinished jobs are parsed again.
        workers = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            with contextlib.suppress(Exception):
                w.terminate()


_PARSE_CTX: PipelineContext | None = None
_PARSE_RULES: ParseRules | None = None


class ParseRules:
    """A parse process's copy of the rules, for ``RuleSet.preview``: loaded
    from the rules directory, and loaded again when the pipeline process
    asks for a fingerprint it does not have (the files changed and the
    pipeline process reloaded). None while the two differ (files saved but
    refused by validation, an edit not yet reloaded): the transaction then
    evaluates in full. The directory is read again only when its files'
    fingerprint changed since the last try. A fingerprint that names a trained
    model (``+model-N``) gets that version from ``model_dir``."""

    def __init__(self, directory: Path, model_dir: Path | None = None) -> None:
        self.directory = directory
        self.model_dir = model_dir
        self.ruleset: RuleSet | None = None
        self.loads = 0
        self._tried: tuple[str, str] | None = None  # (asked for, on disk) of the last miss
        self._load()  # at the start, not at the first mail

    def _load(self) -> None:
        from .rules import RulesError, load_rules

        self.loads += 1
        try:
            self.ruleset = load_rules(self.directory)
        except (RulesError, OSError) as exc:
            log.warning("parse_process_rules_unloadable", error=str(exc)[:300])

    def matching(self, wanted: str) -> RuleSet | None:
        from .rules.loader import fingerprint

        if self.ruleset is not None and self.ruleset.fingerprint == wanted:
            return self.ruleset
        rules_wanted, _, model = wanted.partition("+model-")
        if self.ruleset is None or self.ruleset.fingerprint.partition("+model-")[0] != (
            rules_wanted
        ):
            on_disk = fingerprint(self.directory)
            if on_disk != rules_wanted or self._tried == (wanted, on_disk):
                return None
            self._tried = (wanted, on_disk)
            self._load()
            if self.ruleset is None:
                return None
        if model and self.model_dir is not None:
            self._with_model(int(model))
        elif not model:
            self.ruleset = self.ruleset.with_model(None) if self.ruleset else None
        if self.ruleset is not None and self.ruleset.fingerprint == wanted:
            return self.ruleset
        return None

    def _with_model(self, version: int) -> None:
        from .rules.trained import ModelStore

        assert self.ruleset is not None and self.model_dir is not None
        current = self.ruleset.model
        if current is not None and current.version == version:
            return
        try:
            model = ModelStore(self.model_dir).load(version)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("parse_process_model_unloadable", version=version, error=str(exc)[:300])
            return
        self.ruleset = self.ruleset.with_model(model)


def _parser_init(config: Config, wiring: ProcessWiring) -> None:
    global _PARSE_CTX, _PARSE_RULES
    from .rules import detect_language, load_language_model

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    load_language_model()
    # Adapters only normalize here; they have no intake and no store.
    adapters, _ = wiring.adapters(config, None)
    _PARSE_CTX = PipelineContext(
        adapters=adapters, rules=_no_rules, detect_language=detect_language
    )
    _PARSE_RULES = ParseRules(config.rules_dir, wiring.model_dir(config))


def _exit_with_parent(every: float = 0.5) -> None:
    """A parse process waits for jobs on a queue whose both ends it holds
    itself, so its pipeline process dying (SIGKILL, say) would never reach
    it: watch the parent and leave when it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _parse_rows(
    rows: list[InboundRow], rules_fingerprint: str | None = None
) -> list[tuple[int, Normalized]]:
    assert _PARSE_CTX is not None and _PARSE_RULES is not None, "parse process not initialised"
    rules = _PARSE_RULES.matching(rules_fingerprint) if rules_fingerprint else None
    return [(r.id, prepare_envelope(_PARSE_CTX, r, rules)) for r in rows]


def _no_rules() -> Any:
    raise RuntimeError("a parse process does not classify (it previews, see ParseRules)")


def _store_options(config: Config) -> dict[str, Any]:
    if config.storage_url.startswith("sqlite"):
        return {}
    return {"pool_size": config.pool_size, "statement_timeout": config.statement_timeout}
