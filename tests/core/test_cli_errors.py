"""Every mistake a user can make on the command line is one line on stderr,
without a traceback, naming the file, line or value and what is expected;
and the commands the CLI suggests run as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from tests.conftest import RULES, config_data

PYTHON_CLI = [sys.executable, "-m", "omnidesk.cli"]
# The console script a user runs (.venv/bin/omnidesk).
SCRIPT = Path(sys.executable).parent / "omnidesk"


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON_CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (asserted to be just that)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    return lines[0]


def write_config(tmp_path: Path, rules: Path = RULES, name: str = "omnidesk.toml") -> Path:
    data = config_data(tmp_path, f"sqlite:///{tmp_path / 'data' / 'omnidesk.db'}")
    data["rules"]["dir"] = str(rules)
    data["pipeline"]["processes"] = 0
    cfg = tmp_path / name
    cfg.write_text(tomlkit.dumps(data))
    return cfg


BROKEN_RULE = (
    '[[rule]]\nname = "x"\n[rule.when]\ntext.contains = "a"\n[rule.then]\npriority = "asap"\n'
)


# -- classify eval ---------------------------------------------------------------------
def test_classify_eval_missing_file(tmp_path: Path) -> None:
    line = one_line_error(run("classify", "eval", "missing.jsonl", cwd=tmp_path), 2)
    assert line == (
        "omnidesk: cannot read labelled messages missing.jsonl: No such file or directory"
    )


def test_classify_eval_unknown_label_names_line_and_labels(tmp_path: Path) -> None:
    f = tmp_path / "labelled.jsonl"
    f.write_text(
        json.dumps({"text": "Where is my parcel?", "label": "inquiry"})
        + "\n\n"
        + json.dumps({"text": "Awful!", "label": "complaints"})
        + "\n"
    )
    line = one_line_error(run("classify", "eval", f, "--rules", RULES), 2)
    assert line == (
        f"omnidesk: {f}:3: label 'complaints' is not one of inquiry, feedback, complaint,"
        " not_complaint (did you mean 'complaint'?)"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"text": "hi", "label": "inquiry"\n', "2: not JSON (Expecting ',' delimiter"),
        ('["hi", "inquiry"]\n', '2: expected an object with "text" and "label"'),
        ('{"text": 42, "label": "inquiry"}\n', '2: "text" must be a string'),
    ],
)
def test_classify_eval_bad_line(tmp_path: Path, content: str, expected: str) -> None:
    f = tmp_path / "l.jsonl"
    f.write_text('{"text": "Where is it?", "label": "inquiry"}\n' + content)
    line = one_line_error(run("classify", "eval", f, "--rules", RULES), 2)
    assert line.startswith(f"omnidesk: {f}:{expected}")


def test_classify_eval_not_utf8_and_empty(tmp_path: Path) -> None:
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"text": "ok", "label": "feedback"}\n{"text": "caf\xe9"}'.encode("latin-1"))
    line = one_line_error(run("classify", "eval", f, "--rules", RULES), 2)
    assert line == f"omnidesk: {f}:2: the labelled messages must be UTF-8 text"
    f.write_text("\n\n")
    line = one_line_error(run("classify", "eval", f, "--rules", RULES), 2)
    assert line == f"omnidesk: {f}: no labelled messages (one JSON object a line)"


# -- rules test ---------------------------------------------------------------------------
def test_rules_test_missing_file(tmp_path: Path) -> None:
    proc = run("rules", "test", "--file", "missing", "--rules", RULES, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert line == "omnidesk: cannot read message file missing: No such file or directory"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--at", "yesterday"], "--at 'yesterday': expected an ISO 8601 time, e.g. 2024-"),
        (["--attr", "tier"], "--attr 'tier': expected KEY=VALUE, e.g. tier=gold"),
    ],
)
def test_rules_test_bad_option_value(option: list[str], expected: str) -> None:
    proc = run("rules", "test", "--text", "Hello", "--rules", RULES, *option)
    assert one_line_error(proc, 2).startswith(f"omnidesk: {expected}")


def test_rules_test_broken_rules(tmp_path: Path, rules_copy: Path) -> None:
    rules = rules_copy
    (rules / "90-broken.toml").write_text(BROKEN_RULE)
    cfg = write_config(tmp_path, rules)
    line = one_line_error(run("rules", "test", "--text", "Hello", "-c", cfg, cwd=tmp_path), 2)
    assert line.startswith(f"omnidesk: rules: {rules / '90-broken.toml'}:6: rule 'x':")
    assert "'asap'" in line
    assert line.endswith(" rules check -c omnidesk.toml")


# -- -c: the named config, or an error ----------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["rules", "check"], ["rules", "test", "--text", "Hello"], ["classify", "eval", "x.jsonl"]],
)
def test_a_missing_config_fails(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "x.jsonl").write_text('{"text": "Hello", "label": "inquiry"}\n')
    (tmp_path / "rules").mkdir()  # ./rules must not be checked instead
    line = one_line_error(run(*command, "-c", "nope.toml", cwd=tmp_path), 2)
    assert line == "configuration error: nope.toml: (file): cannot read: No such file or directory"


def test_rules_check_checks_the_rules_dir_the_config_names(
    tmp_path: Path, rules_copy: Path
) -> None:
    rules = rules_copy
    (rules / "90-broken.toml").write_text(BROKEN_RULE)
    cfg = write_config(tmp_path, rules)
    proc = run("rules", "check", "-c", cfg, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{rules / '90-broken.toml'}:6" in proc.stdout
    # Without -c, ./config.toml is the default: the same folder.
    cfg.rename(tmp_path / "config.toml")
    proc = run("rules", "check", cwd=tmp_path)
    assert proc.returncode == 1 and f"{rules / '90-broken.toml'}:6" in proc.stdout


# -- names the rules use that the config does not define ----------------------------------
def test_rules_check_reports_undefined_teams_agents_and_channels(
    tmp_path: Path, rules_copy: Path
) -> None:
    rules = rules_copy
    (rules / "95-names.toml").write_text(
        '[[rule]]\nname = "typo"\n[rule.when]\nchannel = ["api", "shop-mail"]\n'
        '[rule.then]\nteam = "suport"\nagent = "zed"\n'
    )
    cfg = write_config(tmp_path, rules)
    proc = run("rules", "check", "-c", cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = f"{rules / '95-names.toml'}:1: rule 'typo'"
    warned = [ln for ln in proc.stdout.splitlines() if ln.startswith("WARN ")]
    assert warned == [
        f"WARN {where}: team 'suport' is not defined in {cfg} ([[teams]]) (did you mean"
        " 'support'?)",
        f"WARN {where}: agent 'zed' is not defined in {cfg} (no team lists it as a member)",
        f"WARN {where}: channel 'shop-mail' is not defined in {cfg} ([[channels]])",
    ]
    assert "3 undefined name(s)" in proc.stdout
    strict = run("rules", "check", "-c", cfg, "--strict")
    assert strict.returncode == 1
    assert strict.stdout.count("ERROR ") == 3 and "FAILED" in strict.stdout


def test_the_shipped_rules_name_only_what_the_example_config_defines() -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = run("rules", "check", "--strict", "-c", repo / "config.example.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "undefined" not in proc.stdout


# -- other commands -----------------------------------------------------------------------
def test_password_file_missing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = run("agents", "add", "zoe", "--password-file", "nope", "-c", cfg, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert line == "omnidesk: cannot read password file nope: No such file or directory"


def test_unreachable_database(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(
        cfg.read_text().replace(
            f"sqlite:///{tmp_path / 'data' / 'omnidesk.db'}",
            "postgresql://omnidesk:hunter2@127.0.0.1:9/helpdesk",
        )
    )
    for command in (["agents", "list"], ["quarantine", "list"], ["migrate", "--status"]):
        line = one_line_error(run(*command, "-c", cfg), 1)
        assert line.startswith(
            "omnidesk: cannot connect to PostgreSQL at postgresql://omnidesk:***@127.0.0.1:9/"
        )


# -- hints run as printed ----------------------------------------------------------------
def hinted(text: str) -> list[str]:
    """The command in backticks or after ': ' at the end of a hint line."""
    found = re.search(r"`([^`]+)`", text)
    return shlex.split(found.group(1) if found else text.rsplit(": ", 1)[1])


def test_agents_list_hint_runs_as_printed(tmp_path: Path) -> None:
    """From another folder, with a config not named config.toml: the hint
    carries the script's path and -c."""
    cfg = write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = subprocess.run(
        [SCRIPT, "agents", "list", "-c", cfg], capture_output=True, text=True, cwd=elsewhere
    )
    hint = listed.stdout.strip()
    assert hint.startswith("no accounts yet: "), listed.stdout + listed.stderr
    command = [a.replace("USERNAME", "zoe") for a in hinted(hint)]
    assert "-c" in command
    added = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env={**os.environ, "OMNIDESK_PASSWORD": "a-long-password-1"},
    )
    assert added.returncode == 0, added.stderr
    assert "created admin zoe" in added.stdout


