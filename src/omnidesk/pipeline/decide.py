"""The decide stage: the rules classify a message (category, priority, tags,
team, agent) and say why."""

from __future__ import annotations

from datetime import UTC, datetime

from ..model import Decision, Message, RuleInput
from ..store import Db
from ..store.contacts import contact_attributes
from .context import ChannelParser, PipelineContext
from .normalize import detect_language


def decide(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelParser,
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
        language = detect_language(ctx, msg)
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
