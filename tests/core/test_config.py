from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from omnidesk.config import ConfigError, Secret, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_with_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIDESK_API_SECRET", "s3cret-value")
    cfg = load_config(REPO / "config.example.toml")
    assert cfg.storage_url == f"sqlite:///{REPO / 'data' / 'omnidesk.db'}"
    assert (cfg.web_host, cfg.web_port) == ("127.0.0.1", 8080)
    api = cfg.channel("api")
    assert api.type == "api"
    secret = api.options.secret("secret")
    assert secret.reveal() == "s3cret-value"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)


def test_missing_env_secret_names_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNIDESK_API_SECRET", raising=False)
    cfg = load_config(REPO / "config.example.toml")
    with pytest.raises(ConfigError) as err:
        cfg.channel("api").options.secret("secret")
    assert "channels[0].secret" in str(err.value)
    assert "config.example.toml" in str(err.value)
    assert "OMNIDESK_API_SECRET" in str(err.value)


def test_secret_from_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "api.secret").write_text("from-a-file\n")
    cfg = parse_config(
        {"channels": [{"name": "api", "type": "api", "secret": "file:api.secret"}]},
        file=tmp_path / "c.toml",
        base_dir=tmp_path,
    )
    assert cfg.channel("api").options.secret("secret") == Secret("from-a-file")


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ('[web]\nport = "eighty"\n', "web.port", "must be an integer"),
        ("[web]\nport = 70000\n", "web.port", "at most 65535"),
        ('[storage]\nurl = "mysql://x"\n', "storage.url", "sqlite:///"),
        ("[pipeline]\nbatch_size = 0\n", "pipeline.batch_size", "at least 1"),
        ('[daemon]\ncolour = "red"\n', "daemon.colour", "unknown setting"),
        ('[[teams]]\nname = "a"\nstrategy = "random"\n', "teams[0].strategy", "must be one of"),
        ('[[channels]]\nname = "bad name"\ntype = "api"\n', "channels[0].name", "letters"),
        ('[[channels]]\ntype = "api"\n', "channels[0].name", "is required"),
        ("a = 1\nb = = 2\n", "(syntax)", "line 2"),
        ('[classifier]\nretrain_every = "daily"\n', "classifier.retrain_every", "like"),
        ('[classifier]\nretrain_every = "0h"\n', "classifier.retrain_every", "duration"),
        ("[classifier]\nretrain_min_new = 0\n", "classifier.retrain_min_new", "at least 1"),
    ],
)
def test_invalid_config_names_key_and_file(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(path.resolve()) in str(err.value) or str(path) in str(err.value)


def test_cli_exits_2_with_one_clear_line_on_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[web]\nport = "eighty"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", "quarantine", "list", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "web.port" in proc.stderr and "bad.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_secrets_never_reach_logs(capsys: pytest.CaptureFixture[str]) -> None:
    from omnidesk import logging as odlog

    odlog.configure("info", json=True)
    try:
        structlog.get_logger("t").info(
            "connecting",
            secret=Secret("hunter2"),
            token="abc123",
            api_key="k-999",
            peer=Secret("pw-in-a-value"),
        )
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().err
    for leaked in ("hunter2", "abc123", "k-999", "pw-in-a-value"):
        assert leaked not in out
    assert "connecting" in out


def test_pipeline_processes_auto_chooses_from_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnidesk.config import auto_processes

    assert [auto_processes(n) for n in (1, 2, 4, 64)] == [0, 2, 2, 2]
    for cores, expected in (({0}, 0), ({0, 1}, 2), ({0, 1, 2, 3}, 2)):
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid, c=cores: c)
        assert parse_config({}).pipeline_processes == expected  # the default is "auto"
        assert parse_config({"pipeline": {"processes": "auto"}}).pipeline_processes == expected
    # An accept-only instance runs no pipeline, whatever the cores.
    assert parse_config({"pipeline": {"workers": 0}}).pipeline_processes == 0
    assert parse_config({"pipeline": {"processes": 1}}).pipeline_processes == 1


@pytest.mark.parametrize("value", ["many", -1, True, 1.5])
def test_pipeline_processes_refuses_other_values(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"pipeline": {"processes": value}})
    assert err.value.key == "pipeline.processes"
    assert 'must be "auto" or a number from 0 on' in err.value.reason


def test_retrain_schedule_reads_durations(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    for text, seconds in (("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800)):
        path.write_text(f'[classifier]\nretrain_every = "{text}"\n')
        assert load_config(path).retrain_every == seconds
    path.write_text("")
    config = load_config(path)
    assert config.retrain_every is None and config.retrain_min_new == 50


def test_inbox_reply_file_limits() -> None:
    default = parse_config({})
    assert default.reply_attachment_max == 10240 * 1024
    assert default.reply_attachments_total_max == 20480 * 1024
    assert default.reply_attachments_max_count == 10
    cfg = parse_config({"inbox": {"max_reply_attachment_kb": 100, "max_reply_attachments": 2}})
    assert cfg.reply_attachment_max == 100 * 1024
    assert cfg.reply_attachments_total_max == 200 * 1024  # twice the per-file limit
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"inbox": {"max_reply_attachment_kb": 100, "max_reply_attachments_total_kb": 50}}
        )
    assert err.value.key == "inbox.max_reply_attachments_total_kb"
    assert "at least max_reply_attachment_kb (100)" in err.value.reason
    with pytest.raises(ConfigError) as err:
        parse_config({"inbox": {"max_reply_attachment_kb": 0}})
    assert err.value.key == "inbox.max_reply_attachment_kb"
