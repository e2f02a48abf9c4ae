"""E-mail copies of notices (``notify`` with ``email = true``) through the
relay of the daemon's e-mail channel: sent to agents with an address, skipped
for those without one or disabled, retried when the relay refuses."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon
from omnidesk.store.service import notice_mail_states
from omnidesk.store.users import create_user, update_user
from tests.conftest import API_SECRET, message, post_inbound, wait_for
from tests.email_channels.conftest import Relay, relay_options, rows, smtp_channel
from tests.service.helpers import rules_with

RULE = """
[[rule]]
name = "tell-the-desk"
on = "time"
[rule.when]
status = "open"
hours_since_created.at_least = 0
[rule.then]
notify = ["alice", "bob", "mallory"]
email = true
"""


async def start(tmp_path: Path, config_factory: Any, daemon_factory: Any, relay: Relay) -> Daemon:
    cfg = config_factory(
        rules={"dir": str(rules_with(tmp_path, RULE)), "watch": False},
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET},
            smtp_channel(**relay_options(relay)),
        ],
    )
    d: Daemon = await daemon_factory(cfg)

    def people(db: Any) -> None:
        create_user(
            db,
            "alice",
            role="agent",
            password_hash=None,
            email="alice@agents.example",
            display_name="Alice Agent",
        )
        create_user(db, "bob", role="agent", password_hash=None)  # no address
        create_user(db, "mallory", role="agent", password_hash=None, email="m@agents.example")
        update_user(db, "mallory", disabled=True)

    await d.store.write(people)
    d.notices.backoff_base = 0.05  # retries within the test
    d.notices.poll = 0.1
    return d


async def a_conversation(d: Daemon) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        r = await post_inbound(c, message("n-1", "My parcel never came", subject="Parcel 77"))
        assert r.status_code == 202, r.text

    async def stored() -> bool:
        return bool(await rows(d, "SELECT id FROM conversations"))

    await wait_for(stored, 30)


async def test_a_notice_is_mailed_to_agents_with_an_address(
    tmp_path: Path, config_factory: Any, daemon_factory: Any, relay: Relay
) -> None:
    d = await start(tmp_path, config_factory, daemon_factory, relay)
    await a_conversation(d)
    await d.scheduler.tick()  # (or the daemon's own scheduler got there first)

    async def sent() -> bool:
        return (await d.store.read(notice_mail_states)).get("sent") == 1

    await wait_for(sent, 15)
    assert await d.store.read(notice_mail_states) == {"sent": 1, "skipped": 2}
    [mail] = relay.received
    assert mail.rcpt_tos == ["alice@agents.example"]
    msg = email.message_from_bytes(mail.data, policy=policy.default)
    assert msg["Subject"] == "[omnidesk] Notice: #1 Parcel 77"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Alice Agent" in msg["To"]
    body = msg.get_body().get_content()  # type: ignore[union-attr]
    assert "Rule tell-the-desk on #1" in body
    assert "/inbox/c/1" in body
    skipped = await rows(
        d, "SELECT username, email_error FROM notifications WHERE email_state = 'skipped'"
    )
    assert {(r["username"], r["email_error"]) for r in skipped} == {
        ("bob", "the agent has no e-mail"),
        ("mallory", "the agent is disabled"),
    }
    # The in-app notifications are there for all three.
    assert len(await rows(d, "SELECT id FROM notifications")) == 3
    # Fired once per episode: a later tick sends nothing more.
    await d.scheduler.tick(sweep=True)
    await d.notices.run_once()
    assert len(relay.received) == 1
    assert len(await rows(d, "SELECT id FROM audit WHERE action = 'rule_fired'")) == 1


async def test_a_refusing_relay_is_retried_until_it_takes_the_mail(
    tmp_path: Path, config_factory: Any, daemon_factory: Any, relay: Relay
) -> None:
    d = await start(tmp_path, config_factory, daemon_factory, relay)
    relay.answer = "451 4.3.0 try again later"
    await a_conversation(d)
    await d.scheduler.tick()

    async def refused() -> list[dict[str, Any]]:
        return await rows(
            d,
            "SELECT email_state, email_attempts, email_error FROM notifications"
            " WHERE username = 'alice' AND email_attempts > 0",
        )

    await wait_for(refused, 15)
    [first] = await refused()
    assert first["email_state"] in ("pending", "sending")
    assert "451" in first["email_error"]
    relay.answer = None

    async def sent() -> bool:
        return (await d.store.read(notice_mail_states)).get("sent") == 1

    await wait_for(sent, 15)
    assert [m.rcpt_tos for m in relay.received] == [["alice@agents.example"]]
