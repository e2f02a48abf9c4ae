"""The scheduler's data: which conversations to look at, their facts, its
per-conversation state (``service_state``) and agents' notifications.

An evaluation is written with :func:`claim_state`: the state row's version
must still be the one read (a new row must not exist yet), so when two
instances look at one conversation at once, the second one's write changes
nothing and it drops what it would have fired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import jsoncol
from .base import Db, chunks, placeholders, row_dict
from .conversations import CONVERSATION_COLUMNS
from .customers import customer_facts_many

OPEN_STATUSES = ("open", "pending", "snoozed")

_CONV = ", ".join("c." + c.strip() for c in CONVERSATION_COLUMNS.split(","))
_STATE = (
    "s.version AS s_version, s.seen AS s_seen, s.status AS s_status, s.check_at AS s_check_at,"
    " s.policy AS s_policy, s.first_due AS s_first_due, s.next_start AS s_next_start,"
    " s.next_due AS s_next_due, s.resolution_due AS s_resolution_due, s.fired AS s_fired,"
    " s.reported_first AS s_reported_first, s.reported_resolved AS s_reported_resolved"
)


def due_ids(db: Db, now: float, limit: int) -> list[int]:
    """Conversations whose next look is due (a due time, a rule's threshold)."""
    return [
        int(r["conversation_id"])
        for r in db.all(
            "SELECT conversation_id FROM service_state WHERE check_at <= ?"
            " ORDER BY check_at LIMIT ?",
            (now, limit),
        )
    ]


def changed_ids(db: Db, limit: int) -> list[int]:
    """Conversations that changed since the scheduler last looked: open ones
    it has not seen in this version, and those it last saw open."""
    found = [
        int(r["id"])
        for r in db.all(
            "SELECT c.id FROM conversations c LEFT JOIN service_state s"
            " ON s.conversation_id = c.id"
            f" WHERE c.status IN ({placeholders(len(OPEN_STATUSES))})"
            " AND (s.seen IS NULL OR s.seen <> c.updated_at) LIMIT ?",
            (*OPEN_STATUSES, limit),
        )
    ]
    if len(found) < limit:
        found += [
            int(r["conversation_id"])
            for r in db.all(
                "SELECT s.conversation_id FROM service_state s"
                " JOIN conversations c ON c.id = s.conversation_id"
                " WHERE s.status <> 'resolved' AND c.status = 'resolved'"
                " AND c.updated_at <> s.seen LIMIT ?",
                (limit - len(found),),
            )
        ]
    return found


def open_ids(db: Db, after: int, limit: int) -> list[int]:
    """Conversations not resolved, by id from ``after`` (a re-evaluation of
    all of them after the rules changed, a page at a time)."""
    return [
        int(r["id"])
        for r in db.all(
            f"SELECT id FROM conversations WHERE status IN ({placeholders(len(OPEN_STATUSES))})"
            " AND id > ? ORDER BY id LIMIT ?",
            (*OPEN_STATUSES, after, limit),
        )
    ]


def load(db: Db, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Each conversation with what the evaluation needs: the contact's
    attributes (and satisfaction figure), the scheduler's state, the latest
    survey of the conversation and the contact's latest survey."""
    out: list[dict[str, Any]] = []
    for part in chunks(sorted(set(ids)), 500):
        rows = db.all(
            f"SELECT {_CONV}, {_STATE}, k.attributes AS k_attributes,"
            " k.merged_into AS k_merged_into, cs.score AS k_score, cs.at_risk AS k_at_risk"
            " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
            " LEFT JOIN service_state s ON s.conversation_id = c.id"
            " LEFT JOIN contact_scores cs ON cs.contact_id = c.contact_id"
            f" WHERE c.id IN ({placeholders(len(part))})",
            tuple(part),
        )
        surveys = _latest_surveys(db, part)
        contacts = {int(r["contact_id"]) for r in rows}
        last_survey = _contacts_last_survey(db, contacts)
        # Company, purchases and events, as message rules see them (store/customers.py).
        facts = customer_facts_many(db, sorted(contacts))
        for r in rows:
            d = row_dict(r)
            assert d is not None
            conv = {k: v for k, v in d.items() if not k.startswith(("s_", "k_"))}
            conv["tags"] = jsoncol.loads(conv.get("tags"), [])
            attrs = {
                **jsoncol.loads(d["k_attributes"], {}),
                **facts.get(int(d["contact_id"]), {}),
            }
            if d["k_score"] is not None:
                attrs = {**attrs, "satisfaction": d["k_score"], "at_risk": bool(d["k_at_risk"])}
            conv["contact"] = attrs
            conv["contact_merged"] = d["k_merged_into"] is not None
            conv["contact_last_survey_at"] = last_survey.get(int(conv["contact_id"]))
            sv = surveys.get(int(conv["id"]))
            conv["survey_state"] = sv["state"] if sv else None
            conv["survey_id"] = sv["id"] if sv else None
            conv["survey_send_at"] = sv["send_at"] if sv else None
            conv["survey_resolved_at"] = sv["resolved_at"] if sv else None
            conv["rating"] = sv["rating"] if sv else None
            conv["loyalty"] = sv["loyalty_score"] if sv else None
            prior = None
            if d["s_version"] is not None:
                prior = {k[2:]: v for k, v in d.items() if k.startswith("s_")}
                prior["fired"] = jsoncol.loads(prior["fired"], {})
            conv["_prior"] = prior
            out.append(conv)
    return out


def _latest_surveys(db: Db, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for r in db.all(
        "SELECT id, conversation_id, state, send_at, resolved_at, rating, loyalty_score"
        f" FROM surveys WHERE conversation_id IN ({placeholders(len(ids))}) ORDER BY id",
        tuple(ids),
    ):
        d = row_dict(r)
        assert d is not None
        prev = found.get(int(d["conversation_id"]))
        # The latest survey, but the latest rating given stays known.
        if prev is not None and d["rating"] is None:
            d["rating"], d["loyalty_score"] = prev["rating"], prev["loyalty_score"]
        found[int(d["conversation_id"])] = d
    return found


def _contacts_last_survey(db: Db, contacts: Iterable[int]) -> dict[int, float]:
    ids = sorted(contacts)
    out: dict[int, float] = {}
    for part in chunks(ids, 500):
        for r in db.all(
            "SELECT contact_id, MAX(created_at) AS at FROM surveys"
            f" WHERE contact_id IN ({placeholders(len(part))})"
            " AND state IN ('scheduled', 'sent', 'answered') GROUP BY contact_id",
            tuple(part),
        ):
            out[int(r["contact_id"])] = float(r["at"])
    return out


def claim_state(
    db: Db,
    conversation_id: int,
    prior_version: int | None,
    seen: float,
    state: Mapping[str, Any],
    now: float,
) -> int | None:
    """Write the evaluation's state if nobody did since it was read; returns
    the new version, or None when another evaluation got there first."""
    cols = (
        "status",
        "check_at",
        "policy",
        "calendar",
        "first_due",
        "next_start",
        "next_due",
        "resolution_due",
        "fired",
        "reported_first",
        "reported_resolved",
    )
    values = [jsoncol.dumps(state[c]) if c == "fired" else state[c] for c in cols]
    if prior_version is None:
        n = db.run(
            f"INSERT INTO service_state (conversation_id, version, seen, {', '.join(cols)},"
            f" evaluated_at) VALUES (?, 1, ?, {placeholders(len(cols))}, ?)"
            " ON CONFLICT (conversation_id) DO NOTHING",
            (conversation_id, seen, *values, now),
        )
        return 1 if n == 1 else None
    n = db.run(
        f"UPDATE service_state SET version = version + 1, seen = ?,"
        f" {', '.join(c + ' = ?' for c in cols)}, evaluated_at = ?"
        " WHERE conversation_id = ? AND version = ?",
        (seen, *values, now, conversation_id, prior_version),
    )
    return prior_version + 1 if n == 1 else None


def look_again(db: Db, conversation_id: int, at: float) -> None:
    """Have the scheduler look at a conversation at ``at`` at the latest (a
    survey answer, say, that rules may react to)."""
    db.run(
        "UPDATE service_state SET check_at = ? WHERE conversation_id = ?"
        " AND (check_at IS NULL OR check_at > ?)",
        (at, conversation_id, at),
    )


def get_state(db: Db, conversation_id: int) -> dict[str, Any] | None:
    d = row_dict(
        db.one(
            "SELECT conversation_id, version, seen, status, check_at, policy, calendar, first_due,"
            " next_start, next_due, resolution_due, fired, reported_first, reported_resolved,"
            " evaluated_at FROM service_state WHERE conversation_id = ?",
            (conversation_id,),
        )
    )
    if d is not None:
        d["fired"] = jsoncol.loads(d["fired"], {})
    return d


# -- notifications ---------------------------------------------------------------


def notify(
    db: Db,
    usernames: Iterable[str],
    *,
    kind: str,
    text: str,
    conversation_id: int | None,
    at: float,
    email: bool = False,
) -> list[dict[str, Any]]:
    """In-app notifications, one per user; with ``email`` each also queued
    for an e-mail copy (sent by ``service/notices.py``)."""
    out = []
    state = "pending" if email else None
    for name in dict.fromkeys(u for u in usernames if u):
        nid = db.val(
            "INSERT INTO notifications"
            " (username, at, kind, conversation_id, text, email_state, email_next_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (name, at, kind, conversation_id, text, state, at if email else None),
        )
        out.append(
            {
                "id": int(nid),
                "username": name,
                "kind": kind,
                "conversation_id": conversation_id,
                "text": text,
                "at": at,
            }
        )
    return out


def notifications_for(
    db: Db, username: str, *, unread_only: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    where = " AND read_at IS NULL" if unread_only else ""
    return [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT id, at, kind, conversation_id, text, read_at FROM notifications"
                f" WHERE username = ?{where} ORDER BY id DESC LIMIT ?",
                (username, limit),
            )
        )
        if d is not None
    ]


def unread_count(db: Db, username: str) -> int:
    return int(
        db.val(
            "SELECT COUNT(*) FROM notifications WHERE username = ? AND read_at IS NULL",
            (username,),
        )
    )


def mark_read(db: Db, username: str, ids: Sequence[int] | None, at: float) -> int:
    if ids is None:
        return db.run(
            "UPDATE notifications SET read_at = ? WHERE username = ? AND read_at IS NULL",
            (at, username),
        )
    if not ids:
        return 0
    return db.run(
        "UPDATE notifications SET read_at = ? WHERE username = ? AND read_at IS NULL"
        f" AND id IN ({placeholders(len(ids))})",
        (at, username, *ids),
    )


def people(db: Db, roles: Sequence[str], team: str | None) -> dict[str, list[str]]:
    """Usernames for the notify roles: team members, supervisors."""
    out: dict[str, list[str]] = {}
    if "team" in roles and team:
        out["team"] = [
            r["username"]
            for r in db.all(
                "SELECT username FROM team_members WHERE team = ? ORDER BY position", (team,)
            )
        ]
    if "supervisors" in roles:
        out["supervisors"] = [
            r["username"]
            for r in db.all(
                "SELECT username FROM users WHERE role IN ('supervisor', 'admin')"
                " AND disabled = 0 ORDER BY username"
            )
        ]
    return out


def user_emails(db: Db, usernames: Sequence[str]) -> dict[str, str]:
    if not usernames:
        return {}
    return {
        r["username"]: r["email"]
        for r in db.all(
            f"SELECT username, email FROM users WHERE username IN ({placeholders(len(usernames))})"
            " AND email IS NOT NULL AND disabled = 0",
            tuple(usernames),
        )
    }


def claim_notice_mail(db: Db, now: float, lease: float, limit: int = 20) -> list[dict[str, Any]]:
    """Notices whose e-mail copy is due, claimed until ``now + lease`` (on
    PostgreSQL, several instances claim different ones): each with the
    agent's address and name, and the conversation's subject."""
    rows = [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT n.id, n.username, n.kind, n.text, n.conversation_id, n.at,"
                " n.email_attempts, u.email, u.display_name, u.disabled, c.subject"
                " FROM notifications n LEFT JOIN users u ON u.username = n.username"
                " LEFT JOIN conversations c ON c.id = n.conversation_id"
                " WHERE n.email_state IN ('pending', 'sending') AND n.email_next_at <= ?"
                " ORDER BY n.email_next_at, n.id LIMIT ?",
                (now, limit),
            )
        )
        if d is not None
    ]
    claimed = []
    for r in rows:
        # Claimed only if nobody claimed it since it was read.
        got = db.val(
            "UPDATE notifications SET email_state = 'sending', email_next_at = ?"
            " WHERE id = ? AND email_state IN ('pending', 'sending') AND email_next_at <= ?"
            " RETURNING id",
            (now + lease, r["id"], now),
        )
        if got is not None:
            claimed.append(r)
    return claimed


def finish_notice_mail(
    db: Db,
    notification_id: int,
    state: str,
    *,
    error: str | None = None,
    attempts: int | None = None,
    next_at: float | None = None,
) -> None:
    """Record how an e-mail copy went: 'sent', 'skipped', 'failed', or back
    to 'pending' for another try at ``next_at``."""
    db.run(
        "UPDATE notifications SET email_state = ?, email_error = ?,"
        " email_attempts = COALESCE(?, email_attempts), email_next_at = ? WHERE id = ?",
        (state, error, attempts, next_at, notification_id),
    )


def notice_mail_states(db: Db) -> dict[str, int]:
    """How many notices' e-mail copies are in each state (for metrics and tests)."""
    return {
        str(r[0]): int(r[1])
        for r in db.all(
            "SELECT email_state, COUNT(*) FROM notifications"
            " WHERE email_state IS NOT NULL GROUP BY email_state"
        )
    }
