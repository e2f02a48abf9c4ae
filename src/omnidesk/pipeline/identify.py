"""The identify stage: the sender's identity resolves to a contact (created
if new), and the other identities the message vouches for (a web chat
visitor's e-mail, say) are linked to it."""

from __future__ import annotations

from ..model import Identity, Message
from ..store import Db
from ..store.audit import add_audit
from ..store.contacts import link_identity, resolve_contact


def identify_sender(db: Db, msg: Message, now: float) -> tuple[int, bool]:
    """(contact id, whether this message created the contact)."""
    contact_id, new_contact = resolve_contact(db, msg.sender)
    for extra in msg.extra_identities:
        _link_extra_identity(db, msg, contact_id, extra, now)
    return contact_id, new_contact


def _link_extra_identity(
    db: Db, msg: Message, contact_id: int, extra: Identity, now: float
) -> None:
    _, outcome = link_identity(db, msg.sender, extra)
    if outcome == "other":
        # Joining two contacts is an agent's decision: leave a trace to act on.
        add_audit(
            db,
            "pipeline",
            "identity_in_use",
            contact_id=contact_id,
            reason=f"{extra.kind} {extra.address} already belongs to another contact",
            detail={"kind": extra.kind, "address": extra.address, "channel": msg.channel},
            at=now,
        )
