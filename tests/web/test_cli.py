"""The ``omnidesk agents`` commands: passwords from a file, the environment or
a prompt, never from the command line."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from omnidesk.cli import main as cli
from tests.conftest import API_SECRET


def test_agents_cli(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            [[teams]]
            name = "support"
            members = ["alice"]
            [[channels]]
            name = "api"
            type = "api"
            secret = "{API_SECRET}"
            """
        )
    )
    pw = tmp_path / "pw"
    pw.write_text("a-long-password-1\n")
    assert (
        cli(
            [
                "agents",
                "add",
                "zoe",
                "--role",
                "supervisor",
                "--team",
                "support",
                "--password-file",
                str(pw),
                "-c",
                str(cfg),
            ]
        )
        == 0
    )
    assert "created supervisor zoe (support)" in capsys.readouterr().out
    assert cli(["agents", "add", "zoe", "--password-file", str(pw), "-c", str(cfg)]) == 1
    monkeypatch.setenv("OMNIDESK_PASSWORD", "short")
    with pytest.raises(SystemExit, match="at least 10"):
        cli(["agents", "add", "yan", "-c", str(cfg)])
    monkeypatch.setenv("OMNIDESK_PASSWORD", "env-password-123")
    assert cli(["agents", "add", "yan", "-c", str(cfg)]) == 0
    monkeypatch.delenv("OMNIDESK_PASSWORD")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(SystemExit, match="password-file"):
        cli(["agents", "add", "xia", "-c", str(cfg)])
    capsys.readouterr()
    assert cli(["agents", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"zoe\s+supervisor\s+active", out) and "support" in out
    assert cli(["agents", "disable", "zoe", "-c", str(cfg)]) == 0
    assert cli(["agents", "list", "--json", "-c", str(cfg)]) == 0
    assert '"disabled": true' in capsys.readouterr().out
    assert cli(["agents", "disable", "nobody", "-c", str(cfg)]) == 1
    # The password never appears in argv: there is no option for it.
    with pytest.raises(SystemExit):
        cli(["agents", "add", "w", "--password", "x", "-c", str(cfg)])
    assert os.environ.get("OMNIDESK_PASSWORD") is None
    # A token for an account never outranks it.
    capsys.readouterr()
    assert cli(["tokens", "create", "--role", "admin", "--user", "yan", "-c", str(cfg)]) == 1
    assert "cannot outrank" in capsys.readouterr().err
    assert cli(["tokens", "create", "--role", "agent", "--user", "yan", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("odk_")
