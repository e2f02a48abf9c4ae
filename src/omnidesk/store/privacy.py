"""Privacy: everything held about a contact (export), erasing a contact, and
removing or redacting old conversations (retention).

Erasure leaves no personal data of the contact in any table or search
index: its identities, fields, events, scores and company link go; its
messages are redacted (text replaced, sender, HTML, raw input and
attachments gone) or removed with their conversations
(``[privacy] erase_messages``); the raw inbound rows and quarantined input
behind those messages, outbox payloads, thread keys, notifications,
corrections and survey comments go too; audit entries about it keep who,
what and when but lose their details. Contacts merged into it are erased
with it. One audit entry without personal data records the erasure.

On SQLite, deleted content must not linger in free pages, the write-ahead
log or the FTS5 index's old segments: erasure runs with
``PRAGMA secure_delete`` on (freed pages are zeroed), the search indexes are
merged afterwards (``compact_search``: old segments freed), and the store
checkpoints its WAL (``SqliteStore.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..model import now_ts
from . import jsoncol
from .audit import add_audit
from .base import Db, chunks, placeholders, row_dict

ERASED = "[erased]"
# An audit entry keeps its details only where they cannot hold personal data:
# a status change says from which status to which.
_KEPT_DETAIL = "CASE WHEN action = 'status_changed' THEN detail ELSE '{}' END"
REDACTED = "[redacted by retention]"


class PrivacyError(ValueError):
    pass


# -- export ----------------------------------------------------------------------------
def contact_export(db: Db, contact_id: int) -> dict[str, Any] | None:
    """Everything held about the contact, as plain data: profile, identities,
    company, events, every conversation with every message (notes too),
    attachments' metadata (their bytes: ``export_blobs``), surveys, and the
    audit entries about the contact and its conversations."""
    c = row_dict(db.one("SELECT * FROM contacts WHERE id = ?", (contact_id,)))
    if c is None:
        return None
    c["attributes"] = jsoncol.loads(c["attributes"], {})
    ids = _contact_set(db, contact_id)
    ph = placeholders(len(ids))
    out: dict[str, Any] = {"contact": c}
    out["merged_contacts"] = [
        row_dict(r) for r in db.all(f"SELECT * FROM contacts WHERE merged_into IN ({ph})", ids)
    ]
    out["identities"] = [
        row_dict(r) for r in db.all(f"SELECT * FROM identities WHERE contact_id IN ({ph})", ids)
    ]
    if c.get("company_id") is not None:
        out["company"] = row_dict(
            db.one("SELECT * FROM companies WHERE id = ?", (c["company_id"],))
        )
    out["events"] = [
        row_dict(r)
        for r in db.all(
            f"SELECT * FROM contact_events WHERE contact_id IN ({ph}) ORDER BY occurred_at, id",
            ids,
        )
    ]
    convs = [
        row_dict(r)
        for r in db.all(f"SELECT * FROM conversations WHERE contact_id IN ({ph}) ORDER BY id", ids)
    ]
    conv_ids = [int(x["id"]) for x in convs if x]
    for conv in convs:
        assert conv is not None
        conv["messages"] = [
            row_dict(r)
            for r in db.all(
                "SELECT id, direction, kind, channel, external_id, sender_kind, sender_address,"
                " sender_name, author, subject, text, full_text, html, auto, meta, sent_at,"
                " created_at, delivery_state, delivery_error FROM messages"
                " WHERE conversation_id = ? ORDER BY id",
                (conv["id"],),
            )
        ]
    out["conversations"] = convs
    out["attachments"] = []
    out["surveys"] = []
    if conv_ids:
        cph = placeholders(len(conv_ids))
        out["attachments"] = [
            row_dict(r)
            for r in db.all(
                "SELECT a.id, a.message_id, a.sha256, a.filename, a.content_type, a.size,"
                " a.inline FROM attachments a JOIN messages m ON m.id = a.message_id"
                f" WHERE m.conversation_id IN ({cph}) ORDER BY a.id",
                conv_ids,
            )
        ]
        out["surveys"] = [
            row_dict(r)
            for r in db.all(f"SELECT * FROM surveys WHERE conversation_id IN ({cph})", conv_ids)
        ]
    audit_where = f"contact_id IN ({ph})"
    params: list[Any] = list(ids)
    if conv_ids:
        audit_where += f" OR conversation_id IN ({placeholders(len(conv_ids))})"
        params += conv_ids
    out["audit"] = [
        row_dict(r) for r in db.all(f"SELECT * FROM audit WHERE {audit_where} ORDER BY id", params)
    ]
    out["satisfaction"] = row_dict(
        db.one("SELECT * FROM contact_scores WHERE contact_id = ?", (contact_id,))
    )
    return out


def export_blob(db: Db, sha256: str) -> bytes | None:
    v = db.val("SELECT data FROM blobs WHERE sha256 = ?", (sha256,))
    return None if v is None else bytes(v)


# -- erasure -------------------------------------------------------------------------------
def _contact_set(db: Db, contact_id: int) -> list[int]:
    """The contact and every contact merged into it (their rows keep names)."""
    ids = [contact_id]
    frontier = [contact_id]
    while frontier:
        found = [
            int(r["id"])
            for r in db.all(
                f"SELECT id FROM contacts WHERE merged_into IN ({placeholders(len(frontier))})",
                frontier,
            )
        ]
        frontier = [i for i in found if i not in ids]
        ids += frontier
    return ids


def _purge_messages(db: Db, message_ids: Sequence[int], *, remove: bool) -> None:
    """Attachments, raw input, outbox rows and then the messages themselves
    (``remove``) or their content (redact)."""
    for part in chunks(list(message_ids), 500):
        ph = placeholders(len(part))
        shas = [
            str(r["sha256"])
            for r in db.all(
                f"SELECT DISTINCT sha256 FROM attachments WHERE message_id IN ({ph})"
                " AND sha256 IS NOT NULL",
                part,
            )
        ]
        db.run(f"DELETE FROM attachments WHERE message_id IN ({ph})", part)
        for sp in chunks(shas, 500):
            db.run(
                f"DELETE FROM blobs WHERE sha256 IN ({placeholders(len(sp))})"
                " AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.sha256 = blobs.sha256)",
                sp,
            )
        inbound = [
            int(r["inbound_id"])
            for r in db.all(
                f"SELECT inbound_id FROM messages WHERE id IN ({ph}) AND inbound_id IS NOT NULL",
                part,
            )
        ]
        db.run(f"DELETE FROM outbox WHERE message_id IN ({ph})", part)
        db.run(f"UPDATE surveys SET message_id = NULL WHERE message_id IN ({ph})", part)
        db.run(f"UPDATE messages SET edit_of = NULL WHERE edit_of IN ({ph})", part)
        if remove:
            db.run(f"DELETE FROM messages WHERE id IN ({ph})", part)
        else:
            db.run(
                f"UPDATE messages SET text = ?, subject = NULL, full_text = NULL, html = NULL,"
                " sender_address = NULL, sender_name = NULL, external_id = NULL,"
                " provider_id = NULL, delivery_error = NULL, meta = '{}', inbound_id = NULL"
                f" WHERE id IN ({ph})",
                (ERASED, *part),
            )
        for ip in chunks(inbound, 500):
            iph = placeholders(len(ip))
            db.run(f"DELETE FROM quarantine WHERE inbound_id IN ({iph})", ip)
            db.run(f"DELETE FROM inbound WHERE id IN ({iph})", ip)


def _purge_conversations(db: Db, conv_ids: Sequence[int], *, remove: bool, text: str) -> int:
    """Every message of the conversations (see ``_purge_messages``) and
    what else holds their text; ``remove`` deletes the conversations too.
    Returns the number of messages."""
    total = 0
    for part in chunks(list(conv_ids), 200):
        ph = placeholders(len(part))
        mids = [
            int(r["id"])
            for r in db.all(f"SELECT id FROM messages WHERE conversation_id IN ({ph})", part)
        ]
        total += len(mids)
        _purge_messages(db, mids, remove=remove)
        if not remove:
            db.run(f"UPDATE messages SET text = ? WHERE conversation_id IN ({ph})", (text, *part))
        db.run(f"DELETE FROM outbox WHERE conversation_id IN ({ph})", part)
        db.run(f"DELETE FROM thread_keys WHERE conversation_id IN ({ph})", part)
        db.run(f"DELETE FROM notifications WHERE conversation_id IN ({ph})", part)
        db.run(f"DELETE FROM corrections WHERE conversation_id IN ({ph})", part)
        db.run(
            f"UPDATE audit SET reason = NULL, detail = {_KEPT_DETAIL}"
            f" WHERE conversation_id IN ({ph})",
            part,
        )
        if remove:
            db.run(f"DELETE FROM surveys WHERE conversation_id IN ({ph})", part)
            db.run(f"DELETE FROM service_state WHERE conversation_id IN ({ph})", part)
            db.run(f"DELETE FROM conversations WHERE id IN ({ph})", part)
        else:
            db.run(f"UPDATE surveys SET comment = NULL WHERE conversation_id IN ({ph})", part)
            db.run(
                "UPDATE conversations SET subject = NULL, last_preview = NULL, decision = NULL,"
                f" thread_key = NULL WHERE id IN ({ph})",
                part,
            )
    return total


def erase_contact(db: Db, contact_id: int, *, actor: str, mode: str = "redact") -> dict[str, Any]:
    """Erase the contact (see the module's docstring). ``mode``: redact or
    remove its messages. Returns counts (no personal data)."""
    if mode not in ("redact", "remove"):
        raise PrivacyError("mode is redact or remove")
    r = db.one("SELECT merged_into, erased_at FROM contacts WHERE id = ?", (contact_id,))
    if r is None:
        raise LookupError(f"no contact {contact_id}")
    if r["merged_into"] is not None:
        raise PrivacyError(
            f"contact {contact_id} was merged into {r['merged_into']}: erase that one"
        )
    if db.dialect == "sqlite":
        db.run("PRAGMA secure_delete = ON")
    ids = _contact_set(db, contact_id)
    ph = placeholders(len(ids))
    conv_ids = [
        int(x["id"])
        for x in db.all(f"SELECT id FROM conversations WHERE contact_id IN ({ph})", ids)
    ]
    remove = mode == "remove"
    messages = _purge_conversations(db, conv_ids, remove=remove, text=ERASED)
    if not remove and conv_ids:
        # What was merged in points at the survivor: one shell keeps the conversations.
        db.run(
            f"UPDATE conversations SET contact_id = ? WHERE contact_id IN ({ph})",
            (contact_id, *ids),
        )
    # Audit entries about other contacts may quote an address of this one
    # ("identity_in_use": someone typed it): they lose their details too.
    quoted = [
        str(r["address"])
        for r in db.all(f"SELECT address FROM identities WHERE contact_id IN ({ph})", ids)
        if len(str(r["address"])) >= 5
    ]
    for addr in quoted:
        like = "%" + addr.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        db.run(
            "UPDATE audit SET reason = NULL, detail = '{}'"
            " WHERE reason LIKE ? ESCAPE '\\' OR detail LIKE ? ESCAPE '\\'",
            (like, like),
        )
    identities = int(db.val(f"SELECT COUNT(*) FROM identities WHERE contact_id IN ({ph})", ids))
    db.run(f"DELETE FROM identities WHERE contact_id IN ({ph})", ids)
    db.run(f"DELETE FROM contact_events WHERE contact_id IN ({ph})", ids)
    db.run(f"DELETE FROM contact_scores WHERE contact_id IN ({ph})", ids)
    db.run(f"DELETE FROM surveys WHERE contact_id IN ({ph}) AND comment IS NOT NULL", ids)
    db.run(f"DELETE FROM contact_merges WHERE source_id IN ({ph}) OR target_id IN ({ph})", ids * 2)
    db.run(
        f"UPDATE audit SET reason = NULL, detail = {_KEPT_DETAIL} WHERE contact_id IN ({ph})", ids
    )
    now = now_ts()
    db.run(
        "UPDATE contacts SET name = NULL, attributes = '{}', company_id = NULL, erased_at = ?,"
        f" updated_at = ? WHERE id IN ({ph})",
        (now, now, *ids),
    )
    detail = {
        "mode": mode,
        "contacts": len(ids),
        "conversations": len(conv_ids),
        "messages": messages,
        "identities": identities,
    }
    add_audit(db, actor, "contact_erased", contact_id=contact_id, detail=detail, at=now)
    return {"contact_id": contact_id, **detail}


def compact_search(db: Db) -> None:
    """Merge the search indexes' segments so that entries deleted from them
    are gone from the file too (SQLite FTS5 keeps them in old segments
    until a merge); nothing to do on PostgreSQL."""
    if db.dialect != "sqlite":
        return
    db.run("PRAGMA secure_delete = ON")
    db.run("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
    db.run("INSERT INTO contacts_fts (contacts_fts) VALUES ('optimize')")


# -- retention ---------------------------------------------------------------------------
def retention_candidates(
    db: Db,
    cutoff: float,
    channels: Sequence[str],
    categories: Sequence[str],
    *,
    after_id: int = 0,
    limit: int = 1000,
) -> list[tuple[int, int]]:
    """(conversation id, messages) last active before ``cutoff``, on those
    channels and in those categories (any when empty), not already redacted
    by retention, in id order from ``after_id``."""
    where = ["COALESCE(c.last_message_at, c.created_at) < ?", "c.id > ?"]
    params: list[Any] = [cutoff, after_id]
    if channels:
        where.append(f"c.channel IN ({placeholders(len(channels))})")
        params += list(channels)
    if categories:
        where.append(f"c.category IN ({placeholders(len(categories))})")
        params += list(categories)
    where.append(
        "EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.text <> ?)"
        " OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)"
    )
    params.append(REDACTED)
    return [
        (int(r["id"]), int(r["n"]))
        for r in db.all(
            "SELECT c.id, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n"
            f" FROM conversations c WHERE {' AND '.join(where[:-1])} AND ({where[-1]})"
            " ORDER BY c.id LIMIT ?",
            (*params, limit),
        )
    ]


def start_run(db: Db, policy: str, *, dry_run: bool, action: str, cutoff: float, actor: str) -> int:
    return int(
        db.val(
            "INSERT INTO retention_runs (policy, dry_run, action, cutoff, started_at, actor)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (policy, 1 if dry_run else 0, action, cutoff, now_ts(), actor),
        )
    )


def apply_retention(db: Db, run_id: int, ids: Sequence[int], messages: int, *, action: str) -> None:
    """One page of a real run: the conversations deleted or redacted, and
    counted into the run."""
    if ids:
        if db.dialect == "sqlite":
            db.run("PRAGMA secure_delete = ON")
        _purge_conversations(db, ids, remove=action == "delete", text=REDACTED)
    note_run(db, run_id, ids, messages)


def note_run(db: Db, run_id: int, ids: Sequence[int], messages: int) -> None:
    r = db.one("SELECT ids FROM retention_runs WHERE id = ?", (run_id,))
    assert r is not None
    listed = jsoncol.loads(r["ids"], []) + list(ids)
    db.run(
        "UPDATE retention_runs SET ids = ?, conversations = ?, messages = messages + ?"
        " WHERE id = ?",
        (jsoncol.dumps(listed), len(listed), messages, run_id),
    )


def finish_run(db: Db, run_id: int) -> dict[str, Any]:
    db.run("UPDATE retention_runs SET finished_at = ? WHERE id = ?", (now_ts(), run_id))
    run = get_run(db, run_id)
    assert run is not None
    add_audit(
        db,
        str(run["actor"]),
        "retention_dry_run" if run["dry_run"] else "retention_run",
        detail={
            k: run[k] for k in ("id", "policy", "action", "cutoff", "conversations", "messages")
        },
    )
    return run


def get_run(db: Db, run_id: int) -> dict[str, Any] | None:
    d = row_dict(db.one("SELECT * FROM retention_runs WHERE id = ?", (run_id,)))
    if d is not None:
        d["ids"] = jsoncol.loads(d["ids"], [])
        d["dry_run"] = bool(d["dry_run"])
    return d


def list_runs(db: Db, limit: int = 50) -> list[dict[str, Any]]:
    out = []
    for r in db.all(
        "SELECT id, policy, dry_run, action, cutoff, started_at, finished_at, conversations,"
        " messages, actor FROM retention_runs ORDER BY id DESC LIMIT ?",
        (limit,),
    ):
        d = row_dict(r)
        assert d is not None
        d["dry_run"] = bool(d["dry_run"])
        out.append(d)
    return out


Progress = Callable[[int], None]
