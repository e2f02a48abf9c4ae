"""The pipeline's part in the inbox: assignment from teams in the database
(or, without it, from the config's teams). SLA due times are the scheduler's:
tests/service/test_sla.py."""

from __future__ import annotations

import json
from typing import Any

from omnidesk.channels.api import ApiChannel
from omnidesk.channels.base import ChannelContext
from omnidesk.config import ChannelConfig, Options, TeamConfig
from omnidesk.intake import Intake
from omnidesk.model import Envelope
from omnidesk.pipeline import PipelineContext, process_batch
from omnidesk.rules import load_rules
from omnidesk.store import Store
from omnidesk.store.inbox import ConversationFilter, list_conversations
from omnidesk.store.users import save_team, seed_teams
from tests.conftest import RULES


def _ctx(store: Store, **kw: Any) -> tuple[Intake, PipelineContext]:
    intake = Intake(store)
    opts = Options({"secret": "s" * 20}, file=None, prefix="channels[0]", base_dir=RULES)
    adapter = ApiChannel(ChannelContext("api", ChannelConfig("api", "api", opts), intake))
    rules = load_rules(RULES)
    return intake, PipelineContext(adapters={"api": adapter}, rules=lambda: rules, **kw)


def _env(ext: str, text: str, address: str = "p@example.com", **extra: Any) -> Envelope:
    body = {"external_id": ext, "sender": {"address": address, "kind": "email"}, "text": text}
    return Envelope("api", ext, json.dumps({**body, **extra}).encode(), "application/json")


async def _convs(store: Store) -> list[dict[str, Any]]:
    return await store.read(list_conversations, ConversationFilter(), limit=100)


async def test_assignment_reads_teams_from_the_database(store: Store) -> None:
    config_teams = {"support": TeamConfig("support", ["ann", "ben"])}
    await store.write(seed_teams, list(config_teams.values()))
    # An admin changed the team in the database: the pipeline follows it.
    await store.write(save_team, "support", members=["zed"])
    intake, ctx = _ctx(store, teams=config_teams, teams_in_db=True, default_team="support")
    await intake.accept(_env("d1", "Where is my parcel?", address="d1@example.com"))
    await store.write(process_batch, ctx, 10)
    assert (await _convs(store))[0]["assignee"] == "zed"
    # A disabled member is skipped.
    from omnidesk.store.users import create_user

    await store.write(create_user, "zed", role="agent", password_hash=None)
    await store.write(lambda db: db.run("UPDATE users SET disabled = 1 WHERE username = 'zed'"))
    await intake.accept(_env("d2", "Another question", address="d2@example.com"))
    await store.write(process_batch, ctx, 10)
    newest = (await _convs(store))[0]
    assert newest["assignee"] is None and newest["team"] == "support"


async def test_assignment_from_config_teams_still_works(store: Store) -> None:
    teams = {"support": TeamConfig("support", ["ann", "ben"])}
    intake, ctx = _ctx(store, teams=teams, default_team="support")
    for i in range(2):
        await intake.accept(_env(f"c{i}", "Where is my parcel?", address=f"c{i}@example.com"))
    await store.write(process_batch, ctx, 10)
    assert sorted(c["assignee"] for c in await _convs(store)) == ["ann", "ben"]
