"""What agents do to a conversation: status, assignment, corrections, tags,
retrying a failed reply, and the collision check. (SLA clocks are kept by
the scheduler, ``service/``, from the conversation's facts.)

Every function runs in one transaction, writes the audit trail (who, when,
what, why) and returns the events to publish once it committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..events import Event
from ..model import Category, DeliveryState, Priority, Status, now_ts
from . import conversations as convs
from . import jsoncol
from . import outbox as ob
from .audit import add_audit
from .base import Db, row_dict


class ActionError(ValueError):
    """A change that cannot be made; the message says why (HTTP 409/422)."""


def _conv(db: Db, conversation_id: int) -> dict[str, Any]:
    conv = convs.get_conversation_row(db, conversation_id)
    if conv is None:
        raise LookupError(f"no conversation {conversation_id}")
    return conv


def _updated(conv_id: int, **what: Any) -> Event:
    return {"type": "conversation.updated", "conversation_id": conv_id, **what}


def set_status(
    db: Db,
    conversation_id: int,
    status: str,
    *,
    actor: str,
    snoozed_until: float | None = None,
    reason: str | None = None,
) -> list[Event]:
    try:
        new = Status(status)
    except ValueError:
        raise ActionError(f"status must be one of {', '.join(s.value for s in Status)}") from None
    conv = _conv(db, conversation_id)
    now = now_ts()
    if new == Status.SNOOZED:
        if snoozed_until is None or snoozed_until <= now:
            raise ActionError("snoozing needs a time in the future (snoozed_until)")
    elif snoozed_until is not None:
        raise ActionError("snoozed_until only goes with status 'snoozed'")
    if conv["status"] == new and conv["snoozed_until"] == snoozed_until:
        return []
    changes: dict[str, Any] = {"status": str(new), "snoozed_until": snoozed_until}
    if new == Status.RESOLVED:
        changes["resolved_at"] = now
    elif conv["status"] == Status.RESOLVED:
        changes["resolved_at"] = None
    convs.update_conversation(db, conversation_id, **changes)
    add_audit(
        db,
        actor,
        "status_changed",
        conversation_id=conversation_id,
        reason=reason,
        detail={"from": conv["status"], "to": str(new), "snoozed_until": snoozed_until},
        at=now,
    )
    return [_updated(conversation_id, status=str(new), team=conv["team"])]


def assign(
    db: Db,
    conversation_id: int,
    *,
    actor: str,
    assignee: str | None,
    team: str | None,
    change_team: bool,
    reason: str | None = None,
) -> list[Event]:
    """Set the assignee (None: unassign) and, when ``change_team``, the team."""
    conv = _conv(db, conversation_id)
    if (
        change_team
        and team is not None
        and not db.val("SELECT 1 FROM teams WHERE name = ?", (team,))
    ):
        raise ActionError(f"no team named {team!r}")
    if assignee is not None:
        u = db.one("SELECT disabled FROM users WHERE username = ?", (assignee,))
        known_member = db.val("SELECT 1 FROM team_members WHERE username = ?", (assignee,))
        if (u is None and not known_member) or (u is not None and u["disabled"]):
            raise ActionError(f"no active agent named {assignee!r}")
    new_team = team if change_team else conv["team"]
    if (conv["assignee"], conv["team"]) == (assignee, new_team):
        return []
    convs.update_conversation(db, conversation_id, assignee=assignee, team=new_team)
    add_audit(
        db,
        actor,
        "assigned",
        conversation_id=conversation_id,
        reason=reason,
        detail={
            "from": {"assignee": conv["assignee"], "team": conv["team"]},
            "to": {"assignee": assignee, "team": new_team},
        },
    )
    return [
        _updated(
            conversation_id,
            assignee=assignee,
            team=new_team,
            previous_assignee=conv["assignee"],
            previous_team=conv["team"],
        )
    ]


def correct(
    db: Db,
    conversation_id: int,
    *,
    actor: str,
    category: str | None = None,
    priority: str | None = None,
    reason: str | None = None,
) -> list[Event]:
    """An agent overrides what the rules decided. Recorded in the audit trail
    and in ``corrections`` (with the rule that had decided), which is what a
    classifier can later learn from."""
    conv = _conv(db, conversation_id)
    now = now_ts()
    decision = conv["decision"] or {}
    changes: dict[str, Any] = {}
    if category is not None:
        try:
            cat = Category(category)
        except ValueError:
            raise ActionError(
                f"category must be one of {', '.join(c.value for c in Category)}"
            ) from None
        if cat != conv["category"]:
            changes.update(category=str(cat), confidence=1.0)
            _record_correction(db, conv, "category", str(cat), actor, reason, decision, now)
    if priority is not None:
        try:
            pri = Priority(priority)
        except ValueError:
            raise ActionError(
                f"priority must be one of {', '.join(p.value for p in Priority)}"
            ) from None
        if pri != conv["priority"]:
            changes.update(priority=str(pri), priority_rank=pri.rank)
            _record_correction(db, conv, "priority", str(pri), actor, reason, decision, now)
    if not changes:
        return []
    convs.update_conversation(db, conversation_id, **changes)
    return [_updated(conversation_id, team=conv["team"], **changes)]


def _record_correction(
    db: Db,
    conv: dict[str, Any],
    field: str,
    new: str,
    actor: str,
    reason: str | None,
    decision: dict[str, Any],
    now: float,
) -> None:
    old = conv[field]
    db.run(
        "INSERT INTO corrections (conversation_id, field, old_value, new_value, old_confidence,"
        " rule, actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conv["id"],
            field,
            old,
            new,
            conv["confidence"] if field == "category" else None,
            decision.get("rule"),
            actor,
            reason,
            now,
        ),
    )
    add_audit(
        db,
        actor,
        f"{field}_corrected",
        conversation_id=conv["id"],
        reason=reason,
        detail={"from": old, "to": new, "rule": decision.get("rule")},
        at=now,
    )


def corrections_for(db: Db, conversation_id: int) -> list[dict[str, Any]]:
    return [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT id, field, old_value, new_value, old_confidence, rule, actor, reason, at"
                " FROM corrections WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            )
        )
        if d is not None
    ]


def list_corrections(db: Db, *, limit: int = 1000, after: int = 0) -> list[dict[str, Any]]:
    """Corrections with the customer's first message text: training material."""
    out = []
    for r in db.all(
        "SELECT k.id, k.conversation_id, k.field, k.old_value, k.new_value, k.old_confidence,"
        " k.rule, k.actor, k.reason, k.at, c.subject,"
        " (SELECT m.text FROM messages m WHERE m.conversation_id = k.conversation_id"
        "  AND m.direction = 'in' ORDER BY m.id LIMIT 1) AS text"
        " FROM corrections k JOIN conversations c ON c.id = k.conversation_id"
        " WHERE k.id > ? ORDER BY k.id LIMIT ?",
        (after, limit),
    ):
        d = row_dict(r)
        assert d is not None
        out.append(d)
    return out


