"""Header decoding: RFC 2047 names and subjects, groups, raw 8-bit headers,
dates, Message-IDs and threading keys."""

from __future__ import annotations

import email
from email.message import Message

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnidesk.email import message_id_key, parse_email
from omnidesk.email.fastparse import _boundary as fastparse_boundary
from omnidesk.email.headers import (
    RAW_POLICY,
    decode_words,
    extract_msgids,
    header_params,
    parse_addresses,
    parse_date,
)

from .conftest import corpus_file, corpus_messages, mail, message_files


def test_rfc2047_sender_name_is_decoded_and_address_lower_cased() -> None:
    msg = parse_email(
        mail("From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"), channel="email"
    )
    assert msg.sender.display_name == "André Pirard"
    assert msg.sender.address == "pirard@vm1.ulg.ac.be"
    assert msg.sender.kind == "email"


def test_encoded_name_with_comma_is_one_recipient() -> None:
    # Decoding before splitting would cut "Müller, Jörg" into two addresses.
    to = "To: =?utf-8?q?M=C3=BCller=2C_J=C3=B6rg?= <jorg@example.de>, b@example.com"
    msg = parse_email(mail(to), channel="email")
    assert [(r.display_name, r.address) for r in msg.recipients] == [
        ("Müller, Jörg", "jorg@example.de"),
        (None, "b@example.com"),
    ]


def test_multibyte_character_split_across_encoded_words() -> None:
    # "日本語" is 9 UTF-8 bytes; base64 words split inside a character.
    raw = "=?UTF-8?B?5pel5pys?= =?UTF-8?B?6Kqe?="
    assert decode_words(raw) == "日本語"
    split_q = "=?utf-8?q?=E6=97?= =?utf-8?q?=A5?="
    assert decode_words(split_q) == "日"


def test_encoded_words_glued_to_text_and_mixed_charsets() -> None:
    assert decode_words("Re:=?utf-8?q?_caf=C3=A9?=") == "Re: café"
    value = "=?iso-8859-1?q?Gr=FC=DFe?= aus =?koi8-r?b?7cXO0Q==?="
    assert decode_words(value) == "Grüße aus Меня"


def test_subject_in_gb2312_word_decodes_as_gb18030() -> None:
    # "镕" is outside GB2312 but in GBK/GB18030 - clients still label it GB2312.
    word = "=?gb2312?b?" + __import__("base64").b64encode("朱镕基".encode("gbk")).decode() + "?="
    msg = parse_email(mail(f"Subject: {word}"), channel="email")
    assert msg.subject == "朱镕基"


def test_raw_utf8_headers_rfc6532() -> None:
    msg = parse_email(
        mail("From: Jörg <jörg@例え.jp>", "Subject: Grüße aus Zürich"), channel="email"
    )
    assert msg.sender.display_name == "Jörg"
    assert msg.sender.address == "jörg@例え.jp"
    assert msg.subject == "Grüße aus Zürich"


def test_raw_8bit_header_in_legacy_charset_uses_the_body_charset() -> None:
    raw = (
        b"From: a@example.org\r\nSubject: \xc4\xe3\xba\xc3\r\n"
        b"Content-Type: text/plain; charset=gb2312\r\n\r\n\xc4\xe3\xba\xc3\r\n"
    )
    msg = parse_email(raw, channel="email")
    assert msg.subject == "你好"
    assert msg.text == "你好"


def test_undisclosed_recipients_group_is_no_recipient() -> None:
    msg = parse_email(mail("To: undisclosed-recipients:;"), channel="email")
    assert msg.recipients == []


def test_group_members_are_recipients() -> None:
    msg = parse_email(
        mail("To: Team: Ann <ann@example.com>, bob@example.com;, carl@example.com"),
        channel="email",
    )
    assert [r.address for r in msg.recipients] == [
        "ann@example.com",
        "bob@example.com",
        "carl@example.com",
    ]


def test_dsn_with_group_to_header_parses() -> None:
    msg = parse_email(corpus_file("mimekit/messages/delivery-status.txt"), channel="email")
    assert msg.sender.address == "postmaster@mm1.sprynet.com"
    assert msg.sender.display_name == "The Post Office"


@pytest.mark.parametrize(
    ("header", "address"),
    [
        ("From: tim@example.com concierge@example.com", "tim@example.com"),  # two bare
        ("From: Big Bug bb@bug.com", "bb@bug.com"),  # no angle brackets
        ("From: John Doe <jdoe@machine(comment).  example>", "jdoe@machine.example"),
        ('From: "Joe @ Home" <joe@example.com>', "joe@example.com"),
    ],
)
def test_broken_from_headers_are_salvaged(header: str, address: str) -> None:
    assert parse_email(mail(header), channel="email").sender.address == address


def test_sender_falls_back_to_envelope_when_headers_have_none() -> None:
    raw = b"Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"
    msg = parse_email(raw, channel="email", envelope={"mail_from": "Bounce@Example.org"})
    assert msg.sender.address == "bounce@example.org"


def test_mail_without_any_sender_is_kept_and_flagged() -> None:
    msg = parse_email(b"Subject: hi\r\n\r\nbody\r\n", channel="email")
    assert msg.sender.address == ""
    assert msg.meta["sender_missing"] is True
    assert msg.text == "body"


