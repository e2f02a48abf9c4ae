"""The SMTP listener with real clients: stdlib smtplib, aiosmtplib and
Debian's swaks. 250 means stored; recipients we do not serve get 550,
oversized mail 552, a store failure 451; STARTTLS and AUTH with a trustme
certificate; a connection limit answered with 421."""

from __future__ import annotations

import asyncio
import json
import smtplib
import subprocess
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from omnidesk.app import Daemon, build_adapters
from omnidesk.config import ConfigError, parse_config
from omnidesk.intake import Intake
from omnidesk.store import open_store
from omnidesk.store.inbound import insert_envelopes
from tests.conftest import require_service, settle

from .conftest import SUPPORT, SWAKS, Tls, mail, rows, send_smtp, smtp_channel, smtp_port


async def inbound(daemon: Daemon) -> list[dict[str, Any]]:
    return await rows(
        daemon, "SELECT external_id, meta, state FROM inbound WHERE channel = 'email'"
    )


async def test_smtp_ack_only_after_commit(email_daemon: Any, store_url: str) -> None:
    """When the client has its 250, the message is committed: another
    connection to the database sees it (the pipeline is off, so nothing but
    the intake can have written it)."""
    daemon = await email_daemon(smtp_channel(), pipeline={"workers": 0}, web=False)
    port = smtp_port(daemon)
    raw, mid = mail()
    refused = await asyncio.to_thread(send_smtp, port, raw)
    assert refused == {}
    other = open_store(store_url)
    await other.open()
    try:
        found = await other.read(
            lambda db: db.val("SELECT COUNT(*) FROM inbound WHERE external_id = ?", (mid,))
        )
    finally:
        await other.close()
    assert found == 1