def set_tags(
    db: Db,
    conversation_id: int,
    *,
    actor: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> list[Event]:
    conv = _conv(db, conversation_id)
    for t in add:
        if not t.strip() or len(t) > 64:
            raise ActionError("a tag is 1-64 characters")
    before = list(conv["tags"])
    tags = [t for t in before if t not in set(remove)]
    tags += [t.strip() for t in add if t.strip() not in tags]
    tags = sorted(dict.fromkeys(tags))
    if tags == sorted(before):
        return []
    convs.update_conversation(db, conversation_id, tags=tags)
    add_audit(
        db,
        actor,
        "tags_changed",
        conversation_id=conversation_id,
        detail={
            "added": sorted(set(tags) - set(before)),
            "removed": sorted(set(before) - set(tags)),
        },
    )
    return [_updated(conversation_id, tags=tags, team=conv["team"])]


def retry_reply(db: Db, message_id: int, *, actor: str) -> dict[str, Any]:
    """Queue a failed reply again, with the payload it was first queued with."""
    m = db.one(
        "SELECT id, conversation_id, channel, delivery_state FROM messages"
        " WHERE id = ? AND direction = 'out' AND kind = 'message'",
        (message_id,),
    )
    if m is None:
        raise LookupError(f"no outbound reply {message_id}")
    if m["delivery_state"] != DeliveryState.FAILED:
        raise ActionError(f"only a failed reply can be retried (this one is {m['delivery_state']})")
    last = db.one(
        "SELECT payload FROM outbox WHERE message_id = ? ORDER BY id DESC LIMIT 1", (message_id,)
    )
    if last is None:
        raise ActionError("this reply has no outbox entry to retry")
    ob.enqueue(
        db,
        channel=m["channel"],
        conversation_id=m["conversation_id"],
        message_id=message_id,
        payload=jsoncol.loads(last["payload"], {}),
    )
    convs.set_delivery(db, message_id, DeliveryState.QUEUED, error=None)
    add_audit(
        db,
        actor,
        "reply_retried",
        conversation_id=m["conversation_id"],
        message_id=message_id,
    )
    return {"conversation_id": int(m["conversation_id"]), "message_id": message_id}


def newer_than(
    db: Db, conversation_id: int, last_seen: int, *, author: str
) -> list[dict[str, Any]]:
    """Messages that arrived after ``last_seen`` which the agent should see
    before answering: the customer's, and other people's replies (notes and
    the agent's own messages do not count)."""
    out = []
    for r in db.all(
        "SELECT id, direction, kind, author, sender_name, sender_address, text, created_at"
        " FROM messages WHERE conversation_id = ? AND id > ? AND kind IN ('message', 'edit')"
        " AND (direction = 'in' OR (author IS NOT NULL AND author != ? AND auto IS NULL))"
        " ORDER BY id",
        (conversation_id, last_seen, author),
    ):
        d = row_dict(r)
        assert d is not None
        d["text"] = d["text"][:500]
        out.append(d)
    return out


def wake_snoozed(db: Db, now: float | None = None) -> list[Event]:
    """Snoozed conversations whose time has come are open again."""
    now = now or now_ts()
    events: list[Event] = []
    for r in db.all(
        "SELECT id, team, snoozed_until FROM conversations"
        " WHERE status = 'snoozed' AND snoozed_until <= ? ORDER BY snoozed_until LIMIT 500",
        (now,),
    ):
        convs.update_conversation(db, int(r["id"]), status="open", snoozed_until=None)
        add_audit(
            db,
            "system",
            "woke_up",
            conversation_id=int(r["id"]),
            reason="snooze time reached",
            detail={"snoozed_until": r["snoozed_until"]},
            at=now,
        )
        events.append(_updated(int(r["id"]), status="open", team=r["team"]))
    return events


def next_wake(db: Db) -> float | None:
    v = db.val("SELECT MIN(snoozed_until) FROM conversations WHERE status = 'snoozed'")
    return None if v is None else float(v)
