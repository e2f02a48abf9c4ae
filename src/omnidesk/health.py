"""Readiness: is this instance doing its work, and who hears when it is not.

``/healthz`` says the process lives. ``/readyz`` says whether it does its job
and, with a 503, names what is wrong:

* the store does not answer;
* work is pending and no pipeline has got through the queue for longer than
  ``[health] pipeline_stall_seconds``: the oldest pending envelope stayed the
  oldest and this instance's pipeline finished no batch (this covers the
  pipeline in this process, in pipeline processes, and on other instances
  sharing PostgreSQL); or the pipeline processes have not all been up for
  that long;
* a channel whose inbound side (its listener, connection or poll, as the
  adapter reports it with ``set_health``) or outbound side (deliveries, as
  the outbox reports them) has been failing, without a success in between,
  for longer than ``channel_failure_seconds`` (per channel:
  ``[health.channels.NAME] failure_seconds``).

The monitor checks every ``check_interval`` seconds and on each /readyz or
/metrics request. Each check writes the same states into Prometheus gauges;
a problem that appears or clears is one log line and, when configured, one
message to the admins by webhook and/or e-mail (through an e-mail channel's
relay). Reasons are scrubbed of e-mail addresses before they go anywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from .config import Config, ConfigError, HealthConfig
from .metrics import Metrics
from .store import Store
from .store.inbound import pending_summary

if TYPE_CHECKING:
    from .channels.base import ChannelAdapter
    from .channels.mailout import EmailChannel

log = structlog.get_logger(__name__)

INBOUND, OUTBOUND = "inbound", "outbound"
STORE_TIMEOUT = 5.0  # seconds the store gets to answer a check
FRESH = 0.25  # seconds a check's answer serves further /readyz requests
NOTIFY_TIMEOUT = 10.0
# Adapter states with ok = True: doing their work, or not this instance's to run.
WORKING = frozenset({"running", "degraded"})
IDLE = frozenset({"standby", "stopped"})
_ADDRESS = re.compile(r"[^\s<>()\[\]@:;,\"']+@[^\s<>()\[\]@:;,\"']+")
_WHAT = {INBOUND: "inbound (connection or poll)", OUTBOUND: "outbound delivery"}


def scrub(text: str, limit: int = 300) -> str:
    """A reason as it may go into logs, /readyz and alerts: e-mail addresses
    (a customer's, in a relay's refusal) replaced, the length bounded."""
    text = _ADDRESS.sub("<address>", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(slots=True)
class Side:
    """One direction of one channel."""

    last_success: float | None = None
    last_failure: float | None = None
    failing_since: float | None = None
    reason: str = ""

    def succeeded(self, at: float) -> None:
        self.last_success = at
        self.failing_since = None
        self.reason = ""

    def failed(self, at: float, reason: str, since: float | None = None) -> None:
        self.last_failure = at
        if self.failing_since is None:
            self.failing_since = min(since or at, at)
        self.reason = scrub(reason)


@dataclass(frozen=True, slots=True)
class Problem:
    key: str  # stable while the problem lasts: "store", "channel:email:outbound"
    component: str  # store | pipeline | channel
    message: str
    since: float
    channel: str | None = None
    direction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "component": self.component,
            "message": self.message,
            "since": self.since,
        }
        if self.channel is not None:
            d["channel"], d["direction"] = self.channel, self.direction
        return d


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    problems: list[Problem]
    # Wrong, but not (yet) enough to be unready: a channel failing for less
    # than its threshold, a rules edit that was refused.
    warnings: list[str]
    checked_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": self.warnings,
            "checked_at": self.checked_at,
        }


class HealthMonitor:
    """Holds each channel side's last success and failure, watches the store
    and the queue, and says whether this instance is ready."""

    def __init__(
        self,
        config: Config,
        store: Store,
        adapters: Mapping[str, ChannelAdapter],
        metrics: Metrics,
        *,
        pipeline_status: Callable[[], dict[str, Any] | None] | None = None,
        rules_error: Callable[[], str | None] | None = None,
        spawn: Callable[[Awaitable[Any], str], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings: HealthConfig = config.health
        self.store = store
        self.adapters = adapters
        self.metrics = metrics
        self.pipeline_status = pipeline_status
        self.rules_error = rules_error
        self.clock = clock
        self.notifier = Notifier.from_config(config, adapters, spawn)
        self._sides: dict[tuple[str, str], Side] = {}
        self._oldest: int | None = None  # the oldest pending envelope at the last check
        self._stall_clock: float | None = None  # since when it has been the oldest
        self._last_batch = 0.0  # this instance's pipeline last got through envelopes
        self._procs_down_since: float | None = None
        self._known: dict[str, Problem] = {}
        self._last: Readiness | None = None
        self._lock = asyncio.Lock()

    def side(self, channel: str, direction: str) -> Side:
        return self._sides.setdefault((channel, direction), Side())

    # -- reports -----------------------------------------------------------
    def delivery(self, channel: str, error: str | None) -> None:
        """The outbox delivered on ``channel`` (None) or failed to (why)."""
        side = self.side(channel, OUTBOUND)
        if error is None:
            side.succeeded(self.clock())
        else:
            side.failed(self.clock(), error)

    def outbound(self, channel: str) -> dict[str, Any] | None:
        """The channel's deliveries as /healthz shows them (None before the
        first one)."""
        side = self._sides.get((channel, OUTBOUND))
        if side is None:
            return None
        return {
            "ok": side.failing_since is None,
            "last_success": side.last_success,
            "last_failure": side.last_failure,
            "failing_since": side.failing_since,
            "detail": side.reason,
        }

    def batch_done(self) -> None:
        """This instance's pipeline got through envelopes."""
        self._last_batch = self.clock()

    # -- checks ------------------------------------------------------------
    async def check(self) -> Readiness:
        async with self._lock:
            last = self._last
            if last is None or self.clock() - last.checked_at >= FRESH:
                last = self._last = await self._check()
            return last

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("health_check_failed")
            await asyncio.sleep(self.settings.check_interval)

    async def _check(self) -> Readiness:
        now = self.clock()
        problems: list[Problem] = []
        warnings: list[str] = []
        problems += await self._store_and_queue(now)
        problems += self._pipeline_processes(now)
        for name, adapter in self.adapters.items():
            self._observe_inbound(name, adapter, now)
        for (name, direction), side in sorted(self._sides.items()):
            problem = self._channel_side(name, direction, side, now)
            if problem is not None:
                problems.append(problem)
            elif side.failing_since is not None:
                warnings.append(
                    f"channel {name}: {_WHAT[direction]} failing for"
                    f" {duration(now - side.failing_since)}: {side.reason}"
                )
        error = self.rules_error() if self.rules_error is not None else None
        if error:
            warnings.append(
                f"the last rules edit was refused (the previous rules keep running): {scrub(error)}"
            )
        self.metrics.ready.set(0 if problems else 1)
        self._changes(problems, now)
        return Readiness(not problems, problems, warnings, now)

    def _since(self, key: str, default: float) -> float:
        known = self._known.get(key)
        return known.since if known is not None else default

    async def _store_and_queue(self, now: float) -> list[Problem]:
        m, limit = self.metrics, self.settings.pipeline_stall_seconds
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                pending, oldest = await self.store.read(pending_summary)
        except Exception as exc:
            m.store_up.set(0)
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            message = f"the store does not answer: {scrub(reason or type(exc).__name__)}"
            return [Problem("store", "store", message, self._since("store", now))]
        m.store_up.set(1)
        if not pending:
            self._stall_clock = None
        elif self._stall_clock is None or oldest != self._oldest:
            self._stall_clock = now
        self._oldest = oldest
        waiting = 0.0
        if pending and self._stall_clock is not None:
            waiting = max(0.0, now - max(self._stall_clock, self._last_batch))
        m.pipeline_waiting.set(waiting)
        stalled = bool(pending) and waiting >= limit
        m.pipeline_stalled.set(1 if stalled else 0)
        if not stalled:
            return []
        message = (
            f"pipeline: {pending} envelopes pending and none processed for {duration(waiting)}"
            f" (limit {duration(limit)})"
        )
        return [Problem("pipeline", "pipeline", message, now - waiting)]

    def _pipeline_processes(self, now: float) -> list[Problem]:
        status = self.pipeline_status() if self.pipeline_status is not None else None
        if status is None or status["ok"]:
            self._procs_down_since = None
            return []
        if self._procs_down_since is None:
            self._procs_down_since = now
        down = now - self._procs_down_since
        if down < self.settings.pipeline_stall_seconds:
            return []
        message = (
            f"pipeline: {status['ready']} of {status['processes']} pipeline processes ready"
            f" for {duration(down)} ({status['restarts']} restarts)"
        )
        return [Problem("pipeline-processes", "pipeline", message, self._procs_down_since)]

    def _observe_inbound(self, name: str, adapter: ChannelAdapter, now: float) -> None:
        h = adapter.inbound_health()
        side = self.side(name, INBOUND)
        if not h.ok:
            side.failed(now, h.detail or h.state, since=h.failing_since)
        elif h.state in WORKING:
            side.succeeded(now)
        elif h.state in IDLE:
            side.failing_since = None  # not this instance's to run now

    def _channel_side(self, name: str, direction: str, side: Side, now: float) -> Problem | None:
        m, labels = self.metrics, (name, direction)
        failing = now - side.failing_since if side.failing_since is not None else 0.0
        limit = self.settings.failure_seconds(name)
        over = side.failing_since is not None and failing >= limit
        m.channel_failing_seconds.labels(*labels).set(failing)
        m.channel_failing.labels(*labels).set(1 if over else 0)
        if side.last_success is not None:
            m.channel_last_success.labels(*labels).set(side.last_success)
        if side.last_failure is not None:
            m.channel_last_failure.labels(*labels).set(side.last_failure)
        if not over or side.failing_since is None:
            return None
        message = (
            f"channel {name}: {_WHAT[direction]} failing for {duration(failing)}"
            f" (limit {duration(limit)}): {side.reason}"
        )
        key = f"channel:{name}:{direction}"
        return Problem(key, "channel", message, side.failing_since, name, direction)

    def _changes(self, problems: list[Problem], now: float) -> None:
        """One log line per problem that appeared or cleared; the admins
        told once per check that changed something."""
        current = {p.key: p for p in problems}
        appeared = [p for k, p in current.items() if k not in self._known]
        cleared = [p for k, p in self._known.items() if k not in current]
        for p in appeared + cleared:
            where = {"component": p.component, "channel": p.channel, "direction": p.direction}
            if p.key in current:
                log.error("health_problem", problem=p.message, **where)
            else:
                log.info("health_recovered", after_seconds=round(now - p.since, 1), **where)
        self._known = current
        if (appeared or cleared) and self.notifier is not None:
            self.notifier.send(problems, appeared, cleared, now)


