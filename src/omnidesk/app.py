"""The composition root: the one place that builds the parts and wires them
together - store, rules, channel adapters with their ports, intake,
pipeline (here or in processes), outbox, health and the web app - and starts
and stops them in order (``Daemon``).

Nothing imports this module but the CLI (a contract in pyproject.toml): the
web layer is handed ``WebServices`` (``web/services.py``), channel adapters
their ports (``channel_services.py``), and pipeline processes build from the
builders here, handed to them as ``PROCESS_WIRING``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from .channel_services import (
    IntakePort,
    RelayMail,
    StoredContactLinks,
    StoredQueries,
    StoredState,
    emitter,
)
from .channels.base import Accept, ChannelAdapter, ChannelContext
from .channels.registry import UnknownChannelType, adapter_class, dropin_adapters
from .config import Config, ConfigError
from .customers.redact import Redactor
from .events import Event, EventBus
from .health import HealthMonitor, mail_channel, send_system_mail
from .intake import Intake
from .learning import Retrainer
from .metrics import Metrics
from .model import Envelope
from .outbox import OutboxWorker
from .pipeline import (
    BatchResult,
    ChannelParser,
    PipelineContext,
    PipelineRunner,
    quarantine_pending,
)
from .pipeline_proc import POISON_AFTER, InFlightFile, PipelineProcesses, ProcessWiring
from .rules import (
    RulesError,
    RuleSet,
    RulesHolder,
    detect_language,
    load_language_model,
    load_rules,
)
from .rules.holder import MODEL_FOLDER
from .rules.service import SlaPolicy
from .service.evaluate import Settings as ServiceSettings
from .service.notices import NoticeMail, NoticeMailer, Send
from .service.privacy import RetentionJob
from .service.scheduler import Scheduler, channel_types
from .service.surveys import capture_chat_answer
from .snooze import snooze_waker
from .startup import CONFIGURATION, StartupError, bind, check_writable
from .store import Store, open_store

if TYPE_CHECKING:
    from .web.services import WebServices

log = structlog.get_logger("omnidesk.daemon")

NOTIFY_CHANNEL = "omnidesk_events"
STOP_TIMEOUT = 10.0  # seconds for background tasks to end at shutdown


def build_adapters(
    config: Config,
    intake: Accept,
    store: Store | None,
    spawn: Callable[[Awaitable[Any], str], Any] | None = None,
    publish: Callable[[list[Event]], None] | None = None,
) -> tuple[dict[str, ChannelAdapter], dict[str, str]]:
    """Instantiate every enabled channel, each with its ports (see
    ``channel_services.py``; without a store, no state, queries or contact
    links). Returns (adapters, auto-ack texts). Raises ConfigError naming the
    channel's key on any problem."""
    folder = config.channels_dir or (config.base_dir / "channels")
    port = IntakePort(intake)
    links = StoredContactLinks(store) if store is not None else None
    dropins = dropin_adapters(folder)
    adapters: dict[str, ChannelAdapter] = {}
    acks: dict[str, str] = {}
    for i, ch in enumerate(config.channels):
        if not ch.enabled:
            continue
        try:
            cls = adapter_class(ch.type, dropins=dropins)
        except UnknownChannelType as exc:
            raise ConfigError(config.file, f"channels[{i}].type", str(exc)) from None
        ack = ch.options.string("auto_acknowledge", None)
        if ack:
            acks[ch.name] = ack
        ctx = ChannelContext(
            name=ch.name,
            config=ch,
            intake=port,
            state=StoredState(store, ch.name) if store is not None else None,
            queries=(
                StoredQueries(store, ch.name, config.assignment) if store is not None else None
            ),
            contacts=links,
            emit=emitter(ch.name, publish) if publish is not None else None,
            public_url=config.public_url,
            data_dir=config.data_dir,
            spawn=_spawner(spawn) if spawn is not None else None,
            multi_instance=store is not None and store.multi_instance,
            mail=RelayMail(adapters),
        )
        adapters[ch.name] = cls(ctx)
    for adapter in adapters.values():
        adapter.check_peers(adapters)
    return adapters, acks


