"""What the e-mail channels' ``normalize`` adds on top of ``parse_email``,
and that what it returns can be stored by either engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.mailout import envelope_id
from omnidesk.channels.smtp import SmtpChannel
from omnidesk.config import parse_config
from omnidesk.email import parse_email
from omnidesk.intake import Intake
from omnidesk.model import Envelope, Message, NormalizeError, Skip
from omnidesk.store import open_store
from tests.conftest import require_service

from .conftest import mail
from .test_smtp_corpus import EMAIL_CORPUS, corpus


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
    require_service(
        EMAIL_CORPUS.is_dir(),
        f"email corpus at {EMAIL_CORPUS}",
        "set OMNIDESK_CORPORA to the shared corpora folder",
    )
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
