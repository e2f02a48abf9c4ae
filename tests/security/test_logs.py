"""A daemon's log after a realistic session holds no secret, token or
password: what an operator ships to a log service must not open the door.

The daemon runs as ``omnidesk run`` at the most talkative level (debug)
through a working session: password logins (the API and the form), a wrong
password, API tokens made, used and revoked, a user created and given a new
password, signed deliveries on every channel plus forged ones (wrong
secrets, wrong signatures), a web-chat visitor, an agent's reply and a note.
Then every secret of the session is looked for in the log, whole and as its
first 12 characters (a truncated secret is still a leak)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnidesk.channels.api import sign as api_sign
from tests.conftest import engines
from tests.security.daemon_proc import PASSWORDS, SECRETS, DaemonProc, start_daemon
from tests.security.test_webhooks import (
    meta_delivery,
    slack_delivery,
    telegram_delivery,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=engines())
def debug_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonProc]:
    if request.param == "sqlite":
        d = start_daemon(tmp_path, f"sqlite:///{tmp_path / 'omnidesk.db'}", log_level="debug")
        try:
            yield d
        finally:
            d.stop()
        return
    url = request.getfixturevalue("pg_url")
    d = start_daemon(tmp_path, url, log_level="debug")
    try:
        yield d
    finally:
        d.stop()


def session(d: DaemonProc) -> list[str]:
    """Drive the daemon like a working day; returns every secret it saw."""
    seen = [*SECRETS.values(), *PASSWORDS.values(), *d.tokens.values()]
    with httpx.Client(base_url=d.base, timeout=15) as c:
        # A wrong password first, then the right ones.
        wrong = "not-the-password-9f2c"
        seen.append(wrong)
        r = c.post("/api/v1/session", json={"username": "alice", "password": wrong})
        assert r.status_code == 401
        r = c.post("/api/v1/session", json={"username": "root", "password": PASSWORDS["root"]})
        assert r.status_code == 200
        csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
        seen += [r.json()["csrf_token"], c.cookies["omnidesk_session"]]
        made = c.post("/api/v1/me/tokens", json={"name": "session"}, headers=csrf).json()
        seen.append(made["token"])
        bearer = {"Authorization": f"Bearer {made['token']}"}
        assert c.get("/api/v1/conversations", headers=bearer).status_code == 200
        forged = {"Authorization": "Bearer odk_forged-1234"}
        assert c.get("/api/v1/me", headers=forged).status_code == 401
        seen.append("odk_forged-1234")
        new_pw, newer_pw = "a-new-users-pass-77", "changed-pass-8c1e4"
        seen += [new_pw, newer_pw]
        r = c.post(
            "/api/v1/users",
            json={"username": "newbie", "password": new_pw, "teams": ["support"]},
            headers=csrf,
        )
        assert r.status_code == 201
        r = c.patch("/api/v1/users/newbie", json={"password": newer_pw}, headers=csrf)
        assert r.status_code == 200
        # The login form, with its own CSRF cookie.
        with httpx.Client(base_url=d.base, timeout=15) as form:
            page = form.get("/login")
            token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            seen.append(token)
            r = form.post(
                "/login",
                data={"username": "newbie", "password": newer_pw, "csrf_token": token},
            )
            assert r.status_code == 303
            seen.append(form.cookies["omnidesk_session"])
        # Deliveries: genuine ones, and forgeries made with wrong keys.
        for make in (telegram_delivery, slack_delivery, meta_delivery):
            for key in ({}, {"key": "wrong-key-0b7d3e9a1c5f"}):
                dv = make(**key)
                c.post(dv.path, content=dv.body, headers=dv.headers)
        seen.append("wrong-key-0b7d3e9a1c5f")
        body = json.dumps(
            {
                "external_id": uuid.uuid4().hex,
                "sender": {"address": "daylog@example.com"},
                "text": "Where is my parcel?",
            }
        ).encode()
        for key in (SECRETS["api"], "wrong-api-secret-4e8a"):
            sig = api_sign(key, body, int(time.time()))
            seen.append(sig.split("v1=")[1])
            c.post("/api/v1/inbound/api", content=body, headers={"X-Omnidesk-Signature": sig})
        seen.append("wrong-api-secret-4e8a")
        visitor = c.post("/webchat/chat/session", json={}).json()["token"]
        seen.append(visitor)
        chat = {"Authorization": f"Bearer {visitor}"}
        said = {"client_id": uuid.uuid4().hex, "text": "hi"}
        r = c.post("/webchat/chat/messages", json=said, headers=chat)
        assert r.is_success
        r = c.post(
            "/webchat/chat/messages",
            json={"client_id": uuid.uuid4().hex, "text": "hi"},
            headers={"Authorization": f"Bearer {visitor[:-2]}xx"},
        )
        assert r.status_code == 401
        # An agent answers; the token goes.
        deadline = time.monotonic() + 20
        items: list[dict[str, object]] = []
        while not items and time.monotonic() < deadline:
            items = c.get("/api/v1/conversations?channel=api", headers=bearer).json()["items"]
            time.sleep(0.1)
        assert items, "the API channel's message never reached the inbox"
        cid = items[0]["id"]
        for kind in ("reply", "note"):
            r = c.post(
                f"/api/v1/conversations/{cid}/messages",
                json={"text": "On its way", "kind": kind},
                headers=bearer,
            )
            assert r.status_code == 201
        assert c.delete(f"/api/v1/me/tokens/{made['id']}", headers=bearer).status_code == 200
        assert c.delete("/api/v1/session", headers=csrf).status_code == 200
    return seen


def test_a_days_log_holds_no_secret(debug_daemon: DaemonProc) -> None:
    secrets = session(debug_daemon)
    debug_daemon.stop()
    log = debug_daemon.log.read_text(errors="replace")
    assert "login_failed" in log and "daemon_stopped" in log  # the log is the whole run
    leaks = []
    for secret in secrets:
        for probe in {secret, secret[:12]}:
            if len(probe) >= 8 and probe in log:
                line = next(x for x in log.splitlines() if probe in x)
                leaks.append(f"{probe!r} in: {line[:300]}")
    assert not leaks, "\n".join(leaks)
