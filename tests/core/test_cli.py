"""The omnidesk command, run as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omnidesk import __version__
from tests.conftest import API_SECRET, RULES, message

CLI = [sys.executable, "-m", "omnidesk.cli"]


def run(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"omnidesk {__version__}"


def test_rules_check_passes_on_shipped_rules() -> None:
    proc = run("rules", "check", "--rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


def test_rules_check_fails_with_file_and_reason(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "60-broken.toml").write_text(
        '[[rule]]\nname = "x"\n[rule.when]\ntext.contains = "a"\n[rule.then]\ncategory = "angry"\n'
    )
    proc = run("rules", "check", "--rules", str(rules))
    assert proc.returncode == 1
    assert "60-broken.toml" in proc.stdout and "angry" in proc.stdout


def test_rules_check_fails_on_a_failing_example(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "70-example.toml").write_text(
        '[[example]]\nname = "wrong on purpose"\ntext = "Where is my parcel?"\n'
        'expect = { category = "feedback" }\n'
    )
    proc = run("rules", "check", "--rules", str(rules))
    assert proc.returncode == 1
    assert "wrong on purpose" in proc.stdout


@pytest.mark.parametrize(
    ("args", "category", "team"),
    [
        (
            ["--text", "This is the worst service ever, my parcel is lost and nobody answers"],
            "complaint",
            "complaints",
        ),
        (["--text", "请问你们周末营业吗？"], "inquiry", "china"),
        (["--text", "Great job, the new app is lovely!"], "feedback", None),
    ],
)
def test_rules_test_prints_the_decision_as_json(
    args: list[str], category: str, team: str | None
) -> None:
    proc = run("rules", "test", "--rules", str(RULES), "--from", "ann@example.com", *args)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"category", "priority", "team", "assignee", "tags", "rule", "explanation"} <= set(d)
    assert d["category"] == category
    assert d["team"] == team
    assert d["explanation"]


def test_rules_test_reads_a_file_and_contact_attributes(tmp_path: Path) -> None:
    f = tmp_path / "msg.txt"
    f.write_text("This is the third time my parcel is late. Unacceptable.")
    proc = run(
        "rules",
        "test",
        "--rules",
        str(RULES),
        "--file",
        str(f),
        "--attr",
        "tier=gold",
        "--at",
        "2024-05-07T10:00:00+00:00",
    )
    d = json.loads(proc.stdout)
    assert (d["category"], d["team"], d["priority"]) == ("complaint", "vip", "high")


def write_labelled(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")


def test_classify_eval_json(tmp_path: Path) -> None:
    f = tmp_path / "l.jsonl"
    write_labelled(
        f,
        [
            {"text": "Where is my order?", "label": "inquiry"},
            {
                "text": "Terrible service, I want a refund, this is unacceptable",
                "label": "complaint",
            },
            {"text": "Thanks, you were super helpful, great job", "label": "feedback"},
            {"text": "我要投诉，送餐太慢了", "label": "complaint"},
        ],
    )
    proc = run("classify", "eval", str(f), "--json", "--rules", str(RULES))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert set(d) >= {"macro_f1", "accuracy", "per_class", "confusion"}
    assert d["accuracy"] == 1.0
    assert d["per_class"]["complaint"]["recall"] == 1.0


def test_classify_eval_binary_labels_score_complaint_vs_rest(tmp_path: Path) -> None:
    f = tmp_path / "b.jsonl"
    write_labelled(
        f,
        [
            {"text": "Where is my order?", "label": "not_complaint"},
            {
                "text": "Terrible service, I want a refund, this is unacceptable",
                "label": "complaint",
            },
            {"text": "Love it, thanks!", "label": "not_complaint"},
        ],
    )
    proc = run("classify", "eval", str(f), "--rules", str(RULES))
    assert proc.returncode == 0
    assert "complaint" in proc.stdout and "not_complaint" in proc.stdout
    d = json.loads(run("classify", "eval", str(f), "--json", "--rules", str(RULES)).stdout)
    assert set(d["per_class"]) == {"complaint", "not_complaint"}


def test_classify_eval_rejects_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "hi"}\n')
    proc = run("classify", "eval", str(f), "--rules", str(RULES))
    assert proc.returncode == 2 and "bad.jsonl:1" in proc.stderr


def config_file(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[daemon]
data_dir = "data"
[rules]
dir = "{RULES}"
[pipeline]
processes = 0
[[teams]]
name = "support"
members = ["alice"]
[[channels]]
name = "api"
type = "api"
secret = "env:T_SECRET"
""")
    return cfg


def test_tokens_create_prints_the_token_last(tmp_path: Path) -> None:
    cfg = config_file(tmp_path)
    proc = run(
        "tokens",
        "create",
        "--role",
        "agent",
        "--user",
        "alice",
        "-c",
        str(cfg),
        env={"T_SECRET": API_SECRET},
    )
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip().splitlines()[-1]
    assert token.startswith("odk_") and len(token) > 30
    assert token not in proc.stderr


async def test_quarantine_list_show_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnidesk.app import Daemon
    from omnidesk.config import load_config
    from omnidesk.model import Envelope

    cfg_path = config_file(tmp_path)
    env = {"T_SECRET": API_SECRET}
    monkeypatch.setenv("T_SECRET", API_SECRET)
    # Two inputs the pipeline cannot take: one for a channel not configured yet,
    # one that is not JSON at all.
    d = Daemon(load_config(cfg_path))
    await d.start(web=False)
    body = json.dumps(message("p-1", "Can I change my address?")).encode()
    await d.intake.accept(Envelope("partner", "p-1", body))
    await d.intake.accept(Envelope("api", "x-1", b"\xff\xfe not json"))
    await d.pipeline.drain()
    await d.stop()

    listed = json.loads(run("quarantine", "list", "--json", "-c", str(cfg_path), env=env).stdout)
    assert isinstance(listed, list) and len(listed) == 2
    by_ext = {q["external_id"]: q for q in listed}
    assert "partner" in by_ext["p-1"]["error"]
    raw = subprocess.run(
        [*CLI, "quarantine", "show", str(by_ext["x-1"]["id"]), "--raw", "-c", str(cfg_path)],
        capture_output=True,
        timeout=60,
        env={**os.environ, **env},
    ).stdout
    assert raw == b"\xff\xfe not json", "the raw bytes are kept exactly"
    shown = run("quarantine", "show", str(by_ext["p-1"]["id"]), "-c", str(cfg_path), env=env)
    assert "partner" in shown.stdout and "Can I change my address?" in shown.stdout

    # The fix: the admin adds the missing channel, then retries.
    cfg_path.write_text(
        cfg_path.read_text()
        + '\n[[channels]]\nname = "partner"\ntype = "api"\nsecret = "env:T_SECRET"\n'
    )
    retried = run("quarantine", "retry", str(by_ext["p-1"]["id"]), "-c", str(cfg_path), env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"#{by_ext['p-1']['id']}: processed" in retried.stdout
    still = run("quarantine", "retry", str(by_ext["x-1"]["id"]), "-c", str(cfg_path), env=env)
    assert still.returncode == 1 and "still in quarantine" in still.stdout
    listed = json.loads(run("quarantine", "list", "--json", "-c", str(cfg_path), env=env).stdout)
    assert [q["external_id"] for q in listed] == ["x-1"]
