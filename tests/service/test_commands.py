"""``omnidesk rules timed`` (the SLA and time-based rules as if later) and
``omnidesk reports rebuild``, on a stored conversation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from omnidesk.cli import main
from omnidesk.service.clock import ManualClock
from omnidesk.store import open_store
from tests.conftest import RULES
from tests.service.helpers import make_desk


def _setup(tmp_path: Path) -> Path:
    db = tmp_path / "desk.db"

    async def go() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            desk = await make_desk(store, RULES, ManualClock())
            await desk.message("Could you tell me where my parcel is?", thread="p")
            await desk.reply("It is on its way.")
            await desk.set_status("pending")
            await desk.tick()
        finally:
            await store.close()

    asyncio.run(go())
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n[rules]\ndir = "{RULES}"\nwatch = false\n'
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    return cfg


def test_rules_timed_shows_what_would_happen_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _setup(tmp_path)
    assert main(["rules", "timed", "--conversation", "1", "--later", "1h", "-c", str(cfg)]) == 0
    soon = json.loads(capsys.readouterr().out)
    assert soon["would_fire"] == []
    assert soon["sla"]["policy"] == "standard"
    # A fortnight later: the pending conversation is closed by the shipped rule,
    # and the resolution target is missed.
    assert main(["rules", "timed", "--conversation", "1", "--later", "14d", "-c", str(cfg)]) == 0
    later = json.loads(capsys.readouterr().out)
    fired = {(f["what"], f["by"]) for f in later["would_fire"]}
    assert ("rule", "rule:close-stale-pending") in fired
    assert ("sla_breach", "sla:standard") in fired
    why = next(f["why"] for f in later["would_fire"] if f["by"] == "rule:close-stale-pending")
    assert "business_hours_since_agent" in why
    assert main(["rules", "timed", "--conversation", "9", "-c", str(cfg)]) == 1
    assert main(["rules", "timed", "--conversation", "1", "--later", "soon", "-c", str(cfg)]) == 2


def test_reports_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _setup(tmp_path)
    assert main(["reports", "rebuild", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "recounted 1 conversations, 2 messages and 0 surveys" in out
