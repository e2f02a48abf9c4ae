"""Start-up is all or nothing: ``omnidesk run`` either starts every listener
and channel, or says in one line why not, exits with 1 (environment) or 2
(configuration) and leaves nothing open. SIGTERM and SIGINT end it with
``daemon_stopped`` and exit 0 at any moment, during start-up too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from omnidesk.app import Daemon
from omnidesk.config import ConfigError
from omnidesk.startup import StartupError
from tests.conftest import API_SECRET, config_data, make_config, require_service

CLI = [sys.executable, "-m", "omnidesk.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_bind(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def write_config(tmp_path: Path, *channels: dict[str, Any], **sections: Any) -> Path:
    """``make_config``'s settings in a config file, with drop-in channels from
    ``tmp_path / "channels"`` and these ``channels`` beside the API channel."""
    url = sections.pop("url", f"sqlite:///{tmp_path / 'data' / 'omnidesk.db'}")
    data = config_data(tmp_path, url, **sections)
    data["daemon"] |= {"log_level": "info", "channels_dir": str(tmp_path / "channels")}
    data["pipeline"] |= {"processes": 0}
    data["channels"] += channels
    cfg = tmp_path / "omnidesk.toml"  # not the default name: hints need -c
    cfg.write_text(tomlkit.dumps(data))
    return cfg


def split_stderr(stderr: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(lines meant for a person, the JSON log records)."""
    human: list[str] = []
    records: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            human.append(line)
            continue
        if isinstance(rec, dict) and "event" in rec:
            records.append(rec)
        else:
            human.append(line)
    return human, records


