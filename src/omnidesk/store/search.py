"""Full-text search over messages and contacts, on both engines, in any
language.

Functions (run them through ``store.read``)::

    search_messages(db, q, *, limit=20, before=None, visible_teams=None,
                    visible_user=None, conversation_id=None, channel=None)
        -> list[dict]   newest first; keyset pages with ``before`` = last id
    search_contacts(db, q, *, limit=20, visible_teams=None, visible_user=None)
        -> list[dict]   best match first (exact, then prefix), then most recent

Query syntax: words separated by spaces, or "quoted phrases"; every term
must occur (AND), as a case-insensitive substring, in the message's subject
or text (messages), or in the contact's name, addresses or display names
(contacts). Substrings, not words, so ``退款`` finds ``我想申请退款`` and
``5551234`` finds ``+15551234567`` with no word segmentation. An empty query
raises :class:`SearchError`.

Visibility is the inbox's (``web/deps.py:can_see``): with ``visible_teams``
given (an agent), only conversations of those teams or assigned to
``visible_user``; a contact is found only through such a conversation.
``None`` means everything (supervisors, admins).

Each message hit carries its conversation's subject, status, team and
assignee, the contact, and a ``snippet`` of plain text around the first
match with ``highlights``: [start, end) offsets of the terms within the
snippet, for the UI to mark up (never HTML, so nothing to escape here).

Engines: SQLite uses FTS5 tables with the trigram tokenizer (migration
0003, kept current by triggers) for terms of three characters or more and
LIKE for shorter ones; PostgreSQL uses ILIKE, served by pg_trgm GIN indexes
for terms of three characters or more. Both give the same results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import Db, placeholders, row_dict

MAX_TERMS = 8
MAX_TERM_CHARS = 100
SNIPPET_CHARS = 160
TRIGRAM = 3  # the shortest term an FTS5 trigram index can match


class SearchError(ValueError):
    """The query cannot be searched (empty, nothing but quotes...)."""


_TERM = re.compile(r'"([^"]*)"|(\S+)')


def parse_query(q: str) -> list[str]:
    """Terms of ``q``: quoted phrases and space-separated words, deduplicated
    case-insensitively, at most :data:`MAX_TERMS`."""
    terms: list[str] = []
    seen: set[str] = set()
    for m in _TERM.finditer(q or ""):
        term = " ".join((m.group(1) if m.group(1) is not None else m.group(2)).split())
        term = term.strip('"')[:MAX_TERM_CHARS]
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    if not terms:
        raise SearchError("empty search query")
    return terms[:MAX_TERMS]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _visibility(
    visible_teams: Sequence[str] | None, visible_user: str | None, alias: str = "c"
) -> tuple[str, list[Any]]:
    if visible_teams is None:
        return "", []
    parts = [f"{alias}.assignee = ?"]
    params: list[Any] = [visible_user]
    if visible_teams:
        parts.append(f"{alias}.team IN ({placeholders(len(visible_teams))})")
        params.extend(visible_teams)
    return "(" + " OR ".join(parts) + ")", params


def _text_conditions(
    db: Db, terms: list[str], columns: Sequence[str], fts: tuple[str, str] | None
) -> tuple[list[str], list[Any]]:
    """One condition per term: the term occurs in any of ``columns``.
    ``fts`` = (fts table, id expression) lets SQLite answer long terms from
    its trigram index in one MATCH."""
    clauses: list[str] = []
    params: list[Any] = []
    op = "ILIKE" if db.dialect == "postgres" else "LIKE"
    indexed = [t for t in terms if fts is not None and db.dialect == "sqlite" and len(t) >= TRIGRAM]
    if indexed and fts is not None:
        table, id_expr = fts
        clauses.append(f"{id_expr} IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)")
        params.append(" AND ".join(_fts_phrase(t) for t in indexed))
    for t in terms:
        if t in indexed:
            continue
        ors = " OR ".join(f"{col} {op} ? ESCAPE '\\'" for col in columns)
        clauses.append(f"({ors})")
        params.extend([_like(t)] * len(columns))
    return clauses, params


def snippet(
    text: str, terms: Sequence[str], width: int = SNIPPET_CHARS
) -> tuple[str, list[list[int]]]:
    """Plain text around the first match of any term, and [start, end)
    offsets of every term occurrence inside it."""
    flat = " ".join((text or "").split())
    low = flat.casefold()
    folded = [t.casefold() for t in terms]
    hits = [i for i in (low.find(t) for t in folded) if i >= 0]
    first = min(hits) if hits else 0
    start = max(0, first - width // 3)
    if start > 0:
        space = flat.rfind(" ", start - 15, start)
        start = space + 1 if space >= 0 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.find(" ", end - 15, end + 15)
        end = space if space >= 0 else end
    body = flat[start:end]
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    out = prefix + body + suffix
    marks: list[list[int]] = []
    body_low = body.casefold()
    for t in folded:
        i = body_low.find(t)
        while i >= 0 and t:
            marks.append([i + len(prefix), i + len(prefix) + len(t)])
            i = body_low.find(t, i + len(t))
    marks.sort()
    merged: list[list[int]] = []
    for a, b in marks:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return out, merged


def search_messages(
    db: Db,
    q: str,
    *,
    limit: int = 20,
    before: int | None = None,
    visible_teams: Sequence[str] | None = None,
    visible_user: str | None = None,
    conversation_id: int | None = None,
    channel: str | None = None,
) -> list[dict[str, Any]]:
    """Messages (inbound, outbound and notes) matching ``q``, newest first."""
    terms = parse_query(q)
    where, params = _text_conditions(db, terms, ("m.subject", "m.text"), ("messages_fts", "m.id"))
    vis, vis_params = _visibility(visible_teams, visible_user)
    if vis:
        where.append(vis)
        params.extend(vis_params)
    for sql, value in (
        ("m.id < ?", before),
        ("m.conversation_id = ?", conversation_id),
        ("m.channel = ?", channel),
    ):
        if value is not None:
            where.append(sql)
            params.append(value)
    rows = db.all(
        "SELECT m.id, m.conversation_id, m.direction, m.kind, m.channel, m.sender_address,"
        " m.sender_name, m.author, m.subject, m.text, m.created_at,"
        " c.subject AS conversation_subject, c.status, c.team, c.assignee, c.contact_id,"
        " k.name AS contact_name"
        " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " JOIN contacts k ON k.id = c.contact_id"
        f" WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT ?",
        (*params, limit),
    )
    out = []
    for r in rows:
        d = row_dict(r)
        assert d is not None
        text = d.pop("text") or ""
        source = text if any(t.casefold() in text.casefold() for t in terms) else d["subject"]
        d["snippet"], d["highlights"] = snippet(source or text, terms)
        out.append(d)
    return out


def search_contacts(
    db: Db,
    q: str,
    *,
    limit: int = 20,
    visible_teams: Sequence[str] | None = None,
    visible_user: str | None = None,
) -> list[dict[str, Any]]:
    """Contacts whose name, addresses or display names contain every term of
    ``q``: exact name or address first, then prefix matches, then the most
    recently updated. Merged-away contacts are left out (their identities
    belong to the surviving contact)."""
    terms = parse_query(q)
    if db.dialect == "sqlite":
        where, params = _text_conditions(
            db,
            terms,
            (
                "k.name",
                "(SELECT identities FROM contacts_fts WHERE rowid = k.id)",
            ),
            ("contacts_fts", "k.id"),
        )
    else:
        where, params = [], []
        for t in terms:
            where.append(
                "(k.name ILIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM identities i"
                " WHERE i.contact_id = k.id AND (i.address ILIKE ? ESCAPE '\\'"
                " OR i.display_name ILIKE ? ESCAPE '\\')))"
            )
            params.extend([_like(t)] * 3)
    where.append("k.merged_into IS NULL")
    vis, vis_params = _visibility(visible_teams, visible_user)
    if vis:
        where.append(f"EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = k.id AND {vis})")
        params.extend(vis_params)
    whole = " ".join(q.split()).strip('"').lower()
    rank = (
        "CASE WHEN lower(k.name) = ? OR EXISTS (SELECT 1 FROM identities i"
        " WHERE i.contact_id = k.id AND lower(i.address) = ?) THEN 0"
        " WHEN lower(k.name) LIKE ? ESCAPE '\\' THEN 1 ELSE 2 END"
    )
    prefix = whole.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = db.all(
        f"SELECT k.id, k.name, k.created_at, k.updated_at, {rank} AS rank"
        f" FROM contacts k WHERE {' AND '.join(where)}"
        " ORDER BY rank, k.updated_at DESC, k.id DESC LIMIT ?",
        (whole, whole, prefix, *params, limit),
    )
    out = []
    for r in rows:
        d = row_dict(r)
        assert d is not None
        d.pop("rank")
        d["identities"] = [
            row_dict(i)
            for i in db.all(
                "SELECT kind, address, display_name FROM identities WHERE contact_id = ?"
                " ORDER BY id",
                (d["id"],),
            )
        ]
        out.append(d)
    return out
