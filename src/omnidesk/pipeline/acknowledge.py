"""After persist: the channel's automatic acknowledgement of a new
conversation, queued in the outbox in the same transaction."""

from __future__ import annotations

from ..model import DeliveryState, Direction, Message, MessageKind
from ..store import Db
from ..store import conversations as convs
from ..store.outbox import build_payload, enqueue
from .context import BatchResult, PipelineContext

# RFC 3834: a responder should not send the same response to the same sender
# more than once in several days. A responder that answers without any
# automatic-mail markers opens a "new" conversation each time; acknowledging
# each would be an endless mail loop.
AUTO_ACK_QUIET_SECONDS = 24 * 3600


def acknowledge(
    db: Db,
    ctx: PipelineContext,
    conv_id: int,
    contact_id: int,
    msg: Message,
    res: BatchResult,
    now: float,
) -> None:
    """Queue the acknowledgement of a new conversation, if the channel has one
    and the customer was not acknowledged lately."""
    if (
        not msg.auto
        and ctx.auto_ack.get(msg.channel)
        # Old mail fetched in bulk (a mailbox backfill) gets no acknowledgement.
        and not msg.meta.get("backfill")
        and not _recently_acknowledged(db, contact_id, now)
    ):
        _queue_auto_ack(db, ctx.auto_ack[msg.channel], conv_id, msg, res)


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
    enqueue(
        db,
        channel=msg.channel,
        conversation_id=conv_id,
        message_id=mid,
        payload=build_payload(db, conv_id, mid, text=text, automatic=True),
    )
    res.outbox_queued += 1
