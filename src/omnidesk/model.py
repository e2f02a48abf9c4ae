"""The domain: plain dataclasses that travel through the pipeline.

Nothing here imports a web framework, a database driver or a channel SDK.
Adapters turn what they receive into an :class:`Envelope`; a channel's
``normalize`` turns an envelope into a :class:`Message` (or a
:class:`StatusUpdate` about one of our own outbound messages, or a
:class:`Skip`); the rules produce a :class:`Decision`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_ts() -> float:
    """Timestamps are stored as UNIX seconds (float) in both engines."""
    return time.time()


def ts_to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class Category(StrEnum):
    INQUIRY = "inquiry"
    FEEDBACK = "feedback"
    COMPLAINT = "complaint"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher is more urgent; used to sort the inbox."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class Status(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class Direction(StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class MessageKind(StrEnum):
    MESSAGE = "message"  # a customer's or agent's message
    NOTE = "note"  # an agent's private note; never leaves the building
    EDIT = "edit"  # a customer edited an earlier message (kept as its own row)
    AUTO = "auto"  # auto-reply, bounce, mailing-list mail: never opens a conversation


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Envelope:
    """Raw input exactly as a channel received it, before any parsing.

    ``external_id`` is the channel's own id for the message (Message-ID, update
    id, mid, wamid...). (channel, external_id) is unique: accepting the same
    pair twice is a no-op.
    """

    channel: str
    external_id: str
    payload: bytes
    content_type: str = "application/octet-stream"
    received_at: float = field(default_factory=now_ts)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Identity:
    """A way to reach a contact: ``kind`` + normalized ``address``.

    Kinds: ``email`` (lower-cased address), ``phone`` (E.164), ``telegram``,
    ``slack``, ``messenger``, ``instagram`` (provider user ids), or any kind a
    drop-in channel defines.
    """

    kind: str
    address: str
    display_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str]:
        return (self.kind, self.address)


@dataclass(slots=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes | None = None  # None when only a provider reference is known
    ref: str | None = None  # provider file id or URL when data is not at hand
    inline: bool = False
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None


@dataclass(slots=True)
class Message:
    """One normalized inbound message, whatever channel it came from."""

    channel: str
    external_id: str
    sender: Identity
    text: str  # the new text (quoted history and signature removed); rules look at this
    full_text: str | None = None  # the whole body when it differs from ``text``
    subject: str | None = None
    html: str | None = None  # sanitized HTML, safe to display
    attachments: list[Attachment] = field(default_factory=list)
    sent_at: float | None = None
    recipients: list[Identity] = field(default_factory=list)
    language: str | None = None
    kind: MessageKind = MessageKind.MESSAGE
    # Why this message is automatic ("auto-reply", "bounce", "list", ...): it never
    # opens a conversation and never triggers an auto-acknowledgement.
    auto: str | None = None
    # Threading. ``thread_refs``: keys of earlier messages this one answers (email
    # Message-IDs from In-Reply-To/References) - it joins their conversation.
    # ``thread_key``: a chat session key (chat id, Slack thread) - it joins the
    # open conversation with the same key. ``own_keys``: keys later messages will
    # reference this one by. ``conversation_hint``: a conversation id found in a
    # token (subject "[#123]", reply address).
    thread_refs: list[str] = field(default_factory=list)
    thread_key: str | None = None
    own_keys: list[str] = field(default_factory=list)
    conversation_hint: int | None = None
    edit_of: str | None = None  # external id of the message this edits
    # Further identities the channel vouches for as the sender's own (the phone
    # number a Telegram user shared from their own account): linked to the
    # sender's contact when no other contact holds them.
    extra_identities: list[Identity] = field(default_factory=list)
    bounced_refs: list[str] = field(default_factory=list)  # our outbound ids that bounced
    meta: dict[str, Any] = field(default_factory=dict)
    # OUTBOUND: a message the business sent from outside omnidesk (the Page
    # inbox, a phone app) that the provider reports back. ``sender`` is the
    # business, ``recipients[0]`` the customer; it joins the conversation with
    # the same ``thread_key`` as a sent reply and is never classified or routed.
    direction: Direction = Direction.INBOUND
    # The rules' work on subject and text done before the write transaction
    # (``RuleSet.preview``, opaque here); the rules use it only if it is theirs.
    rules_preview: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class StatusUpdate:
    """A provider's receipt about one of our outbound messages."""

    channel: str
    provider_id: str  # the id the provider gave our outbound message
    state: DeliveryState
    reason: str | None = None
    at: float = field(default_factory=now_ts)
    # A watermark receipt (Messenger "read": everything up to this time was
    # read) names no message: it applies to every reply on ``thread_key`` sent
    # at or before ``watermark`` (UNIX seconds); ``provider_id`` is then empty.
    thread_key: str | None = None
    watermark: float | None = None


