"""Customer data and privacy over HTTP: typed fields and companies, events
(orders...), the contact's timeline, bulk upserts, export, erasure and
retention (docs/customers.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..model import now_ts
from ..service.privacy import erase, export_archive, run_retention
from ..service.satisfaction import refresh_contact
from ..store import customers as cust
from ..store import privacy as priv
from ..store.base import Db
from ..store.customers_import import ImportReport, import_rows
from ..store.privacy import PrivacyError
from .auth import Principal, current_principal, require_admin, require_supervisor
from .contacts import _check_contact
from .deps import Id, can_see, get_services
from .ui import _app_page

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["customers"])
pages = APIRouter(include_in_schema=False)

Value = str | int | float | bool | None
MAX_BULK = 1000


class FieldsIn(BaseModel):
    fields: dict[str, Value] = Field(
        default_factory=dict, description="typed fields to set ([customers.fields]); null clears"
    )
    company: str | None = Field(
        None, max_length=200, description='the company\'s name ("" takes the contact out)'
    )


class EventIn(BaseModel):
    kind: str = Field(max_length=40, description="order, or any other lower-case event name")
    external_id: str | None = Field(
        None, max_length=200, description="the shop's id: sending it again updates the event"
    )
    occurred_at: float | None = Field(None, gt=0, description="UNIX seconds (default: now)")
    amount: float | None = Field(None, ge=0)
    currency: str | None = Field(None, min_length=3, max_length=3)
    status: str | None = Field(None, max_length=40, description="open, paid, shipped, delivered…")
    items: list[dict[str, Any]] | None = Field(None, max_length=200)
    data: dict[str, Any] | None = None


class CompanyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(None, max_length=200)
    fields: dict[str, Value] = Field(default_factory=dict)


class BulkIn(BaseModel):
    contacts: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_BULK,
        description="rows like an import file's: name, email, phone, handles, company, fields",
    )
    companies: list[CompanyIn] = Field(default_factory=list, max_length=MAX_BULK)
    dry_run: bool = False
    overwrite: bool = Field(False, description="replace values that differ instead of reporting")


@contextmanager
def _refusals() -> Iterator[None]:
    """What the store refuses, as HTTP: 422 with the reason, 404 for a missing row."""
    try:
        yield
    except cust.CustomerError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


def _fields(services: WebServices) -> Any:
    return services.config.customer_fields


@router.get("/customer-fields")
async def customer_fields(
    _: Principal = Depends(current_principal), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The typed contact and company fields defined in the config."""
    return dict(_fields(services).describe())


