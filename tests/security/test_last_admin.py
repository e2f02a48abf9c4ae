"""The last active admin cannot be demoted or disabled, not even by two
admins demoting each other at the same moment (PostgreSQL runs the two
transactions side by side: the count and the change must be one step)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon
from omnidesk.cli import main as cli
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user
from tests.conftest import API_SECRET
from tests.security.test_findings import is_validation_error


async def test_the_last_admin_cannot_be_demoted_even_by_two_at_once(
    daemon: Daemon,
) -> None:
    for name in ("ada", "bea"):
        await daemon.store.write(create_user, name, role="admin", password_hash=None)
    tokens = {
        name: {
            "Authorization": "Bearer "
            + await daemon.store.write(create_token, "admin", name="t", username=name)
        }
        for name in ("ada", "bea")
    }
    watcher = {
        "Authorization": "Bearer " + await daemon.store.write(create_token, "admin", name="watch")
    }
    base = f"http://127.0.0.1:{daemon.web_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        for _ in range(5):
            # Each demotes the other at the same moment: exactly one may pass. The
            # other is refused as the last admin (422) or, when its own demotion
            # landed before its request was authenticated, as no admin any more (403).
            a, b = await asyncio.gather(
                c.patch("/api/v1/users/bea", json={"role": "agent"}, headers=tokens["ada"]),
                c.patch("/api/v1/users/ada", json={"role": "agent"}, headers=tokens["bea"]),
            )
            users = (await c.get("/api/v1/users", headers=watcher)).json()
            admins = [u["username"] for u in users if u["role"] == "admin" and not u["disabled"]]
            statuses = sorted([a.status_code, b.status_code])
            assert statuses in ([200, 403], [200, 422]), (statuses, admins)
            assert len(admins) == 1, admins
            refused = a if a.status_code != 200 else b
            if refused.status_code == 422:
                assert "last active admin" in refused.text
                assert is_validation_error(refused.json())
            else:
                assert refused.json() == {"detail": "admins only"}
            # Put the pair back for the next round, as the CLI would.
            other = "ada" if admins == ["bea"] else "bea"
            r = await c.patch(
                f"/api/v1/users/{other}", json={"role": "admin"}, headers=tokens[admins[0]]
            )
            assert r.status_code == 200
        r = await c.patch("/api/v1/users/bea", json={"disabled": True}, headers=tokens["ada"])
        assert r.status_code == 200
        for change in ({"role": "supervisor"}, {"disabled": True}):
            r = await c.patch("/api/v1/users/ada", json=change, headers=tokens["ada"])
            assert r.status_code == 422 and "last active admin" in r.text


def test_agents_role_restores_an_admin_and_tokens_list_and_revoke(
    tmp_path: Path, capsys: Any
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            [[channels]]
            name = "api"
            type = "api"
            secret = "{API_SECRET}"
            """
        )
    )
    c = ["-c", str(cfg)]
    assert cli(["agents", "add", "boss", "--role", "admin", "--no-password", *c]) == 0
    assert cli(["agents", "add", "kim", "--no-password", *c]) == 0
    capsys.readouterr()
    assert cli(["agents", "role", "boss", "agent", *c]) == 1
    assert "last active admin" in capsys.readouterr().err
    assert cli(["agents", "role", "kim", "admin", *c]) == 0
    assert "kim is now admin" in capsys.readouterr().out
    assert cli(["agents", "role", "boss", "supervisor", *c]) == 0
    assert cli(["agents", "role", "boss", "admin", *c]) == 0
    assert cli(["agents", "role", "nobody", "admin", *c]) == 1
    assert cli(["tokens", "create", "--role", "agent", "--name", "ci", *c]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli(["tokens", "list", "--json", *c]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == ["ci"] and secret not in json.dumps(listed)
    tid = listed[0]["id"]
    assert cli(["tokens", "revoke", tid, *c]) == 0
    assert cli(["tokens", "revoke", tid, *c]) == 1
    assert cli(["tokens", "list", *c]) == 0
    assert "revoked" in capsys.readouterr().out
