"""The imap channel against a real Dovecot: IDLE and polling, the UID cursor
across restarts, UIDVALIDITY changes, a connection cut in the middle of a
FETCH, marking after accept, logins that keep failing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon, build_adapters
from omnidesk.channels.imap import ImapChannel, imap_utf7, parse_fetch, uid_set
from omnidesk.config import ConfigError, parse_config
from omnidesk.intake import Intake
from omnidesk.store import open_store
from tests.conftest import admin_token, settle

from .conftest import (
    Dovecot,
    ImapUser,
    Proxy,
    Relay,
    Tls,
    eventually,
    imap_channel,
    mail,
    relay_options,
    rows,
)

pytestmark = pytest.mark.dovecot


def imap(daemon: Daemon, name: str = "inbox") -> ImapChannel:
    adapter = daemon.adapters[name]
    assert isinstance(adapter, ImapChannel)
    return adapter


async def append(dovecot: Dovecot, user: ImapUser, raw: bytes, **kw: Any) -> None:
    await asyncio.to_thread(dovecot.append, user, raw, **kw)


async def stored(daemon: Daemon) -> list[str]:
    """External ids of the inbound messages stored, in order (duplicates kept)."""
    await settle(daemon)
    found = await rows(
        daemon, "SELECT external_id FROM messages WHERE direction = 'in' ORDER BY id"
    )
    return [r["external_id"] for r in found]


async def wait_stored(daemon: Daemon, n: int, timeout: float = 15) -> list[str]:
    async def enough() -> list[str] | None:
        ids = await stored(daemon)
        return ids if len(ids) >= n else None

    ids = await eventually(enough, timeout, every=0.1)
    assert ids is not None, f"expected {n} messages, have {await stored(daemon)}"
    return ids  # type: ignore[no-any-return]


async def wait_running(daemon: Daemon, name: str = "inbox", timeout: float = 10) -> None:
    async def running() -> bool:
        return imap(daemon, name).health().state == "running"

    assert await eventually(running, timeout), imap(daemon, name).health()


async def test_first_start_takes_unread_mail_then_idle_wakes_up(
    email_daemon: Any, dovecot: Dovecot, relay: Relay
) -> None:
    user = dovecot.add_user()
    unread, mid_unread = mail("Unread before we started")
    read, _ = mail("A human read this one already")
    await append(dovecot, user, unread)
    await append(dovecot, user, read, flags=r"(\Seen)")
    # poll_interval is an hour: only IDLE can bring the next message in
    daemon = await email_daemon(
        imap_channel(
            dovecot,
            user,
            poll_interval=3600,
            auto_acknowledge="Received, ticket {conversation_id}.",
            **relay_options(relay),
        )
    )
    assert await wait_stored(daemon, 1) == [mid_unread]
    await wait_running(daemon)
    assert "IDLE" in imap(daemon).health().detail

    live, mid_live = mail("Arrived while we were idling", sender="bob@example.org")
    await append(dovecot, user, live)
    assert await wait_stored(daemon, 2) == [mid_unread, mid_live]
    # Mail found at the first start is old news: only the live one is acknowledged.
    (ack,) = await relay.wait(1)
    assert ack.rcpt_tos == ["bob@example.org"]
    await asyncio.sleep(0.3)
    assert len(relay.received) == 1
    flags = await asyncio.to_thread(dovecot.flags, user)
    assert all("\\Seen" in f for f in flags.values()), flags
    (meta,) = await rows(daemon, "SELECT meta FROM inbound WHERE external_id = ?", (mid_live,))
    env = json.loads(meta["meta"])
    assert env["transport"] == "imap" and env["folder"] == "INBOX" and env["uid"] == 3
    assert "backfill" not in env
    first = await rows(daemon, "SELECT meta FROM inbound WHERE external_id = ?", (mid_unread,))
    assert json.loads(first[0]["meta"])["backfill"] is True


async def test_polling_when_idle_is_off(email_daemon: Any, dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    daemon = await email_daemon(imap_channel(dovecot, user, idle=False, poll_interval=0.2))
    await wait_running(daemon)
    assert "polling" in imap(daemon).health().detail
    raw, mid = mail("polled")
    await append(dovecot, user, raw)
    assert await wait_stored(daemon, 1) == [mid]


async def test_cursor_survives_restart_and_ignores_seen_flags(
    email_daemon: Any, dovecot: Dovecot, daemon_factory: Any
) -> None:
    user = dovecot.add_user()
    channel = imap_channel(dovecot, user)
    daemon = await email_daemon(channel)
    await wait_running(daemon)
    one, mid1 = mail("one")
    await append(dovecot, user, one)
    await wait_stored(daemon, 1)
    await daemon.stop()

    # While we are down another client reads the new mail: a \Seen message
    # must still be taken (the cursor decides, not the flag).
    two, mid2 = mail("two, read by someone else")
    three, mid3 = mail("three")
    await append(dovecot, user, two, flags=r"(\Seen)")
    await append(dovecot, user, three)
    daemon = await email_daemon(channel)
    assert await wait_stored(daemon, 3) == [mid1, mid2, mid3]
    cursor = {
        r["key"]: r["value"]
        for r in await rows(daemon, "SELECT key, value FROM channel_state WHERE channel = 'inbox'")
    }
    assert cursor["folder:INBOX:last_uid"] == "3"
    assert int(cursor["folder:INBOX:uidvalidity"]) == dovecot.uidvalidity(user)


async def test_uidvalidity_change_resyncs_without_duplicates(
    email_daemon: Any, dovecot: Dovecot
) -> None:
    user = dovecot.add_user()
    channel = imap_channel(dovecot, user)
    daemon = await email_daemon(channel)
    await wait_running(daemon)
    mids = []
    for i in range(3):
        raw, mid = mail(f"before the migration {i}")
        await append(dovecot, user, raw)
        mids.append(mid)
    no_id = b"From: old@example.org\r\nSubject: no message-id\r\n\r\nkept once\r\n"
    await append(dovecot, user, no_id)
    await wait_stored(daemon, 4)
    await daemon.stop()
    old_validity = dovecot.uidvalidity(user)

    dovecot.renumber(user)
    assert dovecot.uidvalidity(user) != old_validity
    raw, mid_new = mail("after the migration")
    await append(dovecot, user, raw)

    daemon = await email_daemon(channel)
    ids = await wait_stored(daemon, 5)
    await wait_running(daemon)
    await asyncio.sleep(0.3)  # give a wrong duplicate the chance to show up
    ids = await stored(daemon)
    assert len(ids) == 5 and len(set(ids)) == 5 and mid_new in ids
    assert len(await rows(daemon, "SELECT id FROM inbound")) == 5
    cursor = await rows(
        daemon,
        "SELECT value FROM channel_state WHERE channel = 'inbox' AND key = ?",
        ("folder:INBOX:uidvalidity",),
    )
    assert int(cursor[0]["value"]) == dovecot.uidvalidity(user)


async def test_connection_cut_mid_fetch_loses_and_duplicates_nothing(
    email_daemon: Any, dovecot: Dovecot, proxy_factory: Any
) -> None:
    user = dovecot.add_user()
    proxy: Proxy = await proxy_factory(dovecot.port)
    daemon = await email_daemon(imap_channel(dovecot, user, port=proxy.port, fetch_batch=10))
    await wait_running(daemon)
    before = proxy.connections
    # ~4 KB per message, ten per chunk: the first chunk of bodies is ~40 KB
    # and the IDLE news, SEARCH and sizes before it well under 10 KB.
    proxy.cut_after(20_000)
    mids = []
    for i in range(25):
        raw, mid = mail(f"bulk {i}", body=f"message {i}\n" + "some text to make it longer\n" * 150)
        mids.append(mid)
        await append(dovecot, user, raw)
    ids = await wait_stored(daemon, 25, timeout=20)
    await asyncio.sleep(0.3)
    ids = await stored(daemon)
    assert sorted(ids) == sorted(mids), "every message once"
    assert proxy.connections > before, "the cut forced a reconnect"
    flags = await asyncio.to_thread(dovecot.flags, user)
    assert len(flags) == 25 and all("\\Seen" in f for f in flags.values())


async def test_cut_between_accept_and_mark_replays_without_duplicates(
    email_daemon: Any, dovecot: Dovecot, proxy_factory: Any
) -> None:
    """The connection dies right after the bodies arrived (accepted, not yet
    marked, cursor not moved): the reconnect looks at the same UIDs again,
    finds them in the store and only marks them."""
    user = dovecot.add_user()
    proxy: Proxy = await proxy_factory(dovecot.port)
    daemon = await email_daemon(imap_channel(dovecot, user, port=proxy.port))
    await wait_running(daemon)
    from omnidesk.channels import imap as imap_module

    original = imap_module.ImapSession.mark
    cut_once: list[bool] = []

    async def cut_then_mark(self: Any, uids: Any) -> None:
        if not cut_once:
            cut_once.append(True)
            proxy.cut()
        await original(self, uids)

    imap_module.ImapSession.mark = cut_then_mark  # type: ignore[method-assign]
    try:
        raws = [mail(f"replayed {i}") for i in range(3)]
        for raw, _ in raws:
            await append(dovecot, user, raw)
        ids = await wait_stored(daemon, 3)

        async def all_seen() -> bool:
            flags = await asyncio.to_thread(dovecot.flags, user)
            return len(flags) == 3 and all("\\Seen" in f for f in flags.values())

        assert await eventually(all_seen, 10)
    finally:
        imap_module.ImapSession.mark = original  # type: ignore[method-assign]
    assert cut_once and proxy.connections >= 2
    assert sorted(await stored(daemon)) == sorted(m for _, m in raws) == sorted(ids)
    assert len(await rows(daemon, "SELECT id FROM inbound")) == 3


async def test_login_failing_marks_unhealthy_without_spinning(
    email_daemon: Any, dovecot: Dovecot
) -> None:
    user = dovecot.add_user(password="right")
    cfg = imap_channel(dovecot, user, max_login_failures=2, backoff_base=0.05, backoff_max=0.4)
    cfg["password"] = "wrong"
    daemon = await email_daemon(cfg)
    ch = imap(daemon)

    async def failing() -> bool:
        return ch.health().state == "failing"

    assert await eventually(failing, 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        # A Prometheus that scrapes only /metrics sees it too (before any
        # /healthz call has refreshed the gauge).
        scraped = (await c.get("/metrics", headers=await admin_token(daemon))).text
        body = (await c.get("/healthz")).json()
    assert 'omnidesk_channel_healthy{channel="inbox"} 0.0' in scraped
    assert body["status"] == "degraded"
    assert body["channels"]["inbox"]["ok"] is False
    assert "refused" in body["channels"]["inbox"]["detail"]
    # Backing off, not hammering: with delays capped at 0.4 s (±20 %) two
    # seconds hold at most a handful of attempts; a spinning loop makes
    # hundreds.
    before = ch.logins
    await asyncio.sleep(2.0)
    assert ch.logins - before <= 8

    # The admin fixes the password on the server side: the channel recovers.
    dovecot.set_password(user, "wrong")
    await wait_running(daemon)
    raw, mid = mail("after the fix")
    await append(dovecot, user, raw)
    assert await wait_stored(daemon, 1) == [mid]


@pytest.mark.parametrize("mode", ["keyword", "move", "none"])
async def test_mark_modes(email_daemon: Any, dovecot: Dovecot, mode: str) -> None:
    user = dovecot.add_user()
    daemon = await email_daemon(imap_channel(dovecot, user, mark=mode, move_to="Erledigt Ärger"))
    await wait_running(daemon)
    raw, mid = mail("mark me")
    await append(dovecot, user, raw)
    await wait_stored(daemon, 1)

    async def marked() -> bool:
        inbox = await asyncio.to_thread(dovecot.flags, user)
        if mode == "keyword":
            return "$Omnidesk" in inbox.get(mid, "")
        if mode == "move":
            moved = await asyncio.to_thread(dovecot.flags, user, "Erledigt Ärger")
            return not inbox and mid in moved
        return mid in inbox

    assert await eventually(marked, 10)
    inbox = await asyncio.to_thread(dovecot.flags, user)
    if mode != "move":
        assert "\\Seen" not in inbox[mid]


async def test_same_message_in_two_folders_is_stored_once(
    email_daemon: Any, dovecot: Dovecot
) -> None:
    user = dovecot.add_user()
    raw, mid = mail("copied to two folders")
    await append(dovecot, user, raw, folder="Support")
    daemon = await email_daemon(imap_channel(dovecot, user, folders=["INBOX", "Support"]))
    await wait_running(daemon)
    await append(dovecot, user, raw)
    other, mid2 = mail("only in Support")
    await append(dovecot, user, other, folder="Support")
    assert sorted(await wait_stored(daemon, 2)) == sorted([mid, mid2])
    await asyncio.sleep(0.5)
    assert sorted(await stored(daemon)) == sorted([mid, mid2])
    support = await asyncio.to_thread(dovecot.flags, user, "Support")
    assert all("\\Seen" in f for f in support.values())


async def test_oversized_message_keeps_headers_and_stays_unread(
    email_daemon: Any, dovecot: Dovecot
) -> None:
    user = dovecot.add_user()
    daemon = await email_daemon(imap_channel(dovecot, user, max_message_size=2048))
    await wait_running(daemon)
    raw, mid = mail("huge attachment", body="x" * 70 + "\n" + ("y" * 76 + "\n") * 100)
    await append(dovecot, user, raw)
    await wait_stored(daemon, 1)
    (m,) = await rows(daemon, "SELECT text, subject FROM messages WHERE direction = 'in'")
    assert m["subject"] == "huge attachment" and "left in the mailbox" in m["text"]
    flags = await asyncio.to_thread(dovecot.flags, user)
    assert "\\Seen" not in flags[mid], "a human has to look at it in the mailbox"


async def test_implicit_tls_with_a_private_ca(
    email_daemon: Any, dovecot: Dovecot, tls: Tls
) -> None:
    user = dovecot.add_user()
    daemon = await email_daemon(
        imap_channel(dovecot, user, port=dovecot.tls_port, tls="tls", ca_file=str(tls.ca_file)),
        imap_channel(dovecot, user, name="untrusted", port=dovecot.tls_port, tls="tls"),
    )
    await wait_running(daemon)
    raw, mid = mail("over TLS")
    await append(dovecot, user, raw)
    assert mid in await wait_stored(daemon, 1)

    async def refused() -> bool:
        return imap(daemon, "untrusted").health().ok is False

    assert await eventually(refused, 10)
    assert "CERTIFICATE_VERIFY_FAILED" in imap(daemon, "untrusted").health().detail


def test_starttls_is_refused_with_a_clear_error(tmp_path: Any) -> None:
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "inbox",
                    "type": "imap",
                    "host": "imap.example.com",
                    "tls": "starttls",
                    "username": "u",
                    "password": "p",
                }
            ]
        },
        base_dir=tmp_path,
    )
    with pytest.raises(ConfigError) as err:
        build_adapters(cfg, Intake(open_store(f"sqlite:///{tmp_path / 'x.db'}")), None)
    assert err.value.key.endswith(".tls") and "993" in err.value.reason


def test_protocol_helpers() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert imap_utf7("Entwürfe & Co") == "Entw&APw-rfe &- Co"
    assert imap_utf7("台北") == "&U,BTFw-"
    lines = [
        b'1 FETCH (UID 7 INTERNALDATE "01-Feb-2026 10:00:00 +0000" BODY[] {3}',
        bytearray(b"abc"),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",  # an unsolicited update: no UID
        b"3 FETCH (BODY[] {2}",
        bytearray(b"de"),
        b" UID 9)",  # UID after the literal
        b"Fetch completed.",
    ]
    got = parse_fetch(lines)
    assert [(f.uid, f.body) for f in got] == [(7, b"abc"), (9, b"de")]
    assert got[0].internaldate == "01-Feb-2026 10:00:00 +0000"


async def test_mail_arriving_during_a_sync_is_not_left_for_the_next_idle_refresh(
    email_daemon: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reports it (EXISTS) while we are busy fetching, and never
    again once we IDLE: it must still be taken now, not at idle_refresh."""
    from omnidesk.channels import imap as imap_module

    user = dovecot.add_user()
    late, mid_late = mail("arrived mid-sync")
    original = imap_module.FolderSync.take
    injected: list[bool] = []

    async def take_and_deliver(self: Any, s: Any, uids: Any, **kw: Any) -> Any:
        if uids and not injected:
            injected.append(True)
            await append(dovecot, user, late)
            await asyncio.sleep(1.0)  # Dovecot notices and says EXISTS meanwhile
            await s.ok(s.client.noop(), "NOOP")
        return await original(self, s, uids, **kw)

    monkeypatch.setattr(imap_module.FolderSync, "take", take_and_deliver)
    daemon = await email_daemon(imap_channel(dovecot, user, idle_refresh=600, poll_interval=3600))
    await wait_running(daemon)
    first, mid_first = mail("the one being synced")
    await append(dovecot, user, first)
    # Both taken now (on PostgreSQL two pipeline batches may commit them in
    # either order: they are separate conversations).
    assert sorted(await wait_stored(daemon, 2, timeout=10)) == sorted([mid_first, mid_late])
