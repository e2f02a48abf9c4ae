"""Customer data: typed fields, companies, events (orders and others), the
facts rules see about a contact, and the contact's timeline.

Field values are checked against the config's ``[customers]`` definitions
(``customers/fields.py``) before anything is written; every change is
audited with who made it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..customers.fields import FieldError, FieldSet
from ..model import now_ts
from . import jsoncol
from .audit import add_audit
from .base import Db, chunks, placeholders, row_dict

DAY = 86400.0
YEAR = 365 * DAY
# Orders in these states are not purchases (left out of count, total, frequency).
CANCELLED = ("cancelled", "canceled", "refunded")
# Orders in these states are purchases that are over (not "open").
DONE = ("completed", "delivered", "closed", "fulfilled")
EVENT_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
MAX_ITEMS = 200


class CustomerError(ValueError):
    """A write the data does not allow; the message says why (HTTP 422)."""


# -- companies -------------------------------------------------------------------
def company_id_for(db: Db, name: str, *, actor: str, create: bool = True) -> int | None:
    """The company named ``name`` (case-insensitively), created when new."""
    name = " ".join(name.split())
    if not name:
        return None
    found = db.val("SELECT id FROM companies WHERE lower(name) = lower(?)", (name,))
    if found is not None or not create:
        return None if found is None else int(found)
    now = now_ts()
    cid = int(
        db.val(
            "INSERT INTO companies (name, attributes, created_at, updated_at)"
            " VALUES (?, '{}', ?, ?) RETURNING id",
            (name, now, now),
        )
    )
    add_audit(db, actor, "company_created", detail={"company_id": cid})
    return cid


def upsert_company(
    db: Db,
    fields: FieldSet,
    *,
    actor: str,
    name: str,
    domain: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create or update a company by name; returns it with ``outcome``."""
    try:
        checked = fields.check(dict(attributes or {}))
    except FieldError as exc:
        raise CustomerError(str(exc)) from None
    existing = db.val("SELECT id FROM companies WHERE lower(name) = lower(?)", (name.strip(),))
    cid = company_id_for(db, name, actor=actor)
    if cid is None:
        raise CustomerError("a company needs a name")
    r = db.one("SELECT domain, attributes FROM companies WHERE id = ?", (cid,))
    assert r is not None
    before = jsoncol.loads(r["attributes"], {})
    after = {k: v for k, v in {**before, **checked}.items() if v is not None}
    new_domain = domain if domain is not None else r["domain"]
    outcome = "created" if existing is None else "unchanged"
    if after != before or new_domain != r["domain"]:
        db.run(
            "UPDATE companies SET attributes = ?, domain = ?, updated_at = ? WHERE id = ?",
            (jsoncol.dumps(after), new_domain, now_ts(), cid),
        )
        if existing is not None:
            outcome = "updated"
            add_audit(
                db,
                actor,
                "company_updated",
                detail={
                    "company_id": cid,
                    "fields": sorted(set(after) ^ set(before) | set(checked)),
                },
            )
    return {**(get_company(db, cid) or {}), "outcome": outcome}


def get_company(db: Db, company_id: int) -> dict[str, Any] | None:
    c = row_dict(
        db.one(
            "SELECT id, name, domain, attributes, created_at, updated_at FROM companies"
            " WHERE id = ?",
            (company_id,),
        )
    )
    if c is not None:
        c["attributes"] = jsoncol.loads(c["attributes"], {})
    return c


def company_page(db: Db, company_id: int) -> dict[str, Any] | None:
    """A company, its contacts and their conversations (newest first)."""
    c = get_company(db, company_id)
    if c is None:
        return None
    c["contacts"] = [
        row_dict(r)
        for r in db.all(
            "SELECT id, name, created_at FROM contacts WHERE company_id = ?"
            " AND merged_into IS NULL ORDER BY name, id LIMIT 1000",
            (company_id,),
        )
    ]
    c["conversations"] = [
        row_dict(r)
        for r in db.all(
            "SELECT c.id, c.contact_id, k.name AS contact_name, c.channel, c.subject, c.status,"
            " c.category, c.team, c.assignee, c.created_at, c.last_message_at, c.last_preview"
            " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
            " WHERE k.company_id = ?"
            " ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC LIMIT 500",
            (company_id,),
        )
    ]
    return c