class Notifier:
    """Tells the admins of a change in readiness: a JSON POST to a webhook
    (signed like the API channel's callbacks when a secret is set) and/or an
    e-mail through an e-mail channel's relay. A failed alert is logged; it
    never affects the daemon. Alerts leave one at a time, in order."""

    def __init__(
        self,
        config: Config,
        mailer: EmailChannel | None,
        spawn: Callable[[Awaitable[Any], str], Any] | None,
    ) -> None:
        s = config.health
        self.webhook = s.notify_webhook
        self.secret = s.notify_webhook_secret
        self.recipients = s.notify_email
        self.mailer = mailer
        self.instance = config.instance_name
        self.spawn = spawn
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self.sent = 0  # alerts that reached at least one way out (tests)

    @classmethod
    def from_config(
        cls,
        config: Config,
        adapters: Mapping[str, ChannelAdapter],
        spawn: Callable[[Awaitable[Any], str], Any] | None,
    ) -> Notifier | None:
        s = config.health
        if s.notify_webhook is None and not s.notify_email:
            return None
        mailer = _mail_channel(config, adapters) if s.notify_email else None
        return cls(config, mailer, spawn)

    def send(
        self, problems: list[Problem], appeared: list[Problem], cleared: list[Problem], at: float
    ) -> None:
        payload = {
            "event": "readiness",
            "instance": self.instance,
            "ready": not problems,
            "at": at,
            "problems": [p.to_dict() for p in problems],
            "appeared": [p.to_dict() for p in appeared],
            "resolved": [p.to_dict() for p in cleared],
        }
        work = self._deliver(payload)
        if self.spawn is not None:
            self.spawn(work, "health-notify")
        else:
            task = asyncio.ensure_future(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        async with self._order:
            reached = False
            if self.webhook is not None:
                try:
                    await self._post(payload)
                    reached = True
                except Exception as exc:
                    log.warning("health_notify_failed", via="webhook", error=scrub(str(exc)))
            if self.mailer is not None:
                try:
                    await self._mail(self.mailer, payload)
                    reached = True
                except Exception as exc:
                    log.warning("health_notify_failed", via="email", error=scrub(str(exc)))
            self.sent += reached

    async def _post(self, payload: dict[str, Any]) -> None:
        import httpx

        from . import __version__
        from .channels.api import SIGNATURE_HEADER, sign

        assert self.webhook is not None
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"omnidesk/{__version__}"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret.reveal(), body)
        async with httpx.AsyncClient(timeout=NOTIFY_TIMEOUT) as client:
            r = await client.post(self.webhook.reveal(), content=body, headers=headers)
            r.raise_for_status()

    async def _mail(self, channel: EmailChannel, payload: dict[str, Any]) -> None:
        who = f"omnidesk {self.instance}".strip()
        problems = payload["problems"]
        if problems:
            subject = f"[{who}] not ready: " + "; ".join(p["message"] for p in problems)
        else:
            subject = f"[{who}] ready again"
        lines = ["Not ready:" if problems else "Ready: nothing is wrong now."]
        lines += [f"  - {p['message']}" for p in problems]
        if payload["resolved"]:
            lines += ["", "Resolved:"] + [f"  - {p['message']}" for p in payload["resolved"]]
        lines += ["", "Details: GET /readyz on this instance; metrics on /metrics."]
        await send_system_mail(
            channel,
            sender=who,
            to=[(None, r) for r in self.recipients],
            subject=subject,
            body="\n".join(lines) + "\n",
            tag="health",
        )


