"""Time rules (time, weekday, business_hours) look at when a message arrived,
not at when the pipeline got to it: a backlog worked off on Monday morning, or
a quarantine retry days later, keeps Saturday's mail "out of hours"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from omnidesk.channels.api import ApiChannel
from omnidesk.channels.base import ChannelContext
from omnidesk.config import ChannelConfig, Options
from omnidesk.intake import Intake
from omnidesk.model import Envelope
from omnidesk.pipeline import PipelineContext, process_batch
from omnidesk.rules import load_rules
from tests.conftest import API_SECRET, RULES, message

WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()  # business hours
SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp()  # shipped rules: closed


async def test_business_hours_follow_the_arrival_time(store: Any) -> None:
    intake = Intake(store)
    opts = Options({"secret": API_SECRET}, file=None, prefix="channels[0]", base_dir=RULES)
    api = ApiChannel(ChannelContext("api", ChannelConfig("api", "api", opts), intake))
    envs = [
        Envelope(
            "api",
            ext,
            json.dumps(message(ext, "Where is my parcel?", address=f"{ext}@example.com")).encode(),
            received_at=at,
        )
        for ext, at in (("wed", WEDNESDAY_10), ("sat", SATURDAY_10))
    ]
    await intake.accept_many(envs)
    rules = load_rules(RULES)
    await store.write(process_batch, PipelineContext(adapters={"api": api}, rules=lambda: rules), 8)

    def tags(db: Any) -> dict[str, list[str]]:
        rows = db.all(
            "SELECT m.external_id, c.tags FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id"
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    got = await store.read(tags)
    assert "out-of-hours" in got["sat"]
    assert "out-of-hours" not in got["wed"]
