"""Importing contacts in bulk (``omnidesk contacts import``, ``POST
/api/v1/contacts/bulk``): rows matched to contacts by e-mail address, phone
number (E.164) or channel handle, then created, updated, left unchanged or
reported as conflicting. A conflict changes nothing: a row that matches two
contacts, or that would replace a value the contact already has with a
different one (unless ``overwrite``), is listed with the reason and skipped
whole. Only empty values are filled in otherwise, and new identities added.

``import_rows`` handles one chunk in one transaction; run it chunk after
chunk (a real import) or every chunk in one transaction that is then rolled
back (``--dry-run``: the same report, nothing kept).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..customers.fields import FieldError, FieldSet
from ..customers.files import SPECIAL_COLUMNS
from ..identity import normalize_identity, normalize_phone
from ..model import now_ts
from . import jsoncol
from .base import Db, chunks, placeholders

_E164 = re.compile(r"\+[1-9]\d{7,14}")
OUTCOMES = ("created", "updated", "unchanged", "conflicting", "invalid")
MAX_LISTED = 10_000  # rows named in the report per outcome (the counts are always exact)


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicting: int = 0
    invalid: int = 0
    # (row, reason) for conflicting and invalid rows, (row, contact id) for the others
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def add(self, outcome: str, row: int, why: str | None = None) -> None:
        self.rows += 1
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome == "conflicting" and len(self.conflicts) < MAX_LISTED:
            self.conflicts.append((row, why or ""))
        elif outcome == "invalid" and len(self.errors) < MAX_LISTED:
            self.errors.append((row, why or ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            **{k: getattr(self, k) for k in OUTCOMES},
            "conflicts": [{"row": r, "reason": w} for r, w in self.conflicts],
            "errors": [{"row": r, "reason": w} for r, w in self.errors],
        }


@dataclass(slots=True)
class _Row:
    line: int
    name: str | None
    company: str | None
    identities: list[tuple[str, str]]
    fields: dict[str, Any]


class _Invalid(ValueError):
    pass


def _identities(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    email = raw.get("email")
    if email is not None:
        e = str(email).strip().lower()
        if e.count("@") != 1 or "." not in e.rsplit("@", 1)[1] or " " in e:
            raise _Invalid(f"email {str(email)[:80]!r} is not an e-mail address")
        out.append(("email", e))
    phone = raw.get("phone")
    if phone is not None:
        text = str(phone).strip()
        # Already E.164 (most exports): as the channels store it, without a parse.
        p = text if _E164.fullmatch(text) else normalize_phone(text)
        if p is None:
            raise _Invalid(f"phone {str(phone)[:40]!r} is not a phone number (E.164: +15551234567)")
        out.append(("phone", p))
    handles = raw.get("handles", raw.get("handle"))
    if handles is not None:
        values = handles if isinstance(handles, list) else str(handles).replace(";", " ").split()
        for h in values:
            kind, sep, addr = str(h).partition(":")
            if not sep or not kind.strip() or not addr.strip():
                raise _Invalid(f"handle {str(h)[:60]!r} is not KIND:ADDRESS (telegram:12345)")
            ident = normalize_identity(kind, addr)
            out.append((ident.kind, ident.address))
    if not out:
        raise _Invalid("no email, phone or handle to match the contact by")
    return list(dict.fromkeys(out))


def parse_row(line: int, raw: Mapping[str, Any], fields: FieldSet) -> _Row:
    if "_error" in raw:
        raise _Invalid(str(raw["_error"]))
    unknown = sorted(k for k in raw if k not in SPECIAL_COLUMNS and k not in fields.fields)
    if unknown:
        raise _Invalid(f"unknown column {unknown[0]!r}")
    values = {k: v for k, v in raw.items() if k in fields.fields}
    try:
        checked = {k: v for k, v in fields.check(values).items() if v is not None}
    except FieldError as exc:
        raise _Invalid(str(exc)) from None
    name = raw.get("name")
    company = raw.get("company")
    return _Row(
        line,
        " ".join(str(name).split())[:200] or None if name is not None else None,
        " ".join(str(company).split())[:200] or None if company is not None else None,
        _identities(raw),
        checked,
    )


@dataclass(slots=True)
class _Contact:
    id: int
    name: str | None
    attributes: dict[str, Any]
    company_id: int | None
    addresses: set[str]


def import_rows(
    db: Db,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    fields: FieldSet,
    report: ImportReport,
    *,
    actor: str,
    overwrite: bool = False,
) -> None:
    """One chunk of rows (line number, values), counted into ``report``."""
    now = now_ts()
    parsed: list[_Row] = []
    for line, raw in rows:
        try:
            parsed.append(parse_row(line, raw, fields))
        except _Invalid as exc:
            report.add("invalid", line, str(exc))
    owner: dict[tuple[str, str], int] = {}
    addresses = sorted({a for r in parsed for _, a in r.identities})
    for part in chunks(addresses, 500):
        for r in db.all(
            "SELECT kind, address, contact_id FROM identities"
            f" WHERE address IN ({placeholders(len(part))})",
            tuple(part),
        ):
            owner[(str(r["kind"]), str(r["address"]))] = int(r["contact_id"])
    contacts: dict[int, _Contact] = {}
    ids = sorted(set(owner.values()))
    for id_part in chunks(ids, 500):
        ph = placeholders(len(id_part))
        for r in db.all(
            f"SELECT id, name, attributes, company_id FROM contacts WHERE id IN ({ph})",
            tuple(id_part),
        ):
            contacts[int(r["id"])] = _Contact(
                int(r["id"]),
                r["name"],
                jsoncol.loads(r["attributes"], {}),
                None if r["company_id"] is None else int(r["company_id"]),
                set(),
            )
        for r in db.all(
            f"SELECT contact_id, address FROM identities WHERE contact_id IN ({ph})",
            tuple(id_part),
        ):
            contacts[int(r["contact_id"])].addresses.add(str(r["address"]))
    companies: dict[str, int | None] = {}
    new_identities: list[tuple[Any, ...]] = []
    audits: list[tuple[Any, ...]] = []

    def company_id(name: str) -> int:
        key = name.casefold()
        if companies.get(key) is None:
            cid = db.val("SELECT id FROM companies WHERE lower(name) = lower(?)", (name,))
            if cid is None:
                cid = db.val(
                    "INSERT INTO companies (name, attributes, created_at, updated_at)"
                    " VALUES (?, '{}', ?, ?) RETURNING id",
                    (name, now, now),
                )
                audits.append(
                    (now, actor, "company_created", None, jsoncol.dumps({"company_id": cid}))
                )
            companies[key] = int(cid)
        cid = companies[key]
        assert cid is not None
        return cid

    for row in parsed:
        matched = sorted({owner[i] for i in row.identities if i in owner})
        if len(matched) > 1:
            report.add(
                "conflicting",
                row.line,
                "matches contacts " + " and ".join(f"#{m}" for m in matched),
            )
            continue
        if not matched:
            cid = int(
                db.val(
                    "INSERT INTO contacts (name, attributes, created_at, updated_at, company_id)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (
                        row.name or row.identities[0][1],
                        jsoncol.dumps(row.fields),
                        now,
                        now,
                        company_id(row.company) if row.company else None,
                    ),
                )
            )
            for kind, addr in row.identities:
                owner[(kind, addr)] = cid
                new_identities.append((cid, kind, addr, now))
            contacts[cid] = _Contact(
                cid,
                row.name,
                dict(row.fields),
                None,
                {a for _, a in row.identities},
            )
            audits.append((now, actor, "contact_imported", cid, '{"outcome":"created"}'))
            report.add("created", row.line)
            continue
        c = contacts[matched[0]]
        why: list[str] = []
        attrs = dict(c.attributes)
        for k, v in row.fields.items():
            if k not in attrs:
                attrs[k] = v
            elif attrs[k] != v:
                if overwrite:
                    attrs[k] = v
                else:
                    why.append(f"{k} is {attrs[k]!r} here, {v!r} in the file")
        name = c.name
        auto_named = c.name is None or c.name in c.addresses
        if row.name and row.name != c.name:
            if auto_named or overwrite:
                name = row.name
            else:
                why.append(f"name is {c.name!r} here, {row.name!r} in the file")
        comp = c.company_id
        if row.company:
            key = row.company.casefold()
            if key not in companies:
                known_id = db.val(
                    "SELECT id FROM companies WHERE lower(name) = lower(?)", (row.company,)
                )
                companies[key] = None if known_id is None else int(known_id)
            known = companies[key]
            if c.company_id is None or overwrite:
                comp = known if known is not None else -1
            elif known != c.company_id:
                why.append("belongs to another company here")
        if why:
            report.add("conflicting", row.line, f"contact #{c.id}: " + "; ".join(why))
            continue
        if comp == -1 and row.company:
            comp = company_id(row.company)
        added = [(k, a) for k, a in row.identities if (k, a) not in owner]
        if attrs == c.attributes and name == c.name and comp == c.company_id and not added:
            report.add("unchanged", row.line)
            continue
        changed = sorted(k for k in attrs if c.attributes.get(k) != attrs[k])
        db.run(
            "UPDATE contacts SET name = ?, attributes = ?, company_id = ?, updated_at = ?"
            " WHERE id = ?",
            (name, jsoncol.dumps(attrs), comp, now, c.id),
        )
        for kind, addr in added:
            owner[(kind, addr)] = c.id
            new_identities.append((c.id, kind, addr, now))
            c.addresses.add(addr)
        c.name, c.attributes, c.company_id = name, attrs, comp
        detail = {"outcome": "updated", "fields": changed, "identities_added": len(added)}
        audits.append((now, actor, "contact_imported", c.id, jsoncol.dumps(detail)))
        report.add("updated", row.line)
    if new_identities:
        db.many(
            "INSERT INTO identities (contact_id, kind, address, data, created_at)"
            " VALUES (?, ?, ?, '{}', ?)",
            new_identities,
        )
    if audits:
        db.many(
            "INSERT INTO audit (at, actor, action, contact_id, detail) VALUES (?, ?, ?, ?, ?)",
            audits,
        )