def list_companies(db: Db, q: str = "", limit: int = 50) -> list[dict[str, Any]]:
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    out = []
    for r in db.all(
        "SELECT m.id, m.name, m.domain, m.attributes,"
        " (SELECT COUNT(*) FROM contacts k WHERE k.company_id = m.id) AS contacts"
        " FROM companies m WHERE lower(m.name) LIKE lower(?) ESCAPE '\\'"
        " ORDER BY m.name LIMIT ?",
        (like, limit),
    ):
        d = row_dict(r)
        assert d is not None
        d["attributes"] = jsoncol.loads(d["attributes"], {})
        out.append(d)
    return out


def set_company(db: Db, contact_id: int, company: str | None, *, actor: str) -> int | None:
    """Put the contact in the named company (created when new); ``None`` or
    "" takes it out."""
    cid = company_id_for(db, company, actor=actor) if company else None
    before = db.val("SELECT company_id FROM contacts WHERE id = ?", (contact_id,))
    if before != cid:
        db.run(
            "UPDATE contacts SET company_id = ?, updated_at = ? WHERE id = ?",
            (cid, now_ts(), contact_id),
        )
        add_audit(
            db,
            actor,
            "contact_company_set",
            contact_id=contact_id,
            detail={"from": before, "to": cid},
        )
    return cid


def update_fields(
    db: Db,
    contact_id: int,
    fields: FieldSet,
    values: Mapping[str, Any],
    *,
    actor: str,
) -> dict[str, Any]:
    """Set typed fields (and free-form attributes) after checking every value;
    ``None`` or "" clears one. Audited with what changed (names only: a
    field's value may be personal)."""
    try:
        checked = fields.check(values)
    except FieldError as exc:
        raise CustomerError(str(exc)) from None
    r = db.one(
        "SELECT attributes, merged_into, erased_at FROM contacts WHERE id = ?", (contact_id,)
    )
    if r is None:
        raise LookupError(f"no contact {contact_id}")
    if r["merged_into"] is not None or r["erased_at"] is not None:
        raise CustomerError(f"contact {contact_id} was merged or erased")
    before = jsoncol.loads(r["attributes"], {})
    after = {k: v for k, v in {**before, **checked}.items() if v is not None}
    if after != before:
        db.run(
            "UPDATE contacts SET attributes = ?, updated_at = ? WHERE id = ?",
            (jsoncol.dumps(after), now_ts(), contact_id),
        )
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        add_audit(
            db, actor, "contact_fields_updated", contact_id=contact_id, detail={"fields": changed}
        )
    return after


# -- events ----------------------------------------------------------------------------
def _order_fields(ev: Mapping[str, Any]) -> tuple[float | None, str | None, str | None, list[Any]]:
    amount = ev.get("amount")
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0
    ):
        raise CustomerError("an order's amount is a number from 0 on")
    currency = ev.get("currency")
    if currency is not None and not (
        isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)
    ):
        raise CustomerError("currency is a three-letter code (EUR, USD...)")
    status = ev.get("status")
    if status is not None and not (isinstance(status, str) and 0 < len(status) <= 40):
        raise CustomerError("status is a word of at most 40 characters (open, paid, shipped...)")
    items = ev.get("items") or []
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise CustomerError(f"items is a list of at most {MAX_ITEMS}")
    return (
        None if amount is None else float(amount),
        currency.upper() if isinstance(currency, str) else None,
        status.lower() if isinstance(status, str) else None,
        items,
    )


