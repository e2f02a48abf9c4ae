"""What was acknowledged against what the store holds, per channel, printed
as one ``ACCOUNT`` line each (``key=value``, the CI test reads them)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from .load import Sender

# The daemon's channel name for each sender, and the external id it stores.
STORE_CHANNEL = {"smtp": "email", "api": "api", "webhook": "wa", "imap": "inbox"}


def stored_key(sender: Sender, ident: str) -> str:
    return f"wamid.{ident}" if sender.channel == "webhook" else ident


@dataclass
class Account:
    scenario: str
    channel: str
    offered: int
    acked: int
    stored: int
    quarantined: int
    lost: int
    duplicated: int
    extra: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def fields(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "acked": self.acked,
            "stored": self.stored,
            "quarantined": self.quarantined,
            "lost": self.lost,
            "duplicated": self.duplicated,
            **self.extra,
        }

    def line(self) -> str:
        return f"ACCOUNT scenario={self.scenario} channel={self.channel} " + " ".join(
            f"{k}={v}" for k, v in self.fields().items()
        )


class ReplyAccount(Account):
    """Replies: queued (201 from the inbox API) and delivered (received by
    the other side)."""

    def fields(self) -> dict[str, Any]:
        return {
            "queued": self.offered,
            "delivered": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            **self.extra,
        }


async def store_counts(store_url: str, channel: str) -> dict[str, Any]:
    """Per external id: message rows and intake rows; quarantined ids;
    rows still pending."""
    from omnidesk.store import open_store

    store = open_store(store_url)
    await store.open()

    def q(db: Any) -> dict[str, Any]:
        msgs = db.all(
            "SELECT external_id, COUNT(*) AS n FROM messages"
            " WHERE channel = ? AND direction = 'in' GROUP BY external_id",
            (channel,),
        )
        inbound = db.all(
            "SELECT external_id, COUNT(*) AS n FROM inbound WHERE channel = ? GROUP BY external_id",
            (channel,),
        )
        quarantined = db.all(
            "SELECT i.external_id FROM quarantine q JOIN inbound i ON i.id = q.inbound_id"
            " WHERE i.channel = ?",
            (channel,),
        )
        return {
            "messages": {r[0]: r[1] for r in msgs},
            "inbound": {r[0]: r[1] for r in inbound},
            "quarantined": {r[0] for r in quarantined},
            "pending": db.val(
                "SELECT COUNT(*) FROM inbound WHERE channel = ? AND state = 'pending'", (channel,)
            ),
        }

    try:
        return dict(await store.read(q))
    finally:
        await store.close()


async def account(
    scenario: str, sender: Sender, store_url: str, acked: set[str] | None = None
) -> Account:
    """The sender's messages in the store. ``acked`` overrides what the
    sender counts as acknowledged (IMAP: the \\Seen flags read back)."""
    got = await store_counts(store_url, STORE_CHANNEL[sender.channel])
    acked = sender.acked if acked is None else acked
    keys = {i: stored_key(sender, i) for i in sender.offered}
    stored = {i for i, k in keys.items() if k in got["messages"]}
    quarantined = {i for i, k in keys.items() if k in got["quarantined"]}
    lost = {i for i in acked if i not in stored and i not in quarantined}
    duplicated = sum(n - 1 for n in got["messages"].values() if n > 1) + sum(
        n - 1 for n in got["inbound"].values() if n > 1
    )
    extra: dict[str, Any] = {"pending": got["pending"]}
    refusals = collections.Counter(sender.refusals)
    if refusals:
        extra["refusals"] = ",".join(f"{k}:{v}" for k, v in sorted(refusals.items()))
    return Account(
        scenario=scenario,
        channel=sender.channel,
        offered=len(sender.offered),
        acked=len(acked),
        stored=len(stored),
        quarantined=len(quarantined),
        lost=len(lost),
        duplicated=duplicated,
        extra=extra,
    )