def run_fails(cfg: Path, *prefix: str) -> tuple[int, str, list[dict[str, Any]]]:
    """Run ``omnidesk run -c cfg`` to its end: (exit code, the one line, the log)."""
    proc = subprocess.run(
        [*prefix, *CLI, "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cfg.parent,
    )
    human, records = split_stderr(proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(human) == 1, f"expected one line, got {human!r}"
    assert not any(r["event"] == "daemon_started" for r in records)
    assert not any("exception" in r for r in records), records
    return proc.returncode, human[0], records


# -- environment: exit 1 ------------------------------------------------------------
def test_web_port_in_use(tmp_path: Path, busy_port: int) -> None:
    rc, line, _ = run_fails(write_config(tmp_path, web={"port": busy_port}))
    assert rc == 1
    assert line == f"omnidesk: port {busy_port} (web) is already in use"


def test_smtp_port_in_use(tmp_path: Path, busy_port: int) -> None:
    smtp = {"name": "mail", "type": "smtp", "port": busy_port, "accept": ["*"]}
    web = free_port()
    rc, line, _ = run_fails(write_config(tmp_path, smtp, web={"port": web}))
    assert rc == 1
    assert line == f"omnidesk: port {busy_port} (smtp channel mail) is already in use"
    assert can_bind(web), "the web port bound before the SMTP listener failed is free again"


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    rc, line, _ = run_fails(
        write_config(tmp_path, url=f"sqlite:///{tmp_path / 'db' / 'omnidesk.db'}")
    )
    assert rc == 1
    assert line == f"omnidesk: data directory {tmp_path / 'data'} is a file, not a directory"


def test_data_dir_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # root writes anywhere: run the daemon without that privilege.
        setpriv = shutil.which("setpriv")
        require_service(setpriv is not None, "setpriv (util-linux)", "apt-get install util-linux")
        assert setpriv is not None
        prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-fowner"]
    cfg = write_config(
        tmp_path,
        daemon={"data_dir": str(locked / "data")},
        url=f"sqlite:///{tmp_path / 'db' / 'omnidesk.db'}",
    )
    try:
        rc, line, _ = run_fails(cfg, *prefix)
    finally:
        locked.chmod(0o755)
    assert rc == 1
    assert line.startswith(f"omnidesk: data directory {locked / 'data'} is not writable:")
    assert "Permission denied" in line


def test_unreachable_postgresql(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    rc, line, _ = run_fails(
        write_config(tmp_path, url=f"postgresql://omnidesk:hunter2@127.0.0.1:{port}/helpdesk")
    )
    assert rc == 1
    assert line.startswith(
        f"omnidesk: cannot connect to PostgreSQL at postgresql://omnidesk:***@127.0.0.1:{port}/"
    )
    assert "hunter2" not in line


# -- configuration: exit 2 ----------------------------------------------------------
def test_broken_rules(tmp_path: Path, rules_copy: Path) -> None:
    rules = rules_copy
    (rules / "90-broken.toml").write_text(
        '[[rule]]\nname = "x"\n[rule.when]\ntext.contains = "a"\n[rule.then]\ncategory = "angry"\n'
    )
    rc, line, _ = run_fails(write_config(tmp_path, rules={"dir": str(rules)}))
    assert rc == 2
    assert line.startswith(f"omnidesk: rules: {rules / '90-broken.toml'}:6:")
    assert "'angry'" in line
    # The way to see every problem, runnable as printed (with this -c).
    assert line.endswith(" rules check -c omnidesk.toml"), line


def test_bad_config(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, web={"colour": "red"})
    rc, line, _ = run_fails(cfg)
    assert rc == 2
    assert line == f"configuration error: {cfg}: web.colour: unknown setting"


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        (None, "no enabled [[channels]] entry named 'mail'"),
        (
            {"name": "mail", "type": "api", "secret": API_SECRET},
            "'mail' is a channel of type api, not an e-mail channel (smtp or imap)",
        ),
        (
            {"name": "mail", "type": "smtp", "port": 0, "accept": ["*"]},
            "the e-mail channel 'mail' has no relay to send with",
        ),
    ],
)
def test_webchat_email_channel_must_name_an_email_channel(
    tmp_path: Path, peer: dict[str, Any] | None, reason: str
) -> None:
    chat = {"name": "site", "type": "webchat", "secret": "s" * 20, "email_channel": "mail"}
    cfg = write_config(tmp_path, chat, *([peer] if peer else []))
    rc, line, _ = run_fails(cfg)
    assert rc == 2
    assert line == f"configuration error: {cfg}: channels[1].email_channel: {reason}"


def test_a_channel_that_does_not_start_stops_the_daemon(tmp_path: Path) -> None:
    dropin_channel(tmp_path, "start", "raise RuntimeError('the token was refused')")
    rc, line, _ = run_fails(write_config(tmp_path, BROKEN))
    assert rc == 1
    assert line == (
        "omnidesk: channel shop (broken) did not start: RuntimeError: the token was refused"
    )
    # With log_level = "debug" the log has the traceback, for the adapter's author.
    cfg = tmp_path / "omnidesk.toml"
    cfg.write_text(cfg.read_text().replace('log_level = "info"', 'log_level = "debug"'))
    proc = subprocess.run([*CLI, "run", "-c", cfg], capture_output=True, text=True, timeout=120)
    _, records = split_stderr(proc.stderr)
    failed = [r for r in records if r["event"] == "channel_start_failed"]
    assert proc.returncode == 1 and failed and failed[0]["channel"] == "shop"
    assert "the token was refused" in failed[0]["exception"]


# -- all or nothing, in the process ---------------------------------------------------
async def test_nothing_is_left_open_after_a_failed_start(
    tmp_path: Path, store_url: str, busy_port: int
) -> None:
    """A second SMTP channel's port is taken: the web port and the first
    channel's port, both bound by then, are free again, the store is closed
    and no task is left running."""
    web, first = free_port(), free_port()
    cfg = make_config(
        tmp_path,
        store_url,
        web={"port": web},
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET},
            {"name": "mail1", "type": "smtp", "port": first, "accept": ["*"]},
            {"name": "mail2", "type": "smtp", "port": busy_port, "accept": ["*"]},
        ],
    )
    d = Daemon(cfg)
    with pytest.raises(StartupError, match=f"port {busy_port} .smtp channel mail2. is already"):
        await d.start()
    assert can_bind(web) and can_bind(first)
    assert all(t.done() for t in d._tasks.values())
    with pytest.raises(AssertionError, match="not open"):
        await d.store.read(lambda db: None)
    assert not d.started.is_set()


