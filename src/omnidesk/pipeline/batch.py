"""A batch of pending envelopes through the stages, in one transaction: the
order of the stages is written here, in ``handle_message``, and nowhere else.

``process_batch`` is a plain synchronous function over a ``Db`` and runs
inside ``Store.write`` (in the database's thread for SQLite)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from ..events import Event
from ..model import Direction, Message, MessageKind, Skip, StatusUpdate, now_ts
from ..store import Db
from ..store.base import TransientError
from ..store.inbound import InboundRow, claim_pending, mark_done
from ..store.locks import xact_lock
from . import acknowledge, decide, follow_up, identify, persist, route, thread
from .context import BatchResult, ChannelParser, Isolate, PipelineContext, Unassigned
from .normalize import Normalized, NormalizeFailed, normalize_envelope

# A message whose transaction runs past the store's statement_timeout (a lock
# another transaction held that long, as when an instance dies mid-write) is
# tried again; at this many tries it goes to quarantine instead.
TIMEOUT_ATTEMPTS = 3


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
            except Isolate:
                pass
        return _process(db, ctx, limit, budget, waiting, prepared, in_flight, isolate=True)
    finally:
        if in_flight is not None:
            in_flight[1] = 0


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
            persist.quarantine_row(db, row, item.reason, item.trace, result)
            continue
        adapter = ctx.adapters[row.envelope.channel]
        if not isolate:
            try:
                _apply(db, ctx, adapter, row, item, result)
            except Exception as exc:
                raise Isolate from exc
            continue
        opened = len(result.to_assign)
        try:
            with db.savepoint():
                _apply(db, ctx, adapter, row, item, result)
        except TransientError as exc:
            del result.to_assign[opened:]  # rolled back with the savepoint
            tries = persist.count_attempt(db, row) if exc.timed_out else 0
            if tries >= TIMEOUT_ATTEMPTS:
                persist.quarantine_row(
                    db,
                    row,
                    f"tried {tries} times, the last one timed out: {exc}",
                    traceback.format_exc(),
                    result,
                )
            else:
                result.deferred += 1
        except Exception as exc:
            del result.to_assign[opened:]
            persist.quarantine_row(
                db, row, f"{type(exc).__name__}: {exc}", traceback.format_exc(), result
            )
    route.assign_new(db, ctx, result, isolate=isolate)
    return result


def _apply(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelParser,
    row: InboundRow,
    item: Message | StatusUpdate | Skip,
    res: BatchResult,
) -> None:
    if isinstance(item, Skip):
        persist.skip(db, row, item, res)
    elif isinstance(item, StatusUpdate):
        persist.status_update(db, row, item, res)
    else:
        note = handle_message(db, ctx, adapter, row, item, res)
        mark_done(db, row.id, note, quarantined=row.quarantined)


def handle_message(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelParser,
    row: InboundRow,
    msg: Message,
    res: BatchResult,
) -> str:
    """One normalized message through the stages, in order. Returns the note
    the envelope is marked done with (how its conversation was found, or why
    nothing was stored)."""
    now = now_ts()
    # Several instances: two messages of one new thread or sender must not
    # open two conversations or contacts; the second waits for the first.
    xact_lock(db, thread.work_keys(msg))
    if ctx.redact is not None:
        msg = persist.redact(db, ctx.redact, row, msg)
    if msg.direction == Direction.OUTBOUND:
        return persist.sent_elsewhere(db, row, msg, res, now)
    if persist.already_stored(db, msg):
        res.skipped += 1
        return "already stored"
    if msg.bounced_refs:
        persist.mark_bounced(db, msg.bounced_refs, f"bounced: {msg.subject or msg.text[:120]}", res)
    contact_id, new_contact = identify.identify_sender(db, msg, now)
    conv, how = thread.find_conversation(db, ctx, msg, now)
    if conv is not None and follow_up.answers_survey(db, ctx, conv, msg, now, res):
        how = "an answer to the conversation's satisfaction survey"
    conv, how = thread.resolved_long_ago(ctx, conv, how, msg, now)
    if conv is None and msg.auto:
        res.skipped += 1
        return f"automatic message ({msg.auto}) outside any conversation: not opened"

    events: list[Event] = []
    if conv is None:
        decision = decide.decide(
            db, ctx, adapter, msg, contact_id, row.envelope.received_at, new_contact
        )
        team = route.team_of(ctx, decision)
        # A rule may name the agent; otherwise one is chosen at the end of the
        # batch (route.assign_new).
        assignee = decision.assignee or None
        conv_id = persist.open_conversation(db, ctx, msg, contact_id, decision, team, assignee, now)
        created: Event = {
            "type": "conversation.created",
            "conversation_id": conv_id,
            "team": team,
            "assignee": assignee,
        }
        new = Unassigned(conv_id, team, contact_id, created, now, new_contact=new_contact)
        route.route_new(db, res, new, assignee, decision.rule)
        events.append(created)
    else:
        conv_id = int(conv["id"])
        if not msg.auto and msg.kind != MessageKind.EDIT:
            follow_up.follow_up(
                db, ctx, adapter, conv, msg, contact_id, now, row.envelope.received_at
            )
    mid = persist.store_inbound(db, conv_id, row, msg, now)
    if conv is None:
        acknowledge.acknowledge(db, ctx, conv_id, contact_id, msg, res, now)
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