async def test_real_clients_deliver_and_envelope_is_kept(email_daemon: Any) -> None:
    require_service(__import__("os").path.exists(SWAKS), "swaks", "apt-get install -y swaks")
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)

    raw1, mid1 = mail("Order 1 is late")
    await asyncio.to_thread(send_smtp, port, raw1, mail_from="bounce+x@example.org")

    raw2, mid2 = mail("Refund for order 2", sender="Bob <bob@example.org>")
    await aiosmtplib.send(
        raw2,
        sender="bob@example.org",
        recipients=["support+od99@example.com"],
        hostname="127.0.0.1",
        port=port,
    )

    r = await asyncio.to_thread(
        subprocess.run,
        [
            SWAKS,
            "--server",
            f"127.0.0.1:{port}",
            "--from",
            "carol@example.net",
            "--to",
            "desk@help.example.com",
            "--header",
            "Subject: Hello from swaks",
            "--header",
            "Message-Id: <swaks-1@example.net>",
            "--body",
            "Can I change my address?",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 OK" in r.stdout

    await settle(daemon)
    msgs = {
        m["external_id"]: m
        for m in await rows(
            daemon,
            "SELECT external_id, sender_address, subject, text, meta FROM messages"
            " WHERE direction = 'in'",
        )
    }
    assert set(msgs) == {mid1, mid2, "swaks-1@example.net"}
    env1 = json.loads(msgs[mid1]["meta"])["envelope"]
    assert env1["mail_from"] == "bounce+x@example.org"
    assert env1["rcpt_tos"] == [SUPPORT]
    assert env1["transport"] == "smtp" and env1["peer"] == "127.0.0.1"
    assert msgs[mid1]["sender_address"] == "ann@example.org"
    assert json.loads(msgs[mid2]["meta"])["envelope"]["rcpt_tos"] == ["support+od99@example.com"]
    swaks = msgs["swaks-1@example.net"]
    assert swaks["sender_address"] == "carol@example.net"
    assert swaks["subject"] == "Hello from swaks"
    assert "change my address" in swaks["text"]


async def test_recipients_not_accepted_get_550(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    raw, mid = mail()

    def go() -> tuple[Any, Any]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            s.mail("ann@example.org")
            bad = s.rcpt("someone@elsewhere.org")
            good = s.rcpt("Support+od7@Example.COM")
            assert good[0] == 250
            s.data(raw)
            try:
                s.sendmail("ann@example.org", ["other@example.com"], raw)
            except smtplib.SMTPRecipientsRefused as exc:
                return bad, exc.recipients
            return bad, None

    bad, refused = await asyncio.to_thread(go)
    assert bad[0] == 550 and b"not accepted" in bad[1]
    assert refused == {
        "other@example.com": (550, b"5.1.1 <other@example.com>: recipient not accepted here")
    }
    stored = await inbound(daemon)
    assert [r["external_id"] for r in stored] == [mid]
    assert json.loads(stored[0]["meta"])["rcpt_tos"] == ["Support+od7@Example.COM"]


async def test_oversized_mail_gets_552(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel(max_message_size=4096))
    port = smtp_port(daemon)
    big, _ = mail(body="line of text\n" * 600)

    def declared() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            return s.mail("ann@example.org", [f"SIZE={len(big)}"])

    def undeclared() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            s.mail("ann@example.org")
            s.rcpt(SUPPORT)
            return s.data(big)[0]

    code, _ = await asyncio.to_thread(declared)
    assert code == 552
    assert await asyncio.to_thread(undeclared) == 552
    assert await inbound(daemon) == []


async def test_bare_lf_mail_of_1_5_mb_is_stored_whole(email_daemon: Any) -> None:
    """Many clients and scripts end lines with a bare LF. A 1.5 MB mail so
    written is 30,000 lines, not one line over the 1 MiB limit: smtplib
    delivers it, and the stored bytes are the sent ones (plus the CRLF that
    smtplib puts before the ending dot). A real over-long line, 1.5 MB
    without any line break, is refused with a 500 that says why, and the
    session goes on."""
    from omnidesk.channels.smtp import LINE_LIMIT

    daemon = await email_daemon(smtp_channel(), pipeline={"workers": 0}, web=False)
    port = smtp_port(daemon)
    head = (
        b"From: Ann <ann@example.org>\nTo: support@example.com\nSubject: big export\n"
        b"Message-ID: <bare-lf-1@example.org>\nContent-Type: text/plain\n\n"
    )
    body = b"".join(b"row %05d: " % i + b"x" * 40 + b"\n" for i in range(30_000))
    raw = head + body
    assert 1_500_000 < len(raw) and b"\r" not in raw
    assert await asyncio.to_thread(send_smtp, port, raw) == {}
    stored = await rows(daemon, "SELECT external_id, payload FROM inbound WHERE channel = 'email'")
    assert [r["external_id"] for r in stored] == ["bare-lf-1@example.org"]
    assert bytes(stored[0]["payload"]) == raw + b"\r\n"

    one_line = head.replace(b"bare-lf-1", b"one-line") + b"y" * (LINE_LIMIT + 500_000)

    def over_long() -> tuple[int, bytes, dict[str, Any]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            try:
                s.sendmail("ann@example.org", [SUPPORT], one_line)
            except smtplib.SMTPDataError as exc:
                refused = (exc.smtp_code, exc.smtp_error)
            else:
                raise AssertionError("an over-long line was accepted")
            # the same session delivers the next mail
            return (*refused, s.sendmail("ann@example.org", [SUPPORT], raw.replace(b"-1@", b"-2@")))

    code, text, after = await asyncio.to_thread(over_long)
    assert code == 500
    assert text.decode() == (
        f"5.5.2 Line too long: more than {LINE_LIMIT} bytes without a line break"
        " (RFC 5321 4.5.3.1.6)"
    )
    assert after == {}
    ids = {r["external_id"] for r in await inbound(daemon)}
    assert ids == {"bare-lf-1@example.org", "bare-lf-2@example.org"}


async def test_store_failure_answers_451_then_retry_stores_once(
    email_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    real_write = daemon.store.write

    async def failing_write(fn: Any, *args: Any, **kw: Any) -> Any:
        if fn is insert_envelopes:
            raise OSError(28, "No space left on device")
        return await real_write(fn, *args, **kw)

    monkeypatch.setattr(daemon.store, "write", failing_write)
    raw, mid = mail()
    with pytest.raises(smtplib.SMTPDataError) as err:
        await asyncio.to_thread(send_smtp, port, raw)
    assert err.value.smtp_code == 451
    assert await inbound(daemon) == []

    monkeypatch.setattr(daemon.store, "write", real_write)
    assert await asyncio.to_thread(send_smtp, port, raw) == {}
    assert await asyncio.to_thread(send_smtp, port, raw) == {}  # the MTA retried once more
    await settle(daemon)
    assert [r["external_id"] for r in await inbound(daemon)] == [mid]
    assert len(await rows(daemon, "SELECT id FROM messages WHERE direction = 'in'")) == 1


async def test_starttls_and_auth(email_daemon: Any, tls: Tls) -> None:
    daemon = await email_daemon(
        smtp_channel(
            tls_cert=str(tls.cert_file),
            tls_key=str(tls.key_file),
            auth_users={"mta": "s3cret-pass"},
        )
    )
    port = smtp_port(daemon)
    raw, mid = mail()

    def plaintext() -> tuple[bool, int]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            offered = s.has_extn("auth")
            code, _ = s.mail("ann@example.org")
            return offered, code

    offered, code = await asyncio.to_thread(plaintext)
    assert not offered, "AUTH must not be offered before STARTTLS"
    assert code == 530  # authentication required

    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        await asyncio.to_thread(
            send_smtp, port, raw, starttls=tls.client_context(), login=("mta", "wrong")
        )
    assert err.value.smtp_code == 535

    assert (
        await asyncio.to_thread(
            send_smtp, port, raw, starttls=tls.client_context(), login=("mta", "s3cret-pass")
        )
        == {}
    )
    # aiosmtplib too, verifying the server certificate against the test CA
    raw2, mid2 = mail("second")
    await aiosmtplib.send(
        raw2,
        sender="ann@example.org",
        recipients=[SUPPORT],
        hostname="127.0.0.1",
        port=port,
        start_tls=True,
        tls_context=tls.client_context(),
        username="mta",
        password="s3cret-pass",
    )
    stored = {r["external_id"]: json.loads(r["meta"]) for r in await inbound(daemon)}
    assert set(stored) == {mid, mid2}
    assert stored[mid]["tls"] is True and stored[mid]["auth_user"] == "mta"


async def test_implicit_tls_listener(email_daemon: Any, tls: Tls) -> None:
    daemon = await email_daemon(
        smtp_channel(tls_cert=str(tls.cert_file), tls_key=str(tls.key_file), tls_mode="implicit")
    )
    port = smtp_port(daemon)
    raw, mid = mail()

    def go() -> Any:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=tls.client_context()) as s:
            return s.sendmail("ann@example.org", [SUPPORT], raw)

    assert await asyncio.to_thread(go) == {}
    stored = await inbound(daemon)
    assert stored[0]["external_id"] == mid and json.loads(stored[0]["meta"])["tls"] is True


async def test_require_tls_refuses_mail_in_clear(email_daemon: Any, tls: Tls) -> None:
    daemon = await email_daemon(
        smtp_channel(tls_cert=str(tls.cert_file), tls_key=str(tls.key_file), require_tls=True)
    )
    port = smtp_port(daemon)

    def go() -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            return s.mail("ann@example.org")[0]

    assert await asyncio.to_thread(go) == 530
    raw, _ = mail()
    assert await asyncio.to_thread(send_smtp, port, raw, starttls=tls.client_context()) == {}


async def test_connection_limit_answers_421(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel(max_connections=1))
    port = smtp_port(daemon)

    def go() -> tuple[int, Any]:
        first = smtplib.SMTP("127.0.0.1", port, timeout=30)
        try:
            first.ehlo()
            try:
                smtplib.SMTP("127.0.0.1", port, timeout=30)
            except smtplib.SMTPConnectError as exc:
                return exc.smtp_code, first.noop()
            return 0, None
        finally:
            first.quit()

    code, still = await asyncio.to_thread(go)
    assert code == 421
    assert still[0] == 250
    # the slot is free again once the first client left
    raw, _ = mail()
    assert await asyncio.to_thread(send_smtp, port, raw) == {}


async def test_sender_from_envelope_when_headers_have_none(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    raw = (
        b"To: support@example.com\r\nSubject: no from header\r\n"
        b"Message-ID: <nofrom-1@example.org>\r\n\r\nWho am I? A customer with a broken mailer.\r\n"
    )
    await asyncio.to_thread(send_smtp, port, raw, mail_from="Dave@Example.org")
    await settle(daemon)
    (m,) = await rows(daemon, "SELECT sender_address FROM messages WHERE direction = 'in'")
    assert m["sender_address"] == "dave@example.org"


async def test_redelivery_is_stored_once_and_long_lines_pass(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    raw, mid = mail(body="A very long line: " + "word " * 1500)  # ~7.5 KB in one line
    assert await asyncio.to_thread(send_smtp, port, raw) == {}
    assert await asyncio.to_thread(send_smtp, port, raw) == {}
    # no Message-ID at all: the same bytes get the same synthetic id
    bare = b"From: eve@example.org\r\nTo: support@example.com\r\nSubject: bare\r\n\r\nhello\r\n"
    assert await asyncio.to_thread(send_smtp, port, bare) == {}
    assert await asyncio.to_thread(send_smtp, port, bare) == {}
    await settle(daemon)
    stored = await inbound(daemon)
    assert len(stored) == 2 and mid in {r["external_id"] for r in stored}
    msgs = await rows(daemon, "SELECT external_id, text FROM messages WHERE direction = 'in'")
    assert len(msgs) == 2
    assert any(m["text"].count("word") == 1500 for m in msgs)


async def test_null_sender_bounce_is_accepted_not_opened(email_daemon: Any) -> None:
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        b"To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <bounce-1@mx.example.org>\r\n\r\nThis is the mail system.\r\n"
    )
    assert await asyncio.to_thread(send_smtp, port, raw, mail_from="<>") == {}
    await settle(daemon)
    (row,) = await rows(daemon, "SELECT state, note, meta FROM inbound")
    assert row["state"] == "done" and "not opened" in row["note"]
    assert json.loads(row["meta"])["mail_from"] == "<>"
    assert await rows(daemon, "SELECT id FROM conversations") == []


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({}, "accept", "required"),
        ({"accept": []}, "accept", "addresses or domains"),
        ({"accept": ["*"], "auth_users": {"a": "b"}}, "auth_users", "tls_cert"),
        ({"accept": ["*"], "tls_cert": "/nonexistent.pem"}, "tls_key", "both"),
        ({"accept": ["*"], "relay": {"host": "x"}}, "from_address", "required"),
        ({"accept": ["*"], "from_address": "nobody"}, "from_address", "e-mail address"),
        ({"accept": ["*"], "customer_from_reply_to": ["a b@c.d"]}, "customer_from_reply_to", "not"),
        ({"accept": ["*"], "customer_from_reply_to": [""]}, "customer_from_reply_to", "not"),
        ({"accept": ["*"], "customer_from_reply_to": 3}, "customer_from_reply_to", "strings"),
        (
            {
                "accept": ["*"],
                "from_address": "a@b.c",
                "relay": {"host": "smtp.b.c", "tls": "none", "username": "u", "password": "p"},
            },
            "relay.tls",
            "starttls",
        ),
    ],
)
def test_configuration_errors_name_the_key(
    tmp_path: Path, options: dict[str, Any], key: str, words: str
) -> None:
    cfg = parse_config(
        {"channels": [{"name": "email", "type": "smtp", **options}]}, base_dir=tmp_path
    )
    with pytest.raises(ConfigError) as err:
        build_adapters(cfg, Intake(open_store(f"sqlite:///{tmp_path / 'x.db'}")), None)
    assert key in err.value.key and words in err.value.reason


async def test_aiosmtplib_pipelined_load_every_250_is_stored(email_daemon: Any) -> None:
    """Many concurrent clients: every message that got 250 is there, once."""
    daemon = await email_daemon(smtp_channel())
    port = smtp_port(daemon)
    sent: list[str] = []

    async def client(i: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        for j in range(20):
            raw, mid = mail(f"load {i}-{j}")
            await smtp.sendmail("ann@example.org", [SUPPORT], raw)
            sent.append(mid)
        await smtp.quit()

    await asyncio.gather(*(client(i) for i in range(8)))
    got = {r["external_id"] for r in await inbound(daemon)}
    assert got == set(sent) and len(sent) == 160


def test_plain_path_gives_aiosmtpd_s_answers() -> None:
    """The listener's shortcut for MAIL FROM / RCPT TO arguments against
    aiosmtpd's own parser: chosen cases, then random ones built from the
    characters that matter."""
    import random
    import types

    from aiosmtpd.smtp import SMTP

    from omnidesk.channels.smtp import plain_path

    def stock(arg: str) -> Any:
        return SMTP._getaddr(types.SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]

    cases = [
        "<a@b.c>",
        "<Customer.Name+tag@Example.ORG> SIZE=3500 BODY=8BITMIME",
        "<a@b.c>\tSMTPUTF8",
        "<a@b.c>  X  Y ",
        "<x-y_z@mail-1.example.org>",
        "<{weird}!#$%&'*/=?^`|~@ex.org>",
    ]
    for arg in cases:
        assert plain_path(arg) is not None, arg
        assert plain_path(arg) == stock(arg), arg
    for arg in [
        "<>",
        '<"quoted local"@b.c>',
        "<a@[1.2.3.4]>",
        "<@relay.example:a@b.c>",
        "<a@b.c> (comment) SIZE=1",
        "<a@b.c>SIZE=1",
        " <a@b.c>",
        "a@b.c",
        "<a..b@c.d>",
        "<.a@c.d>",
        "<a@b.c",
        "<a @b.c>",
        "<ü@b.c>",
    ]:
        assert plain_path(arg) is None, arg
    rnd = random.Random(5)

    def part(common: str) -> str:
        rare = '@<> \t()"[]:,;\\é'
        return "".join(
            rnd.choice(rare if rnd.random() < 0.08 else common) for _ in range(rnd.randrange(0, 8))
        )

    agreed = 0
    for _ in range(20_000):
        arg = f"{part('ab.+-_=!')}@{part('ab.-1')}"
        if rnd.random() < 0.9:
            arg = f"<{arg}>" + rnd.choice(["", " ", " SIZE=1", "\tX", "x", "  (c)", "> "])
        mine = plain_path(arg)
        if mine is not None:
            assert mine == stock(arg), arg
            agreed += 1
    assert agreed > 1000  # the shortcut was taken, and agreed, that often


def _data_by_lines(stream: bytes, size_limit: int | None) -> tuple[bytes | str, bytes]:
    """RFC 5321 4.5.2 the plain way (what aiosmtpd 1.4 does line by line):
    the DATA section and what follows it."""
    lines, rest, size = [], stream, 0
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        assert sep, "stream ended inside DATA"
        if line == b".":
            break
        size += len(line) + 2
        lines.append(line[1:] if line.startswith(b".") else line)
    if size_limit and size > size_limit:
        return "552 Error: Too much mail data", rest
    return b"".join(ln + b"\r\n" for ln in lines), rest


async def test_data_section_read_in_blocks_matches_line_by_line() -> None:
    """``read_data`` against the line-by-line reading, on random sections fed
    in random pieces through readers with small limits (so that blocks end
    anywhere, the limit path included), then what follows is left unread."""
    import random

    from omnidesk.channels.smtp import read_data

    rnd = random.Random(11)
    words = [b"a", b"hello", b".", b"..", b"x.", b".y", b"\r", b"\n", b"  ", b"\xe4\xbd\xa0"]
    cases = [b"", b".\r\n", b"..\r\n", b"a.\r\n.\r\n"]
    for _ in range(400):
        lines = [
            b"".join(rnd.choice(words) for _ in range(rnd.randrange(0, 12)))
            for _ in range(rnd.randrange(0, 30))
        ]
        # dot-stuffed as a client sends it; stray CR/LF inside lines stay
        section = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
        cases.append(section.replace(b"\r\n.\r\n", b"\r\n..\r\n"))
    for section in cases:
        if section.startswith(b".\r\n"):
            continue  # that is the end of an empty section, not a section
        stream = section + b".\r\nQUIT\r\n"
        limit = rnd.choice([None, 10, 10_000])
        expected = _data_by_lines(stream, limit)
        reader = asyncio.StreamReader(limit=rnd.choice([8, 16, 64, 2**20]))

        async def feed(reader: asyncio.StreamReader = reader, stream: bytes = stream) -> None:
            i = 0
            while i < len(stream):
                n = rnd.randrange(1, 40)
                reader.feed_data(stream[i : i + n])
                i += n
                await asyncio.sleep(0)
            reader.feed_eof()

        feeding = asyncio.create_task(feed())
        got = await read_data(reader, limit)
        await feeding
        assert (got, await reader.read()) == expected, section


async def test_data_section_errors_keep_the_session() -> None:
    """Past the size limit, and a line past the line limit: the whole section
    is read (the next command is intact) and the error reply returned."""
    from omnidesk.channels.smtp import LINE_LIMIT, read_data

    for section, limit, reply in [
        (b"x" * 100 + b"\r\n", 50, "552 Error: Too much mail data"),
        (b"ok\r\n" + b"y" * (LINE_LIMIT + 5) + b"\r\nok\r\n", None, "500 5.5.2 Line too long"),
    ]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        reader.feed_data(section + b".\r\nRSET\r\n")
        got = await read_data(reader, limit)
        assert isinstance(got, str) and got.startswith(reply)
        assert await reader.readuntil(b"\r\n") == b"RSET\r\n"


async def test_empty_message_and_help_for_data(email_daemon: Any) -> None:
    """The listener's own DATA: an empty message is refused by nobody (it is
    stored and quarantined later), a DATA before RCPT gets 503, HELP DATA
    still answers."""
    daemon = await email_daemon(smtp_channel(), pipeline={"workers": 0}, web=False)
    port = smtp_port(daemon)

    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo()
            out = [c.docmd("HELP", "DATA"), c.docmd("DATA")]
            c.mail("a@example.org")
            c.rcpt(SUPPORT)
            out += [c.docmd("DATA"), c.docmd(".")]
            return out

    help_, early, go, done = await asyncio.to_thread(session)
    assert help_[0] == 250 and b"DATA" in help_[1]
    assert early[0] == 503
    assert go[0] == 354
    assert done[0] == 250, done
    assert len(await inbound(daemon)) == 1


async def test_a_burst_of_connections_is_queued_not_dropped(email_daemon: Any) -> None:
    """300 clients connecting in the same instant, before the listener
    accepts any (the event loop is held here): the kernel queues them all.
    With asyncio's default backlog of 100 the rest of the SYNs are dropped
    and those clients wait for the retransmit, a second and more (the fault
    suite's 500 concurrent connections found it)."""
    import select
    import socket

    daemon = await email_daemon(smtp_channel(max_connections=400))
    port = smtp_port(daemon)
    socks = []
    try:
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        # The loop is not running: nothing is accepted while we look.
        _, writable, _ = select.select([], socks, [], 0.9)
        connected = [s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]
    finally:
        for s in socks:
            s.close()
    assert len(connected) == 300
