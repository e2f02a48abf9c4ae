"""Admins edit the rules over HTTP: validated on a copy first, saved
atomically, recorded with author and diff, reloaded at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from omnidesk.app import Daemon
from tests.conftest import make_config, message, post_inbound, settle
from tests.web.conftest import add_users

pytestmark = pytest.mark.asyncio(loop_scope="module")

NEW_RULE = """

[[rule]]
name = "parcel-lockers"
order = 50
[rule.when]
text.contains = ["parcel locker"]
[rule.then]
team = "billing"
priority = "urgent"
tags = ["lockers"]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rules_env(
    tmp_path_factory: pytest.TempPathFactory, rules_folder: Path
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient, dict[str, dict[str, str]]]]:
    tmp = tmp_path_factory.mktemp("rules-api")
    cfg = make_config(tmp, f"sqlite:///{tmp / 'db.sqlite'}", rules={"dir": str(rules_folder)})
    daemon = Daemon(cfg)
    await daemon.start()
    tokens = await add_users(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        yield daemon, c, tokens
    await daemon.stop()


@pytest.fixture(scope="module")
def rules_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from tests.conftest import RULES

    dst = tmp_path_factory.mktemp("rules-copy") / "rules"
    shutil.copytree(RULES, dst)
    return dst


async def test_valid_edit_is_saved_recorded_and_hot_reloaded(rules_env: Any) -> None:
    daemon, c, tokens = rules_env
    root = tokens["root"]
    listing = (await c.get("/api/v1/rules", headers=root)).json()
    assert "50-routing.toml" in [f["name"] for f in listing["files"]]
    version = listing["version"]
    got = (await c.get("/api/v1/rules/50-routing.toml", headers=root)).json()
    r = await c.put(
        "/api/v1/rules/50-routing.toml",
        json={"text": got["text"] + NEW_RULE, "base_sha256": got["sha256"], "reason": "lockers"},
        headers=root,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] and body["reloaded"] and body["version"] == version + 1
    assert '+name = "parcel-lockers"' in body["diff"]
    on_disk = (daemon.rules.directory / "50-routing.toml").read_text()
    assert on_disk.endswith(NEW_RULE)
    assert not [p for p in daemon.rules.directory.iterdir() if p.name.endswith(".tmp")]
    audit = (await c.get("/api/v1/audit?actor=admin:root", headers=root)).json()["items"]
    edit = next(a for a in audit if a["action"] == "rules_edited")
    assert edit["reason"] == "lockers" and "parcel-lockers" in edit["detail"]["diff"]
    # The running rules use it for the next message.
    await post_inbound(c, message("rl-1", "Which parcel locker is closest to me?"))
    await settle(daemon)
    items = (await c.get("/api/v1/conversations", headers=root)).json()["items"]
    conv = next(x for x in items if x["last_preview"].startswith("Which parcel locker"))
    assert conv["team"] == "billing" and conv["priority"] == "urgent"
    assert "lockers" in conv["tags"]
    # Saving what is there already changes nothing.
    same = await c.put("/api/v1/rules/50-routing.toml", json={"text": on_disk}, headers=root)
    assert same.json()["changed"] is False


async def test_invalid_rules_are_refused_and_the_old_ones_keep_running(rules_env: Any) -> None:
    daemon, c, tokens = rules_env
    root = tokens["root"]
    before = (await c.get("/api/v1/rules/50-routing.toml", headers=root)).json()
    version = daemon.rules.version
    for bad in (
        "this is [not toml",
        before["text"] + '\n[[rule]]\nname = "x"\n[rule.when]\ntext.contains = 3\n',
        before["text"]
        + '\n[[rule]]\nname = "y"\nwhen = "channel = api"\nset = { colour = "red" }\n',
    ):
        r = await c.put("/api/v1/rules/50-routing.toml", json={"text": bad}, headers=root)
        assert r.status_code == 422, r.text
        assert r.json()["problems"] and all("50-routing.toml" in p for p in r.json()["problems"])
        assert "/tmp" not in r.text  # the temporary copy's path is not shown
    after = (await c.get("/api/v1/rules/50-routing.toml", headers=root)).json()
    assert after["sha256"] == before["sha256"] and daemon.rules.version == version


async def test_concurrent_edit_and_bad_names(rules_env: Any) -> None:
    _, c, tokens = rules_env
    root = tokens["root"]
    got = (await c.get("/api/v1/rules/50-routing.toml", headers=root)).json()
    r = await c.put(
        "/api/v1/rules/50-routing.toml",
        json={"text": got["text"] + "\n# a comment\n", "base_sha256": "0" * 64},
        headers=root,
    )
    assert r.status_code == 409
    for name in ("..%2F..%2Fetc%2Fpasswd", ".hidden.toml", "rules.txt", "a%2Fb.toml"):
        r = await c.get(f"/api/v1/rules/{name}", headers=root)
        assert r.status_code == 404, name
    r = await c.put(
        "/api/v1/rules/new-file.toml", json={"text": "# empty rules file\n"}, headers=root
    )
    assert r.status_code == 200  # a new file that keeps the folder valid
