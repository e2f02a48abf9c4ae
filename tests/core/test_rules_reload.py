"""Hot reload inside the running daemon: a bad edit is reported and changes
nothing; a good edit takes effect without a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon
from tests.conftest import admin_token, message, post_inbound, settle

CUSTOM = """
[[rule]]
name = "warranty-to-billing"
order = 50
[rule.when]
text.contains = "warranty"
[rule.then]
team = "billing"
tags = ["warranty"]
"""


async def wait_until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def route(c: httpx.AsyncClient, d: Daemon, ext: str, auth: dict[str, str]) -> Any:
    """Send a warranty question; return the team and tags it got."""
    await post_inbound(c, message(ext, f"Is my warranty still valid? (ref {ext})"))
    await settle(d)
    items = (await c.get("/api/v1/conversations", headers=auth)).json()["items"]
    conv = next(i for i in items if f"(ref {ext})" in i["last_preview"])
    return conv["team"], conv["tags"]


async def test_rules_edits_in_running_daemon(
    config_factory: Any, daemon_factory: Any, rules_copy: Path
) -> None:
    d = await daemon_factory(config_factory(rules={"dir": str(rules_copy), "watch": True}))
    auth = await admin_token(d)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        team, _ = await route(c, d, "w1", auth)
        assert team == "support"
        v0 = d.rules.version

        # A valid edit takes effect without a restart.
        (rules_copy / "60-custom.toml").write_text(CUSTOM)
        await wait_until(lambda: d.rules.version > v0)
        team, tags = await route(c, d, "w2", auth)
        assert team == "billing" and "warranty" in tags

        # A syntax error is reported (file and line) and the old rules keep running.
        v1 = d.rules.version
        (rules_copy / "60-custom.toml").write_text(CUSTOM.replace('team = "billing"', "team = "))
        await wait_until(lambda: d.rules.last_error is not None)
        health = (await c.get("/healthz")).json()
        assert health["rules"]["ok"] is False
        assert "60-custom.toml" in health["rules"]["error"]
        assert d.rules.version == v1
        team, tags = await route(c, d, "w3", auth)
        assert team == "billing" and "warranty" in tags

        # Fixing the file clears the error and applies the fix.
        (rules_copy / "60-custom.toml").write_text(CUSTOM.replace("billing", "vip"))
        await wait_until(lambda: d.rules.last_error is None)
        team, _ = await route(c, d, "w4", auth)
        assert team == "vip"
