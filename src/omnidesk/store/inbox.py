"""Read views for the inbox API: conversation lists and full conversations.

Two orders: ``newest`` (id descending, keyset on id) and ``urgency`` (the
inbox default: priority first, then the first-response due time - none last -
then age, oldest first). Both are served by an index walk
(``conversations_urgency`` in migration 0002), so a page costs the same on a
store of a million messages as on an empty one.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..identity import visitor_alias
from ..model import now_ts
from . import conversations as convs
from . import jsoncol
from .audit import audit_for_conversation
from .base import Db, placeholders, row_dict
from .users import users_named

# The SLA key as the index spells it: conversations without a due time last.
SLA_KEY = "COALESCE(c.sla_due_at, 1e18)"
NO_SLA = 1e18


@dataclass(slots=True)
class ConversationFilter:
    status: str | None = None
    category: str | None = None
    team: str | None = None
    assignee: str | None = None  # a username, or "none" for unassigned
    channel: str | None = None
    contact_id: int | None = None
    priority: str | None = None
    tag: str | None = None
    teams: Sequence[str] | None = None  # only these teams' conversations ("my teams")
    breached: bool | None = None  # first-response due time passed
    # Visibility: None means everything; otherwise only these teams' conversations
    # plus those assigned to ``visible_user``.
    visible_teams: Sequence[str] | None = None
    visible_user: str | None = None
    extra: list[tuple[str, list[Any]]] = field(default_factory=list)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for col in ("status", "category", "team", "channel", "priority"):
            v = getattr(self, col)
            if v is not None:
                clauses.append(f"c.{col} = ?")
                params.append(v)
        if self.assignee == "none":
            clauses.append("c.assignee IS NULL")
        elif self.assignee is not None:
            clauses.append("c.assignee = ?")
            params.append(self.assignee)
        if self.contact_id is not None:
            clauses.append("c.contact_id = ?")
            params.append(self.contact_id)
        if self.tag is not None:
            # Tags are a JSON list of strings in TEXT (both engines): match the
            # quoted element, with LIKE's wildcards escaped.
            quoted = jsoncol.dumps(self.tag)
            esc = quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("c.tags LIKE ? ESCAPE '\\'")
            params.append(f"%{esc}%")
        if self.teams is not None:
            if self.teams:
                clauses.append(f"c.team IN ({placeholders(len(self.teams))})")
                params.extend(self.teams)
            else:
                clauses.append("1 = 0")
        if self.breached is not None:
            clauses.append("c.sla_due_at < ?" if self.breached else "NOT (c.sla_due_at < ?)")
            params.append(now_ts())
        if self.visible_teams is not None:
            vis = ["c.assignee = ?"]
            params_vis: list[Any] = [self.visible_user]
            if self.visible_teams:
                vis.append(f"c.team IN ({placeholders(len(self.visible_teams))})")
                params_vis.extend(self.visible_teams)
            clauses.append("(" + " OR ".join(vis) + ")")
            params.extend(params_vis)
        for sql, p in self.extra:
            clauses.append(sql)
            params.extend(p)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_SELECT = (
    f"SELECT {', '.join('c.' + c.strip() for c in convs.CONVERSATION_COLUMNS.split(','))},"
    " k.name AS contact_name FROM conversations c JOIN contacts k ON k.id = c.contact_id"
)


def encode_cursor(row: dict[str, Any]) -> str:
    """An opaque, URL-safe position after ``row`` in urgency order."""
    sla = row["sla_due_at"] if row["sla_due_at"] is not None else NO_SLA
    raw = f"{row['priority_rank']}:{sla!r}:{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        rank, sla, cid = raw.split(":")
        return int(rank), float(sla), int(cid)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("malformed cursor") from None


def list_conversations(
    db: Db,
    flt: ConversationFilter,
    *,
    limit: int = 50,
    before: int | None = None,
    sort: str = "newest",
    cursor: str | None = None,
    reader: str | None = None,
) -> list[dict[str, Any]]:
    """A page of conversations. ``newest``: keyset on id (``before`` = last id
    of the previous page). ``urgency``: keyset on (priority, SLA due, id)
    (``cursor`` from :func:`encode_cursor` of the previous page's last row).
    Each row has a ``title`` (the subject, else the first words of the first
    message) and a ``contact_label``; with ``reader`` (a username), ``new``
    (never opened by them) and ``unread`` (the customer wrote since)."""
    rows = _page(db, flt, limit=limit, before=before, sort=sort, cursor=cursor)
    out = []
    for r in rows:
        d = convs.conversation_dict(r)
        assert d is not None
        out.append(d)
    label_rows(db, out)
    if reader is not None:
        mark_unread(db, out, reader)
    return out


def _page(
    db: Db,
    flt: ConversationFilter,
    *,
    limit: int,
    before: int | None,
    sort: str,
    cursor: str | None,
) -> list[Any]:
    where, params = flt.where()
    conj = " AND " if where else " WHERE "
    if sort == "urgency":
        order = f"c.priority_rank DESC, {SLA_KEY}, c.id"
        if cursor is None:
            rows = db.all(f"{_SELECT}{where} ORDER BY {order} LIMIT ?", (*params, limit))
        else:
            # The keyset "after (rank, sla, id)" as three ranges, each a plain
            # seek on the urgency index (one OR-ed condition makes SQLite walk
            # from the start instead), taken in order until the page is full.
            rank, sla, cid = decode_cursor(cursor)
            rows = []
            for extra, extra_params in (
                (f"c.priority_rank = ? AND {SLA_KEY} = ? AND c.id > ?", [rank, sla, cid]),
                (f"c.priority_rank = ? AND {SLA_KEY} > ?", [rank, sla]),
                ("c.priority_rank < ?", [rank]),
            ):
                need = limit - len(rows)
                if need <= 0:
                    break
                rows += db.all(
                    f"{_SELECT}{where}{conj}{extra} ORDER BY {order} LIMIT ?",
                    (*params, *extra_params, need),
                )
    elif sort == "newest":
        if before is not None:
            where += conj + "c.id < ?"
            params.append(before)
        rows = db.all(f"{_SELECT}{where} ORDER BY c.id DESC LIMIT ?", (*params, limit))
    else:
        raise ValueError("sort must be 'newest' or 'urgency'")
    return rows


TITLE_WORDS = 8


def first_words(text: str | None, n: int = TITLE_WORDS) -> str:
    words = (text or "").split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def label_rows(db: Db, rows: list[dict[str, Any]]) -> None:
    """``title``: the subject, else the first words of the conversation's
    first message; ``contact_label``: the contact's name, else a readable
    alias and the channel (a chat visitor known only by a random id)."""
    untitled = [r["id"] for r in rows if not (r.get("subject") or "").strip()]
    firsts: dict[int, str] = {}
    if untitled:
        for m in db.all(
            "SELECT conversation_id, text FROM messages WHERE id IN (SELECT MIN(id) FROM messages"
            f" WHERE conversation_id IN ({placeholders(len(untitled))}) GROUP BY conversation_id)",
            tuple(untitled),
        ):
            firsts[int(m["conversation_id"])] = m["text"] or ""
    for r in rows:
        subject = (r.get("subject") or "").strip()
        r["title"] = subject or first_words(firsts.get(r["id"])) or "(no subject)"
        r["contact_label"] = contact_label(r.get("contact_name"), r["contact_id"], r["channel"])


def contact_label(name: str | None, contact_id: int, channel: str | None) -> str:
    """The contact's name; a name that is only a random id (a chat visitor
    named after their address) counts as none."""
    name = (name or "").strip()
    if name and not RANDOM_ID.fullmatch(name):
        return name
    return f"{visitor_alias(contact_id)} ({channel or 'visitor'})"


RANDOM_ID = re.compile(r"[0-9a-fA-F]{20,}|[0-9a-fA-F-]{36}")


def mark_unread(db: Db, rows: list[dict[str, Any]], reader: str) -> None:
    """``new`` and ``unread`` for ``reader``: one primary-key look-up a row."""
    if not rows:
        return
    ids = [r["id"] for r in rows]
    read = {
        int(x["conversation_id"]): float(x["read_at"])
        for x in db.all(
            "SELECT conversation_id, read_at FROM conversation_reads WHERE username = ?"
            f" AND conversation_id IN ({placeholders(len(ids))})",
            (reader, *ids),
        )
    }
    for r in rows:
        at = read.get(r["id"])
        r["new"] = at is None
        wrote = r.get("last_customer_at") or r.get("last_inbound_at")
        r["unread"] = at is None or (wrote is not None and wrote > at)


def mark_read(db: Db, conversation_id: int, reader: str) -> None:
    """``reader`` has seen the conversation as it is now."""
    db.run(
        "INSERT INTO conversation_reads (username, conversation_id, read_at) VALUES (?, ?, ?)"
        " ON CONFLICT (username, conversation_id) DO UPDATE SET read_at = excluded.read_at",
        (reader, conversation_id, now_ts()),
    )


def conversation_access(db: Db, conversation_id: int) -> dict[str, Any] | None:
    """Just what a permission check needs (team, assignee, contact)."""
    return row_dict(
        db.one(
            "SELECT id, team, assignee, contact_id, status FROM conversations WHERE id = ?",
            (conversation_id,),
        )
    )


def get_conversation_full(db: Db, conversation_id: int) -> dict[str, Any] | None:
    conv = convs.get_conversation_row(db, conversation_id)
    if conv is None:
        return None
    contact = db.one("SELECT id, name FROM contacts WHERE id = ?", (conv["contact_id"],))
    conv["contact"] = {"id": contact["id"], "name": contact["name"]} if contact else None
    conv["messages"] = convs.message_rows(db, conversation_id)
    name_authors(db, conv["messages"])
    conv["contact_name"] = contact["name"] if contact else None
    label_rows(db, [conv])
    conv["audit"] = audit_for_conversation(db, conversation_id)
    return conv


def name_authors(db: Db, messages: list[dict[str, Any]]) -> None:
    """``author_name`` on each message a person of the team wrote
    (``agent:bob`` → their display name)."""
    names = sorted({m["author"].split(":", 1)[1] for m in messages if _agent(m.get("author"))})
    known = users_named(db, names)
    for m in messages:
        author = m.get("author")
        if author and _agent(author):
            user = str(author).split(":", 1)[1]
            m["author_name"] = (known.get(user) or {}).get("display_name") or user


def _agent(author: str | None) -> bool:
    # A person's author is "role:username" (web/auth.py Principal.actor).
    return bool(author) and str(author).startswith(("agent:", "supervisor:", "admin:"))
