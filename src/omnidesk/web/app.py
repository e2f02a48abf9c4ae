"""The FastAPI application. Each concern is a router module; this file only
assembles them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from .. import __version__
from ..intake import IntakeError
from . import (
    accounts,
    admin,
    apidocs,
    availability,
    bulk,
    classifier,
    contacts,
    customers,
    inbound,
    inbox,
    live,
    ops,
    reports,
    rules_api,
    service_api,
    session,
    surveys,
    ui,
    workspace,
)
from .errors import http_error
from .limits import BodyLimits, body_budget, reply_cap, route_limits
from .search import router as search_router

if TYPE_CHECKING:
    from .services import WebServices


def create_app(services: WebServices) -> FastAPI:
    app = FastAPI(
        title="omnidesk",
        version=__version__,
        description="Omnichannel customer-service daemon: inbox API, inbound API channel, "
        "webhooks. Authenticate with `Authorization: Bearer <token>`.",
        # /docs is served from the package's files (apidocs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    # Every request body goes through one capped, budgeted reader first.
    reply_max = reply_cap(services.config.reply_attachments_total_max)
    limit_for = route_limits(services.adapters, reply_max)
    budget = body_budget(services.config.body_memory_mb, services.adapters, reply_max)
    app.add_middleware(BodyLimits, limit_for=limit_for, budget_bytes=budget)
    app.add_exception_handler(HTTPException, http_error)  # 422s as the schema declares them
    app.add_exception_handler(IntakeError, inbound.intake_unavailable)
    for module in (ops, apidocs, inbound, bulk, inbox, admin, classifier):
        app.include_router(module.router)
    app.include_router(search_router)
    # The agent inbox: accounts, live feed, contacts, rules editing, the web UI.
    for module in (session, accounts, availability, live, contacts, workspace, rules_api, ui):
        app.include_router(module.router)
    # Service quality: notifications, reports, the customers' survey page.
    app.include_router(service_api.router)
    app.include_router(surveys.router)
    app.include_router(reports.router)
    app.include_router(reports.pages)
    # Customer data and privacy (docs/customers.md).
    app.include_router(customers.router)
    app.include_router(customers.pages)
    app.mount("/static", ui.static_files(), name="static")
    # Channel adapters' own endpoints (a chat widget...), after the core API
    # so a core path always wins.
    for adapter in services.adapters.values():
        if routes := list(adapter.routes()):
            app.router.routes.append(Mount(f"/{adapter.type}/{adapter.name}", routes=routes))
    return app