def append_event(
    db: Db, contact_id: int, ev: Mapping[str, Any], *, actor: str, now: float | None = None
) -> dict[str, Any]:
    """Append an event to the contact (or update the one with the same kind
    and ``external_id``: an order whose status changed). Returns it with
    ``outcome``: created, updated or unchanged."""
    now = now if now is not None else now_ts()
    kind = ev.get("kind")
    if not isinstance(kind, str) or not EVENT_KIND.fullmatch(kind):
        raise CustomerError("kind is a lower-case name (order, signup, refund_requested...)")
    r = db.one("SELECT merged_into, erased_at FROM contacts WHERE id = ?", (contact_id,))
    if r is None:
        raise LookupError(f"no contact {contact_id}")
    if r["erased_at"] is not None:
        raise CustomerError(f"contact {contact_id} was erased")
    if r["merged_into"] is not None:
        contact_id = int(r["merged_into"])
    ext = ev.get("external_id")
    if ext is not None and not (isinstance(ext, str | int) and 0 < len(str(ext)) <= 200):
        raise CustomerError("external_id is a text of at most 200 characters")
    ext = None if ext is None else str(ext)
    old = (
        db.one(
            "SELECT id, contact_id, occurred_at, amount, currency, status, items, data"
            " FROM contact_events WHERE kind = ? AND external_id = ?",
            (kind, ext),
        )
        if ext is not None
        else None
    )
    # Sent again without a time (a status update): it keeps the time it had.
    at = ev.get("occurred_at", old["occurred_at"] if old is not None else now)
    if isinstance(at, bool) or not isinstance(at, int | float) or at <= 0:
        raise CustomerError("occurred_at is a UNIX time in seconds")
    amount: float | None = None
    currency: str | None = None
    status: str | None = None
    items: list[Any] = []
    if kind == "order" or any(k in ev for k in ("amount", "currency", "status", "items")):
        amount, currency, status, items = _order_fields(ev)
    data = ev.get("data") or {}
    if not isinstance(data, dict):
        raise CustomerError("data is an object")
    row = (
        float(at),
        amount,
        currency,
        status,
        jsoncol.dumps(items),
        jsoncol.dumps(data),
    )
    if old is not None:
        if int(old["contact_id"]) != contact_id:
            raise CustomerError(f"{kind} {ext} belongs to another contact")
        same = (
            old["occurred_at"],
            old["amount"],
            old["currency"],
            old["status"],
            old["items"],
            old["data"],
        ) == row
        event_id = int(old["id"])
        outcome = "unchanged" if same else "updated"
        if not same:
            db.run(
                "UPDATE contact_events SET occurred_at = ?, amount = ?, currency = ?, status = ?,"
                " items = ?, data = ?, updated_at = ? WHERE id = ?",
                (*row, now, event_id),
            )
    else:
        event_id = int(
            db.val(
                "INSERT INTO contact_events (contact_id, kind, external_id, occurred_at, amount,"
                " currency, status, items, data, actor, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (contact_id, kind, ext, *row, actor, now, now),
            )
        )
        outcome = "created"
    if outcome != "unchanged":
        add_audit(
            db,
            actor,
            f"event_{outcome}",
            contact_id=contact_id,
            detail={"event_id": event_id, "kind": kind, "status": status},
        )
    return {"id": event_id, "contact_id": contact_id, "kind": kind, "outcome": outcome}


def events_of(db: Db, contact_id: int, limit: int = 500) -> list[dict[str, Any]]:
    out = []
    for r in db.all(
        "SELECT id, kind, external_id, occurred_at, amount, currency, status, items, data,"
        " actor, created_at, updated_at FROM contact_events WHERE contact_id = ?"
        " ORDER BY occurred_at DESC, id DESC LIMIT ?",
        (contact_id, limit),
    ):
        d = row_dict(r)
        assert d is not None
        d["items"] = jsoncol.loads(d["items"], [])
        d["data"] = jsoncol.loads(d["data"], {})
        out.append(d)
    return out


