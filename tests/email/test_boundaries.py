"""Boundaries renamed before parsing (the stdlib parser's regex cache then
works): the result must be exactly what parsing the mail as it came gives."""

from __future__ import annotations

from omnidesk.email import parse as parse_mod
from omnidesk.email.parse import parse_email

from .conftest import corpus_messages, mail, message_files


def _both(raw: bytes) -> tuple[object, object]:
    def run(canonical: bool) -> object:
        try:
            return parse_mod._parse(raw, "email", {}, canonical=canonical)
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    return run(True), run(False)


def test_renaming_changes_nothing_over_the_whole_corpus() -> None:
    renamed = 0
    for rel in message_files():
        for name, raw in corpus_messages(rel):
            fast, plain = _both(raw)
            assert fast == plain, name
            renamed += bool(parse_mod._canonical_boundaries(parse_mod._strip_preamble(raw))[1])
    assert renamed > 150, "most multipart mail takes the renamed path"


def _multipart(text_part: str, boundary: str = "outer-b1") -> bytes:
    return mail(
        "Subject: a forwarded source",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed;\r\n boundary="{boundary}"',
        body=(
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{text_part}\r\n--{boundary}--\r\n"
        ),
    )


def test_a_boundary_quoted_in_text_is_left_as_written() -> None:
    # The customer pasted a raw message into the text: a Content-Type line
    # with a boundary and a delimiter line of it, neither of them MIME here.
    pasted = (
        "Your server sent me this:\r\n"
        'Content-Type: multipart/mixed; boundary="pasted-xyz"\r\n'
        "\r\n--pasted-xyz\r\nhello\r\n"
    )
    raw = _multipart(pasted)
    assert parse_mod._canonical_boundaries(raw)[1], "both look renameable from the bytes"
    msg = parse_email(raw, channel="email")
    assert 'boundary="pasted-xyz"' in msg.full_text and "--pasted-xyz" in msg.full_text
    assert "omnidesk-boundary" not in msg.full_text
    fast, plain = _both(raw)
    assert fast == plain


def test_a_boundary_that_also_appears_in_text_is_not_renamed() -> None:
    raw = _multipart("our reference is outer-b1, as the label says")
    assert parse_mod._canonical_boundaries(raw) == (raw, {})
    assert "outer-b1" in parse_email(raw, channel="email").full_text


def test_renamed_boundaries_still_split_nested_parts() -> None:
    inner = "alt-2"
    raw = mail(
        "Subject: nested",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="mix-1"',
        body=(
            "--mix-1\r\n"
            f"Content-Type: multipart/alternative; boundary={inner}\r\n\r\n"
            f"--{inner}\r\nContent-Type: text/plain\r\n\r\nplain words\r\n"
            f"--{inner}\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n"
            f"--{inner}--\r\n"
            "--mix-1\r\nContent-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="a.bin"\r\n\r\nBINARY\r\n'
            "--mix-1--\r\n"
        ),
    )
    renamed, names = parse_mod._canonical_boundaries(raw)
    assert list(names.values()) == [b"mix-1", b"alt-2"]
    assert list(names) == [b"omnidesk-boundary-0", b"omnidesk-boundary-1"]
    assert b"mix-1" not in renamed and b"alt-2" not in renamed
    msg = parse_email(raw, channel="email")
    assert msg.text == "plain words" and msg.html is not None and "html words" in msg.html
    assert [a.filename for a in msg.attachments] == ["a.bin"]
    fast, plain = _both(raw)
    assert fast == plain
