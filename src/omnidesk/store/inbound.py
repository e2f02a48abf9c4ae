"""The raw intake table and quarantine.

``inbound`` keeps every accepted envelope's raw bytes forever, unique on
(channel, external_id). The pipeline claims ``pending`` rows, and marks them
``done`` or ``quarantined`` in the same transaction that stores their results,
so a crash at any point leaves a row pending and it is simply redone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Envelope, now_ts
from . import jsoncol
from .base import Db, Row, row_dict


@dataclass(slots=True)
class InboundRow:
    id: int
    envelope: Envelope
    attempts: int
    quarantined: bool  # a quarantine entry exists (this is a retry)


def insert_envelopes(db: Db, envelopes: Sequence[Envelope]) -> list[bool]:
    """Insert each envelope unless (channel, external_id) exists. Returns, per
    envelope, whether it was new. One statement per envelope, one transaction
    for the whole group (the group commit)."""
    if db.dialect == "postgres" and len(envelopes) > 1:
        return _insert_envelopes_pg(db, envelopes)
    out: list[bool] = []
    sql = (
        "INSERT INTO inbound (channel, external_id, received_at, content_type, payload, meta)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, external_id) DO NOTHING"
    )
    for env in envelopes:
        n = db.run(
            sql,
            (
                env.channel,
                env.external_id,
                env.received_at,
                env.content_type,
                env.payload,
                jsoncol.dumps(dict(env.meta)),
            ),
        )
        out.append(n > 0)
    return out


def _insert_envelopes_pg(db: Db, envelopes: Sequence[Envelope]) -> list[bool]:
    """The whole group in one statement (a round trip per envelope is most of
    the intake's cost on PostgreSQL). A key twice in the group: the first wins."""
    rows = db.all(
        "INSERT INTO inbound (channel, external_id, received_at, content_type, payload, meta)"
        " SELECT * FROM unnest(?::text[], ?::text[], ?::float8[], ?::text[], ?::bytea[],"
        " ?::text[]) ON CONFLICT (channel, external_id) DO NOTHING RETURNING channel, external_id",
        (
            [e.channel for e in envelopes],
            [e.external_id for e in envelopes],
            [float(e.received_at) for e in envelopes],
            [e.content_type for e in envelopes],
            [bytes(e.payload) for e in envelopes],
            [jsoncol.dumps(dict(e.meta)) for e in envelopes],
        ),
    )
    fresh = {(r[0], r[1]) for r in rows}
    out = []
    for e in envelopes:
        key = (e.channel, e.external_id)
        out.append(key in fresh)
        fresh.discard(key)
    return out


def _row_to_inbound(r: Row) -> InboundRow:
    return InboundRow(
        id=r["id"],
        envelope=Envelope(
            channel=r["channel"],
            external_id=r["external_id"],
            payload=bytes(r["payload"]),
            content_type=r["content_type"],
            received_at=r["received_at"],
            meta=jsoncol.loads(r["meta"], {}),
        ),
        attempts=r["attempts"],
        quarantined=r["qid"] is not None,
    )


_ROWS = (
    "SELECT i.id, i.channel, i.external_id, i.received_at, i.content_type, i.payload, i.meta,"
    " i.attempts, q.id AS qid FROM inbound i LEFT JOIN quarantine q ON q.inbound_id = i.id"
)
_CLAIM = _ROWS + " WHERE i.state = 'pending' AND i.id > ? ORDER BY i.id LIMIT ?"
_PENDING_IDS = "SELECT id FROM inbound WHERE state = 'pending' ORDER BY id LIMIT ?"
# SQLite reads pending rows this many at a time: a batch cut short by its
# time budget then has not read (payloads included) rows it will not process.
CLAIM_CHUNK = 16


def claim_pending(db: Db, limit: int) -> Iterator[InboundRow]:
    """Pending rows, oldest first, up to ``limit``. In PostgreSQL they are
    claimed at once and stay locked until the transaction ends (other instances
    skip them); in SQLite, where the transaction holds the only write lock,
    they are read a chunk at a time as the caller asks for them."""
    if db.dialect == "postgres":
        rows = db.all(
            "SELECT i.id, i.channel, i.external_id, i.received_at, i.content_type, i.payload,"
            " i.meta, i.attempts, (SELECT q.id FROM quarantine q WHERE q.inbound_id = i.id) AS qid"
            " FROM inbound i WHERE i.state = 'pending' ORDER BY i.id LIMIT ?"
            " FOR UPDATE OF i SKIP LOCKED",
            (limit,),
        )
        yield from (_row_to_inbound(r) for r in rows)
        return
    after, left = 0, limit
    while left > 0:
        chunk = db.all(_CLAIM, (after, min(left, CLAIM_CHUNK)))
        for r in chunk:
            yield _row_to_inbound(r)
        if len(chunk) < min(left, CLAIM_CHUNK):
            return
        left -= len(chunk)
        after = int(chunk[-1]["id"])


def peek_pending(
    db: Db, limit: int, known: Collection[int] = ()
) -> tuple[list[int], list[InboundRow]]:
    """The ids of the oldest ``limit`` pending rows, and those rows, payloads
    included, but for the ``known`` ones; nothing is claimed (SQLite: a
    pipeline that is the queue's only consumer reads ahead with this, and
    knows most of what it reads ahead from the time before)."""
    ids = [int(r["id"]) for r in db.all(_PENDING_IDS, (limit,))]
    new = [i for i in ids if i not in known]
    if not new:
        return ids, []
    marks = ", ".join("?" * len(new))
    rows = db.all(_ROWS + f" WHERE i.id IN ({marks}) AND i.state = 'pending' ORDER BY i.id", new)
    return ids, [_row_to_inbound(r) for r in rows]


def get_pending(db: Db, inbound_id: int) -> InboundRow | None:
    """One row, if it is still pending."""
    r = db.one(_ROWS + " WHERE i.id = ? AND i.state = 'pending'", (inbound_id,))
    return None if r is None else _row_to_inbound(r)


def count_pending(db: Db) -> int:
    return int(db.val("SELECT COUNT(*) FROM inbound WHERE state = 'pending'") or 0)


def pending_summary(db: Db) -> tuple[int, int | None]:
    """(envelopes pending, the oldest one's id): the pipeline works in id
    order, so while the oldest stays the same no pipeline anywhere is
    getting through the queue."""
    row = db.one("SELECT COUNT(*) AS n, MIN(id) AS oldest FROM inbound WHERE state = 'pending'")
    if row is None or not row["n"]:
        return 0, None
    return int(row["n"]), int(row["oldest"])


def mark_done(db: Db, inbound_id: int, note: str | None = None, *, quarantined: bool) -> None:
    now = now_ts()
    db.run(
        "UPDATE inbound SET state = 'done', processed_at = ?, attempts = attempts + 1, note = ?"
        " WHERE id = ?",
        (now, note, inbound_id),
    )
    if quarantined:
        db.run(
            "UPDATE quarantine SET state = 'resolved', updated_at = ? WHERE inbound_id = ?",
            (now, inbound_id),
        )


def quarantine(db: Db, row: InboundRow, error: str, detail: str | None) -> int:
    """Move an envelope to quarantine (its raw bytes stay in ``inbound``)."""
    now = now_ts()
    db.run(
        "UPDATE inbound SET state = 'quarantined', processed_at = ?, attempts = attempts + 1,"
        " note = ? WHERE id = ?",
        (now, error[:500], row.id),
    )
    qid = db.val(
        "INSERT INTO quarantine (inbound_id, channel, external_id, error, detail, state,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?)"
        " ON CONFLICT (inbound_id) DO UPDATE SET error = excluded.error,"
        " detail = excluded.detail, state = 'open', updated_at = excluded.updated_at,"
        " retries = quarantine.retries + 1 RETURNING id",
        (row.id, row.envelope.channel, row.envelope.external_id, error, detail, now, now),
    )
    return int(qid)


def list_quarantine(
    db: Db, *, state: str | None = "open", limit: int = 100
) -> list[dict[str, Any]]:
    where = "WHERE q.state = ?" if state else ""
    params: tuple[Any, ...] = (state, limit) if state else (limit,)
    rows = db.all(
        "SELECT q.id, q.inbound_id, q.channel, q.external_id, q.error, q.state, q.created_at,"
        " q.updated_at, q.retries, i.content_type, LENGTH(i.payload) AS size"
        f" FROM quarantine q JOIN inbound i ON i.id = q.inbound_id {where}"
        " ORDER BY q.id DESC LIMIT ?",
        params,
    )
    return [row_dict(r) for r in rows]  # type: ignore[misc]


def get_quarantine(db: Db, qid: int) -> dict[str, Any] | None:
    r = db.one(
        "SELECT q.*, i.content_type, i.payload, i.meta, i.received_at FROM quarantine q"
        " JOIN inbound i ON i.id = q.inbound_id WHERE q.id = ?",
        (qid,),
    )
    d = row_dict(r)
    if d is not None:
        d["payload"] = bytes(d["payload"])
        d["meta"] = jsoncol.loads(d["meta"], {})
    return d


def retry_quarantine(db: Db, qids: Sequence[int] | None) -> list[int]:
    """Put quarantined envelopes back in the queue (all open ones when ``qids``
    is None). Returns the quarantine ids requeued."""
    if qids is None:
        found = [r["id"] for r in db.all("SELECT id FROM quarantine WHERE state = 'open'")]
    else:
        found = [
            r["id"]
            for q in qids
            for r in db.all("SELECT id FROM quarantine WHERE id = ? AND state = 'open'", (q,))
        ]
    now = now_ts()
    for qid in found:
        db.run("UPDATE quarantine SET state = 'retrying', updated_at = ? WHERE id = ?", (now, qid))
        db.run(
            "UPDATE inbound SET state = 'pending'"
            " WHERE id = (SELECT inbound_id FROM quarantine WHERE id = ?)",
            (qid,),
        )
    return found
