"""Contacts as agents manage them: attribute edits, and merges that an admin
can undo exactly (search is ``store/search.py``).

A merge moves every identity and conversation of the *source* contact to the
*target*, copies attributes the target lacks, and marks the source
``merged_into`` the target. What it moved is kept in ``contact_merges``; undo
moves exactly those rows back (those still on the target) and removes the
copied attributes that nobody changed since.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import now_ts
from . import jsoncol
from .audit import add_audit
from .base import Db, placeholders, row_dict

MAX_ATTRIBUTES = 50


class ContactError(ValueError):
    pass


def _visible_clause(teams: Sequence[str] | None, user: str | None) -> tuple[str, list[Any]]:
    """SQL restricting contacts ``k`` to those with a conversation the agent sees."""
    if teams is None:
        return "", []
    cond = "c.assignee = ?"
    params: list[Any] = [user]
    if teams:
        cond += f" OR c.team IN ({placeholders(len(teams))})"
        params.extend(teams)
    return (
        f" AND EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = k.id AND ({cond}))",
        params,
    )


def identities_of(db: Db, contact_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "address": r["address"],
            "display_name": r["display_name"],
        }
        for r in db.all(
            "SELECT id, kind, address, display_name FROM identities WHERE contact_id = ?"
            " ORDER BY id",
            (contact_id,),
        )
    ]


def contact_visible(db: Db, contact_id: int, teams: Sequence[str] | None, user: str | None) -> bool:
    vis, params = _visible_clause(teams, user)
    return bool(db.val(f"SELECT 1 FROM contacts k WHERE k.id = ?{vis}", (contact_id, *params)))


def update_contact(
    db: Db,
    contact_id: int,
    *,
    actor: str,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    remove: Sequence[str] = (),
) -> dict[str, Any]:
    """Rename and/or set attributes (``None`` values and ``remove`` keys drop
    them). Attributes are flat: strings, numbers or booleans."""
    r = db.one("SELECT name, attributes, merged_into FROM contacts WHERE id = ?", (contact_id,))
    if r is None:
        raise LookupError(f"no contact {contact_id}")
    if r["merged_into"] is not None:
        raise ContactError(
            f"contact {contact_id} was merged into {r['merged_into']}: edit that one"
        )
    before = jsoncol.loads(r["attributes"], {})
    after = dict(before)
    for k, v in (attributes or {}).items():
        if not isinstance(k, str) or not k.strip() or len(k) > 64:
            raise ContactError("an attribute name is 1-64 characters")
        if v is None:
            after.pop(k, None)
        elif isinstance(v, str | int | float | bool):
            if isinstance(v, str) and len(v) > 1000:
                raise ContactError(f"attribute {k!r} is longer than 1000 characters")
            after[k] = v
        else:
            raise ContactError(f"attribute {k!r} must be text, a number or true/false")
    for k in remove:
        after.pop(k, None)
    if len(after) > MAX_ATTRIBUTES:
        raise ContactError(f"a contact has at most {MAX_ATTRIBUTES} attributes")
    new_name = r["name"] if name is None else (name.strip() or r["name"])
    if after == before and new_name == r["name"]:
        return {"id": contact_id, "name": new_name, "attributes": after}
    db.run(
        "UPDATE contacts SET name = ?, attributes = ?, updated_at = ? WHERE id = ?",
        (new_name, jsoncol.dumps(after), now_ts(), contact_id),
    )
    changed = {k: {"from": before.get(k), "to": after.get(k)} for k in set(before) | set(after)}
    changed = {k: v for k, v in changed.items() if v["from"] != v["to"]}
    if new_name != r["name"]:
        changed["(name)"] = {"from": r["name"], "to": new_name}
    add_audit(db, actor, "contact_updated", contact_id=contact_id, detail={"changed": changed})
    return {"id": contact_id, "name": new_name, "attributes": after}


def merge_contacts(
    db: Db, source_id: int, target_id: int, *, actor: str, reason: str | None = None
) -> dict[str, Any]:
    if source_id == target_id:
        raise ContactError("a contact cannot be merged into itself")
    rows = {
        int(r["id"]): r
        for r in db.all(
            "SELECT id, name, attributes, merged_into FROM contacts WHERE id IN (?, ?)",
            (source_id, target_id),
        )
    }
    for cid in (source_id, target_id):
        if cid not in rows:
            raise LookupError(f"no contact {cid}")
        if rows[cid]["merged_into"] is not None:
            raise ContactError(f"contact {cid} was already merged into {rows[cid]['merged_into']}")
    identity_ids = [
        int(r["id"])
        for r in db.all("SELECT id FROM identities WHERE contact_id = ? ORDER BY id", (source_id,))
    ]
    conversation_ids = [
        int(r["id"])
        for r in db.all(
            "SELECT id FROM conversations WHERE contact_id = ? ORDER BY id", (source_id,)
        )
    ]
    now = now_ts()
    db.run("UPDATE identities SET contact_id = ? WHERE contact_id = ?", (target_id, source_id))
    db.run("UPDATE conversations SET contact_id = ? WHERE contact_id = ?", (target_id, source_id))
    src_attrs = jsoncol.loads(rows[source_id]["attributes"], {})
    dst_attrs = jsoncol.loads(rows[target_id]["attributes"], {})
    added = {k: v for k, v in src_attrs.items() if k not in dst_attrs}
    db.run(
        "UPDATE contacts SET attributes = ?, updated_at = ? WHERE id = ?",
        (jsoncol.dumps({**dst_attrs, **added}), now, target_id),
    )
    db.run(
        "UPDATE contacts SET merged_into = ?, updated_at = ? WHERE id = ?",
        (target_id, now, source_id),
    )
    merge_id = int(
        db.val(
            "INSERT INTO contact_merges (source_id, target_id, identity_ids, conversation_ids,"
            " attributes_added, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                source_id,
                target_id,
                jsoncol.dumps(identity_ids),
                jsoncol.dumps(conversation_ids),
                jsoncol.dumps(added),
                actor,
                now,
            ),
        )
    )
    detail = {
        "merge_id": merge_id,
        "source": {"id": source_id, "name": rows[source_id]["name"]},
        "target": {"id": target_id, "name": rows[target_id]["name"]},
        "identities": identity_ids,
        "conversations": conversation_ids,
        "attributes_added": sorted(added),
    }
    for cid in (target_id, source_id):
        add_audit(
            db, actor, "contacts_merged", contact_id=cid, reason=reason, detail=detail, at=now
        )
    for conv_id in conversation_ids:
        add_audit(
            db,
            actor,
            "contact_merged",
            conversation_id=conv_id,
            reason=f"contact {source_id} merged into {target_id}",
            detail={"merge_id": merge_id},
            at=now,
        )
    return {"merge_id": merge_id, **detail}


def undo_merge(db: Db, merge_id: int, *, actor: str) -> dict[str, Any]:
    m = row_dict(db.one("SELECT * FROM contact_merges WHERE id = ?", (merge_id,)))
    if m is None:
        raise LookupError(f"no merge {merge_id}")
    if m["undone_at"] is not None:
        raise ContactError(f"merge {merge_id} was already undone")
    source_id, target_id = int(m["source_id"]), int(m["target_id"])
    later = db.val(
        "SELECT id FROM contact_merges WHERE id > ? AND undone_at IS NULL"
        " AND (source_id IN (?, ?) OR target_id = ?) ORDER BY id LIMIT 1",
        (merge_id, target_id, source_id, source_id),
    )
    if later is not None:
        raise ContactError(f"undo the later merge {later} first: it moved these contacts again")
    identity_ids = jsoncol.loads(m["identity_ids"], [])
    conversation_ids = jsoncol.loads(m["conversation_ids"], [])
    moved_i = moved_c = 0
    if identity_ids:
        moved_i = db.run(
            f"UPDATE identities SET contact_id = ? WHERE contact_id = ?"
            f" AND id IN ({placeholders(len(identity_ids))})",
            (source_id, target_id, *identity_ids),
        )
    if conversation_ids:
        moved_c = db.run(
            f"UPDATE conversations SET contact_id = ? WHERE contact_id = ?"
            f" AND id IN ({placeholders(len(conversation_ids))})",
            (source_id, target_id, *conversation_ids),
        )
    attrs = jsoncol.loads(db.val("SELECT attributes FROM contacts WHERE id = ?", (target_id,)), {})
    for k, v in jsoncol.loads(m["attributes_added"], {}).items():
        if attrs.get(k) == v:  # an edit made since the merge stays
            attrs.pop(k)
    now = now_ts()
    db.run(
        "UPDATE contacts SET attributes = ?, updated_at = ? WHERE id = ?",
        (jsoncol.dumps(attrs), now, target_id),
    )
    db.run("UPDATE contacts SET merged_into = NULL, updated_at = ? WHERE id = ?", (now, source_id))
    db.run(
        "UPDATE contact_merges SET undone_at = ?, undone_by = ? WHERE id = ?",
        (now, actor, merge_id),
    )
    detail = {
        "merge_id": merge_id,
        "source": source_id,
        "target": target_id,
        "identities": moved_i,
        "conversations": moved_c,
    }
    for cid in (source_id, target_id):
        add_audit(db, actor, "merge_undone", contact_id=cid, detail=detail, at=now)
    for conv_id in conversation_ids:
        add_audit(
            db,
            actor,
            "contact_unmerged",
            conversation_id=conv_id,
            detail={"merge_id": merge_id},
            at=now,
        )
    return detail


def merges_of(db: Db, contact_id: int | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
    where, params = "", []
    if contact_id is not None:
        where, params = " WHERE m.source_id = ? OR m.target_id = ?", [contact_id, contact_id]
    out = []
    for r in db.all(
        "SELECT m.id, m.source_id, m.target_id, m.identity_ids, m.conversation_ids,"
        " m.attributes_added, m.actor, m.at, m.undone_at, m.undone_by,"
        " s.name AS source_name, t.name AS target_name FROM contact_merges m"
        " JOIN contacts s ON s.id = m.source_id JOIN contacts t ON t.id = m.target_id"
        f"{where} ORDER BY m.id DESC LIMIT ?",
        (*params, limit),
    ):
        d = row_dict(r)
        assert d is not None
        for k in ("identity_ids", "conversation_ids"):
            d[k] = jsoncol.loads(d[k], [])
        d["attributes_added"] = jsoncol.loads(d["attributes_added"], {})
        out.append(d)
    return out


def contact_audit(
    db: Db,
    contact_id: int,
    *,
    visible_teams: Sequence[str] | None = None,
    visible_user: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The contact's audit entries, newest first. With ``visible_teams`` (an
    agent), an entry about a conversation is kept only when the agent sees
    that conversation: a classification names its words, team and tags."""
    vis, params = "", []
    if visible_teams is not None:
        cond = "c.assignee = ?"
        params = [visible_user]
        if visible_teams:
            cond += f" OR c.team IN ({placeholders(len(visible_teams))})"
            params.extend(visible_teams)
        vis = (
            " AND (a.conversation_id IS NULL OR EXISTS (SELECT 1 FROM conversations c"
            f" WHERE c.id = a.conversation_id AND ({cond})))"
        )
    out = []
    for r in db.all(
        "SELECT a.id, a.at, a.actor, a.action, a.reason, a.detail FROM audit a"
        f" WHERE a.contact_id = ?{vis} ORDER BY a.id DESC LIMIT ?",
        (contact_id, *params, limit),
    ):
        d = row_dict(r)
        assert d is not None
        d["detail"] = jsoncol.loads(d["detail"], {})
        out.append(d)
    return out
