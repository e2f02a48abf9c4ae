"""Doing what fired: a time-based rule's or an SLA policy's actions on one
conversation, inside the scheduler's transaction, each one audited with the
rule or policy that asked for it. An action that cannot be done (an agent
who left, a canned reply that was deleted) is audited as failed; the others
still happen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from ..model import Priority
from ..outbox import ReplyError, queue_reply
from ..rules.actions import Actions
from ..rules.service import ServiceRules
from ..store import actions as conv_actions
from ..store import conversations as convs
from ..store import service as svc
from ..store.audit import add_audit
from ..store.base import Db
from ..store.canned import placeholder_values, render
from .evaluate import Fire


@dataclass(slots=True)
class Effects:
    """What a transaction did, to tell the rest of the daemon after commit."""

    events: list[Event] = field(default_factory=list)
    outbox: int = 0
    notice_mail: int = 0  # notices queued for an e-mail copy
    changed: bool = False  # the conversation itself was changed


def queue_automatic(
    db: Db,
    conversation_id: int,
    text: str,
    *,
    auto: str,
    html: str | None = None,
    subject: str | None = None,
    meta: dict[str, Any] | None = None,
) -> int:
    """An automatic message to the customer (a survey, a rule's canned reply):
    an outbound message marked ``auto`` (never a response for the SLA),
    queued in the outbox. Raises ReplyError with nobody to answer."""
    msg = queue_reply(
        db,
        conversation_id,
        text=text,
        author="system",
        html=html,
        auto=auto,
        subject=subject,
        meta=meta,
    )
    return int(msg["id"])


def apply_fire(
    db: Db,
    conv: dict[str, Any],
    fire: Fire,
    service: ServiceRules,
    now: float,
    out: Effects,
) -> None:
    cid = int(conv["id"])
    a: Actions = fire.actions
    add_audit(
        db,
        fire.actor,
        {"sla_warning": "sla_warning", "sla_breach": "sla_breach"}.get(fire.kind, "rule_fired"),
        conversation_id=cid,
        reason=fire.reason,
        detail={"key": fire.key, "episode": fire.episode, "actions": a.describe()},
        at=now,
    )

    def attempt(what: str, fn: Callable[[], list[Event] | None]) -> None:
        try:
            with db.savepoint():
                events = fn()
        except (conv_actions.ActionError, LookupError, ReplyError, ValueError) as exc:
            add_audit(
                db,
                fire.actor,
                "action_failed",
                conversation_id=cid,
                reason=f"{what}: {exc}",
                at=now,
            )
            return
        if events:
            out.events.extend(events)
            out.changed = True

    priority = a.priority
    if priority is not None and priority != conv["priority"]:
        attempt("priority", lambda: _priority(db, conv, priority, fire.actor, now))
    if a.team is not None or a.agent is not None:
        attempt(
            "assign",
            lambda: conv_actions.assign(
                db,
                cid,
                actor=fire.actor,
                assignee=a.agent if a.agent is not None else (None if a.team else conv["assignee"]),
                team=a.team,
                change_team=a.team is not None,
                reason=fire.reason,
            ),
        )
    if a.tags or a.remove_tags:
        attempt(
            "tags",
            lambda: conv_actions.set_tags(
                db, cid, actor=fire.actor, add=a.tags, remove=a.remove_tags
            ),
        )
    if a.status is not None:
        attempt(
            "status",
            lambda: conv_actions.set_status(
                db, cid, a.status or "", actor=fire.actor, reason=fire.reason
            ),
        )
    if a.reply is not None:
        attempt("reply", lambda: _canned_reply(db, cid, a.reply or "", fire, now, out))
    if a.notify:
        who = _recipients(db, conv, a.notify, service)
        text = _notice(conv, fire)
        notices = svc.notify(
            db, who, kind=fire.kind, text=text, conversation_id=cid, at=now, email=a.email
        )
        for n in notices:
            out.events.append({"type": "notification", **n})
        out.notice_mail += len(notices) if a.email else 0


def _priority(
    db: Db, conv: dict[str, Any], priority: Priority, actor: str, now: float
) -> list[Event]:
    convs.update_conversation(
        db, int(conv["id"]), priority=str(priority), priority_rank=priority.rank
    )
    add_audit(
        db,
        actor,
        "priority_changed",
        conversation_id=int(conv["id"]),
        detail={"from": conv["priority"], "to": str(priority)},
        at=now,
    )
    conv["priority"] = str(priority)
    return [
        {
            "type": "conversation.updated",
            "conversation_id": int(conv["id"]),
            "priority": str(priority),
            "team": conv["team"],
        }
    ]


def _canned_reply(
    db: Db, cid: int, shortcut: str, fire: Fire, now: float, out: Effects
) -> list[Event]:
    row = db.one("SELECT body FROM canned_replies WHERE shortcut = ?", (shortcut,))
    if row is None:
        raise LookupError(f"no canned reply with the shortcut {shortcut!r}")
    text = render(row["body"], placeholder_values(db, cid, None, None))
    mid = queue_automatic(db, cid, text, auto=fire.actor)
    out.outbox += 1
    return [
        {
            "type": "message.created",
            "conversation_id": cid,
            "message_id": mid,
            "direction": "out",
            "kind": "message",
        }
    ]


def _recipients(
    db: Db, conv: dict[str, Any], notify: tuple[str, ...], service: ServiceRules
) -> list[str]:
    found = svc.people(db, notify, conv["team"])
    who: list[str] = []
    for target in notify:
        if target == "assignee":
            who += [conv["assignee"]] if conv["assignee"] else []
        elif target == "team_lead":
            lead = service.lead(conv["team"])
            who += [lead] if lead else []
        elif target in ("team", "supervisors"):
            who += found.get(target, [])
        else:
            who.append(target.lstrip("@"))
    return list(dict.fromkeys(who))


def _notice(conv: dict[str, Any], fire: Fire) -> str:
    subject = (conv.get("subject") or conv.get("last_preview") or "").strip()[:80]
    head = {
        "sla_warning": "SLA warning",
        "sla_breach": "SLA breached",
    }.get(fire.kind, f"Rule {fire.actor.removeprefix('rule:')}")
    return f"{head} on #{conv['id']} {subject}: {fire.reason}".strip()


def mirror_due(db: Db, conversation_id: int, due: float | None) -> None:
    """The inbox sorts and flags on ``conversations.sla_due_at``: the nearest
    due time. Written without touching ``updated_at`` (it is derived, not a
    change the scheduler should look at again)."""
    db.run("UPDATE conversations SET sla_due_at = ? WHERE id = ?", (due, conversation_id))
