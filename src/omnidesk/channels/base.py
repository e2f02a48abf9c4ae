"""The channel adapter contract, shared by built-in and drop-in adapters.

An adapter talks one protocol and nothing else:

* ``start()`` begins receiving (a listener, a poller, nothing for webhooks) and
  hands what arrives to ``ctx.intake.accept(Envelope(...))``; it acknowledges
  to the outside world (SMTP 250, HTTP 200, IMAP flag) only after ``accept``
  returned: the raw input is then on disk.
* ``normalize(envelope)`` turns a stored envelope into a ``Message``,
  ``StatusUpdate`` or ``Skip``; raise ``NormalizeError`` for input that cannot
  be understood (it goes to quarantine with its raw bytes). It runs inside the
  pipeline's database transaction, possibly in another thread: it must be pure
  (no I/O, no event loop).
* ``send(outbound)`` delivers a reply; raise ``SendError(retry=...)`` on failure.
* ``health()`` says whether it works (``set_health`` records a change);
  ``stop()`` releases everything.

Webhook adapters also implement ``handle_webhook(request)``, served at
``/webhooks/{channel name}`` (Starlette request/response). An adapter that
serves more than one endpoint (a chat widget, its script and live stream)
returns Starlette routes from ``routes()``: they are mounted at
``/{type}/{channel name}`` after the core API (a core path always wins) and
answer without a user token, so the adapter authenticates its callers itself.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from ..config import ChannelConfig, Options
from ..model import Envelope, Normalized, OutboundMessage, SendResult

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..store import Store

# What an adapter can do; the inbox uses this to offer or hide features.
CAPABILITIES = frozenset(
    {
        "attachments",  # receives/sends files
        "threads",  # conversations map to provider threads
        "edits",  # customers can edit messages
        "subject",  # messages carry a subject line
        "html",  # rich text
        "delivery_receipts",  # provider reports delivered/read
        "webhook",  # receives over HTTP at /webhooks/{name}
    }
)


class Accept(abc.ABC):
    """The intake as an adapter sees it."""

    @abc.abstractmethod
    async def accept(self, envelope: Envelope) -> bool:
        """Store durably; True if new, False if (channel, external_id) was seen."""

    @abc.abstractmethod
    async def accept_many(self, envelopes: Sequence[Envelope]) -> list[bool]: ...


@dataclass(slots=True)
class Health:
    ok: bool = True
    state: str = "starting"  # starting | running | degraded | failing | stopped
    detail: str = ""
    since: float = field(default_factory=time.time)
    last_activity: float | None = None
    # Since when ok has been False, through changes of state and detail (a
    # retry counter in the detail must not restart the clock of /readyz).
    failing_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "state": self.state,
            "detail": self.detail,
            "since": self.since,
            "last_activity": self.last_activity,
            "failing_since": self.failing_since,
        }


@dataclass(slots=True)
class ChannelContext:
    """What the daemon hands an adapter."""

    name: str
    config: ChannelConfig
    intake: Accept
    store: Store | None = None
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("data")
    # Runs a coroutine as a supervised background task of the daemon.
    spawn: Callable[[Awaitable[Any], str], Any] | None = None

    @property
    def options(self) -> Options:
        return self.config.options


class ChannelAdapter(abc.ABC):
    """Subclass this, set ``type`` (the ``type =`` in ``[[channels]]``), and
    read your settings from ``ctx.options`` in ``__init__``."""

    type: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Receives by polling a single source (an IMAP mailbox, a long-poll bot):
    # with several daemon instances only one may run it at a time.
    single_consumer: ClassVar[bool] = False
    # The largest request body its HTTP endpoints take (a provider's largest
    # delivery). The web server refuses a larger one with 413 before the
    # adapter sees any of it (web/limits.py): a handler reads the body whole.
    max_body: ClassVar[int] = 1024 * 1024

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.log = structlog.get_logger(f"omnidesk.channels.{self.type}").bind(channel=ctx.name)
        self._health = Health()

    async def start(self) -> None:  # noqa: B027 - webhook-only adapters have nothing to start
        """Begin receiving. Return once running; run loops via ``ctx.spawn``."""

    async def stop(self) -> None:  # noqa: B027
        """Stop receiving and release resources."""

    @abc.abstractmethod
    def normalize(self, envelope: Envelope) -> Normalized:
        """Pure: envelope -> Message | StatusUpdate | Skip, or NormalizeError."""

    @abc.abstractmethod
    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver; raise SendError(reason, retry=...) on failure."""

    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("this channel takes no webhooks\n", status_code=404)

    def routes(self) -> Sequence[BaseRoute]:
        """Extra HTTP endpoints, mounted at ``/{type}/{name}`` (paths here are
        relative to that prefix). Called once, when the web app is built."""
        return ()

    def health(self) -> Health:
        return self._health

    def set_health(self, ok: bool, state: str, detail: str = "") -> None:
        """Record a health change, logging transitions once (not every retry)."""
        h = self._health
        if (h.ok, h.state, h.detail) != (ok, state, detail):
            log = self.log.info if ok else self.log.warning
            log("channel_health", ok=ok, state=state, detail=detail)
            now = time.time()
            failing = None if ok else (h.failing_since if not h.ok else None) or now
            self._health = Health(
                ok=ok,
                state=state,
                detail=detail,
                since=now,
                last_activity=h.last_activity,
                failing_since=failing,
            )

    def inbound_health(self) -> Health:
        """The receiving side as the adapter last set it (its listener,
        connection or poll). ``health()`` may add what it knows of sending;
        the health monitor takes sending from the outbox's results."""
        return self._health

    def touch(self) -> None:
        """Note that something arrived or left (for staleness checks)."""
        self._health.last_activity = time.time()
