"""What the stages are handed (``PipelineContext``), what a batch gives back
(``BatchResult``), and the two ports the pipeline reads through: a channel's
parser and the rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import AssignmentConfig, TeamConfig
from ..customers.redact import Redactor
from ..events import Event
from ..model import Decision, Envelope, Message, RuleInput, Skip, StatusUpdate
from ..store import Db


class ChannelParser(Protocol):
    """A channel as the pipeline sees it: its type (the rules match on it)
    and its pure ``normalize``. Channel adapters are this and more; the
    pipeline needs nothing else of them."""

    @property
    def type(self) -> str: ...

    def normalize(self, envelope: Envelope) -> Message | StatusUpdate | Skip: ...


class Evaluator(Protocol):
    def preview(self, subject: str, text: str) -> Any:
        """The part of ``evaluate`` that reads only subject and text, done ahead."""
        ...

    def evaluate(self, inp: RuleInput, preview: Any = None) -> Decision: ...


@dataclass(slots=True)
class PipelineContext:
    """Everything the stages need, handed in (no globals)."""

    adapters: Mapping[str, ChannelParser]
    rules: Callable[[], Evaluator]
    teams: Mapping[str, TeamConfig] = field(default_factory=dict)
    # Read teams from the database (admins edit them there; the daemon seeds
    # them from ``teams`` at start) instead of ``teams``.
    teams_in_db: bool = False
    default_team: str | None = None
    # Who may get new work: online agents only, and when idle turns away.
    # The daemon passes its config's (online only by default); a context
    # built without it (a tool, a test) gives work to every member.
    assignment: AssignmentConfig = field(
        default_factory=lambda: AssignmentConfig(only_online=False)
    )
    chat_session_seconds: float = 24 * 3600
    reopen_seconds: float = 30 * 86400
    detect_language: Callable[[str], str | None] | None = None
    # channel name -> auto-acknowledgement text ("{conversation_id}", "{name}" placeholders)
    auto_ack: Mapping[str, str] = field(default_factory=dict)
    # A customer's message that answers the satisfaction survey of its
    # conversation (a digit on a chat channel): recorded as the rating by this
    # hook (service/surveys.py), which says whether it was one.
    survey_answer: Callable[[Db, dict[str, Any], Message, float], bool] | None = None
    # [privacy] redaction: card numbers and patterns masked before storage.
    redact: Redactor | None = None


@dataclass(slots=True)
class BatchResult:
    claimed: int = 0
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    # Left pending because another instance holds a lock on the same thread,
    # contact or team; the next batch takes them (PostgreSQL only).
    deferred: int = 0
    # The time budget ended the batch before all claimed rows were handled:
    # the rest are still pending and the next batch takes them.
    cut: bool = False
    events: list[Event] = field(default_factory=list)
    outbox_queued: int = 0
    # New conversations whose assignee is chosen at the end of the batch.
    to_assign: list[Unassigned] = field(default_factory=list)
    # Wall time of the batch (PipelineRunner.run_once), for the metrics.
    seconds: float = 0.0


@dataclass(slots=True)
class Unassigned:
    """A conversation opened in this batch, waiting for the route stage to
    choose its agent at the end of the batch."""

    conversation_id: int
    team: str | None
    contact_id: int
    event: Event
    at: float
    new_contact: bool = False  # created in this message: no earlier agent to return to


class Isolate(Exception):
    """A message failed in a batch run without per-message savepoints: the
    batch is run again with one savepoint per message."""