async def send_system_mail(
    channel: EmailChannel,
    *,
    sender: str,
    to: list[tuple[str | None, str]],
    subject: str,
    body: str,
    tag: str,
) -> None:
    """A plain-text mail from omnidesk itself (alerts, notices to agents)
    through an e-mail channel's relay: its From address under ``sender``'s
    name, marked automatic."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import formataddr, formatdate

    assert channel.relay is not None and channel.from_address and channel.bounce_address
    msg = EmailMessage()
    msg["From"] = formataddr((sender, channel.from_address))
    msg["To"] = ", ".join(formataddr((name or "", addr)) for name, addr in to)
    msg["Subject"] = subject[:200]
    msg["Date"] = formatdate(localtime=True)
    # od.* at our domain: should it land in a mailbox omnidesk reads, it
    # is recognised as our own mail and not opened as a conversation.
    msg["Message-ID"] = f"<od.{tag}.{uuid.uuid4().hex}@{channel.message_id_domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    await channel.relay.deliver(
        msg.as_bytes(policy=SMTP),
        mail_from=channel.bounce_address,
        recipients=[addr for _name, addr in to],
    )


def mail_channel(config: Config, adapters: Mapping[str, ChannelAdapter]) -> EmailChannel | None:
    """The e-mail channel omnidesk's own mail leaves through: the one named by
    ``[health] notify_email_channel``, else the first with a relay (None when
    there is none)."""
    from .channels.mailout import EmailChannel

    usable = [
        a
        for n, a in adapters.items()
        if isinstance(a, EmailChannel)
        and a.relay is not None
        and a.from_address
        and n == (config.health.notify_email_channel or n)
    ]
    return usable[0] if usable else None


def _mail_channel(config: Config, adapters: Mapping[str, ChannelAdapter]) -> EmailChannel:
    """The e-mail channel whose relay sends the alerts (``mail_channel``);
    a configuration error when there is none."""
    found = mail_channel(config, adapters)
    if found is not None:
        return found
    name = config.health.notify_email_channel
    if name is not None:
        raise ConfigError(
            config.file,
            "health.notify_email_channel",
            f"channel {name!r} is not an enabled e-mail channel (smtp or imap) with a relay",
        )
    raise ConfigError(
        config.file,
        "health.notify_email",
        "needs an e-mail channel (smtp or imap) with a relay to send through",
    )
