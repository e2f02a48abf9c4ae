"""Every message of the third-party corpus normalizes, or is refused with a
reason; the traps listed in corpora/email/TRAPS.md are handled."""

from __future__ import annotations

import re
from email import message_from_bytes

import pytest

from omnidesk.email import parse_email
from omnidesk.email.headers import (
    RAW_POLICY,
    _plain_addresses,
    _stdlib_addresses,
    decode_raw,
    unfold,
)
from omnidesk.model import Message, NormalizeError
from tests.testdata import corpus_params, present

from .conftest import EMAIL_CORPUS, HUNNYSOFT, corpus_file, corpus_messages, message_files

# Files that are not email messages at all; each must be refused with a reason.
EXPECTED_REFUSALS = {
    "cpython-test_email/msg_19.txt": "no header",  # a digest body, headers cut off
    "mimekit/tnef/body.tnef": "no header",  # raw TNEF blobs, not MIME
    "mimekit/tnef/one-file.tnef": "no header",
    "mimekit/tnef/winmail.tnef": "no header",
    "ruby-mail/sample_output_multipart": "empty",  # a zero-byte file
    "stalwart-mail-parser/malformed/COPYING": "no header",  # licence text
    "stalwart-mail-parser/thirdparty/COPYING": "no header",
}

# The sets in the repository; the Hunny Software samples stay outside it.
FILES = message_files()


def _traps(section: str, name: str | None = None) -> list[str]:
    """File paths listed under a ``## <section>`` heading of TRAPS.md: the
    vendored copy's, or (``name``) the outside corpus's entries of that set."""
    if name is None:
        traps = EMAIL_CORPUS / "TRAPS.md"
    else:
        folder = present(name)
        if folder is None:
            return []
        traps = folder.parent / "TRAPS.md"
    text = traps.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(section)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"{traps} has no section {section!r}"
    found = re.findall(r"^- ([^\s:]+)", m.group(1), re.M)
    return [f for f in found if name is None or f"email/{f}".startswith(name + "/")]


def test_corpus_is_present() -> None:
    # Every vendored set is there (tests/corpora/NOTICE lists them).
    sets = {rel.split("/", 1)[0] for rel in FILES}
    assert sets == {
        "cpython-test_email",
        "flanker",
        "mimekit",
        "ruby-mail",
        "stalwart-mail-parser",
    }
    assert len(FILES) > 280


def _check_invariants(name: str, msg: Message) -> None:
    assert msg.channel == "email"
    assert msg.external_id, name
    assert msg.own_keys == ["mid:" + msg.external_id], name
    assert msg.sender.kind == "email"
    assert msg.sender.address == msg.sender.address.lower()
    for value in (msg.text, msg.full_text or "", msg.subject or ""):
        assert "\x00" not in value, f"{name}: NUL in text (PostgreSQL refuses it)"
    assert msg.text.strip() == msg.text
    for key in msg.thread_refs + msg.bounced_refs:
        assert key.startswith("mid:") and len(key) > 4, name
    assert len(set(msg.thread_refs)) == len(msg.thread_refs)
    if msg.html is not None:
        assert "<script" not in msg.html.lower(), name
    if msg.kind == "auto":
        assert msg.auto
    else:
        assert msg.auto is None


@pytest.mark.parametrize("rel", FILES + corpus_params(HUNNYSOFT, message_files(HUNNYSOFT)))
def test_corpus_file_normalizes_or_is_refused_with_a_reason(rel: str) -> None:
    for name, data in corpus_messages(rel):
        try:
            msg = parse_email(data, channel="email", envelope={"source": "corpus"})
        except NormalizeError as exc:
            reason = str(exc)
            assert reason, f"{name}: NormalizeError without a reason"
            assert rel in EXPECTED_REFUSALS, f"{name} refused: {reason}"
            assert EXPECTED_REFUSALS[rel] in reason
            continue
        assert rel not in EXPECTED_REFUSALS, f"{name} should have been refused"
        _check_invariants(name, msg)


def _no_fffd(msg: Message, raw: bytes = b"", *, headers: bool = True) -> None:
    if "\ufffd".encode() in raw:
        return  # the sender wrote replacement characters itself
    fields = {"text": msg.text, "full_text": msg.full_text}
    if headers:
        fields |= {"subject": msg.subject, "sender name": msg.sender.display_name}
    for field, value in fields.items():
        assert "\ufffd" not in (value or ""), f"U+FFFD in {field}: {value!r}"


@pytest.mark.parametrize(
    "rel", _traps("U+FFFD") + corpus_params(HUNNYSOFT, _traps("U+FFFD", HUNNYSOFT))
)
def test_traps_mislabelled_text_decodes_without_replacement_chars(rel: str) -> None:
    msg = parse_email(corpus_file(rel), channel="email")
    _no_fffd(msg)


@pytest.mark.parametrize(
    "rel",
    _traps("get_content() KeyError") + _traps("get_content() LookupError"),
)
def test_traps_broken_multiparts_and_unknown_charsets_normalize(rel: str) -> None:
    for name, data in corpus_messages(rel):
        msg = parse_email(data, channel="email")
        # These traps are about bodies; flanker/mailformed-headers.eml also
        # has a truncated UTF-8 sequence in its From name, which no decoding
        # can make whole (the rest of the name decodes).
        _no_fffd(msg, data, headers=False)
        assert msg.text or msg.attachments or msg.html is not None or msg.subject, name


