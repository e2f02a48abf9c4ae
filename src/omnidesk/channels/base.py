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

The context (``ChannelContext``) is all an adapter gets of the rest of the
daemon, through small ports: ``intake`` (accept envelopes), ``state`` (its own
small key-value state: cursors, offsets), ``queries`` (the few read-only
questions adapters ask of what is stored), ``contacts`` (link an identity a
customer gave to the one they write from) and ``emit`` (events for the
inbox's live feed). Never the store: what an adapter may do to the stored
data is exactly what these ports offer.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog

from ..config import ChannelConfig, Options
from ..events import Event
from ..model import Attachment, Envelope, Identity, Normalized, OutboundMessage, SendResult

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

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


class IntakeError(Exception):
    """The envelope could not be stored; the adapter must not acknowledge."""


class Accept(abc.ABC):
    """The intake as an adapter sees it. ``accept`` raises
    :class:`IntakeError` when the envelope could not be stored."""

    @abc.abstractmethod
    async def accept(self, envelope: Envelope) -> bool:
        """Store durably; True if new, False if (channel, external_id) was seen."""

    @abc.abstractmethod
    async def accept_many(self, envelopes: Sequence[Envelope]) -> list[bool]: ...


class ChannelState(abc.ABC):
    """The adapter's own small durable state (an IMAP folder's cursor, a
    poller's offset): text values under keys of its choosing, kept per
    channel, so one channel never sees another's. Write a cursor only after
    ``accept`` returned for what it covers: a crash in between means the
    same input is fetched again, and the intake dedupes it."""

    @abc.abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def items(self, prefix: str = "") -> dict[str, str]:
        """Every key starting with ``prefix``, with its value."""

    @abc.abstractmethod
    async def put(self, values: Mapping[str, str | None]) -> None:
        """Set several keys at once (all or none); ``None`` deletes a key."""


class ChannelQueries(abc.ABC):
    """The read-only questions adapters ask of what is stored, each about
    this channel only."""

    @abc.abstractmethod
    async def known_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        """Which of these ids the intake already holds (a re-sync or a
        provider's retry need not download what it would only dedupe)."""

    @abc.abstractmethod
    async def last_inbound_at(self, conversation_id: int, customer: Identity) -> float | None:
        """When ``customer`` last wrote in this conversation on this channel
        (the start of a provider's messaging window); None when unknown."""

    @abc.abstractmethod
    async def thread_messages(self, thread_key: str) -> list[dict[str, Any]]:
        """The messages, as stored, of the latest conversation on this
        channel with this thread key (a chat widget's history); an agent's
        reply carries ``author_name`` (their display name)."""

    async def conversation_of(self, thread_key: str) -> int | None:
        """The id of the latest conversation on this channel with this
        thread key (to tell the inbox a customer is typing in it)."""
        return None

    async def customer_email(self, conversation_id: int) -> str | None:
        """The e-mail address the conversation's contact gave (the latest),
        if any: where a chat's reply goes when the visitor has left."""
        return None

    async def agents_online(self) -> bool:
        """Whether any agent may take new work now (a chat widget offers an
        offline form when none can). Without availability: always."""
        return True

    async def thread_file(self, thread_key: str, message_id: int, index: int) -> Attachment | None:
        """The ``index``-th file (in stored order) of our reply ``message_id``
        when that reply (never a note) belongs to a conversation on this
        channel with this thread key: a chat visitor fetching an agent's file.
        None otherwise."""
        return None


class ContactLinks(abc.ABC):
    """Customers telling who they are (a chat visitor giving an e-mail)."""

    async def confirmed(self, owner: Identity, extra: Identity) -> str:
        """``owner`` proved they hold ``extra`` (a code sent to that address
        came back): the contact of ``owner`` is merged into the contact
        that holds ``extra`` (recorded, an admin can undo it). Returns
        ``"merged"``, ``"already"`` or ``"added"``."""
        raise NotImplementedError("this desk does not link confirmed identities")

    @abc.abstractmethod
    async def link(self, owner: Identity, extra: Identity | None = None) -> str:
        """Record ``owner`` (with its display name and data) and attach
        ``extra`` to the same contact (a later message from ``extra`` meets
        it). Returns what became of ``extra``: ``"added"``, ``"already"``,
        ``"other"`` (it belongs to another contact and stays there: anyone can
        type any address, so joining two is an agent's decision) or
        ``"none"`` (no ``extra``)."""


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


# Image types a browser shows without running anything (SVG can hold script).
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})


def content_disposition(kind: str, filename: str | None) -> str:
    """RFC 6266: an ASCII fallback plus the UTF-8 name (RFC 5987); for any
    route that hands out a stored file (the inbox, a chat widget)."""
    from urllib.parse import quote

    name = (filename or "attachment").replace("\\", "_").replace("/", "_")
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f")[:200] or "attachment"
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"%;' else "_" for ch in name)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class SendMail(Protocol):
    """``ctx.mail``: an e-mail sent now through the e-mail channel named."""

    def __call__(
        self,
        channel: str,
        to: list[str],
        subject: str,
        text: str,
        attachments: Sequence[Attachment] = (),
    ) -> Awaitable[str]: ...


@dataclass(slots=True)
class ChannelContext:
    """What the daemon hands an adapter: its settings and the ports. A port
    left None is not offered (a unit test's context, or a tool that only
    normalizes): the adapter does without or refuses to start."""

    name: str
    config: ChannelConfig
    intake: Accept
    state: ChannelState | None = None
    queries: ChannelQueries | None = None
    contacts: ContactLinks | None = None
    # Publishes an event on the inbox's live feed (``channel`` set to this
    # channel's name); whom it reaches is the feed's decision.
    emit: Callable[[Event], None] | None = None
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("data")
    # Runs a coroutine as a supervised background task of the daemon.
    spawn: Callable[[Awaitable[Any], str], Any] | None = None
    # Several daemon instances share the database (another instance's outbox
    # may deliver this channel's replies).
    multi_instance: bool = False
    # Sends a plain e-mail now (channel, to, subject, text, files) through
    # the e-mail channel named (its relay) and returns its Message-ID; raises
    # SendError when it cannot. A web chat's transcript, its replies to a
    # visitor who left.
    mail: SendMail | None = None

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

    def agent_typing(self, thread_key: str, name: str) -> None:  # noqa: B027
        """An agent is typing a reply in this thread (a chat shows it to the
        customer). Most channels have no way to say so: nothing."""

    @abc.abstractmethod
    def normalize(self, envelope: Envelope) -> Normalized:
        """Pure: envelope -> Message | StatusUpdate | Skip, or NormalizeError."""

    @abc.abstractmethod
    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver; raise SendError(reason, retry=...) on failure."""

    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("this channel takes no webhooks\n", status_code=404)

    def check_peers(self, peers: Mapping[str, ChannelAdapter]) -> None:
        """Called once every enabled channel is built, before any starts: a
        setting that names another channel is checked here (raise the
        option's ``ConfigError``: one line at start-up, not a failure later)."""
        return None

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


def survey_button_label(choice: Mapping[str, Any]) -> str:
    """A survey choice's button text: its number, and its label when it has
    one of its own (``4 · Good``)."""
    value, label = str(choice["value"]), str(choice.get("label") or "")
    return value if label in ("", value) else f"{value} · {label}"
