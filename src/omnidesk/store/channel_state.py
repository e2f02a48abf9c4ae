"""Small durable state a channel keeps between runs: an IMAP mailbox's UID
cursor and UIDVALIDITY, a poller's offset. One row per (channel, key); the
value is text (JSON when structured, see ``store/jsoncol.py``).

Writing the cursor is its own short transaction, made only after the
envelopes it covers were accepted: a crash in between means the same UIDs
are fetched again, and intake dedupes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .base import Db, chunks, placeholders


def get_state(db: Db, channel: str, key: str) -> str | None:
    value = db.val("SELECT value FROM channel_state WHERE channel = ? AND key = ?", (channel, key))
    return None if value is None else str(value)


def get_states(db: Db, channel: str, prefix: str = "") -> dict[str, str]:
    """Every key of ``channel`` starting with ``prefix``."""
    rows = db.all("SELECT key, value FROM channel_state WHERE channel = ? ORDER BY key", (channel,))
    return {r["key"]: r["value"] for r in rows if str(r["key"]).startswith(prefix)}


def set_states(db: Db, channel: str, values: Mapping[str, str | None]) -> None:
    """Upsert several keys in one transaction; ``None`` deletes a key."""
    for key, value in values.items():
        if value is None:
            db.run("DELETE FROM channel_state WHERE channel = ? AND key = ?", (channel, key))
        else:
            db.run(
                "INSERT INTO channel_state (channel, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value",
                (channel, key, value),
            )


def set_state(db: Db, channel: str, key: str, value: str | None) -> None:
    set_states(db, channel, {key: value})


def known_external_ids(db: Db, channel: str, external_ids: Sequence[str]) -> set[str]:
    """Which of ``external_ids`` the intake already holds for ``channel``
    (lets a re-sync skip downloading bodies it would only dedupe)."""
    found: set[str] = set()
    for part in chunks(list(dict.fromkeys(external_ids)), 500):
        rows = db.all(
            "SELECT external_id FROM inbound WHERE channel = ?"
            f" AND external_id IN ({placeholders(len(part))})",
            (channel, *part),
        )
        found.update(str(r["external_id"]) for r in rows)
    return found
