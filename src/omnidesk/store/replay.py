"""Stored conversations as the rules saw them, and applying a replay's changes
(``omnidesk rules replay``). The store knows no rules: ``conversations_since`` hands
out plain data, ``apply_change`` writes plain values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..events import Event
from ..model import Priority
from . import conversations as convs
from . import jsoncol
from .audit import add_audit
from .base import Db
from .contacts import contact_attributes


def count_since(db: Db, since: float, channels: Sequence[str] = ()) -> int:
    where, params = _where(since, channels)
    return int(db.val(f"SELECT COUNT(*) FROM conversations c WHERE {where}", params) or 0)


def _where(since: float, channels: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    where = "c.created_at >= ?"
    params: list[Any] = [since]
    if channels:
        where += f" AND c.channel IN ({', '.join('?' for _ in channels)})"
        params += list(channels)
    return where, tuple(params)


def conversations_since(
    db: Db, since: float, channels: Sequence[str] = (), *, after_id: int = 0, limit: int = 500
) -> list[dict[str, Any]]:
    """A page of conversations created at or after ``since`` (ids above ``after_id``),
    each with its first inbound message: what the pipeline classified."""
    where, params = _where(since, channels)
    out = []
    for r in db.all(
        "SELECT c.id, c.channel, c.contact_id, c.category, c.priority, c.team, c.assignee,"
        " c.tags, c.decision, m.subject, m.text, m.sender_address, m.sender_name, m.meta,"
        " m.created_at AS received"
        " FROM conversations c JOIN messages m ON m.id = (SELECT MIN(x.id) FROM messages x"
        "  WHERE x.conversation_id = c.id AND x.direction = 'in')"
        f" WHERE {where} AND c.id > ? ORDER BY c.id LIMIT ?",
        (*params, after_id, limit),
    ):
        meta = jsoncol.loads(r["meta"]) if r["meta"] else {}
        out.append(
            {
                "id": r["id"],
                "channel": r["channel"],
                "category": r["category"],
                "priority": r["priority"],
                "team": r["team"],
                "assignee": r["assignee"],
                "decision": jsoncol.loads(r["decision"]) if r["decision"] else None,
                "subject": r["subject"] or "",
                "text": r["text"] or "",
                "sender": r["sender_address"] or "",
                "sender_name": r["sender_name"],
                "language": meta.get("language") if isinstance(meta, dict) else None,
                "received_at": float(r["received"]),
                "contact": contact_attributes(db, r["contact_id"]),
            }
        )
    return out


def apply_change(
    db: Db, conversation_id: int, change: dict[str, Any], *, actor: str = "replay"
) -> list[Event]:
    """Write what a replay decided. ``change`` holds ``decision`` (a Decision's dict)
    and ``to``: the fields that change (category, priority, team, assignee), as
    printed. Team and assignee are only given for conversations nobody was assigned
    to; the caller decides that. Audited as ``rules_replayed``."""
    to = change["to"]
    fields: dict[str, Any] = {"decision": change["decision"]}
    if "category" in to:
        fields["category"] = to["category"]
        fields["confidence"] = change["decision"]["confidence"]
    if "priority" in to:
        fields["priority"] = to["priority"]
        fields["priority_rank"] = Priority(to["priority"]).rank
    for key in ("team", "assignee"):
        if key in to:
            fields[key] = to[key]
    convs.update_conversation(db, conversation_id, **fields)
    add_audit(
        db,
        actor,
        "rules_replayed",
        conversation_id=conversation_id,
        detail={"from": change["from"], "to": to},
    )
    return [{"type": "conversation.updated", "conversation_id": conversation_id, **to}]
