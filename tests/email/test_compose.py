"""Outbound replies: headers, threading, loop protection, MIME layout and
encodings - checked by parsing the result back with our own parser."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest

from omnidesk.email import compose_reply, message_id_key, parse_email
from omnidesk.email.compose import MAX_REFERENCES
from omnidesk.model import Attachment


def reply(**overrides: Any) -> tuple[bytes, str]:
    args: dict[str, Any] = {
        "from_addr": "support@help.example.com",
        "from_name": "ACME Support",
        "to": ["anna@example.org"],
        "subject": "Broken kettle",
        "text": "Hello Anna,\n\na replacement is on its way.",
        "html": None,
        "conversation_id": 42,
        "in_reply_to": "<cust-2@example.org>",
        "references": ["<cust-1@example.org>"],
        "domain": "help.example.com",
        "automatic": False,
    }
    args.update(overrides)
    return compose_reply(**args)


def test_headers_and_threading_round_trip() -> None:
    raw, mid = reply()
    assert mid.endswith("@help.example.com") and "<" not in mid
    msg = parse_email(raw, channel="email")
    assert msg.external_id == mid
    assert msg.own_keys == [message_id_key(mid)]
    assert msg.thread_refs == ["mid:cust-2@example.org", "mid:cust-1@example.org"]
    assert msg.sender.address == "support@help.example.com"
    assert msg.sender.display_name == "ACME Support"
    assert [r.address for r in msg.recipients] == ["anna@example.org"]
    assert msg.meta["subject_raw"] == "Re: Broken kettle [#OD-42]"
    assert msg.conversation_hint == 42
    assert msg.text == "Hello Anna,\n\na replacement is on its way."
    assert msg.sent_at is not None
    assert msg.kind == "message"
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["References"] == "<cust-1@example.org> <cust-2@example.org>"
    assert parsed["In-Reply-To"] == "<cust-2@example.org>"
    assert parsed["Auto-Submitted"] is None


def test_re_prefix_once_and_token_once() -> None:
    raw, _ = reply(subject="RE: Re: Broken kettle [#OD-42]")
    assert email.message_from_bytes(raw)["Subject"] == "Re: Broken kettle [#OD-42]"
    raw, _ = reply(subject=None, in_reply_to=None, references=[])
    assert email.message_from_bytes(raw)["Subject"] == "[#OD-42]"


def test_automatic_replies_are_marked_against_loops() -> None:
    raw, _ = reply(automatic=True)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    # Our own auto-reply, coming back to us, is recognised as automatic.
    assert parse_email(raw, channel="email").auto == "auto-reply"


def test_reply_to_plus_address() -> None:
    raw, _ = reply(reply_to="support+od42@help.example.com")
    msg = parse_email(raw, channel="email")
    assert msg.meta["reply_to"] == ["support+od42@help.example.com"]


def test_references_accept_keys_and_are_bounded_keeping_the_root() -> None:
    refs = [f"mid:r{i}@example.org" for i in range(60)]
    raw, _ = reply(references=refs, in_reply_to="r59@example.org")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    ids = str(parsed["References"]).split()
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == "<r0@example.org>" and ids[-1] == "<r59@example.org>"
    assert len(set(ids)) == len(ids)


def test_non_ascii_names_subject_text_and_filenames() -> None:
    raw, _ = reply(
        from_name="Équipe Support 支持",
        to=["Jörg Müller <jorg@example.de>", "王小明 <wang@example.cn>"],
        subject="Lieferung verspätet – 订单",
        text="Grüße und 你好\n",
        attachments=[Attachment("Rechnung März.pdf", "application/pdf", b"%PDF-1.4")],
    )
    raw.decode("ascii")  # every byte on the wire is 7-bit
    msg = parse_email(raw, channel="email")
    assert msg.sender.display_name == "Équipe Support 支持"
    assert [(r.display_name, r.address) for r in msg.recipients] == [
        ("Jörg Müller", "jorg@example.de"),
        ("王小明", "wang@example.cn"),
    ]
    assert msg.subject == "Lieferung verspätet – 订单"
    assert msg.text == "Grüße und 你好"
    assert [(a.filename, a.data) for a in msg.attachments] == [("Rechnung März.pdf", b"%PDF-1.4")]


def test_alternative_parts_and_attachments_layout() -> None:
    raw, _ = reply(
        html="<p>Hello <b>Anna</b> <img src='cid:logo@acme'></p>",
        attachments=[
            Attachment("manual.pdf", "application/pdf", b"%PDF"),
            Attachment("logo.png", "image/png", b"\x89PNG", inline=True, content_id="logo@acme"),
            Attachment("notes.txt", "text/plain", b"plain notes"),
            Attachment("remote.bin", "application/octet-stream", None, ref="https://x"),
        ],
    )
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    types = [p.get_content_type() for p in parsed.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
        "text/plain",
    ]
    msg = parse_email(raw, channel="email")
    assert msg.text == "Hello Anna,\n\na replacement is on its way."
    assert msg.html is not None and 'src="cid:logo@acme"' in msg.html
    by_name = {a.filename: a for a in msg.attachments}
    assert by_name["logo.png"].inline and by_name["logo.png"].content_id == "logo@acme"
    assert by_name["manual.pdf"].data == b"%PDF"
    assert by_name["notes.txt"].data == b"plain notes"
    assert "remote.bin" not in by_name  # no bytes at hand: nothing to attach


def test_plain_only_reply_is_a_single_part() -> None:
    raw, _ = reply()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"


def test_header_injection_is_impossible() -> None:
    raw, _ = reply(subject="Hi\r\nBcc: victim@example.net", from_name="Evil\nX-Bad: 1")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Bad"] is None


def test_deterministic_with_given_id_and_date() -> None:
    a, mid = reply(message_id="<fixed@help.example.com>", date=1_700_000_000)
    b, _ = reply(message_id="fixed@help.example.com", date=1_700_000_000)
    assert mid == "fixed@help.example.com"
    assert parse_email(a, channel="email").sent_at == 1_700_000_000
    assert parse_email(a, channel="email").external_id == parse_email(b, channel="e").external_id


def test_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        reply(to=[])
    with pytest.raises(ValueError):
        reply(to=["no-at-sign"])
