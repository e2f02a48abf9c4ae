"""Shared fixtures: a store on each engine, a configured daemon with its web
server on a free port, and signed requests for the API channel."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.channels.api import SIGNATURE_HEADER, sign
from omnidesk.config import Config, parse_config
from omnidesk.store import Store, open_store
from tests import testdata

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
API_SECRET = "test-secret-" + "x" * 16
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_service(available: bool, what: str, how: str) -> None:
    """The one place a missing service is handled: with CI=true it fails the
    test (CI must not hide a missing feature); elsewhere it skips with how to
    provide the service."""
    if available:
        return
    message = f"{what} is not available: {how}"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test of data kept outside the repository (the ``corpus`` mark) is
    skipped or failed before its fixtures start (tests/testdata.py)."""
    testdata.running = item
    for mark in item.iter_markers("corpus"):
        for name in mark.args:
            testdata.require(name)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    testdata.running = None


_exit_status = 0
LINGER_GRACE = 5.0  # seconds a leftover thread gets to end after the last test


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread left blocked by a failed test (a blocking call in
    ``asyncio.to_thread``, say) would keep the interpreter from exiting after
    the results are printed, and the run would end only at CI's time limit.
    Such threads get a grace period, then are named with their stacks and the
    run exits at once with the session's own status (the tests' verdict,
    already printed, stands)."""
    deadline = time.monotonic() + LINGER_GRACE
    while True:
        left = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not left:
        return
    frames = sys._current_frames()
    for t in left:
        stack = "".join(traceback.format_stack(frames[t.ident])) if t.ident in frames else ""
        print(f"\nthread {t.name!r} still running after the tests:\n{stack}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(_exit_status)


PG_URL = os.environ.get("OMNIDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def engines() -> list[Any]:
    """Every store engine, unless OMNIDESK_TEST_ENGINES (e.g. "sqlite") narrows
    the run on a developer machine. PostgreSQL tests carry the ``postgres``
    mark: ``-m "not postgres"`` leaves them out."""
    wanted = os.environ.get("OMNIDESK_TEST_ENGINES", "sqlite,postgres").split(",")
    params: list[Any] = []
    if "sqlite" in wanted:
        params.append("sqlite")
    if "postgres" in wanted:
        params.append(pytest.param("postgres", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=engines())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'omnidesk.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty schema on the test PostgreSQL server for this test, as a
    storage URL (``search_path`` in the URL); dropped afterwards."""
    from tests.postgres.pgtools import pg_available, temp_schema

    require_service(
        pg_available(PG_URL),
        f"PostgreSQL at {PG_URL}",
        "start it or set OMNIDESK_TEST_PG=postgresql://user@host:port/db",
    )
    with temp_schema(PG_URL) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped rules that a test may edit."""
    dst = tmp_path / "rules"
    shutil.copytree(RULES, dst)
    return dst


def make_config(tmp_path: Path, store_url: str, **sections: Any) -> Config:
    """A config like config.example.toml, on a free port, with an API channel."""
    return parse_config(config_data(tmp_path, store_url, **sections), base_dir=tmp_path)


def config_data(tmp_path: Path, store_url: str, **sections: Any) -> dict[str, Any]:
    """``make_config``'s settings as a TOML document's data (tables given in
    ``sections`` are merged into the defaults, anything else replaces them)."""
    data: dict[str, Any] = {
        "daemon": {"data_dir": str(tmp_path / "data"), "log_level": "warning"},
        "storage": {"url": store_url},
        "web": {"host": "127.0.0.1", "port": 0},
        "rules": {"dir": str(RULES), "watch": False},
        # The pipeline in the test's own process (the default "auto" runs it in
        # child processes on a machine with two cores or more).
        "pipeline": {"default_team": "support", "processes": 0},
        # The agents of these tests never sign in: every member gets work.
        # Tests of availability turn this on (tests/web/test_availability.py).
        "assignment": {"only_online": False},
        "teams": [
            {"name": "support", "members": ["alice", "bob"], "strategy": "round_robin"},
            {"name": "complaints", "members": ["carol"], "strategy": "least_loaded"},
            {"name": "billing", "members": ["dave"], "strategy": "least_loaded"},
            {"name": "vip", "members": ["erin"], "strategy": "least_loaded"},
            {"name": "escalations", "members": ["frank"], "strategy": "least_loaded"},
            {"name": "china", "members": ["wang"], "strategy": "round_robin"},
        ],
        "channels": [{"name": "api", "type": "api", "secret": API_SECRET}],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture
def config_factory(tmp_path: Path, store_url: str) -> Callable[..., Config]:
    return lambda **sections: make_config(tmp_path, store_url, **sections)


@pytest.fixture
async def daemon_factory() -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(config: Config, *, web: bool = True) -> Daemon:
        d = Daemon(config)
        await d.start(web=web)
        started.append(d)
        return d

    yield start
    for d in started:
        await d.stop()


@pytest.fixture
async def daemon(config_factory: Callable[..., Config], daemon_factory: Any) -> Daemon:
    return await daemon_factory(config_factory())  # type: ignore[no-any-return]


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=10) as c:
        yield c


def signed(
    body: dict[str, Any] | bytes,
    secret: str = API_SECRET,
    ts: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return raw, {SIGNATURE_HEADER: sign(secret, raw, ts), "Content-Type": "application/json"}


async def post_inbound(
    client: httpx.AsyncClient, body: dict[str, Any], channel: str = "api", **kw: Any
) -> httpx.Response:
    raw, headers = signed(body, **kw)
    return await client.post(f"/api/v1/inbound/{channel}", content=raw, headers=headers)


def message(ext: str, text: str, address: str = "ann@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "external_id": ext,
        "sender": {"address": address, "kind": "email", "name": extra.pop("name", "Ann")},
        "text": text,
        **extra,
    }


async def settle(daemon: Daemon, timeout: float = 5.0) -> None:
    """Let the pipeline process everything pending. On PostgreSQL a row one
    batch deferred (another batch held a lock it needed) can still be locked
    by the batch retrying it when drain() looks, so look until none is left."""
    from omnidesk.store.inbound import count_pending

    await daemon.intake.drain()
    deadline = time.monotonic() + timeout
    while True:
        await daemon.pipeline.drain()
        if not await daemon.store.read(count_pending) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


async def admin_token(daemon: Daemon) -> dict[str, str]:
    from omnidesk.store.tokens import create_token

    token = await daemon.store.write(create_token, "admin", name="test")
    return {"Authorization": f"Bearer {token}"}


async def wait_for(pred: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll an async condition until it holds: tests wait for a side effect
    (a delivery, a health change), never for a fixed time."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


S = TypeVar("S")


async def until_done(
    probe: Callable[[], Awaitable[S]],
    done: Callable[[S], bool],
    *,
    stall: float = 30.0,
    every: float = 0.2,
) -> S:
    """Poll ``probe`` until ``done`` holds for what it returns, and return that
    state. Work that is moving is never cut off by a fixed deadline (a loaded
    machine is slow, not stuck): this gives up, returning the last state for
    the caller to assert on, only when the state has not changed for
    ``stall`` seconds."""
    state = await probe()
    changed = time.monotonic()
    while not done(state) and time.monotonic() - changed < stall:
        await asyncio.sleep(every)
        now = await probe()
        if now != state:
            state, changed = now, time.monotonic()
    return state


async def agent_api(daemon: Daemon) -> httpx.AsyncClient:
    """An HTTP client on the inbox API with an admin token (close it)."""
    headers = await admin_token(daemon)
    base = f"http://127.0.0.1:{daemon.web_port}"
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=10)


async def agent_reply(c: httpx.AsyncClient, conversation_id: int, text: str) -> dict[str, Any]:
    """Reply as an agent through the API; returns the queued message."""
    r = await c.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def reply_with_files(daemon: Daemon, conversation_id: int, text: str, *files: Any) -> int:
    """Queue an agent's reply carrying ``files`` (``Attachment``s) and wake
    the outbox; returns the reply's message id."""
    from omnidesk.outbox import queue_reply

    row = await daemon.store.write(
        queue_reply, conversation_id, text=text, author="alice", attachments=list(files)
    )
    daemon.outbox.wake()
    return int(row["id"])


async def wait_delivery(
    c: httpx.AsyncClient, conversation_id: int, message_id: int, *states: str
) -> dict[str, Any]:
    """Wait until the reply's delivery_state is one of ``states``; returns it
    as the conversation API shows it."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        conv = (await c.get(f"/api/v1/conversations/{conversation_id}")).json()
        found.update(next(m for m in conv["messages"] if m["id"] == message_id))
        return found["delivery_state"] in states

    await wait_for(reached)
    return found


async def conversations_full(daemon: Daemon) -> list[dict[str, Any]]:
    """Every conversation with its messages, attachments and audit."""
    from omnidesk.store.inbox import ConversationFilter, get_conversation_full, list_conversations

    items = await daemon.store.read(list_conversations, ConversationFilter(), limit=500)
    return [await daemon.store.read(get_conversation_full, c["id"]) for c in items]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def process_gone(pid: int) -> bool:
    """Exited (a zombie counts: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
async def sqlite_file_store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open SQLite store in a file of its own (for what only SQLite has:
    its write lock, its writer thread, its shared write counters)."""
    s = open_store(f"sqlite:///{tmp_path / 'own.db'}")
    await s.open()
    yield s
    await s.close()