def test_obsolete_header_syntax_is_repaired() -> None:
    msg = parse_email(corpus_file("ruby-mail/rfc2822/example13.eml"), channel="email")
    assert msg.sender.address == "jdoe@machine.example"
    assert msg.subject == "Saying Hello"
    assert msg.external_id == "1234@local.machine.example"
    assert msg.sent_at == 880127706.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 1 Jul 2003 10:52:37 +0200", 1057049557.0),
        ("1 Jul 2003 08:52:37 GMT", 1057049557.0),
        ("Tue, 01 Jul 2003 08:52:37 -0000", 1057049557.0),
        ("not a date", None),
        ("", None),
        (None, None),
        ("Mon, 32 Foo 99999 99:99:99 +9999", None),
    ],
)
def test_dates_become_unix_seconds_or_none(value: str | None, expected: float | None) -> None:
    assert parse_date(value) == expected


def test_unparseable_date_keeps_the_raw_value_in_meta() -> None:
    msg = parse_email(mail("Date: yesterday-ish"), channel="email")
    assert msg.sent_at is None
    assert msg.meta["date_raw"] == "yesterday-ish"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("<abc@example.com>", "mid:abc@example.com"),
        ("  <abc@example.com>  ", "mid:abc@example.com"),
        ("abc@example.com", "mid:abc@example.com"),
        ("<CAKs+x=Y@mail.gmail.com>", "mid:CAKs+x=Y@mail.gmail.com"),
    ],
)
def test_message_id_key(value: str, key: str) -> None:
    assert message_id_key(value) == key


def test_message_id_key_refuses_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        message_id_key(" <> ")


def test_extract_msgids_tolerates_comments_and_junk() -> None:
    value = '<a@x> (Message from "Joe" of Mon) <b@y>\r\n <c@z> garbage'
    assert extract_msgids(value) == ["a@x", "b@y", "c@z"]
    assert extract_msgids("bare-id@host") == ["bare-id@host"]
    assert extract_msgids("") == []


def test_thread_refs_are_in_reply_to_then_all_references_deduplicated() -> None:
    msg = parse_email(
        mail(
            "Message-ID: <own@example.org>",
            "In-Reply-To: <parent@example.com>",
            "References: <root@example.com> <mid@example.com>\r\n <parent@example.com>",
            "References: <extra@example.com> <own@example.org>",
        ),
        channel="email",
    )
    assert msg.thread_refs == [
        "mid:parent@example.com",
        "mid:root@example.com",
        "mid:mid@example.com",
        "mid:extra@example.com",
    ]
    assert msg.own_keys == ["mid:own@example.org"]
    assert msg.external_id == "own@example.org"
    assert msg.meta["in_reply_to"] == "parent@example.com"


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    first = parse_email(raw, channel="email")
    again = parse_email(raw, channel="email")
    other = parse_email(raw + b"more\r\n", channel="email")
    assert first.external_id == again.external_id
    assert first.external_id != other.external_id
    assert first.external_id.endswith("@omnidesk.invalid")
    assert first.own_keys == ["mid:" + first.external_id]
    assert first.meta["message_id_synthetic"] is True


def test_empty_in_reply_to_is_ignored() -> None:
    msg = parse_email(corpus_file("ruby-mail/error_emails/empty_in_reply_to.eml"), channel="e")
    assert all(k != "mid:" for k in msg.thread_refs)


def test_parse_addresses_survives_pathological_headers() -> None:
    value = "x <a@b.c>, " + "=?utf-8?Q?date=3E2017?=\r\n\t" * 3000
    assert parse_addresses([value])[0][1] == "a@b.c"


# --- header_params: the quick split of plain parameter lists ------------------


def _params_and_boundary_match(msg: Message) -> int:
    """Compare header_params with get_params (and the quick reader's
    boundary with get_boundary) on every part; the number of headers seen."""
    seen = 0
    for part in msg.walk():
        for header in ("content-type", "content-disposition"):
            assert header_params(part, header) == part.get_params(header=header), (
                header,
                part.get(header),
            )
            seen += part.get(header) is not None
        assert fastparse_boundary(part) == part.get_boundary(), part.get("content-type")
    return seen


def test_header_params_read_the_corpus_as_the_stdlib_does() -> None:
    seen = 0
    for rel in message_files():
        for _name, raw in corpus_messages(rel):
            seen += _params_and_boundary_match(email.message_from_bytes(raw, policy=RAW_POLICY))
    assert seen > 500  # the corpus has its thousand or so typed parts


_PARAM_PIECES = st.sampled_from(
    [";", " ", "\t", "\r\n ", "=", '"', "\\", "*", "*0", "*0*", "'", "<", ">", "(", ")",
     "text/plain", "multipart/mixed", "charset", "boundary", "name", "filename",
     "utf-8", "us-ascii''%E2%82%AC", "a b", "==_x==", "é", "\udce9", ","]
)  # fmt: skip


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PARAM_PIECES, max_size=16).map("".join))
def test_header_params_read_any_value_as_the_stdlib_does(value: str) -> None:
    msg = Message(policy=RAW_POLICY)
    msg.set_raw("Content-Type", value)
    msg.set_raw("Content-Disposition", value)
    _params_and_boundary_match(msg)


def test_header_params_of_a_missing_header_is_none() -> None:
    assert header_params(Message(policy=RAW_POLICY), "content-disposition") is None