async def test_a_failed_start_stops_the_pipeline_processes(tmp_path: Path) -> None:
    """A failure after the pipeline processes started (the last step, the web
    server, made to fail here) stops them again."""

    pids: list[int | None] = []

    class WebFails(Daemon):
        async def _start_web(self) -> None:
            assert self.pipeline_processes is not None
            await self.pipeline_processes.wait_ready()
            pids.extend(self.pipeline_processes.pids)
            raise StartupError("the web server did not start")

    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", pipeline={"processes": 1})
    d = WebFails(cfg)
    with pytest.raises(StartupError, match="web server did not start"):
        await d.start()
    assert d.pipeline_processes is not None and d.pipeline_processes.alive() == 0
    assert pids and pids[0] is not None, "a pipeline process had started"
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


async def test_a_channel_config_error_at_start_is_a_config_error(tmp_path: Path) -> None:
    dropin_channel(
        tmp_path, "start", "raise self.ctx.options.error('token', 'environment variable T unset')"
    )
    cfg = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        daemon={"channels_dir": str(tmp_path / "channels"), "data_dir": str(tmp_path / "data")},
        channels=[{"name": "shop", "type": "broken"}],
    )
    d = Daemon(cfg)
    with pytest.raises(ConfigError, match=r"channels\[0\].token: environment variable T unset"):
        await d.start(web=False)


# -- signals --------------------------------------------------------------------------
BROKEN = {"name": "shop", "type": "broken"}

DROPIN = """
import asyncio
import sys
import time

from omnidesk.channels.base import ChannelAdapter
from omnidesk.model import Skip


class Broken(ChannelAdapter):
    type = "broken"

    def __init__(self, ctx):
        super().__init__(ctx)
        {init}

    async def start(self):
        {start}

    def normalize(self, envelope):
        return Skip("test")

    async def send(self, message):
        raise NotImplementedError
"""


def dropin_channel(tmp_path: Path, where: str, code: str) -> None:
    """A drop-in channel type "broken" doing ``code`` in __init__ or start()."""
    folder = tmp_path / "channels"
    folder.mkdir(exist_ok=True)
    init = code if where == "init" else "pass"
    start = code if where == "start" else "pass"
    (folder / "broken.py").write_text(textwrap.dedent(DROPIN).format(init=init, start=start))


def start_daemon(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cfg.parent,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> None:
    """Read stderr until a line contains ``needle`` (lines kept in ``seen``)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the daemon ended before {needle!r}: {''.join(seen)}")
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} in time: {''.join(seen)}")


def ends_cleanly(proc: subprocess.Popen[str], seen: list[str], sig: int) -> list[dict[str, Any]]:
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    human, records = split_stderr("".join(seen) + rest)
    assert proc.returncode == 0, "".join(seen) + rest
    assert not human, human
    assert records[-1]["event"] == "daemon_stopped"
    return records


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_the_daemon_is_built(tmp_path: Path, sig: int) -> None:
    """Before the event loop runs (loading rules and models, building channels)."""
    dropin_channel(
        tmp_path, "init", "print('building', file=sys.stderr, flush=True); time.sleep(60)"
    )
    proc = start_daemon(write_config(tmp_path, BROKEN))
    seen: list[str] = []
    wait_for_line(proc, "building", seen)
    seen.remove("building\n")
    records = ends_cleanly(proc, seen, sig)
    assert not any(r["event"] == "daemon_started" for r in records)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_channels_start(tmp_path: Path, sig: int) -> None:
    """In the event loop, while a channel starts: the start is interrupted,
    what it opened is closed."""
    dropin_channel(
        tmp_path, "start", "print('starting', file=sys.stderr, flush=True); await asyncio.sleep(60)"
    )
    web = free_port()
    proc = start_daemon(write_config(tmp_path, BROKEN, web={"port": web}))
    seen: list[str] = []
    wait_for_line(proc, "starting", seen)
    seen.remove("starting\n")
    records = ends_cleanly(proc, seen, sig)
    assert not any(r["event"] == "daemon_started" for r in records)
    assert can_bind(web)


def test_sigterm_after_start(tmp_path: Path) -> None:
    proc = start_daemon(write_config(tmp_path))
    seen: list[str] = []
    wait_for_line(proc, "daemon_started", seen)
    records = ends_cleanly(proc, seen, signal.SIGTERM)
    assert [r["event"] for r in records].count("daemon_started") == 1
