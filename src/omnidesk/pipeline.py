"""The pipeline: pending envelopes become stored, classified, routed messages.

Stages, in order, for each claimed envelope:

1. **normalize** - the channel's parser: Envelope -> Message | StatusUpdate | Skip.
   Failure sends the envelope to quarantine (raw bytes kept) and the batch
   goes on.
2. **dedupe** - a message already stored (a redo after a crash) is skipped.
3. **contact** - the sender identity resolves to a contact (created if new).
4. **thread** - find the conversation: edit target, conversation token,
   reference keys (email threading), chat thread key within the session
   window; or open a new one. Automatic mail (auto-replies, bounces, lists)
   never opens a conversation.
5. **classify** - the rules decide category, priority, tags, team, agent.
6. **route** - assign within the team (see ``routing.py``); new conversations
   get their agent at the end of the batch's transaction (``_assign_new``).
7. **persist** - message, attachments, thread keys, conversation, audit
   events, auto-acknowledgement in the outbox, and the envelope marked done:
   one transaction. A crash anywhere leaves the envelope pending; every stage
   is idempotent, so the redo stores it once.

``process_batch`` is a plain synchronous function over a ``Db`` and runs
inside ``Store.write`` (in the database's thread for SQLite).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from .channels.base import ChannelAdapter
from .config import TeamConfig
from .events import Event
from .model import (
    Category,
    Decision,
    DeliveryState,
    Direction,
    Identity,
    Message,
    MessageKind,
    NormalizeError,
    Priority,
    RuleInput,
    Skip,
    Status,
    StatusUpdate,
    now_ts,
)
from .routing import choose_assignee
from .store import Db, Store
from .store import conversations as convs
from .store.audit import add_audit
from .store.base import TransientError
from .store.contacts import contact_attributes, link_identity, resolve_contact
from .store.inbound import (
    InboundRow,
    claim_pending,
    get_pending,
    mark_done,
    peek_pending,
    quarantine,
)
from .store.locks import TEAM, xact_lock
from .store.outbox import enqueue
from .store.users import load_team
from .textcap import bound_message

log = structlog.get_logger(__name__)


class Evaluator(Protocol):
    def preview(self, subject: str, text: str) -> Any:
        """The part of ``evaluate`` that reads only subject and text, done ahead."""
        ...

    def evaluate(self, inp: RuleInput, preview: Any = None) -> Decision: ...


@dataclass(slots=True)
class PipelineContext:
    """Everything the stages need, handed in (no globals)."""

    adapters: Mapping[str, ChannelAdapter]
    rules: Callable[[], Evaluator]
    teams: Mapping[str, TeamConfig] = field(default_factory=dict)
    # Read teams from the database (admins edit them there; the daemon seeds
    # them from ``teams`` at start) instead of ``teams``.
    teams_in_db: bool = False
    default_team: str | None = None
    chat_session_seconds: float = 24 * 3600
    reopen_seconds: float = 30 * 86400
    detect_language: Callable[[str], str | None] | None = None
    # channel name -> auto-acknowledgement text ("{conversation_id}", "{name}" placeholders)
    auto_ack: Mapping[str, str] = field(default_factory=dict)
    # A customer's message that answers the satisfaction survey of its
    # conversation (a digit on a chat channel): recorded as the rating by this
    # hook (service/surveys.py), which says whether it was one.
    survey_answer: Callable[[Db, dict[str, Any], Message, float], bool] | None = None


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
    to_assign: list[_Unassigned] = field(default_factory=list)
    # Wall time of the batch (PipelineRunner.run_once), for the metrics.
    seconds: float = 0.0


@dataclass(slots=True)
class _Unassigned:
    conversation_id: int
    team: str | None
    contact_id: int
    event: Event
    at: float
    new_contact: bool = False  # created in this message: no earlier agent to return to


def process_batch(
    db: Db,
    ctx: PipelineContext,
    limit: int,
    budget: float | None = None,
    waiting: Callable[[], int] | None = None,
    prepared: dict[int, Normalized] | None = None,
    in_flight: Any = None,
) -> BatchResult:
    """Up to ``limit`` pending envelopes in one transaction. ``budget``
    (seconds) ends the batch early once spent, if ``waiting`` (when given)
    says other writes are queued: the transaction holds SQLite's only write
    lock, and webhook deliveries wait behind it for their commit
    (bench/bench_webhooks.py); what is left stays pending for the next batch.
    With nobody waiting the batch goes on (fewer, larger commits).

    On SQLite the batch first runs under one savepoint instead of one per
    message (their statements were a measurable part of each message's cost).
    If any message fails, the batch rolls back to it and runs again with a
    savepoint per message, so that the failing one is quarantined alone and
    the others are kept. PostgreSQL always isolates: there a message may wait
    for another instance's lock (TransientError) and be deferred alone.

    ``prepared``: envelopes already normalized outside the transaction
    (``prepare_envelope``, see ``PipelineRunner``), by inbound id; each is
    taken out of the map as it is used, so a batch run again after a failure
    normalizes afresh.

    ``in_flight``: a pipeline process's shared ids (see ``PipelineRunner``);
    slot 1 holds the inbound id being processed, 0 between batches."""
    try:
        if db.dialect == "sqlite":
            try:
                with db.savepoint():
                    return _process(
                        db, ctx, limit, budget, waiting, prepared, in_flight, isolate=False
                    )
            except _Isolate:
                pass
        return _process(db, ctx, limit, budget, waiting, prepared, in_flight, isolate=True)
    finally:
        if in_flight is not None:
            in_flight[1] = 0


@dataclass(slots=True)
class NormalizeFailed:
    """Why an envelope goes to quarantine: a NormalizeError's reason
    (``trace`` None) or a parser bug's exception and traceback. Plain
    strings: it may come from a parse process."""

    reason: str
    trace: str | None = None


Normalized = Message | StatusUpdate | Skip | NormalizeFailed


def normalize_envelope(ctx: PipelineContext, row: InboundRow) -> Normalized:
    """Stage 1 on its own: pure, no database (which is why it can run before
    the write transaction, see ``PipelineRunner``)."""
    adapter = ctx.adapters.get(row.envelope.channel)
    try:
        if adapter is None:
            raise NormalizeError(f"no channel named {row.envelope.channel!r} is configured")
        item = adapter.normalize(row.envelope)
        if isinstance(item, Message) and not item.sender.address.strip():
            # Nobody to answer and no contact to file it under: an admin
            # decides (the raw input is kept).
            raise NormalizeError("message has no sender address")
        if isinstance(item, Message):
            item = bound_message(item)  # storable text within the cap, whatever the channel
    except NormalizeError as exc:
        return NormalizeFailed(str(exc))
    except Exception as exc:  # a parser bug must not stop the queue
        return NormalizeFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return item


def prepare_envelope(
    ctx: PipelineContext, row: InboundRow, rules: Evaluator | None = None
) -> Normalized:
    """What can be done for an envelope before its transaction: normalize,
    detect the language the rules will look at and, given ``rules``, their
    work on subject and text (``Evaluator.preview``; the transaction's
    evaluation uses it if the rules are still the same)."""
    item = normalize_envelope(ctx, row)
    if isinstance(item, Message):
        if item.language is None:
            item.language = _detect_language(ctx, item)
        if rules is not None and item.direction == Direction.INBOUND:
            item.rules_preview = rules.preview(item.subject or "", item.text)
    return item


def _detect_language(ctx: PipelineContext, msg: Message) -> str | None:
    if ctx.detect_language is None:
        return None
    return ctx.detect_language(msg.text or msg.subject or "")


class _Isolate(Exception):
    """A message failed in a batch run without per-message savepoints."""


def _process(
    db: Db,
    ctx: PipelineContext,
    limit: int,
    budget: float | None,
    waiting: Callable[[], int] | None,
    prepared: dict[int, Normalized] | None,
    in_flight: Any,
    *,
    isolate: bool,
) -> BatchResult:
    result = BatchResult()
    deadline = None if budget is None else time.perf_counter() + budget
    for row in claim_pending(db, limit):
        if (
            deadline is not None
            and result.claimed
            and time.perf_counter() > deadline
            and (waiting is None or waiting())
        ):
            result.cut = True
            break
        result.claimed += 1
        if in_flight is not None:
            in_flight[1] = row.id
        item = prepared.pop(row.id, None) if prepared else None
        if item is None:
            item = normalize_envelope(ctx, row)
        if isinstance(item, NormalizeFailed):
            _quarantine(db, row, item.reason, item.trace, result)
            continue
        adapter = ctx.adapters[row.envelope.channel]
        if not isolate:
            try:
                _apply(db, ctx, adapter, row, item, result)
            except Exception as exc:
                raise _Isolate from exc
            continue
        opened = len(result.to_assign)
        try:
            with db.savepoint():
                _apply(db, ctx, adapter, row, item, result)
        except TransientError:
            del result.to_assign[opened:]  # rolled back with the savepoint
            result.deferred += 1
        except Exception as exc:
            del result.to_assign[opened:]
            _quarantine(db, row, f"{type(exc).__name__}: {exc}", traceback.format_exc(), result)
    _assign_new(db, ctx, result, isolate=isolate)
    return result


def _assign_new(db: Db, ctx: PipelineContext, res: BatchResult, *, isolate: bool = True) -> None:
    """Choose the assignee of the batch's new conversations, last thing in
    its transaction. With several instances assignment is one at a time per
    team until commit (the round-robin pointer and the loads must be
    current), so the team locks are taken here, all at once and in order,
    and held for the end of the batch only rather than most of it. Each
    team's members, loads and round-robin pointer are read once per batch and
    kept current in memory as the batch assigns. ``isolate``: each assignment
    in a savepoint of its own, a failing one leaves its conversation
    unassigned (otherwise a failure asks for the batch to be redone so)."""
    if not res.to_assign:
        return
    xact_lock(db, sorted({f"team:{u.team}" for u in res.to_assign if u.team}), rank=TEAM)
    teams: dict[str | None, _TeamState | None] = {}
    for u in res.to_assign:
        if u.team not in teams:
            teams[u.team] = _team_state(db, ctx, u.team)
        state = teams[u.team]
        if not isolate:
            try:
                assignee = _assign_one(db, u, state)
            except Exception as exc:
                raise _Isolate from exc
            u.event["assignee"] = assignee
            continue
        try:
            with db.savepoint():
                assignee = _assign_one(db, u, state)
        except Exception as exc:
            # The conversation stays in its team's queue, unassigned, and says why.
            log.exception("assignment_failed", conversation_id=u.conversation_id)
            assignee = None
            _routed(db, u.conversation_id, u.team, None, f"assignment failed: {exc}", u.at)
        u.event["assignee"] = assignee
    for state in teams.values():
        if state is not None and state.rr_changed:
            db.run(
                "INSERT INTO routing_state (team, rr_last) VALUES (?, ?)"
                " ON CONFLICT (team) DO UPDATE SET rr_last = excluded.rr_last",
                (state.spec.name, state.rr_last),
            )
    res.to_assign.clear()


def _assign_one(db: Db, u: _Unassigned, state: _TeamState | None) -> str | None:
    if state is None:
        assignee = None
        why = "no team with members to assign within" if u.team else "no team"
    else:
        previous = (
            convs.last_assignee(db, u.contact_id)
            if state.spec.sticky and not u.new_contact
            else None
        )
        choice = choose_assignee(
            state.spec, loads=state.loads, rr_last=state.rr_last, previous=previous
        )
        assignee, why = choice.agent, choice.reason
        if assignee is not None:
            db.run(
                "UPDATE conversations SET assignee = ? WHERE id = ?",
                (assignee, u.conversation_id),
            )
    _routed(db, u.conversation_id, u.team, assignee, why, u.at)
    # Only now, with nothing left to fail: the batch's view of the team moves on.
    if state is not None and assignee is not None:
        state.loads[assignee] = state.loads.get(assignee, 0) + 1
        if state.spec.strategy == "round_robin":
            state.rr_last, state.rr_changed = assignee, True
    return assignee


@dataclass(slots=True)
class _TeamState:
    """A team during one batch's assignments."""

    spec: TeamConfig
    loads: dict[str, int]
    rr_last: str | None
    rr_changed: bool = False


def _team_state(db: Db, ctx: PipelineContext, team: str | None) -> _TeamState | None:
    spec = (load_team(db, team) if ctx.teams_in_db else ctx.teams.get(team)) if team else None
    if spec is None:
        return None
    return _TeamState(
        spec=spec,
        loads=convs.open_counts(db, spec.members),
        rr_last=db.val("SELECT rr_last FROM routing_state WHERE team = ?", (spec.name,)),
    )


def _routed(
    db: Db, conv_id: int, team: str | None, assignee: str | None, why: str, at: float
) -> None:
    add_audit(
        db,
        "routing",
        "routed",
        conversation_id=conv_id,
        reason=why,
        detail={"team": team, "assignee": assignee},
        at=at,
    )


def quarantine_pending(db: Db, ids: Sequence[int], error: str) -> BatchResult:
    """Quarantine these rows if still pending (the daemon, for a message
    its pipeline process died on; see pipeline_proc.py)."""
    res = BatchResult()
    for inbound_id in ids:
        row = get_pending(db, inbound_id)
        if row is not None:
            _quarantine(db, row, error, None, res)
    return res


def _quarantine(db: Db, row: InboundRow, error: str, detail: str | None, res: BatchResult) -> None:
    qid = quarantine(db, row, error, detail)
    res.quarantined += 1
    res.events.append({"type": "quarantine", "id": qid, "channel": row.envelope.channel})
    log.warning(
        "quarantined",
        channel=row.envelope.channel,
        external_id=row.envelope.external_id,
        error=error,
        quarantine_id=qid,
    )


def _apply(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelAdapter,
    row: InboundRow,
    item: Message | StatusUpdate | Skip,
    res: BatchResult,
) -> None:
    if isinstance(item, Skip):
        mark_done(db, row.id, f"skipped: {item.reason}", quarantined=row.quarantined)
        res.skipped += 1
    elif isinstance(item, StatusUpdate):
        if item.watermark is not None and item.thread_key:
            mids = convs.apply_watermark(
                db, item.channel, item.thread_key, item.state, item.watermark
            )
        else:
            one = convs.apply_status_update(
                db, item.channel, item.provider_id, item.state, item.reason
            )
            mids = [] if one is None else [one]
        note = f"status {item.state}" + ("" if mids else " (no matching reply)")
        mark_done(db, row.id, note, quarantined=row.quarantined)
        res.skipped += 1
        for mid in mids:
            res.events.append({"type": "delivery", "message_id": mid, "state": str(item.state)})
    else:
        note = _persist_message(db, ctx, adapter, row, item, res)
        mark_done(db, row.id, note, quarantined=row.quarantined)


def _mark_bounced(db: Db, keys: list[str], reason: str, res: BatchResult) -> None:
    """A bounce of one of our replies marks that reply failed."""
    for key in keys:
        for r in db.all(
            "SELECT id, channel FROM messages WHERE direction = 'out' AND provider_id = ?", (key,)
        ):
            convs.set_delivery(db, int(r["id"]), DeliveryState.FAILED, error=reason)
            res.events.append({"type": "delivery", "message_id": int(r["id"]), "state": "failed"})


def _find_conversation(
    db: Db, ctx: PipelineContext, msg: Message, contact_id: int, now: float
) -> tuple[dict[str, Any] | None, str]:
    if msg.edit_of:
        orig = convs.find_message_id(db, msg.channel, "in", msg.edit_of)
        if orig is not None:
            cid = db.val("SELECT conversation_id FROM messages WHERE id = ?", (orig,))
            return convs.get_conversation_row(db, int(cid)), "edit of an earlier message"
    if msg.conversation_hint is not None:
        conv = convs.get_conversation_row(db, msg.conversation_hint)
        if conv is not None:
            return conv, f"conversation token #{msg.conversation_hint}"
    if msg.thread_refs:
        conv = convs.find_by_keys(db, msg.thread_refs)
        if conv is not None:
            return conv, "reply to an earlier message (thread references)"
    if msg.thread_key:
        conv = convs.find_by_thread_key(db, msg.channel, msg.thread_key)
        if conv is not None:
            if conv["status"] != Status.RESOLVED:
                return conv, "same chat thread"
            last = conv["last_message_at"] or conv["created_at"]
            if now - last <= ctx.chat_session_seconds:
                return conv, "same chat thread, within the session window"
    return None, "new conversation"


def _decide(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelAdapter,
    msg: Message,
    contact_id: int,
    arrived: float,
    new_contact: bool = False,
) -> Decision:
    """``arrived``: when the envelope reached us (time, weekday and
    business-hours rules look at that, not at when a backlog or a quarantine
    retry got round to it)."""
    language = msg.language
    if language is None:
        language = _detect_language(ctx, msg)
        msg.language = language
    inp = RuleInput(
        channel=msg.channel,
        channel_type=adapter.type,
        sender=msg.sender.address,
        sender_name=msg.sender.display_name,
        subject=msg.subject or "",
        text=msg.text,
        language=language,
        # A contact created by this very message has no attributes yet.
        contact={} if new_contact else contact_attributes(db, contact_id),
        received_at=datetime.fromtimestamp(arrived, UTC),
    )
    return ctx.rules().evaluate(inp, msg.rules_preview)


def _persist_message(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelAdapter,
    row: InboundRow,
    msg: Message,
    res: BatchResult,
) -> str:
    now = now_ts()
    # Several instances: two messages of one new thread or sender must not
    # open two conversations or contacts; the second waits for the first.
    xact_lock(db, _work_keys(msg))
    if msg.direction == Direction.OUTBOUND:
        return _persist_sent_elsewhere(db, row, msg, res, now)
    if convs.find_message_id(db, msg.channel, "in", msg.external_id) is not None:
        res.skipped += 1
        return "already stored"
    if msg.bounced_refs:
        _mark_bounced(db, msg.bounced_refs, f"bounced: {msg.subject or msg.text[:120]}", res)
    contact_id, new_contact = resolve_contact(db, msg.sender)
    for extra in msg.extra_identities:
        _link_extra_identity(db, msg, contact_id, extra, now)
    conv, how = _find_conversation(db, ctx, msg, contact_id, now)
    if (
        conv is not None
        and ctx.survey_answer is not None
        and not msg.auto
        and msg.kind == MessageKind.MESSAGE
        and ctx.survey_answer(db, conv, msg, now)
    ):
        # Kept in the conversation, but as the answer it is: no reopening.
        msg.auto = "survey-answer"
        res.outbox_queued += 1  # the thanks, or the next question
        how = "an answer to the conversation's satisfaction survey"

    if conv is not None and conv["status"] == Status.RESOLVED and not msg.auto:
        resolved_at = conv["resolved_at"] or conv["updated_at"]
        if msg.thread_key is None and now - resolved_at > ctx.reopen_seconds:
            how = f"conversation #{conv['id']} was resolved long ago: new conversation"
            conv = None

    if conv is None and msg.auto:
        res.skipped += 1
        return f"automatic message ({msg.auto}) outside any conversation: not opened"

    events: list[Event] = []
    if conv is None:
        decision = _decide(db, ctx, adapter, msg, contact_id, row.envelope.received_at, new_contact)
        team = decision.team or ctx.default_team
        # A rule may name the agent; otherwise one is chosen at the end of the
        # batch (_assign_new).
        assignee = decision.assignee or None
        conv_id = convs.create_conversation(
            db,
            contact_id=contact_id,
            channel=msg.channel,
            thread_key=msg.thread_key,
            subject=msg.subject,
            category=str(decision.category),
            confidence=decision.confidence,
            priority=str(decision.priority),
            priority_rank=decision.priority.rank,
            team=team,
            assignee=assignee,
            tags=sorted(set(decision.tags)),
            decision=decision.to_dict(),
            now=now,
        )
        add_audit(
            db,
            "rules",
            "classified",
            conversation_id=conv_id,
            contact_id=contact_id,
            reason="; ".join(decision.explanation),
            detail=decision.to_dict(),
            at=now,
        )
        created: Event = {
            "type": "conversation.created",
            "conversation_id": conv_id,
            "team": team,
            "assignee": assignee,
        }
        if assignee is not None:
            why = f"rule {decision.rule or ''} named the agent".strip()
            _routed(db, conv_id, team, assignee, why, now)
        else:
            res.to_assign.append(
                _Unassigned(conv_id, team, contact_id, created, now, new_contact=new_contact)
            )
        events.append(created)
    else:
        conv_id = int(conv["id"])
        if not msg.auto and msg.kind != MessageKind.EDIT:
            _follow_up(db, ctx, adapter, conv, msg, contact_id, now, row.envelope.received_at)
    mid = convs.insert_message(
        db,
        convs.NewMessage(
            conversation_id=conv_id,
            direction=Direction.INBOUND,
            kind=MessageKind.AUTO if msg.auto else msg.kind,
            channel=msg.channel,
            text=msg.text,
            external_id=msg.external_id,
            inbound_id=row.id,
            sender_kind=msg.sender.kind,
            sender_address=msg.sender.address,
            sender_name=msg.sender.display_name,
            subject=msg.subject,
            full_text=msg.full_text,
            html=msg.html,
            auto=msg.auto,
            edit_of=(
                convs.find_message_id(db, msg.channel, "in", msg.edit_of) if msg.edit_of else None
            ),
            meta={**msg.meta, **({"language": msg.language} if msg.language else {})},
            sent_at=msg.sent_at,
            attachments=msg.attachments,
        ),
        now=now,
    )
    convs.add_thread_keys(db, conv_id, msg.own_keys)
    if (
        conv is None
        and not msg.auto
        and ctx.auto_ack.get(msg.channel)
        # Old mail fetched in bulk (a mailbox backfill) gets no acknowledgement.
        and not msg.meta.get("backfill")
        and not _recently_acknowledged(db, contact_id, now)
    ):
        _queue_auto_ack(db, ctx.auto_ack[msg.channel], conv_id, msg, res)
    res.stored += 1
    events.append(
        {
            "type": "message.created",
            "conversation_id": conv_id,
            "message_id": mid,
            "channel": msg.channel,
            "direction": "in",
        }
    )
    res.events.extend(events)
    return how


def _work_keys(msg: Message) -> list[str]:
    """Lock names for everything this message may find or create."""
    keys = [
        f"msg:{msg.channel}:{msg.external_id}",
        f"ident:{msg.sender.kind}:{msg.sender.address}",
        *(f"ident:{i.kind}:{i.address}" for i in msg.extra_identities),
        *(f"key:{k}" for k in (*msg.thread_refs, *msg.own_keys) if k),
    ]
    if msg.thread_key:
        keys.append(f"thread:{msg.channel}:{msg.thread_key}")
    if msg.conversation_hint is not None:
        keys.append(f"conv:{msg.conversation_hint}")
    return keys


def _link_extra_identity(
    db: Db, msg: Message, contact_id: int, extra: Identity, now: float
) -> None:
    _, outcome = link_identity(db, msg.sender, extra)
    if outcome == "other":
        # Joining two contacts is an agent's decision: leave a trace to act on.
        add_audit(
            db,
            "pipeline",
            "identity_in_use",
            contact_id=contact_id,
            reason=f"{extra.kind} {extra.address} already belongs to another contact",
            detail={"kind": extra.kind, "address": extra.address, "channel": msg.channel},
            at=now,
        )


def _persist_sent_elsewhere(
    db: Db, row: InboundRow, msg: Message, res: BatchResult, now: float
) -> str:
    """A message the business sent from outside omnidesk (the provider's own
    inbox or app), reported back by the channel: it is part of what the
    customer was told, so it joins their conversation as a sent outbound
    message. Never classified or routed, never opens a conversation."""
    if convs.find_message_id(db, msg.channel, "out", msg.external_id) is not None:
        res.skipped += 1
        return "already stored"
    if db.val(
        "SELECT id FROM messages WHERE channel = ? AND direction = 'out' AND provider_id = ?",
        (msg.channel, msg.external_id),
    ):
        res.skipped += 1
        return "echo of a reply sent by omnidesk"
    conv = convs.find_by_thread_key(db, msg.channel, msg.thread_key) if msg.thread_key else None
    if conv is None:
        res.skipped += 1
        return "sent outside omnidesk to a customer with no conversation here: not recorded"
    if db.val(
        "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'out'"
        " AND kind = 'message' AND delivery_state = 'queued' AND text = ?",
        (conv["id"], msg.text),
    ):
        # The echo of a reply still being sent (its provider id is not stored yet).
        res.skipped += 1
        return "echo of a reply omnidesk is sending"
    mid = convs.insert_message(
        db,
        convs.NewMessage(
            conversation_id=int(conv["id"]),
            direction=Direction.OUTBOUND,
            kind=msg.kind,
            channel=msg.channel,
            text=msg.text,
            external_id=msg.external_id,
            inbound_id=row.id,
            sender_kind=msg.sender.kind,
            sender_address=msg.sender.address,
            sender_name=msg.sender.display_name,
            meta=msg.meta,
            sent_at=msg.sent_at,
            delivery_state=DeliveryState.SENT,
            attachments=msg.attachments,
        ),
        now=now,
    )
    # Later receipts name it by the provider's id, like our own replies.
    convs.set_delivery(db, mid, DeliveryState.SENT, provider_id=msg.external_id)
    res.stored += 1
    res.events.append(
        {
            "type": "message.created",
            "conversation_id": int(conv["id"]),
            "message_id": mid,
            "channel": msg.channel,
            "direction": "out",
        }
    )
    return "sent outside omnidesk: recorded as an outbound message"


def _follow_up(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelAdapter,
    conv: dict[str, Any],
    msg: Message,
    contact_id: int,
    now: float,
    arrived: float,
) -> None:
    """A customer wrote again: reopen a closed conversation, and escalate (never
    downgrade) category and priority if the new message calls for it."""
    conv_id = int(conv["id"])
    changes: dict[str, Any] = {}
    if conv["status"] != Status.OPEN:
        changes.update(status=str(Status.OPEN), snoozed_until=None, resolved_at=None)
        add_audit(
            db,
            "pipeline",
            "reopened",
            conversation_id=conv_id,
            reason=f"customer wrote while the conversation was {conv['status']}",
            at=now,
        )
    decision = _decide(db, ctx, adapter, msg, contact_id, arrived)
    if decision.category == Category.COMPLAINT and conv["category"] != Category.COMPLAINT:
        changes.update(category=str(Category.COMPLAINT), confidence=decision.confidence)
        add_audit(
            db,
            "rules",
            "escalated",
            conversation_id=conv_id,
            reason="; ".join(decision.explanation),
            detail={"from": conv["category"], "to": "complaint"},
            at=now,
        )
    if decision.priority.rank > Priority(conv["priority"]).rank:
        changes.update(priority=str(decision.priority), priority_rank=decision.priority.rank)
        add_audit(
            db,
            "rules",
            "priority_raised",
            conversation_id=conv_id,
            reason="; ".join(decision.explanation),
            detail={"from": conv["priority"], "to": str(decision.priority)},
            at=now,
        )
    new_tags = sorted(set(conv["tags"]) | set(decision.tags))
    if new_tags != sorted(conv["tags"]):
        changes["tags"] = new_tags
    if changes:
        convs.update_conversation(db, conv_id, **changes)


# RFC 3834: a responder should not send the same response to the same sender
# more than once in several days. A responder that answers without any
# automatic-mail markers opens a "new" conversation each time; acknowledging
# each would be an endless mail loop.
AUTO_ACK_QUIET_SECONDS = 24 * 3600


def _recently_acknowledged(db: Db, contact_id: int, now: float) -> bool:
    return (
        db.val(
            "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.contact_id = ? AND m.direction = 'out' AND m.auto = 'auto-acknowledgement'"
            " AND m.created_at > ? LIMIT 1",
            (contact_id, now - AUTO_ACK_QUIET_SECONDS),
        )
        is not None
    )


def _queue_auto_ack(db: Db, template: str, conv_id: int, msg: Message, res: BatchResult) -> None:
    text = template.replace("{conversation_id}", str(conv_id)).replace(
        "{name}", msg.sender.display_name or ""
    )
    mid = convs.insert_message(
        db,
        convs.NewMessage(
            conversation_id=conv_id,
            direction=Direction.OUTBOUND,
            kind=MessageKind.MESSAGE,
            channel=msg.channel,
            text=text,
            author="system",
            subject=msg.subject,
            auto="auto-acknowledgement",
            delivery_state=DeliveryState.QUEUED,
        ),
    )
    from .outbox import build_payload

    enqueue(
        db,
        channel=msg.channel,
        conversation_id=conv_id,
        message_id=mid,
        payload=build_payload(db, conv_id, mid, text=text, automatic=True),
    )
    res.outbox_queued += 1


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
