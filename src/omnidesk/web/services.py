"""What the web layer is given: the services its routes use, typed, built by
the composition root (``app.py``) and handed to ``create_app``. The web
layer never sees the daemon object; a route reaches these through the
``get_services`` dependency (``deps.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..channels.base import ChannelAdapter
from ..config import Config
from ..events import Event, EventBus
from ..health import HealthMonitor
from ..learning import Retrainer
from ..metrics import Metrics
from ..rules import RulesHolder
from ..service.scheduler import Scheduler
from ..store import Store


@dataclass(slots=True, eq=False)
class WebServices:
    config: Config
    store: Store
    # The rules as loaded (current, version, last error) and their reload.
    rules: RulesHolder
    # Channels by name: their health, their webhooks and own routes.
    adapters: Mapping[str, ChannelAdapter]
    # The live feed: subscribe here; ``publish`` (also to other instances).
    events: EventBus
    publish: Callable[[list[Event]], None]
    health: HealthMonitor
    metrics: Metrics
    # Service quality: its settings (SLA fallback, channel types) and the
    # survey links' key.
    scheduler: Scheduler
    # The classifier's retrains (the admin page's button and its status).
    retrainer: Retrainer
    # Runs a coroutine as a supervised background task of the daemon.
    spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]]
    # New work is pending (a quarantine retry) / a reply was queued.
    wake_pipeline: Callable[[], None]
    wake_outbox: Callable[[], None]
    # The rules were reloaded here: pipeline processes reload theirs.
    rules_reloaded: Callable[[], None]
    # The pipeline processes' state for /healthz (None: no processes).
    pipeline_status: Callable[[], dict[str, Any] | None]
    # The daemon is shutting down: long-lived responses end.
    stopping: Callable[[], bool]
    # The web layer's own state for the life of the app.
    presence: Any = None  # live.PresenceTracker, made on first use
    rules_save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
