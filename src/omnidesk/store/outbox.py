"""The outbox table: what must leave through a channel, durably queued in the
same transaction as the message row it delivers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import now_ts
from . import conversations as convs
from . import jsoncol
from .base import Db, row_dict


class ReplyError(Exception):
    """The reply cannot be queued (no such conversation, nobody to answer)."""


def build_payload(
    db: Db,
    conversation_id: int,
    message_id: int | None,
    *,
    text: str,
    html: str | None = None,
    automatic: bool = False,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the adapter needs to answer in place, captured when the reply is
    queued: the customer's identity on this conversation's channel, the last
    message to answer, the thread key and the email reference chain."""
    conv = convs.get_conversation_row(db, conversation_id)
    if conv is None:
        raise ReplyError(f"no conversation {conversation_id}")
    last_in = db.one(
        "SELECT external_id, sender_kind, sender_address, sender_name, subject, meta"
        " FROM messages WHERE conversation_id = ? AND direction = 'in' AND kind != 'auto'"
        " ORDER BY id DESC LIMIT 1",
        (conversation_id,),
    )
    if last_in is None or last_in["sender_address"] is None:
        raise ReplyError(f"conversation {conversation_id} has no customer message to answer")
    refs = [
        r["key"]
        for r in db.all(
            "SELECT key FROM thread_keys WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
    ]
    extra: dict[str, Any] = {}
    reply_to = jsoncol.loads(last_in["meta"], {}).get("reply_to")
    if last_in["sender_kind"] == "email" and reply_to and isinstance(reply_to, list):
        # The customer's mail asked for answers elsewhere (Reply-To): the
        # e-mail channel decides whether to honour it (see mailout.py).
        extra["reply_to"] = [str(a) for a in reply_to][:10]
    return {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "recipient": {
            "kind": last_in["sender_kind"],
            "address": last_in["sender_address"],
            "display_name": last_in["sender_name"],
        },
        "text": text,
        "html": html,
        "subject": conv["subject"] or last_in["subject"],
        "reply_to_external_id": last_in["external_id"],
        "thread_key": conv["thread_key"],
        "references": refs,
        "automatic": automatic,
        "attachments": attachments or [],
        "meta": extra,
    }


def enqueue(
    db: Db,
    *,
    channel: str,
    conversation_id: int | None,
    message_id: int | None,
    payload: Mapping[str, Any],
    at: float | None = None,
) -> int:
    now = now_ts()
    return int(
        db.val(
            "INSERT INTO outbox (channel, conversation_id, message_id, payload, state, attempts,"
            " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)"
            " RETURNING id",
            (
                channel,
                conversation_id,
                message_id,
                jsoncol.dumps(dict(payload)),
                at or now,
                now,
                now,
            ),
        )
    )


def claim_due(db: Db, limit: int, lease: float, *, channels: list[str]) -> list[dict[str, Any]]:
    """Due items for the given channels, leased for ``lease`` seconds: a crash
    mid-send leaves the item 'sending' and it becomes due again when the lease
    runs out (delivery is at-least-once; adapters pass an idempotency key
    where the provider supports one)."""
    if not channels:
        return []
    now = now_ts()
    marks = ",".join("?" * len(channels))
    lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgres" else ""
    rows = db.all(
        "SELECT id, channel, conversation_id, message_id, payload, attempts FROM outbox"
        f" WHERE state IN ('queued', 'sending') AND next_attempt_at <= ? AND channel IN ({marks})"
        f" ORDER BY next_attempt_at, id LIMIT ?{lock}",
        (now, *channels, limit),
    )
    out = []
    for r in rows:
        d = row_dict(r)
        assert d is not None
        d["payload"] = jsoncol.loads(d["payload"], {})
        db.run(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, next_attempt_at = ?,"
            " updated_at = ? WHERE id = ?",
            (now + lease, now, d["id"]),
        )
        d["attempts"] += 1
        out.append(d)
    return out


def mark_sent(db: Db, outbox_id: int, provider_id: str | None) -> None:
    db.run(
        "UPDATE outbox SET state = 'sent', provider_id = ?, last_error = NULL, updated_at = ?"
        " WHERE id = ?",
        (provider_id, now_ts(), outbox_id),
    )


def mark_retry(db: Db, outbox_id: int, error: str, at: float) -> None:
    db.run(
        "UPDATE outbox SET state = 'queued', last_error = ?, next_attempt_at = ?, updated_at = ?"
        " WHERE id = ?",
        (error, at, now_ts(), outbox_id),
    )


def mark_failed(db: Db, outbox_id: int, error: str) -> None:
    db.run(
        "UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?",
        (error, now_ts(), outbox_id),
    )


def next_due(db: Db) -> float | None:
    v = db.val("SELECT MIN(next_attempt_at) FROM outbox WHERE state IN ('queued', 'sending')")
    return None if v is None else float(v)