def _summaries(db: Db, contact_ids: Sequence[int], now: float) -> dict[int, dict[str, Any]]:
    """``purchase_summary`` for many contacts at once (one query a 500)."""
    out: dict[int, list[Any]] = {}
    cancelled = placeholders(len(CANCELLED))
    done = placeholders(len(DONE))
    for part in chunks(list(contact_ids), 500):
        for r in db.all(
            "SELECT contact_id, currency, COUNT(*) AS n, SUM(COALESCE(amount, 0)) AS total,"
            " MAX(occurred_at) AS last_at,"
            f" SUM(CASE WHEN COALESCE(status, 'open') IN ({done}) THEN 0 ELSE 1 END) AS open,"
            " SUM(CASE WHEN occurred_at > ? THEN 1 ELSE 0 END) AS year"
            f" FROM contact_events WHERE contact_id IN ({placeholders(len(part))})"
            f" AND kind = 'order' AND COALESCE(status, '') NOT IN ({cancelled})"
            " GROUP BY contact_id, currency",
            (*DONE, now - YEAR, *part, *CANCELLED),
        ):
            out.setdefault(int(r["contact_id"]), []).append(r)
    return {cid: _summary(rows, now) for cid, rows in out.items()}


def _summary(rows: list[Any], now: float) -> dict[str, Any]:
    main = max(rows, key=lambda r: (int(r["n"]), str(r["currency"] or "")))
    last_at = max(float(r["last_at"]) for r in rows)
    return {
        "count": sum(int(r["n"]) for r in rows),
        "open": sum(int(r["open"] or 0) for r in rows),
        "total": round(float(main["total"] or 0), 2),
        "currency": main["currency"],
        "totals": {str(r["currency"] or ""): round(float(r["total"] or 0), 2) for r in rows},
        "last_at": last_at,
        "days_since_last": round(max(now - last_at, 0.0) / DAY, 2),
        "per_year": sum(int(r["year"] or 0) for r in rows),
    }


NO_ORDERS: dict[str, Any] = {"count": 0, "open": 0, "per_year": 0}


def purchase_summary(db: Db, contact_id: int, now: float) -> dict[str, Any]:
    """Orders: count, total (in the most used currency), open ones, the last
    one, and the purchase frequency (orders in the last 365 days). Cancelled
    and refunded orders are not purchases."""
    return _summaries(db, [contact_id], now).get(contact_id, dict(NO_ORDERS))


def customer_facts(db: Db, contact_id: int, now: float | None = None) -> dict[str, Any]:
    """What rules see of the contact besides its attributes, flattened with
    dots: ``company`` (its name) and ``company.<field>``, ``orders.count``,
    ``orders.open``, ``orders.total``, ``orders.days_since_last``,
    ``orders.per_year``, and ``events.<kind>.count`` /
    ``events.<kind>.days_since_last`` for other events."""
    return customer_facts_many(db, [contact_id], now).get(contact_id, {})


