"""Contacts and their identities (one per channel kind + address)."""

from __future__ import annotations

from typing import Any

from ..model import Identity, now_ts
from . import jsoncol
from .base import Db, row_dict
from .customers import customer_facts


def resolve_contact(db: Db, ident: Identity) -> tuple[int, bool]:
    """The contact owning ``ident``, created with it when new. Returns
    (contact id, created). Follows merges: a merged contact's identities
    already point at the surviving contact."""
    row = db.one(
        "SELECT contact_id, display_name, data FROM identities WHERE kind = ? AND address = ?",
        (ident.kind, ident.address),
    )
    if row is not None:
        old = jsoncol.loads(row["data"], {})
        merged = {**old, **ident.data}
        if ident.display_name and ident.display_name != row["display_name"]:
            db.run(
                "UPDATE identities SET display_name = ?, data = ? WHERE kind = ? AND address = ?",
                (ident.display_name, jsoncol.dumps(merged), ident.kind, ident.address),
            )
        elif merged != old:
            # Only the data: the contact's search row (names, addresses) stays.
            db.run(
                "UPDATE identities SET data = ? WHERE kind = ? AND address = ?",
                (jsoncol.dumps(merged), ident.kind, ident.address),
            )
        return int(row["contact_id"]), False
    now = now_ts()
    contact_id = int(
        db.val(
            "INSERT INTO contacts (name, attributes, created_at, updated_at)"
            " VALUES (?, '{}', ?, ?) RETURNING id",
            (ident.display_name or ident.address, now, now),
        )
    )
    if not add_identity(db, contact_id, ident):
        # Created by a concurrent transaction (another instance) since the
        # SELECT above: use that contact, drop the one just made.
        db.run("DELETE FROM contacts WHERE id = ?", (contact_id,))
        return int(db.val(_OWNER, (ident.kind, ident.address))), False
    return contact_id, True


_OWNER = "SELECT contact_id FROM identities WHERE kind = ? AND address = ?"


def add_identity(db: Db, contact_id: int, ident: Identity) -> bool:
    """Give the contact ``ident``; False if the identity already belongs to
    someone (left as it is)."""
    n = db.run(
        "INSERT INTO identities (contact_id, kind, address, display_name, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, address) DO NOTHING",
        (
            contact_id,
            ident.kind,
            ident.address,
            ident.display_name,
            jsoncol.dumps(ident.data),
            now_ts(),
        ),
    )
    return n > 0


def contact_attributes(db: Db, contact_id: int) -> dict[str, Any]:
    """What rules see as ``contact.*``: the contact's attributes (typed
    fields among them), its company and purchase facts
    (``store/customers.py:customer_facts``), and its satisfaction figure as
    ``satisfaction`` (0-100) and ``at_risk`` once it has one
    (service/satisfaction.py)."""
    r = db.one(
        "SELECT k.attributes, s.score, s.at_risk FROM contacts k"
        " LEFT JOIN contact_scores s ON s.contact_id = k.id WHERE k.id = ?",
        (contact_id,),
    )
    if r is None:
        return {}
    attrs: dict[str, Any] = {
        **jsoncol.loads(r["attributes"], {}),
        **customer_facts(db, contact_id),
    }
    if r["score"] is not None:
        attrs = {**attrs, "satisfaction": r["score"], "at_risk": bool(r["at_risk"])}
    return attrs


def get_contact(db: Db, contact_id: int) -> dict[str, Any] | None:
    """A contact with its identities and every conversation on every channel."""
    c = row_dict(
        db.one(
            "SELECT id, name, attributes, created_at, updated_at, merged_into, company_id,"
            " erased_at FROM contacts WHERE id = ?",
            (contact_id,),
        )
    )
    if c is None:
        return None
    c["attributes"] = jsoncol.loads(c["attributes"], {})
    c["identities"] = [
        {**d, "data": jsoncol.loads(d["data"], {})}
        for d in (
            row_dict(r)
            for r in db.all(
                "SELECT kind, address, display_name, data, created_at FROM identities"
                " WHERE contact_id = ? ORDER BY id",
                (contact_id,),
            )
        )
        if d is not None
    ]
    c["conversations"] = [
        row_dict(r)
        for r in db.all(
            "SELECT id, channel, subject, status, category, priority, team, assignee,"
            " created_at, last_message_at, message_count, last_preview FROM conversations"
            " WHERE contact_id = ? ORDER BY COALESCE(last_message_at, created_at) DESC, id DESC",
            (contact_id,),
        )
    ]
    return c


def link_identity(db: Db, owner: Identity, extra: Identity | None) -> tuple[int, str]:
    """Give the contact owning ``owner`` (created if new) a second identity,
    e.g. the e-mail address a web-chat visitor typed, so later mail from that
    address meets the same contact. Returns (contact id, outcome):

    * ``"added"`` - ``extra`` was new and now belongs to the contact;
    * ``"already"`` - it already belonged to this contact;
    * ``"other"`` - it belongs to another contact and is left there: anyone can
      type any address, so joining two contacts is an agent's decision;
    * ``"none"`` - no ``extra`` was given (only the name was updated).

    A display name given with either identity also names a contact that was
    still named after its address.
    """
    contact_id, _ = resolve_contact(db, owner)
    name = owner.display_name or (extra.display_name if extra else None)
    if name:
        db.run(
            "UPDATE contacts SET name = ?, updated_at = ? WHERE id = ?"
            " AND (name IS NULL OR name = ?)",
            (name, now_ts(), contact_id, owner.address),
        )
    if extra is None:
        return contact_id, "none"
    other = db.val(
        "SELECT contact_id FROM identities WHERE kind = ? AND address = ?",
        (extra.kind, extra.address),
    )
    if other is None:
        add_identity(db, contact_id, extra)
        return contact_id, "added"
    if int(other) == contact_id:
        return contact_id, "already"
    return contact_id, "other"