@dataclass(slots=True)
class Skip:
    """Recognised input that is deliberately not stored as a message
    (our own echo, a typing indicator, a read receipt for nothing we know)."""

    reason: str


Normalized = Message | StatusUpdate | Skip


class NormalizeError(Exception):
    """Input that cannot be turned into a message: it goes to quarantine."""


@dataclass(slots=True)
class RuleInput:
    """What the rules see about one message."""

    channel: str
    channel_type: str
    sender: str  # address
    sender_name: str | None = None
    subject: str = ""
    text: str = ""
    language: str | None = None
    contact: Mapping[str, Any] = field(default_factory=dict)  # contact attributes, e.g. tier
    received_at: datetime = field(default_factory=utcnow)
    tags: frozenset[str] = frozenset()
    # Time-based rules and SLA policies look at a conversation rather than a
    # message: its facts (status, priority, team, times; see rules/timed.py),
    # and ``received_at`` is then the moment it is looked at.
    conversation: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Decision:
    """The outcome of the rules for one message, and why."""

    category: Category
    confidence: float
    priority: Priority = Priority.NORMAL
    team: str | None = None
    assignee: str | None = None
    tags: list[str] = field(default_factory=list)
    rule: str | None = None  # the rule (or "classifier") that set the category
    rules_fired: list[str] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)
    # Who chose the category: "rule", "model" (the trained one), "phrases" or
    # "combined" (model and phrases); and the model's top features with their weights.
    decided_by: str | None = None
    features: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": str(self.category),
            "confidence": round(self.confidence, 3),
            "priority": str(self.priority),
            "team": self.team,
            "assignee": self.assignee,
            "tags": list(self.tags),
            "rule": self.rule,
            "rules_fired": list(self.rules_fired),
            "explanation": list(self.explanation),
            "decided_by": self.decided_by,
            "features": [[name, round(w, 3)] for name, w in self.features],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(
            category=Category(d["category"]),
            confidence=float(d.get("confidence", 0.0)),
            priority=Priority(d.get("priority", "normal")),
            team=d.get("team"),
            assignee=d.get("assignee"),
            tags=list(d.get("tags", [])),
            rule=d.get("rule"),
            rules_fired=list(d.get("rules_fired", [])),
            explanation=list(d.get("explanation", [])),
            decided_by=d.get("decided_by"),
            features=[(str(n), float(w)) for n, w in d.get("features", [])],
        )


@dataclass(slots=True)
class OutboundMessage:
    """What the outbox hands a channel adapter to send."""

    outbox_id: int
    channel: str
    conversation_id: int
    message_id: int | None  # the stored outbound message row, if any
    recipient: Identity
    text: str
    html: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    # Threading facts the adapter needs to answer in place: the customer's last
    # message external id, the conversation's thread key, email references.
    reply_to_external_id: str | None = None
    thread_key: str | None = None
    references: list[str] = field(default_factory=list)
    automatic: bool = False  # an auto-acknowledgement or survey, not a human reply
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SendResult:
    provider_id: str | None = None  # the provider's id for what was sent
    state: DeliveryState = DeliveryState.SENT
    keys: list[str] = field(default_factory=list)  # thread keys to register (e.g. Message-ID)


class SendError(Exception):
    """A send failed. ``retry`` says whether the outbox should try again;
    ``retry_after`` (seconds) honours a provider's rate-limit hint."""

    def __init__(self, reason: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after = retry_after
