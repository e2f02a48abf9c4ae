"""The FastAPI application. Each concern is a router module; this file only
assembles them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.routing import Mount

from .. import __version__
from . import (
    accounts,
    admin,
    contacts,
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
from .search import router as search_router

if TYPE_CHECKING:
    from ..daemon import Daemon


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="omnidesk",
        version=__version__,
        description="Omnichannel customer-service daemon: inbox API, inbound API channel, "
        "webhooks. Authenticate with `Authorization: Bearer <token>`.",
    )
    app.state.daemon = daemon
    for module in (ops, inbound, inbox, admin):
        app.include_router(module.router)
    app.include_router(search_router)
    # The agent inbox: accounts, live feed, contacts, rules editing, the web UI.
    for module in (session, accounts, live, contacts, workspace, rules_api, ui):
        app.include_router(module.router)
    # Service quality: notifications, reports, the customers' survey page.
    app.include_router(service_api.router)
    app.include_router(surveys.router)
    app.include_router(reports.router)
    app.include_router(reports.pages)
    app.mount("/static", ui.static_files(), name="static")
    # Channel adapters' own endpoints (a chat widget...), after the core API
    # so a core path always wins.
    for adapter in daemon.adapters.values():
        if routes := list(adapter.routes()):
            app.router.routes.append(Mount(f"/{adapter.type}/{adapter.name}", routes=routes))
    return app