def _spawner(
    spawn: Callable[[Awaitable[Any], str], Any],
) -> Callable[[Awaitable[Any], str], Any]:
    """``ctx.spawn``: the daemon's supervised tasks, without the daemon
    (a bound method would carry it along)."""
    return lambda coro, name: spawn(coro, name)


@contextlib.asynccontextmanager
async def channel_adapters(config: Config) -> AsyncIterator[dict[str, ChannelAdapter]]:
    """The configured channels with their ports, for a command that drives a
    channel without the daemon (``omnidesk imap backfill``): the store opened,
    what was accepted drained to it on the way out, the store closed."""
    store = open_store(config.storage_url)
    await store.open()
    try:
        intake = Intake(store)
        adapters, _ = build_adapters(config, intake, store)
        yield adapters
        await intake.drain()
    finally:
        await store.close()


def model_dir(config: Config) -> Path:
    """Where trained classifier models live (``omnidesk classify train``)."""
    return config.data_dir / MODEL_FOLDER


def pipeline_context(
    config: Config,
    adapters: Mapping[str, ChannelParser],
    rules: Callable[[], RuleSet],
    acks: Mapping[str, str],
) -> PipelineContext:
    """What the pipeline needs, from the configuration (the daemon's own
    pipeline, a pipeline process and ``quarantine retry`` build it alike).
    ``rules`` gives the current rules (a reload shows at the next message)."""
    return PipelineContext(
        adapters=adapters,
        rules=rules,
        teams={t.name: t for t in config.teams},
        teams_in_db=True,
        default_team=config.default_team,
        assignment=config.assignment,
        chat_session_seconds=config.chat_session_hours * 3600,
        reopen_seconds=config.reopen_days * 86400,
        detect_language=detect_language,
        auto_ack=acks,
        survey_answer=lambda db, conv, msg, now: (
            capture_chat_answer(db, conv, msg.text, now, rules().service) is not None
        ),
        redact=(
            Redactor(config.privacy.redact_card_numbers, config.privacy.redact_patterns)
            if config.privacy.redacting
            else None
        ),
    )


class _NoIntake(Accept):
    """The intake of adapters that only normalize (pipeline and parse
    processes: the daemon runs the channels)."""

    async def accept(self, envelope: Envelope) -> bool:
        raise RuntimeError("a pipeline or parse process accepts nothing")

    async def accept_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        raise RuntimeError("a pipeline or parse process accepts nothing")


def normalizing_adapters(
    config: Config, store: Store | None
) -> tuple[dict[str, ChannelParser], dict[str, str]]:
    """The channels as a pipeline or parse process has them: built like the
    daemon's, never started, accepting nothing."""
    adapters, acks = build_adapters(config, _NoIntake(), store)
    return dict(adapters), acks


# What a pipeline or parse process builds with (pipeline_proc.py).
PROCESS_WIRING = ProcessWiring(
    adapters=normalizing_adapters, context=pipeline_context, model_dir=model_dir
)


# -- start-up failures --------------------------------------------------------
def rules_at_start(config: Config) -> RuleSet:
    """The rules, or a :class:`StartupError` naming the first problem (the
    daemon never starts on rules that do not load)."""
    from .cmdline import command

    try:
        return load_rules(config.rules_dir)
    except RulesError as exc:
        first = str(exc.problems[0]) if exc.problems else str(exc)
        more = len(exc.problems) - 1
        also = f" (and {more} more problem(s))" if more > 0 else ""
        check = command("rules", "check", config=config.file)
        raise StartupError(f"rules: {first}{also}; see {check}", CONFIGURATION) from None