@router.get("/contacts/{contact_id}/customer")
async def customer(
    contact_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """The contact's customer data: field definitions, company, purchase
    summary, latest events."""
    await _check_contact(services, p, contact_id)
    view = await services.store.read(cust.customer_view, contact_id)
    return {"fields": _fields(services).describe(), **view}


@router.put("/contacts/{contact_id}/fields")
async def set_fields(
    contact_id: Id,
    body: FieldsIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Set typed fields (each value checked against its type) and the company."""
    await _check_contact(services, p, contact_id)
    fields = _fields(services).contact

    def write(db: Db) -> dict[str, Any]:
        attrs = cust.update_fields(db, contact_id, fields, body.fields, actor=p.actor)
        if body.company is not None:
            cust.set_company(db, contact_id, body.company or None, actor=p.actor)
        return {"attributes": attrs}

    with _refusals():
        out = await services.store.write(write)
    services.publish([{"type": "contact.updated", "contact_id": contact_id}])
    return out


@router.get("/contacts/{contact_id}/timeline")
async def timeline(
    contact_id: Id,
    limit: int = Query(50, ge=1, le=200),
    before: str | None = Query(None, max_length=80, description="the previous page's next"),
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Everything with the contact, newest first: messages on every channel,
    notes, status changes, ratings, orders and other events. Paged by
    ``next``. An agent sees the items of the conversations they can see."""
    await _check_contact(services, p, contact_id)
    visible = None
    if not p.sees_all():

        def convs(db: Db) -> list[int]:
            return [
                int(r["id"])
                for r in db.all(
                    "SELECT id, team, assignee FROM conversations WHERE contact_id = ?",
                    (contact_id,),
                )
                if can_see(p, {"team": r["team"], "assignee": r["assignee"]})
            ]

        visible = await services.store.read(convs)
    with _refusals():
        return await services.store.read(
            cust.contact_timeline,
            contact_id,
            limit=limit,
            before=before,
            visible_conversations=visible,
        )


@router.post("/contacts/{contact_id}/events", status_code=201)
async def add_event(
    contact_id: Id,
    body: EventIn,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Append an event to the contact: an order (amount, currency, items,
    status) or any other typed event. The same ``kind`` and ``external_id``
    again updates it (an order that shipped). Rules see the summary at the
    contact's next message (``contact.orders.open``...)."""
    ev = body.model_dump(exclude_none=True)

    def write(db: Db) -> dict[str, Any]:
        out = cust.append_event(db, contact_id, ev, actor=p.actor)
        if ev["kind"] == "order":
            refresh_contact(db, out["contact_id"], now_ts())
        return out

    with _refusals():
        out = await services.store.write(write)
    services.publish([{"type": "contact.updated", "contact_id": out["contact_id"]}])
    return out


@router.post("/contacts/bulk")
async def bulk(
    body: BulkIn,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Upsert companies, then contacts (matched by e-mail, phone or handle,
    like ``omnidesk contacts import``), in one transaction. The report counts
    created, updated, unchanged, conflicting and invalid rows; a conflict
    changes nothing. ``dry_run`` reports without keeping anything."""
    fields = _fields(services)
    report = ImportReport()
    companies: list[dict[str, Any]] = []

    class _DryRun(Exception):
        pass

    def write(db: Db) -> None:
        for c in body.companies:
            companies.append(
                cust.upsert_company(
                    db,
                    fields.company,
                    actor=p.actor,
                    name=c.name,
                    domain=c.domain,
                    attributes=c.fields,
                )
            )
        rows = [(i + 1, row) for i, row in enumerate(body.contacts)]
        import_rows(db, rows, fields.contact, report, actor=p.actor, overwrite=body.overwrite)
        if body.dry_run:
            raise _DryRun

    try:
        await services.store.write(write)
    except _DryRun:
        pass
    except cust.CustomerError as exc:
        raise HTTPException(422, str(exc)) from None
    return {
        "dry_run": body.dry_run,
        "contacts": report.as_dict(),
        "companies": [
            {"id": c["id"], "name": c["name"], "outcome": c["outcome"]} for c in companies
        ],
    }


_WHERE = re.compile(r"([a-z][a-z0-9_]*)\s*(>=|<=|!=|=|>|<|~)\s*(.*)", re.S)
_OPS = {">=": "ge", "<=": "le", "!=": "ne", "=": "eq", ">": "gt", "<": "lt", "~": "contains"}


@router.get("/customers/find")
async def find(
    where: list[str] = Query(
        default_factory=list,
        description="conditions on typed fields: lifetime_value>1000, segment=retail, note~vip",
    ),
    company: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Contacts by their typed fields (every condition must hold) and company."""
    conds = []
    for w in where:
        m = _WHERE.fullmatch(w.strip())
        if m is None:
            raise HTTPException(422, f"{w!r}: write FIELD OP VALUE (>, >=, <, <=, =, !=, ~)")
        conds.append((m[1], _OPS[m[2]], m[3].strip()))
    with _refusals():
        items = await services.store.read(
            cust.find_contacts, _fields(services).contact, conds, company=company, limit=limit
        )
    return {"items": items}


@router.get("/companies")
async def companies(
    q: str = Query("", max_length=200),
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return {"items": await services.store.read(cust.list_companies, q, limit)}


@router.put("/companies")
async def put_company(
    body: CompanyIn,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Create or update a company by name, its typed fields checked."""
    with _refusals():
        return await services.store.write(
            cust.upsert_company,
            _fields(services).company,
            actor=p.actor,
            name=body.name,
            domain=body.domain,
            attributes=body.fields,
        )


@router.get("/companies/{company_id}")
async def company(
    company_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """A company, its contacts and their conversations (an agent: those they see)."""
    c = await services.store.read(cust.company_page, company_id)
    if c is None:
        raise HTTPException(404, "no such company")
    if not p.sees_all():
        c["conversations"] = [x for x in c["conversations"] if can_see(p, x)]
    c["fields"] = _fields(services).company.describe()
    return c


# -- privacy -----------------------------------------------------------------------------
@router.get("/contacts/{contact_id}/export")
async def export(
    contact_id: Id,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> Response:
    """Everything held about the contact as one ZIP archive (contact.json and
    the attachments' files). Audited."""
    data = await export_archive(services.store, contact_id, actor=p.actor)
    if data is None:
        raise HTTPException(404, "no such contact")
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.zip"'},
    )


@router.delete("/contacts/{contact_id}")
async def erase_contact(
    contact_id: Id,
    confirm: int = Query(..., description="the contact's id again: erasing cannot be undone"),
    mode: Literal["redact", "remove"] | None = Query(
        None, description="its messages: redacted or removed (default: [privacy] erase_messages)"
    ),
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Erase the contact: identities, fields, events, attachments and search
    entries deleted, messages redacted or removed; an audit entry without
    personal data remains. Admins only; ``confirm`` must repeat the id."""
    if confirm != contact_id:
        raise HTTPException(422, "confirm must repeat the contact's id")
    try:
        out = await erase(
            services.store,
            contact_id,
            actor=p.actor,
            mode=mode or services.config.privacy.erase_messages,
        )
    except PrivacyError as exc:
        raise HTTPException(409, str(exc)) from None
    except LookupError:
        raise HTTPException(404, "no such contact") from None
    services.publish([{"type": "contact.updated", "contact_id": contact_id}])
    return out


@router.get("/privacy/retention")
async def retention(
    _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The retention policies and their last runs."""
    s = services.config.privacy
    return {
        "policies": [
            {
                "name": r.name,
                "days": r.days,
                "action": r.action,
                "channels": list(r.channels),
                "categories": list(r.categories),
            }
            for r in s.retention
        ],
        "every_seconds": s.retention_every,
        "runs": await services.store.read(priv.list_runs),
    }


@router.post("/privacy/retention/{policy}/run")
async def retention_run(
    policy: str,
    dry_run: bool = Query(True, description="list what it would remove (the default)"),
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Run one retention policy now: a dry run lists the conversations it
    covers; a real run deletes or redacts them."""
    found = [r for r in services.config.privacy.retention if r.name == policy]
    if not found:
        raise HTTPException(404, "no such retention policy")
    return await run_retention(services.store, found[0], now_ts(), dry_run=dry_run, actor=p.actor)


@pages.get("/privacy")
async def privacy_page(request: Request, services: WebServices = Depends(get_services)) -> Response:
    """Retention policies, their runs, a dry run or a run now (admins)."""
    return await _app_page(request, services, "admin")


@pages.get("/companies/{company_id}")
async def company_page(request: Request, services: WebServices = Depends(get_services)) -> Response:
    return await _app_page(request, services, "contacts")
