"""What the e-mail channels' ``normalize`` adds on top of ``parse_email``,
and that what it returns can be stored by either engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.mailout import _plain_message_id, envelope_id
from omnidesk.channels.smtp import SmtpChannel
from omnidesk.config import parse_config
from omnidesk.email import parse_email
from omnidesk.intake import Intake
from omnidesk.model import Envelope, Message, NormalizeError, Skip
from omnidesk.store import open_store

from .conftest import mail
from .test_smtp_corpus import corpus


def channel(tmp_path: Path, **options: Any) -> SmtpChannel:
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "email",
                    "type": "smtp",
                    "accept": ["*"],
                    "from_address": "support@example.com",
                    **options,
                }
            ]
        },
        base_dir=tmp_path,
    )
    ch = cfg.channels[0]
    intake = Intake(open_store(f"sqlite:///{tmp_path / 'x.db'}"))
    return SmtpChannel(ChannelContext(name=ch.name, config=ch, intake=intake))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def test_every_corpus_message_gives_storable_text() -> None:
    """Lone surrogates (raw 8-bit header bytes) cannot be written as UTF-8:
    PostgreSQL refuses them and the JSON meta column fails. Every field of
    every normalized corpus message must encode; and the intake key the
    listener computes from the header alone is the parsed Message-ID."""
    bad: list[str] = []
    for name, data in corpus():
        try:
            msg = parse_email(data, channel="email", envelope={"mail_from": "a@b.c"})
        except NormalizeError:
            continue
        if envelope_id(data) != msg.external_id:
            bad.append(f"{name}: intake key {envelope_id(data)!r} != {msg.external_id!r}")
        fields = [msg.text, msg.full_text, msg.subject, msg.html, msg.external_id]
        fields += [msg.sender.address, msg.sender.display_name, *msg.thread_refs]
        fields += [a.filename for a in msg.attachments]
        for value in [f for f in fields if f] + _strings(msg.meta):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                bad.append(f"{name}: {value[:80]!r}")
        json.dumps(msg.meta).encode("utf-8")
    assert not bad


def test_date_comment_in_a_legacy_charset_is_decoded() -> None:
    raw = (
        b"From: a@example.org\r\nMessage-ID: <d1@example.org>\r\n"
        b"Date: Sat, 20 Sep 2008 20:04:30 +0300 (\xc3\xb9\xc3\xb2)\r\n\r\nhi\r\n"
    )
    msg = parse_email(raw, channel="email")
    assert msg.meta["date_raw"].startswith("Sat, 20 Sep 2008")
    msg.meta["date_raw"].encode("utf-8")


def test_envelope_id_matches_the_parsed_message_id() -> None:
    raw, mid = mail()
    assert envelope_id(raw) == mid == parse_email(raw, channel="e").external_id
    bare = b"\xef\xbb\xbf\r\nFrom: a@b.c\r\nSubject: no id\r\n\r\nbody\r\n"
    assert envelope_id(bare) == parse_email(bare, channel="e").external_id
    assert envelope_id(bare).endswith("@omnidesk.invalid")
    huge = b"Message-ID: <" + b"x" * 5000 + b"@example.org>\r\n\r\nhi"
    assert len(envelope_id(huge)) < 100


def _slow_envelope_id(raw: bytes) -> str:
    """envelope_id with its header-only shortcut turned off."""
    import omnidesk.channels.mailout as mailout

    saved = mailout._plain_message_id
    mailout._plain_message_id = lambda head: None
    try:
        return envelope_id(raw)
    finally:
        mailout._plain_message_id = saved


def test_envelope_id_shortcut_agrees_with_the_parser() -> None:
    """The listener reads a plain Message-ID without the stdlib parser; every
    header block it takes must give the parser's answer, and the cases the
    parser reads differently (or not at all) must be left to it."""
    taken = {
        b"From: a@b.c\r\nMessage-ID: <x1@example.org>\r\n\r\nhi": "x1@example.org",
        b"message-id:<X2@Example.ORG>\nSubject: s\n\nhi": "X2@Example.ORG",
        b"From: a@b.c\r\nMessage-ID:\r\n <x3@example.org>\r\nTo: d@e.f\r\n\r\n": "x3@example.org",
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\nMessage-Id: <a.b-c+d@[1.2.3.4]>\r\n\r\n": (
            "a.b-c+d@[1.2.3.4]"
        ),
    }
    left = [
        b"From a@b.c Sat Jan  1 00:00:00 2000\r\nMessage-ID: <m1@example.org>\r\n\r\n",
        b"Message-ID: <m2@example.org>\r\nMessage-ID: <m3@example.org>\r\n\r\n",
        b"Message-ID: <m4@example.org> (a comment)\r\n\r\n",
        b"Message-ID: m5@example.org\r\n\r\n",
        b"Message-ID : <m6@example.org>\r\n\r\n",
        b"From: a@b.c\r\nnot a header line\r\nMessage-ID: <m7@example.org>\r\n\r\n",
        b"Subject: x\rMessage-ID: <m8@example.org>\r\n\r\n",
        b"Message-ID: <m9 @ example.org>\r\n\r\n",
        b"Message-ID: <\xc3\xa9@example.org>\r\n\r\n",
        b" folded first line\r\nMessage-ID: <m10@example.org>\r\n\r\n",
    ]
    for raw, expected in taken.items():
        head = raw.split(b"\r\n\r\n")[0].split(b"\n\n")[0]
        assert _plain_message_id(head) == expected, raw
        assert envelope_id(raw) == expected == _slow_envelope_id(raw)
        assert parse_email(raw, channel="e").external_id == expected
    for raw in left:
        head = raw.split(b"\r\n\r\n")[0]
        assert _plain_message_id(head) is None, raw
        assert envelope_id(raw) == _slow_envelope_id(raw)


def test_envelope_id_shortcut_over_the_corpus() -> None:
    shortcut = 0
    for name, data in corpus():
        assert envelope_id(data) == _slow_envelope_id(data), name
        head = data.lstrip(b"\r\n").split(b"\r\n\r\n")[0].split(b"\n\n")[0]
        shortcut += _plain_message_id(head) is not None
    assert shortcut > 100  # the ordinary mail in it does take the shortcut


def test_our_own_outbound_message_coming_back_is_skipped(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    raw, _ = mail(msgid="od.12.0123456789abcdef@example.com", sender="support@example.com")
    item = ch.normalize(Envelope(channel="email", external_id="x", payload=raw))
    assert isinstance(item, Skip)
    # A customer's message on another domain with a similar shape is not ours.
    raw2, _ = mail(msgid="od.12.0123456789abcdef@example.org")
    assert isinstance(ch.normalize(Envelope("email", "y", raw2)), Message)


def test_backfilled_and_oversize_mail_is_labelled(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    raw, _ = mail()
    head = raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    msg = ch.normalize(
        Envelope(
            "email",
            "x",
            head,
            meta={"backfill": True, "oversize": {"size": 90_000_000, "limit": 26_214_400}},
        )
    )
    assert isinstance(msg, Message)
    assert msg.meta["backfill"] is True
    assert "90000000 bytes" in msg.text and "left in the mailbox" in msg.text
