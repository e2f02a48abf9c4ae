"""The persist stage: what the stages decided, written in the batch's
transaction - the conversation a message opens, the message with its
attachments and thread keys, receipts, skips, quarantine, and the envelope
marked done. A crash anywhere leaves the envelope pending; every stage is
idempotent, so the redo stores it once."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from ..customers.redact import Redactor
from ..model import Decision, DeliveryState, Direction, Message, MessageKind, Skip, StatusUpdate
from ..store import Db
from ..store import conversations as convs
from ..store.audit import add_audit
from ..store.inbound import InboundRow, get_pending, mark_done, quarantine
from .context import BatchResult, PipelineContext

log = structlog.get_logger("omnidesk.pipeline")


def skip(db: Db, row: InboundRow, item: Skip, res: BatchResult) -> None:
    mark_done(db, row.id, f"skipped: {item.reason}", quarantined=row.quarantined)
    res.skipped += 1


def status_update(db: Db, row: InboundRow, item: StatusUpdate, res: BatchResult) -> None:
    """A delivery or read receipt: the replies it names change state."""
    if item.watermark is not None and item.thread_key:
        mids = convs.apply_watermark(db, item.channel, item.thread_key, item.state, item.watermark)
    else:
        one = convs.apply_status_update(db, item.channel, item.provider_id, item.state, item.reason)
        mids = [] if one is None else [one]
    note = f"status {item.state}" + ("" if mids else " (no matching reply)")
    mark_done(db, row.id, note, quarantined=row.quarantined)
    res.skipped += 1
    for mid in mids:
        res.events.append({"type": "delivery", "message_id": mid, "state": str(item.state)})


def already_stored(db: Db, msg: Message) -> bool:
    """A redo after a crash, or the same message through two envelopes."""
    return convs.find_message_id(db, msg.channel, "in", msg.external_id) is not None


def mark_bounced(db: Db, keys: list[str], reason: str, res: BatchResult) -> None:
    """A bounce of one of our replies marks that reply failed."""
    for key in keys:
        for r in db.all(
            "SELECT id, channel FROM messages WHERE direction = 'out' AND provider_id = ?", (key,)
        ):
            convs.set_delivery(db, int(r["id"]), DeliveryState.FAILED, error=reason)
            res.events.append({"type": "delivery", "message_id": int(r["id"]), "state": "failed"})


def open_conversation(
    db: Db,
    ctx: PipelineContext,
    msg: Message,
    contact_id: int,
    decision: Decision,
    team: str | None,
    assignee: str | None,
    now: float,
) -> int:
    """The new conversation, with the rules' decision and why."""
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
    return conv_id


def redact(db: Db, redactor: Redactor, row: InboundRow, msg: Message) -> Message:
    """``[privacy]`` redaction, before anything of the message is stored or
    decided: its text masked, and card numbers in the raw input kept beside
    it (customers/redact.py)."""
    payload = redactor.raw(row.envelope.payload)
    if payload != row.envelope.payload:
        db.run("UPDATE inbound SET payload = ? WHERE id = ?", (payload, row.id))
    return redactor.message(msg)


def store_inbound(db: Db, conv_id: int, row: InboundRow, msg: Message, now: float) -> int:
    """The customer's message in its conversation, with the keys later
    messages of the thread will quote; returns its id."""
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
    return mid


def sent_elsewhere(db: Db, row: InboundRow, msg: Message, res: BatchResult, now: float) -> str:
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


def count_attempt(db: Db, row: InboundRow) -> int:
    """One more try of a row that is left pending; returns how many so far."""
    tries = db.val(
        "UPDATE inbound SET attempts = attempts + 1 WHERE id = ? RETURNING attempts", (row.id,)
    )
    return int(tries or 0)


def quarantine_row(
    db: Db, row: InboundRow, error: str, detail: str | None, res: BatchResult
) -> None:
    """Input the pipeline cannot take: kept with its raw bytes and the error,
    for an admin to look at and retry."""
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


def quarantine_pending(db: Db, ids: Sequence[int], error: str) -> BatchResult:
    """Quarantine these rows if still pending (the daemon, for a message
    its pipeline process died on; see pipeline_proc.py)."""
    res = BatchResult()
    for inbound_id in ids:
        row = get_pending(db, inbound_id)
        if row is not None:
            quarantine_row(db, row, error, None, res)
    return res