@pytest.mark.parametrize("rel", _traps("header to AttributeError"))
def test_traps_group_addresses_in_dsns_parse(rel: str) -> None:
    msg = parse_email(corpus_file(rel), channel="email")
    assert msg.kind == "auto"
    assert msg.auto in ("bounce", "delivery-report")
    # The group itself is no recipient; its (empty) member list adds nobody.
    assert all("@" in r.address for r in msg.recipients)


_ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc", "delivered-to")


def test_plain_address_reading_agrees_with_the_stdlib_on_the_corpus() -> None:
    """The pattern reading of common address headers (a fast path) gives
    exactly the pairs the stdlib's parser gives, on every address header of
    the corpus it takes; the others fall through to the stdlib."""
    taken = refused = 0
    for rel in FILES:
        for _name, raw in corpus_messages(rel):
            parsed = message_from_bytes(raw, policy=RAW_POLICY)
            for header in _ADDRESS_HEADERS:
                values = [str(v) for v in parsed.get_all(header) or ()]
                if not values:
                    continue
                texts = [decode_raw(unfold(v)) for v in values]
                plain = _plain_addresses(texts)
                if plain is None:
                    refused += 1
                    continue
                taken += 1
                assert plain == _stdlib_addresses(texts), (rel, header, texts)
    # Most headers are of the plain kinds; the rest exercise the stdlib.
    assert taken > 400 and refused > 100, (taken, refused)


@pytest.mark.parametrize(
    "value",
    [
        "Customer 5 <customer5@Example.ORG>",
        "a@b.example, Two  Spaces\t<x.y+z@sub.example.com> ,, c@d.example",
        "=?utf-8?b?5byg5LiJ?= <zhang@example.cn>",
        "Name<tight@example.org>",
        "O'Brien <ob@example.ie>",
        "  padded@example.org  ",
    ],
)
def test_plain_address_shapes_read_as_the_stdlib_reads_them(value: str) -> None:
    plain = _plain_addresses([value])
    assert plain is not None and plain == _stdlib_addresses([value])


@pytest.mark.parametrize(
    "value",
    [
        '"Doe, John" <jd@example.org>',
        "J. Doe <jd@example.org>",
        "undisclosed-recipients:;",
        "jd@example.org (John Doe)",
        "a@b.example c@d.example",
        "<bare@example.org>",
        "Jörg <j@example.de>",
        "x..y@example.org",
    ],
)
def test_other_address_shapes_are_left_to_the_stdlib(value: str) -> None:
    assert _plain_addresses([value]) is None


# (file, expected in subject, expected in text) for labelled charsets.
KNOWN_CHARSETS = [
    ("ruby-mail/multi_charset/japanese.eml", "まみむめも", "かきくえこ"),
    ("ruby-mail/multi_charset/japanese_iso_2022.eml", "まみむめも", "すみません。"),
    ("ruby-mail/multi_charset/japanese_shift_jis.eml", "test", "このメールはテスト用のメールです"),
    ("ruby-mail/multi_charset/ks_c_5601-1987.eml", "test", "스티해"),
    ("ruby-mail/multi_charset/japanese_attachment_long_name.eml", "まみむめもまみむめも", ""),
    ("ruby-mail/plain_emails/raw_email.eml", "NOTE: 한국말로 하는 것", "제 이름은 Jamis입니다"),
    ("mimekit/messages/japanese.txt", "日本語メールテスト", "日本語が"),
    ("stalwart-mail-parser/thirdparty/005.eml", None, "『世界人権宣言』"),
    ("stalwart-mail-parser/thirdparty/003.eml", None, "Move ♚ to ♛'s ♝"),
    ("ruby-mail/rfc6532/utf8_headers.eml", "Säying Hello", "body"),
    pytest.param(
        "hunnysoft-mime-samples/m1011.txt",
        "Die Hasen und die Frösche",
        "Die Hasen",
        marks=pytest.mark.corpus(HUNNYSOFT),
    ),
    ("flanker/8bitmime.eml", None, "Превел"),
    ("flanker/bilingual-simple.eml", "Как ты поживаешь", "А эта линия по-русски."),
    ("mimekit/tnef/ukr.eml", "rr test 7", "шостий"),
]


@pytest.mark.parametrize(("rel", "subject", "text"), KNOWN_CHARSETS)
def test_known_charset_samples_decode_to_the_expected_characters(
    rel: str, subject: str | None, text: str
) -> None:
    msg = parse_email(corpus_file(rel), channel="email")
    if subject is not None:
        assert subject in (msg.subject or "")
    assert text in msg.full_text if msg.full_text is not None else text in msg.text
    _no_fffd(msg)


def test_japanese_attachment_names_decode() -> None:
    msg = parse_email(
        corpus_file("ruby-mail/multi_charset/japanese_attachment_long_name.eml"),
        channel="email",
    )
    assert [a.filename for a in msg.attachments] == ["かきくけこ" * 5 + ".txt"]