def customer_facts_many(
    db: Db, contact_ids: Sequence[int], now: float | None = None
) -> dict[int, dict[str, Any]]:
    """``customer_facts`` of many contacts in a few queries (the scheduler
    evaluates conversations by the hundred)."""
    now = now if now is not None else now_ts()
    ids = sorted(set(contact_ids))
    facts: dict[int, dict[str, Any]] = {
        i: {f"orders.{k}": v for k, v in NO_ORDERS.items()} for i in ids
    }
    buyers: list[int] = []
    for part in chunks(ids, 500):
        ph = placeholders(len(part))
        for c in db.all(
            "SELECT k.id, m.name, m.domain, m.attributes FROM contacts k"
            f" JOIN companies m ON m.id = k.company_id WHERE k.id IN ({ph})",
            part,
        ):
            f = facts[int(c["id"])]
            f["company"] = f["company.name"] = c["name"]
            if c["domain"]:
                f["company.domain"] = c["domain"]
            for k, v in jsoncol.loads(c["attributes"], {}).items():
                f[f"company.{k}"] = v
        for r in db.all(
            "SELECT contact_id, kind, COUNT(*) AS n, MAX(occurred_at) AS last_at"
            f" FROM contact_events WHERE contact_id IN ({ph}) GROUP BY contact_id, kind",
            part,
        ):
            if r["kind"] == "order":
                buyers.append(int(r["contact_id"]))
                continue
            f = facts[int(r["contact_id"])]
            f[f"events.{r['kind']}.count"] = int(r["n"])
            f[f"events.{r['kind']}.days_since_last"] = round(
                max(now - float(r["last_at"]), 0.0) / DAY, 2
            )
    # (most contacts have no order: the summary is asked for those who do)
    for cid, summary in _summaries(db, buyers, now).items():
        for k, v in summary.items():
            if not isinstance(v, dict):
                facts[cid][f"orders.{k}"] = v
    return facts


def customer_view(db: Db, contact_id: int, now: float | None = None) -> dict[str, Any]:
    """The contact page's customer part: company, purchase summary, events."""
    now = now if now is not None else now_ts()
    company_id = db.val("SELECT company_id FROM contacts WHERE id = ?", (contact_id,))
    return {
        "company": get_company(db, int(company_id)) if company_id is not None else None,
        "orders": purchase_summary(db, contact_id, now),
        "events": events_of(db, contact_id, limit=50),
    }


