"""The follow-up stage: a customer wrote again in a conversation. A closed
one reopens (with a new first-response target); category and priority are
escalated, never downgraded, if the new message calls for it; its tags are
added."""

from __future__ import annotations

from typing import Any

from ..model import Category, Message, Priority, Status
from ..store import Db
from ..store import conversations as convs
from ..store.audit import add_audit
from . import decide
from .context import ChannelParser, PipelineContext


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
        if ctx.sla is not None:  # the customer waits for an answer again
            changes["sla_due_at"] = ctx.sla.due(conv["priority"], now)
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
        due = changes.get("sla_due_at", conv["sla_due_at"])
        if ctx.sla is not None and due is not None:
            changes["sla_due_at"] = ctx.sla.moved(due, conv["priority"], str(decision.priority))
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
