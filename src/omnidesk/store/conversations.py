"""Conversations, their messages, attachments (by content hash) and thread keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import Attachment, DeliveryState, Direction, MessageKind, now_ts
from . import jsoncol
from .base import Db, Row, placeholders, row_dict

CONVERSATION_COLUMNS = (
    "id, contact_id, channel, thread_key, subject, status, category, confidence, priority,"
    " priority_rank, team, assignee, tags, decision, snoozed_until, sla_due_at, created_at,"
    " updated_at, last_message_at, last_inbound_at, first_response_at, resolved_at,"
    " message_count, last_preview, last_customer_at, awaiting_since, last_reply_at, status_at"
)

# Columns callers may set through update_conversation (a fixed allow-list keeps
# column names out of reach of user input).
_UPDATABLE = frozenset(
    {
        "status",
        "category",
        "confidence",
        "priority",
        "priority_rank",
        "team",
        "assignee",
        "tags",
        "decision",
        "snoozed_until",
        "sla_due_at",
        "subject",
        "thread_key",
        "first_response_at",
        "resolved_at",
        "contact_id",
        "updated_at",
        "status_at",
    }
)


def conversation_dict(r: Row | None) -> dict[str, Any] | None:
    d = row_dict(r)
    if d is None:
        return None
    d["tags"] = jsoncol.loads(d.get("tags"), [])
    d["decision"] = jsoncol.loads(d.get("decision"), None)
    return d


def get_conversation_row(db: Db, conversation_id: int) -> dict[str, Any] | None:
    return conversation_dict(
        db.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,))
    )


def find_by_keys(db: Db, keys: Sequence[str]) -> dict[str, Any] | None:
    """The most recent conversation any of ``keys`` belongs to."""
    if not keys:
        return None
    conv_id = db.val(
        f"SELECT MAX(conversation_id) FROM thread_keys WHERE key IN ({placeholders(len(keys))})",
        tuple(keys),
    )
    return None if conv_id is None else get_conversation_row(db, int(conv_id))


def find_by_thread_key(db: Db, channel: str, thread_key: str) -> dict[str, Any] | None:
    return conversation_dict(
        db.one(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE channel = ? AND thread_key = ?"
            " ORDER BY id DESC LIMIT 1",
            (channel, thread_key),
        )
    )


def add_thread_keys(db: Db, conversation_id: int, keys: Iterable[str]) -> None:
    rows = [(k, conversation_id) for k in dict.fromkeys(keys) if k]
    if rows:
        db.many(
            "INSERT INTO thread_keys (key, conversation_id) VALUES (?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            rows,
        )


def last_assignee(db: Db, contact_id: int) -> str | None:
    return db.val(
        "SELECT assignee FROM conversations WHERE contact_id = ? AND assignee IS NOT NULL"
        " ORDER BY updated_at DESC, id DESC LIMIT 1",
        (contact_id,),
    )


def open_counts(db: Db, agents: Sequence[str]) -> dict[str, int]:
    """Open (or pending) conversations per agent: the load for assignment caps."""
    if not agents:
        return {}
    rows = db.all(
        "SELECT assignee, COUNT(*) AS n FROM conversations WHERE status IN ('open', 'pending')"
        f" AND assignee IN ({placeholders(len(agents))}) GROUP BY assignee",
        tuple(agents),
    )
    counts = dict.fromkeys(agents, 0)
    counts.update({r["assignee"]: int(r["n"]) for r in rows})
    return counts


def create_conversation(
    db: Db,
    *,
    contact_id: int,
    channel: str,
    thread_key: str | None,
    subject: str | None,
    category: str | None,
    confidence: float | None,
    priority: str,
    priority_rank: int,
    team: str | None,
    assignee: str | None,
    tags: list[str],
    decision: Mapping[str, Any] | None,
    sla_due_at: float | None = None,
    now: float | None = None,
) -> int:
    now = now or now_ts()
    return int(
        db.val(
            "INSERT INTO conversations (contact_id, channel, thread_key, subject, status,"
            " category, confidence, priority, priority_rank, team, assignee, tags, decision,"
            " sla_due_at, created_at, updated_at, status_at)"
            " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                contact_id,
                channel,
                thread_key,
                subject,
                category,
                confidence,
                priority,
                priority_rank,
                team,
                assignee,
                jsoncol.dumps(tags),
                None if decision is None else jsoncol.dumps(decision),
                sla_due_at,
                now,
                now,
                now,
            ),
        )
    )


def update_conversation(db: Db, conversation_id: int, **fields: Any) -> None:
    bad = set(fields) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    fields.setdefault("updated_at", now_ts())
    if "status" in fields:
        fields.setdefault("status_at", fields["updated_at"])
    for k in ("tags", "decision"):
        if k in fields and fields[k] is not None:
            fields[k] = jsoncol.dumps(fields[k])
    cols = ", ".join(f"{k} = ?" for k in fields)
    db.run(f"UPDATE conversations SET {cols} WHERE id = ?", (*fields.values(), conversation_id))


@dataclass(slots=True)
class NewMessage:
    conversation_id: int
    direction: Direction
    kind: MessageKind
    channel: str
    text: str
    external_id: str | None = None
    inbound_id: int | None = None
    sender_kind: str | None = None
    sender_address: str | None = None
    sender_name: str | None = None
    author: str | None = None
    subject: str | None = None
    full_text: str | None = None
    html: str | None = None
    auto: str | None = None
    edit_of: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sent_at: float | None = None
    delivery_state: DeliveryState | None = None
    attachments: list[Attachment] = field(default_factory=list)


def find_message_id(db: Db, channel: str, direction: str, external_id: str) -> int | None:
    v = db.val(
        "SELECT id FROM messages WHERE channel = ? AND direction = ? AND external_id = ?",
        (channel, direction, external_id),
    )
    return None if v is None else int(v)


def insert_message(db: Db, m: NewMessage, *, now: float | None = None) -> int:
    """Store a message and its attachments, and bump the conversation's
    counters (last message time and preview)."""
    now = now or now_ts()
    mid = int(
        db.val(
            "INSERT INTO messages (conversation_id, direction, kind, channel, external_id,"
            " inbound_id, sender_kind, sender_address, sender_name, author, subject, text,"
            " full_text, html, auto, edit_of, meta, sent_at, created_at, delivery_state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                m.conversation_id,
                str(m.direction),
                str(m.kind),
                m.channel,
                m.external_id,
                m.inbound_id,
                m.sender_kind,
                m.sender_address,
                m.sender_name,
                m.author,
                m.subject,
                m.text,
                m.full_text,
                m.html,
                m.auto,
                m.edit_of,
                jsoncol.dumps(m.meta),
                m.sent_at,
                now,
                None if m.delivery_state is None else str(m.delivery_state),
            ),
        )
    )
    for att in m.attachments:
        store_attachment(db, mid, att)
    preview = " ".join(m.text.split())[:200]
    if m.kind == MessageKind.NOTE:
        db.run("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, m.conversation_id))
    elif m.direction == Direction.INBOUND:
        if m.kind == MessageKind.MESSAGE and m.auto is None:
            # The customer wrote: a response is owed from the first message
            # nobody answered yet (business-hours SLA clocks, service/sla.py).
            db.run(
                "UPDATE conversations SET message_count = message_count + 1, last_message_at = ?,"
                " last_inbound_at = ?, last_preview = ?, updated_at = ?, last_customer_at = ?,"
                " awaiting_since = COALESCE(awaiting_since, ?) WHERE id = ?",
                (now, now, preview, now, now, now, m.conversation_id),
            )
        else:
            # An auto-reply or a bounce: the list keeps the customer's words.
            db.run(
                "UPDATE conversations SET message_count = message_count + 1, last_message_at = ?,"
                " last_inbound_at = ?, last_preview = COALESCE(last_preview, ?), updated_at = ?"
                " WHERE id = ?",
                (now, now, preview, now, m.conversation_id),
            )
    elif m.auto is None and m.kind == MessageKind.MESSAGE:
        # A person answered (an agent's reply, or one sent from the provider's
        # own app). Acknowledgements, surveys and rules' canned replies carry
        # ``auto`` and are no response: they leave the SLA clocks running.
        # The preview stays the customer's latest words (the list shows what
        # they asked, not what we answered).
        db.run(
            "UPDATE conversations SET message_count = message_count + 1, last_message_at = ?,"
            " last_preview = COALESCE(last_preview, ?), updated_at = ?,"
            " first_response_at = COALESCE(first_response_at, ?), last_reply_at = ?,"
            " awaiting_since = NULL WHERE id = ?",
            (now, preview, now, now, now, m.conversation_id),
        )
    else:
        # Automatic (an acknowledgement, a survey): the list keeps showing what
        # a person last wrote.
        db.run(
            "UPDATE conversations SET message_count = message_count + 1, last_message_at = ?,"
            " last_preview = COALESCE(last_preview, ?), updated_at = ? WHERE id = ?",
            (now, preview, now, m.conversation_id),
        )
    return mid


def store_attachment(db: Db, message_id: int, att: Attachment) -> None:
    sha = att.sha256
    if sha is not None and att.data is not None:
        db.run(
            "INSERT INTO blobs (sha256, size, data) VALUES (?, ?, ?)"
            " ON CONFLICT (sha256) DO NOTHING",
            (sha, len(att.data), att.data),
        )
    db.run(
        "INSERT INTO attachments (message_id, sha256, filename, content_type, size, inline,"
        " content_id, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            sha,
            att.filename,
            att.content_type,
            att.size,
            1 if att.inline else 0,
            att.content_id,
            att.ref,
        ),
    )


def get_blob(db: Db, sha256: str) -> bytes | None:
    v = db.val("SELECT data FROM blobs WHERE sha256 = ?", (sha256,))
    return None if v is None else bytes(v)


def set_delivery(
    db: Db,
    message_id: int,
    state: DeliveryState,
    *,
    error: str | None = None,
    provider_id: str | None = None,
) -> None:
    db.run(
        "UPDATE messages SET delivery_state = ?, delivery_error = ?,"
        " provider_id = COALESCE(?, provider_id) WHERE id = ?",
        (str(state), error, provider_id, message_id),
    )


_STATE_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def apply_status_update(
    db: Db, channel: str, provider_id: str, state: DeliveryState, reason: str | None
) -> int | None:
    """A provider receipt about one of our messages. States only move forward
    (a late 'delivered' never undoes 'read'); 'failed' always wins."""
    row = db.one(
        "SELECT id, conversation_id, delivery_state FROM messages"
        " WHERE channel = ? AND provider_id = ? AND direction = 'out'",
        (channel, provider_id),
    )
    if row is None:
        return None
    current = row["delivery_state"] or "queued"
    if state != DeliveryState.FAILED and (
        current == "failed" or _STATE_ORDER.get(str(state), 0) <= _STATE_ORDER.get(current, 0)
    ):
        return int(row["id"])
    set_delivery(db, int(row["id"]), state, error=reason)
    return int(row["id"])


def apply_watermark(
    db: Db, channel: str, thread_key: str, state: DeliveryState, watermark: float
) -> list[int]:
    """A watermark receipt: every sent reply on the thread created at or before
    ``watermark`` moves forward to ``state`` (never back). Returns the ids moved."""
    rank = _STATE_ORDER.get(str(state), 0)
    behind = [s for s, r in _STATE_ORDER.items() if 0 < r < rank]
    if not behind:
        return []
    rows = db.all(
        "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.channel = ? AND c.thread_key = ? AND m.direction = 'out'"
        f" AND m.kind = 'message' AND m.delivery_state IN ({placeholders(len(behind))})"
        " AND m.created_at <= ?",
        (channel, thread_key, *behind, watermark),
    )
    ids = [int(r["id"]) for r in rows]
    for mid in ids:
        set_delivery(db, mid, state)
    return ids


def last_inbound_at(db: Db, conversation_id: int, kind: str, address: str) -> float | None:
    """When the customer ``kind``/``address`` last wrote on this conversation's
    channel (their own timestamp when the provider gave one, never later than
    when it arrived): the start of a messaging window such as WhatsApp's 24 hours."""
    v = db.val(
        "SELECT MAX(CASE WHEN m.sent_at < m.created_at THEN m.sent_at ELSE m.created_at END)"
        " FROM messages m"
        " WHERE m.conversation_id IN (SELECT c.id FROM conversations c, conversations o"
        "  WHERE o.id = ? AND c.contact_id = o.contact_id AND c.channel = o.channel)"
        " AND m.direction = 'in' AND m.sender_kind = ? AND m.sender_address = ?",
        (conversation_id, kind, address),
    )
    return None if v is None else float(v)


def message_rows(db: Db, conversation_id: int) -> list[dict[str, Any]]:
    msgs = [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT id, direction, kind, channel, external_id, sender_kind, sender_address,"
                " sender_name, author, subject, text, full_text, html, auto, edit_of, meta,"
                " sent_at, created_at, delivery_state, delivery_error, provider_id"
                " FROM messages WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            )
        )
        if d is not None
    ]
    by_id = {m["id"]: m for m in msgs}
    for m in msgs:
        m["meta"] = jsoncol.loads(m["meta"], {})
        m["attachments"] = []
    if msgs:
        for r in db.all(
            "SELECT a.id, a.message_id, a.sha256, a.filename, a.content_type, a.size, a.inline,"
            " a.content_id, a.ref FROM attachments a JOIN messages m ON m.id = a.message_id"
            " WHERE m.conversation_id = ? ORDER BY a.id",
            (conversation_id,),
        ):
            a = row_dict(r)
            assert a is not None
            a["inline"] = bool(a["inline"])
            by_id[a.pop("message_id")]["attachments"].append(a)
    return msgs
