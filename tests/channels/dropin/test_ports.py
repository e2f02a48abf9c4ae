"""A drop-in adapter gets ports, never the store: what it can do to stored
data is what ``ctx.intake``, ``ctx.state``, ``ctx.queries``, ``ctx.contacts``
and ``ctx.emit`` offer (channels/README.md), each bound to its own channel."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnidesk.app import Daemon
from omnidesk.channels.base import ChannelAdapter
from omnidesk.config import Config
from omnidesk.events import EventBus
from omnidesk.intake import Intake
from omnidesk.model import Envelope, Identity
from omnidesk.outbox import OutboxWorker
from omnidesk.pipeline import PipelineRunner
from omnidesk.store import Store

PROBE = """
from omnidesk.channels.base import ChannelAdapter
from omnidesk.model import Envelope, Normalized, OutboundMessage, SendResult, Skip


class ProbeChannel(ChannelAdapter):
    type = "probe"

    def normalize(self, envelope: Envelope) -> Normalized:
        return Skip("probe")

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult()
"""

# What an adapter must not find behind its context: the store, the intake
# itself (it holds the store), or the daemon's other parts.
FORBIDDEN = (Store, Intake, Daemon, EventBus, PipelineRunner, OutboxWorker)


def reachable(root: object, depth: int = 8) -> Iterator[tuple[str, object]]:
    """(path, object) for everything reachable from ``root`` through
    attributes (instance dicts and slots), containers and bound methods -
    what an adapter finds by looking through its context. Not followed:
    modules, classes, and functions' closures and globals (introspection no
    Python object can hide from)."""
    seen: set[int] = set()
    todo: list[tuple[str, object, int]] = [("ctx", root, 0)]
    while todo:
        path, obj, d = todo.pop()
        if id(obj) in seen or d > depth:
            continue
        seen.add(id(obj))
        yield path, obj
        if isinstance(obj, (str, bytes, int, float, bool, type(None), type, type(textwrap))):
            continue
        children: list[tuple[str, object]] = []
        if isinstance(obj, dict):
            children += [(f"[{k!r}]", v) for k, v in obj.items()]
            children += [(f".keys()[{i}]", k) for i, k in enumerate(obj)]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children += [(f"[{i}]", v) for i, v in enumerate(obj)]
        self_ = getattr(obj, "__self__", None)
        if self_ is not None and not isinstance(self_, type(textwrap)):
            children.append((".__self__", self_))
        for name in getattr(obj, "__dict__", {}) if hasattr(obj, "__dict__") else ():
            children.append((f".{name}", getattr(obj, name)))
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    children.append((f".{name}", getattr(obj, name)))
        for name, child in children:
            todo.append((path + name, child, d + 1))


@pytest.fixture
def probe_config(tmp_path: Path, config_factory: Callable[..., Config]) -> Config:
    folder = tmp_path / "channels"
    folder.mkdir()
    (folder / "probe.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    return config_factory(
        daemon={"channels_dir": str(folder)},
        channels=[
            {"name": "probe", "type": "probe"},
            {"name": "probe2", "type": "probe"},
        ],
    )


async def test_a_dropin_adapter_cannot_reach_the_store_through_its_context(
    probe_config: Config, daemon_factory: Any
) -> None:
    daemon: Daemon = await daemon_factory(probe_config, web=False)
    adapter: ChannelAdapter = daemon.adapters["probe"]
    ctx = adapter.ctx
    # The ports are there and work (see below) ...
    assert ctx.intake is not None and ctx.state is not None and ctx.queries is not None
    assert ctx.contacts is not None and ctx.emit is not None and ctx.spawn is not None
    # ... but nothing reachable from the context is the store or holds it.
    found = [(p, type(o).__name__) for p, o in reachable(ctx) if isinstance(o, FORBIDDEN)]
    assert found == []
    with pytest.raises(AttributeError):
        ctx.store  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        ctx.store = daemon.store  # type: ignore[attr-defined]
    # The test would see a store if one were there.
    assert any(isinstance(o, Store) for _, o in reachable({"x": [daemon.intake]}))


async def test_ports_do_what_the_contract_says_for_their_own_channel_only(
    probe_config: Config, daemon_factory: Any
) -> None:
    daemon: Daemon = await daemon_factory(probe_config, web=False)
    one, two = daemon.adapters["probe"].ctx, daemon.adapters["probe2"].ctx
    assert one.state is not None and two.state is not None
    assert one.queries is not None and two.queries is not None

    # state: its own keys, all at once, None deletes; another channel's are apart
    await one.state.put({"cursor": "7", "folder:INBOX:last_uid": "42"})
    assert await one.state.get("cursor") == "7"
    assert await one.state.items("folder:") == {"folder:INBOX:last_uid": "42"}
    assert await two.state.get("cursor") is None and await two.state.items() == {}
    await one.state.put({"cursor": None})
    assert await one.state.items() == {"folder:INBOX:last_uid": "42"}

    # intake, then queries about this channel only
    env = Envelope(channel="probe", external_id="m-1", payload=b"{}")
    assert await one.intake.accept(env) is True
    assert await one.intake.accept(env) is False
    assert await one.queries.known_external_ids(["m-1", "m-2"]) == {"m-1"}
    assert await two.queries.known_external_ids(["m-1"]) == set()
    assert await one.queries.thread_messages("nobody") == []

    # contacts: an e-mail a visitor gave joins their contact, once
    assert one.contacts is not None
    visitor = Identity("probe", "v-1", "Ann")
    assert await one.contacts.link(visitor, Identity("email", "ann@example.com")) == "added"
    assert await one.contacts.link(visitor, Identity("email", "ann@example.com")) == "already"

    # emit: on the live feed, marked with the channel
    assert one.emit is not None
    async with daemon.events.subscribe() as q:
        one.emit({"type": "probe.hello", "n": 1})
        event = await asyncio.wait_for(q.get(), 5)
    assert event == {"type": "probe.hello", "n": 1, "channel": "probe"}