# -- finding contacts by field -------------------------------------------------------
OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def find_contacts(
    db: Db,
    fields: FieldSet,
    conditions: Sequence[tuple[str, str, Any]],
    *,
    company: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Contacts whose typed fields meet every (field, op, value) condition
    (``op`` one of eq, ne, gt, ge, lt, le, contains), optionally in a
    company; most recently updated first."""
    where = ["k.merged_into IS NULL", "k.erased_at IS NULL"]
    params: list[Any] = []
    for name, op, raw in conditions:
        f = fields.fields.get(name)
        if f is None:
            raise CustomerError(f"no field named {name!r}")
        if op != "contains" and op not in OPS:
            raise CustomerError(f"unknown operator {op!r}: one of {', '.join([*OPS, 'contains'])}")
        try:
            value = raw if op == "contains" else f.check(raw)
        except FieldError as exc:
            raise CustomerError(str(exc)) from None
        if db.dialect == "sqlite":
            col = "json_extract(k.attributes, ?)"
            params.append(f"$.{name}")
        else:
            col = "(k.attributes::jsonb ->> ?)"
            params.append(name)
            if f.type == "number":
                col = f"({col})::double precision"
            elif f.type == "boolean":
                col = f"({col})::boolean"
        if op == "contains":
            where.append(f"lower(CAST({col} AS TEXT)) LIKE ?")
            params.append(f"%{str(value).lower()}%")
        else:
            if f.type == "boolean" and db.dialect == "sqlite":
                value = 1 if value else 0
            where.append(f"{col} {OPS[op]} ?")
            params.append(value)
    if company:
        where.append("k.company_id IN (SELECT id FROM companies WHERE lower(name) = lower(?))")
        params.append(company)
    out = []
    for r in db.all(
        "SELECT k.id, k.name, k.attributes, k.updated_at FROM contacts k"
        f" WHERE {' AND '.join(where)} ORDER BY k.updated_at DESC, k.id DESC LIMIT ?",
        (*params, limit),
    ):
        d = row_dict(r)
        assert d is not None
        d["attributes"] = jsoncol.loads(d["attributes"], {})
        out.append(d)
    return out


# -- the timeline ------------------------------------------------------------------------
def _cursor(before: str | None) -> tuple[float, int, int]:
    """``before`` = "AT:SOURCE:ID" from the previous page's ``next``."""
    if not before:
        return (float("inf"), 9, 2**62)
    try:
        at, src, i = before.split(":")
        return (float(at), int(src), int(i))
    except ValueError:
        raise CustomerError("before is the 'next' value of the previous page") from None


def contact_timeline(
    db: Db,
    contact_id: int,
    *,
    limit: int = 50,
    before: str | None = None,
    visible_conversations: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Everything that happened with the contact, newest first: messages on
    every channel (both ways), notes, status changes, ratings and events.
    Paged: pass the returned ``next`` as ``before``. With
    ``visible_conversations`` (an agent) only those conversations' items."""
    cur = _cursor(before)
    at_max = cur[0] if cur[0] != float("inf") else 1e18
    convs = [
        int(r["id"])
        for r in db.all("SELECT id FROM conversations WHERE contact_id = ?", (contact_id,))
    ]
    if visible_conversations is not None:
        allowed = set(visible_conversations)
        convs = [c for c in convs if c in allowed]
    take = limit + 21  # a few more: rows tied with the cursor's time are dropped
    items: list[tuple[tuple[float, int, int], dict[str, Any]]] = []

    def add(src: int, rows: list[Any], make: Any) -> None:
        for r in rows:
            key = (float(r["at"]), src, int(r["id"]))
            if key < cur:
                items.append((key, make(r)))

    if convs:
        ph = placeholders(len(convs))
        add(
            0,
            db.all(
                "SELECT id, created_at AS at, conversation_id, direction, kind, channel, subject,"
                " substr(text, 1, 600) AS text, author, sender_name, sender_address,"
                " delivery_state FROM messages"
                f" WHERE conversation_id IN ({ph}) AND created_at <= ?"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (*convs, at_max, take),
            ),
            lambda r: {
                "type": "note" if r["kind"] == "note" else "message",
                **{k: r[k] for k in r.keys() if k != "at"},
            },
        )
        add(
            1,
            db.all(
                "SELECT id, at, conversation_id, actor, detail FROM audit"
                f" WHERE conversation_id IN ({ph}) AND action = 'status_changed' AND at <= ?"
                " ORDER BY at DESC, id DESC LIMIT ?",
                (*convs, at_max, take),
            ),
            lambda r: {
                "type": "status",
                "id": r["id"],
                "conversation_id": r["conversation_id"],
                "actor": r["actor"],
                **{k: v for k, v in jsoncol.loads(r["detail"], {}).items() if k in ("from", "to")},
            },
        )
        add(
            2,
            db.all(
                "SELECT id, answered_at AS at, conversation_id, rating, scale, loyalty_score,"
                f" comment FROM surveys WHERE conversation_id IN ({ph}) AND state = 'answered'"
                " AND answered_at <= ? ORDER BY answered_at DESC, id DESC LIMIT ?",
                (*convs, at_max, take),
            ),
            lambda r: {"type": "rating", **{k: r[k] for k in r.keys() if k != "at"}},
        )
    # Events are the customer's: shown to whoever sees the contact.
    add(
        3,
        db.all(
            "SELECT id, occurred_at AS at, kind, external_id, amount, currency, status,"
            " items, data FROM contact_events WHERE contact_id = ? AND occurred_at <= ?"
            " ORDER BY occurred_at DESC, id DESC LIMIT ?",
            (contact_id, at_max, take),
        ),
        lambda r: {
            "type": "event",
            **{k: r[k] for k in r.keys() if k not in ("at", "items", "data")},
            "items": jsoncol.loads(r["items"], []),
            "data": jsoncol.loads(r["data"], {}),
        },
    )
    items.sort(key=lambda kv: kv[0], reverse=True)
    page = items[:limit]
    out = [{"at": k[0], **v} for k, v in page]
    nxt = None
    if len(items) > limit:
        k = page[-1][0]
        nxt = f"{k[0]!r}:{k[1]}:{k[2]}"
    return {"items": out, "next": nxt}