def test_demo_passwd_hint_runs_as_printed(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    demo = subprocess.Popen(
        [SCRIPT, "run", "--demo", "-c", cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path.parent,
    )
    assert demo.stderr is not None
    seen = []
    for line in demo.stderr:
        seen.append(line)
        if "agents passwd demo" in line:
            break
    demo.terminate()
    demo.communicate(timeout=60)
    assert demo.returncode == 0 and "agents passwd demo" in seen[-1], "".join(seen)
    command = hinted(seen[-1])
    assert command[0] == str(SCRIPT), "the script is not on PATH: its path"
    changed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path.parent,
        env={**os.environ, "OMNIDESK_PASSWORD": "another-password-2"},
    )
    assert changed.returncode == 0, changed.stderr
    assert "password changed for demo" in changed.stdout


def test_a_command_logs_to_stderr_with_personal_data_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only ``run``: whatever a command logs (a retried message's warning,
    say) is masked as the daemon's lines are, and stays off stdout."""
    import logging

    import structlog

    from omnidesk.cli import main

    monkeypatch.chdir(tmp_path)
    handlers = list(logging.getLogger().handlers)
    try:
        assert main(["classify", "eval", "missing.jsonl"]) == 2
        capsys.readouterr()
        structlog.get_logger("omnidesk.test").warning("sent", to="ann.lee@example.com")
        out, err = capsys.readouterr()
        assert "ann.lee@example.com" not in out + err
        assert "a***@example.com" in err and out == ""
    finally:
        # The next tests log as they did before this one.
        structlog.reset_defaults()
        for h in logging.getLogger().handlers:
            if h not in handlers:
                logging.getLogger().removeHandler(h)