def store_failure(url: str, exc: BaseException) -> StartupError:
    """The database cannot be opened: one line, without the password."""
    if isinstance(exc, ConnectionError):  # PostgresStore says where and why
        return StartupError(str(exc))
    from .store.postgres import redact_url

    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else redact_url(url)
    return StartupError(f"cannot open the database {where}: {exc}")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.events = EventBus()
        self.store: Store = open_store(
            config.storage_url,
            **(
                {"pool_size": config.pool_size, "statement_timeout": config.statement_timeout}
                if not config.storage_url.startswith("sqlite")
                else {}
            ),
        )
        self.rules = RulesHolder(
            config.rules_dir, rules_at_start(config), model_dir=model_dir(config)
        )
        unknown = self.rules.current.teams - {t.name for t in config.teams}
        if unknown:
            # Not fatal (the conversations wait, visible, in that team's queue), but
            # almost always a typo or a forgotten [[teams]] entry.
            log.warning("rules_name_unknown_teams", teams=sorted(unknown))
        self.intake = Intake(self.store, on_commit=self._on_commit)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.adapters, acks = build_adapters(
            config, self.intake, self.store, self.spawn, self.publish
        )
        self.pipeline = PipelineRunner(
            self.store,
            pipeline_context(config, self.adapters, lambda: self.rules.current, acks),
            batch_size=config.pipeline_batch,
            on_result=self._on_batch,
        )
        # [pipeline] processes: the pipeline runs in child processes instead
        # of this one (pipeline_proc.py); ``self.pipeline`` then only serves
        # callers that drain the queue themselves (the CLI, tests).
        self.pipeline_processes: PipelineProcesses | None = None
        self._in_flight: InFlightFile | None = None  # the in-process pipeline's, see start()
        if config.pipeline_workers and config.pipeline_processes:
            self.pipeline_processes = PipelineProcesses(
                config,
                config.pipeline_processes,
                self._on_batch,
                wiring=PROCESS_WIRING,
                share_waiting=getattr(self.store, "share_waiting", None),
                quarantine=self._quarantine_poison,
            )
        # Readiness (/readyz): what is wrong, as metrics, log lines and alerts.
        self.health = HealthMonitor(
            config,
            self.store,
            self.adapters,
            self.metrics,
            pipeline_status=lambda: (
                self.pipeline_processes.status() if self.pipeline_processes else None
            ),
            rules_error=lambda: str(self.rules.last_error) if self.rules.last_error else None,
            spawn=self.spawn,
        )
        self.outbox = OutboxWorker(
            self.store,
            self.adapters,
            max_attempts=config.outbox_max_attempts,
            backoff_base=config.outbox_backoff_base,
            backoff_max=config.outbox_backoff_max,
            on_events=self.publish,
            on_result=lambda ch, r: self.metrics.outbox.labels(ch, r).inc(),
            on_channel=self.health.delivery,
        )
        # The classifier's retrains: the admin page's button and [classifier] retrain_every.
        self.retrainer = Retrainer(self.store, config.rules_dir, model_dir(config))
        # Service quality (service/): SLA clocks in business hours, time-based
        # rules and surveys, evaluated by one scheduler across the instances.
        self.scheduler = Scheduler(
            self.store,
            lambda: self.rules.current,
            settings=ServiceSettings(
                fallback_policy=SlaPolicy.from_minutes(config.sla_minutes),
                channel_types=channel_types(self.adapters),
            ),
            public_url=config.public_url,
            publish=self.publish,
            outbox_wake=self.outbox.wake,
            notice_wake=lambda: self.notices.wake(),
            assignment=config.assignment,
        )
        # E-mail copies of notices (notify with email = true), through the
        # relay of the e-mail channel that sends omnidesk's own mail.
        self.notices = NoticeMailer(self.store, self._notice_sender(), public_url=config.public_url)
        # [privacy] retention policies, run by the scheduler (service/privacy.py).
        self.retention = RetentionJob(config.privacy)
        self.scheduler.jobs.append(lambda now: self.retention.maybe_run(self.store, now))
        self.web_server: Any = None
        self.started = asyncio.Event()
        self._stopping = False
        # Start-up is all or nothing: what start() opened, for _close().
        self._web_socket: socket.socket | None = None
        self._adapters_begun: list[str] = []
        self._closed = False

    def _notice_sender(self) -> Send | None:
        channel = mail_channel(self.config, self.adapters)
        if channel is None:
            return None
        sender = f"omnidesk {self.config.instance_name}".strip()

        async def send(n: NoticeMail) -> None:
            await send_system_mail(
                channel,
                sender=sender,
                to=[(n.to_name, n.to)],
                subject=n.subject,
                body=n.body,
                tag="notice",
            )

        return send

    # -- events -------------------------------------------------------------
    def publish(self, events: list[Event]) -> None:
        self.events.publish_many(events)
        if self.store.multi_instance and events:
            import json

            payload = json.dumps(events)
            if len(payload) < 7000:  # NOTIFY payloads are capped at 8000 bytes
                self.spawn(self.store.notify(NOTIFY_CHANNEL, payload), "notify")

    def _on_commit(self, n: int) -> None:
        self.wake_pipeline()

    def wake_pipeline(self) -> None:
        """New work is pending (an intake commit, a quarantine retry)."""
        if self.pipeline_processes is not None:
            self.pipeline_processes.wake()
        else:
            self.pipeline.wake()

    def rules_reloaded(self) -> None:
        """The rules were reloaded here (web API): pipeline processes too."""
        if self.pipeline_processes is not None:
            self.pipeline_processes.reload_rules()

    def _on_batch(self, res: BatchResult) -> None:
        m = self.metrics
        m.processed.labels("stored").inc(res.stored)
        m.processed.labels("quarantined").inc(res.quarantined)
        m.processed.labels("skipped").inc(res.skipped)
        if res.seconds:  # a batch of a pipeline, here or in a pipeline process
            m.batch_seconds.observe(res.seconds)
        if res.claimed > res.deferred:
            self.health.batch_done()
        if res.outbox_queued:
            self.outbox.wake()
        self.publish(res.events)

    async def _watch_in_flight(self) -> None:
        """A message that crashes the interpreter (or a C extension, or makes
        the OOM killer step in) takes the daemon down with the pipeline in
        its process, and a supervisor restarts it into the same message. The
        pipeline's in-flight slots live in a file (``InFlightFile``): a row
        in flight at two ends without a clean stop is quarantined here, before
        the pipeline starts. Not with concurrent batches on PostgreSQL
        (``workers`` > 1), which one pair of slots cannot tell apart."""
        if self.store.dialect != "sqlite" and self.config.pipeline_workers > 1:
            return
        name = "pipeline-in-flight" + (
            f"-{self.config.instance_name}" if self.config.instance_name else ""
        )
        self._in_flight = InFlightFile(self.config.data_dir / name)
        ids, poison = self._in_flight.interrupted()
        if ids:
            log.error("pipeline_interrupted", in_flight=ids, quarantine=poison or None)
        if poison:
            await self._quarantine_poison(
                poison,
                "omnidesk stopped without shutting down (a crash, the out-of-memory killer,"
                f" kill -9) while its pipeline handled this message {POISON_AFTER} times",
            )
        self.pipeline.in_flight = self._in_flight.slots

    async def _quarantine_poison(self, ids: list[int], reason: str) -> None:
        """The pipeline died on these rows (a pipeline process, or this
        process before its last start: pipeline_proc.py)."""
        self._on_batch(await self.store.write(quarantine_pending, ids, reason))

    # -- tasks --------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run a background task; a crash is logged, never silent."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task_crashed", task=name)
                raise

        task = asyncio.ensure_future(guarded())
        if inspect.iscoroutine(coro):
            # Cancelled before its first step (a stop right after spawning):
            # close the work so it is not reported as never awaited.
            work = coro
            task.add_done_callback(
                lambda _t: (
                    work.close()
                    if inspect.getcoroutinestate(work) == inspect.CORO_CREATED
                    else None
                )
            )
        key = name
        n = 0
        while key in self._tasks and not self._tasks[key].done():
            n += 1
            key = f"{name}#{n}"
        self._tasks[key] = task
        return task

    # -- lifecycle ----------------------------------------------------------
    async def start(self, *, web: bool = True) -> None:
        """All or nothing: every listener is bound and every channel started
        before ``daemon_started``; on any failure what was opened is closed
        again and the error raised (a :class:`StartupError` for a cause a
        user can fix: a port in use, a data directory, the database, a
        channel), as on a cancellation (a signal during start-up)."""
        try:
            await self._start(web)
        except BaseException:
            await self._close()
            raise

    async def _start(self, web: bool) -> None:
        check_writable(self.config.data_dir)
        try:
            await self.store.open()
            await self._seed_teams()
            if self.store.multi_instance:
                await self.store.listen(NOTIFY_CHANNEL, self._on_remote_events)
        except (ConnectionError, OSError, sqlite3.Error) as exc:
            raise store_failure(self.config.storage_url, exc) from None
        if web:  # bound now, served below: a port in use stops the start here
            self._web_socket = bind("web", self.config.web_host, self.config.web_port)
        for name, adapter in self.adapters.items():
            await self._start_adapter(name, adapter)
        # workers = 0: an accept-only instance (webhooks and listeners), the
        # pipeline runs elsewhere.
        if self.pipeline_processes is not None:
            await self.pipeline_processes.start()
        elif self.config.pipeline_workers:
            await asyncio.to_thread(load_language_model)
            await self._watch_in_flight()
            for i in range(self.config.pipeline_workers):
                self.spawn(self.pipeline.run(), f"pipeline-{i}")
        self.spawn(self.outbox.run(), "outbox")
        self.spawn(self.health.run(), "health")
        self.spawn(snooze_waker(self.store, self.publish), "snooze-waker")
        await self.scheduler.prepare()
        self.spawn(self.scheduler.run(self.events), "scheduler")
        self.spawn(self.notices.run(), "notice-mail")
        if self.config.rules_watch:
            self.spawn(self.rules.watch(), "rules-watch")
        if self.config.retrain_every:  # on one instance: whoever holds the lock

            async def owns() -> bool:
                return await self._owns("classifier-retrain")

            every = self.retrainer.every(
                self.config.retrain_every, owns, min_new=self.config.retrain_min_new
            )
            self.spawn(every, "retrain-schedule")
        if web:
            await self._start_web()
        self.started.set()
        log.info(
            "daemon_started",
            store=self.store.dialect,
            channels=sorted(self.adapters),
            web=f"http://{self.config.web_host}:{self.web_port}" if web else None,
        )

    async def _seed_teams(self) -> None:
        """Teams live in the database; ``[[teams]]`` creates the missing ones."""
        from .store.users import seed_teams

        differ = await self.store.write(seed_teams, self.config.teams)
        for name in differ:
            log.info(
                "team_config_ignored",
                team=name,
                reason="the team in the database (edited by an admin) differs from [[teams]];"
                " the database wins",
            )

    async def _start_adapter(self, name: str, adapter: ChannelAdapter) -> None:
        if adapter.single_consumer and self.store.multi_instance:
            # Only one instance may poll a mailbox or a long-poll bot: wait for
            # the lock in the background, take over when its owner dies.
            self.spawn(self._own_and_start(name, adapter), f"own-{name}")
            return
        # At start-up a channel that does not start stops the daemon.
        self._adapters_begun.append(name)
        try:
            await adapter.start()
        except (StartupError, ConfigError):
            raise
        except Exception as exc:
            # The one line says what; the traceback is for the adapter's author.
            log.debug("channel_start_failed", channel=name, exc_info=True)
            raise StartupError(
                f"channel {name} ({adapter.type}) did not start: {type(exc).__name__}: {exc}"
            ) from None

    async def _run_adapter_start(self, name: str, adapter: ChannelAdapter) -> None:
        """A channel taken over from another instance (not at start-up)."""
        if name not in self._adapters_begun:
            self._adapters_begun.append(name)
        try:
            await adapter.start()
        except Exception as exc:
            # One broken channel must not take the others down: it shows as
            # unhealthy on /healthz and in the log.
            log.exception("channel_start_failed", channel=name)
            adapter.set_health(False, "failing", f"start failed: {exc}")

    async def _own_and_start(self, name: str, adapter: ChannelAdapter) -> None:
        lock = f"channel:{name}"
        while True:
            adapter.set_health(True, "standby", "another instance owns this channel")
            while not await self._owns(lock):
                await asyncio.sleep(1.0)
            log.info("channel_owned", channel=name, instance=self.config.instance_name)
            await self._run_adapter_start(name, adapter)
            # The lock lives in a database session: if that connection is lost
            # another instance may take the channel over, so keep checking and
            # stand by again rather than poll the same source twice.
            while await self._owns(lock):
                await asyncio.sleep(2.0)
            log.warning("channel_ownership_lost", channel=name)
            try:
                await adapter.stop()
            except Exception:
                log.exception("channel_stop_failed", channel=name)

    async def _owns(self, lock: str) -> bool:
        try:
            return await self.store.try_lock(lock)
        except Exception as exc:  # database unreachable: not ours for now
            log.warning("channel_lock_check_failed", lock=lock, error=str(exc))
            return False

    def _on_remote_events(self, payload: str) -> None:
        import json

        with contextlib.suppress(ValueError):
            self.events.publish_many(json.loads(payload))

    async def _start_web(self) -> None:
        import uvicorn

        from .web.app import create_app
        from .web.server import EmbeddedServer

        app = create_app(self.web_services())
        cfg = uvicorn.Config(
            app,
            host=self.config.web_host,
            port=self.config.web_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=self.config.trust_proxy,
            server_header=False,
        )
        server = EmbeddedServer(cfg)
        self.web_server = server
        assert self._web_socket is not None
        self.spawn(server.serve(sockets=[self._web_socket]), "web")
        while not server.started:
            await asyncio.sleep(0.01)
            task = self._tasks.get("web")
            if task is not None and task.done():
                raise StartupError(
                    f"the web server did not start on {self.config.web_host}:{self.web_port}"
                )

    def web_services(self) -> WebServices:
        """What the web layer gets of the daemon."""
        from .web.services import WebServices

        return WebServices(
            config=self.config,
            store=self.store,
            rules=self.rules,
            adapters=self.adapters,
            events=self.events,
            publish=self.publish,
            health=self.health,
            metrics=self.metrics,
            scheduler=self.scheduler,
            retrainer=self.retrainer,
            spawn=self.spawn,
            wake_pipeline=self.wake_pipeline,
            wake_outbox=self.outbox.wake,
            rules_reloaded=self.rules_reloaded,
            pipeline_status=lambda: (
                self.pipeline_processes.status() if self.pipeline_processes else None
            ),
            stopping=lambda: self.web_server is not None and bool(self.web_server.should_exit),
        )

    @property
    def web_port(self) -> int:
        """The bound port (useful with ``port = 0`` in tests)."""
        if self._web_socket is not None and self._web_socket.fileno() != -1:
            return int(self._web_socket.getsockname()[1])
        return self.config.web_port

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self._close()
        log.info("daemon_stopped")

    async def _close(self) -> None:
        """Release whatever start() opened: everything after a full start,
        the part opened so far after a failed or interrupted one."""
        if self._closed:
            return
        self._closed = True
        if self.web_server is not None:
            self.web_server.should_exit = True
        for name in self._adapters_begun:
            adapter = self.adapters[name]
            try:
                await adapter.stop()
            except Exception:
                log.exception("channel_stop_failed", channel=adapter.name)
        await self.intake.drain()
        if self.pipeline_processes is not None:
            await self.pipeline_processes.stop()
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            # A task that ignores its cancellation must not hang the shutdown:
            # name it (with where it is stuck) and go on.
            _, stuck = await asyncio.wait(self._tasks.values(), timeout=STOP_TIMEOUT)
            for name, task in self._tasks.items():
                if task in stuck:
                    where = io.StringIO()
                    task.print_stack(limit=12, file=where)
                    log.error("task_did_not_stop", task=name, where=where.getvalue())
        if self._web_socket is not None and self._web_socket.fileno() != -1:
            # The server closes it when it stops on its own; when its task was
            # cancelled first, the loop still watches the socket: unwatch it
            # before closing, or the next socket to get its number confuses
            # the loop's selector (FileNotFoundError from epoll).
            asyncio.get_running_loop().remove_reader(self._web_socket.fileno())
            self._web_socket.close()
        await self.store.close()
        if self._in_flight is not None:
            self.pipeline.in_flight = None
            self._in_flight.close()  # nothing in flight: a clean stop
            self._in_flight = None

    async def run_forever(
        self,
        after_start: Callable[[Daemon], Awaitable[None]] | None = None,
    ) -> None:
        """Start, run until SIGINT or SIGTERM, stop. A signal during start-up
        interrupts the start (what was opened is closed); either way the end
        is ``daemon_stopped``. A start-up failure raises (nothing is left open)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        starting = asyncio.ensure_future(self.start())
        signalled = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start raises here; start() closed it all
                if after_start is not None:
                    self.spawn(after_start(self), "after-start")
                await signalled
        finally:
            signalled.cancel()
            if not starting.done():  # a signal during start-up: interrupt it
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            failed = not starting.cancelled() and starting.exception() is not None
            if not failed:
                await self.stop()
