"""The follow-up stage: a customer wrote again in a conversation. A message
that answers the conversation's satisfaction survey is recorded as the
answer (``answers_survey``). Otherwise a closed conversation reopens;
category and priority are escalated, never downgraded, if the new message
calls for it; its tags are added."""

from __future__ import annotations

from typing import Any

from ..model import Category, Message, MessageKind, Priority, Status
from ..store import Db
from ..store import conversations as convs
from ..store.audit import add_audit
from . import decide
from .context import BatchResult, ChannelParser, PipelineContext


def answers_survey(
    db: Db,
    ctx: PipelineContext,
    conv: dict[str, Any],
    msg: Message,
    now: float,
    res: BatchResult,
) -> bool:
    """A customer's message that answers the conversation's satisfaction
    survey (a digit on a chat channel) is recorded as the rating and kept in
    the conversation as the answer it is: marked automatic, it reopens
    nothing. The thanks, or the next question, is queued in the outbox."""
    if (
        ctx.survey_answer is None
        or msg.auto
        or msg.kind != MessageKind.MESSAGE
        or not ctx.survey_answer(db, conv, msg, now)
    ):
        return False
    msg.auto = "survey-answer"
    res.outbox_queued += 1  # the thanks, or the next question
    return True


def follow_up(
    db: Db,
    ctx: PipelineContext,
    adapter: ChannelParser,
    conv: dict[str, Any],
    msg: Message,
    contact_id: int,
    now: float,
    arrived: float,
) -> None:
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
    decision = decide.decide(db, ctx, adapter, msg, contact_id, arrived)
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
