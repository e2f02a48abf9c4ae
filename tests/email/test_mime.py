"""MIME structure: body choice, attachments and their names, inline images,
TNEF, broken multiparts and transfer encodings."""

from __future__ import annotations

import base64

import pytest

from omnidesk.email import parse_email

from .conftest import HUNNYSOFT, corpus_file, mail

BOUNDARY = "b1"


def multipart(subtype: str, *parts: str, boundary: str = BOUNDARY, headers: tuple = ()) -> bytes:
    body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
    return mail(
        *headers,
        "MIME-Version: 1.0",
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"',
        body=body,
    )


def test_alternative_takes_plain_for_text_and_sanitized_html_for_display() -> None:
    raw = multipart(
        "alternative",
        "Content-Type: text/plain; charset=utf-8\n\nPlain version",
        'Content-Type: text/html; charset=utf-8\n\n<p onclick="x()">HTML <b>version</b></p>'
        "<script>alert(1)</script>",
    )
    msg = parse_email(raw, channel="email")
    assert msg.text == "Plain version"
    assert msg.html == "<p>HTML <b>version</b></p>"
    assert msg.attachments == []


def test_html_only_mail_gets_text_from_html() -> None:
    raw = mail(
        "Content-Type: text/html; charset=utf-8",
        body="<html><head><style>p{}</style></head><body><p>Line one</p><p>Line&nbsp;two"
        "<br>three</p></body></html>",
    )
    msg = parse_email(raw, channel="email")
    assert msg.text == "Line one\n\nLine two\nthree"
    assert msg.html is not None and "<style" not in msg.html


def test_html_charset_from_meta_tag_when_header_has_none() -> None:
    html = '<html><head><meta charset="windows-1251"></head><body>Привет</body></html>'
    raw = mail("Content-Type: text/html", body=html.encode("cp1251"))
    assert parse_email(raw, channel="email").text == "Привет"


def test_rfc2231_filename_with_charset_and_continuations() -> None:
    part = (
        "Content-Type: application/pdf\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment;\n"
        " filename*0*=utf-8''Rechnung%20M%C3%A4rz;\n"
        " filename*1*=%202024%20%E2%82%AC.pdf\n\n" + base64.b64encode(b"%PDF-1.4").decode()
    )
    raw = multipart("mixed", "Content-Type: text/plain\n\nsee attached", part)
    msg = parse_email(raw, channel="email")
    assert [(a.filename, a.content_type, a.data) for a in msg.attachments] == [
        ("Rechnung März 2024 €.pdf", "application/pdf", b"%PDF-1.4")
    ]
    assert msg.text == "see attached"


def test_rfc2047_and_raw_utf8_filenames() -> None:
    encoded = 'Content-Type: application/octet-stream; name="=?utf-8?B?5aSn5a2mLmRvY3g=?="\n\nx'
    raw8 = 'Content-Type: text/csv\nContent-Disposition: attachment; filename="Übersicht.csv"\n\na'
    msg = parse_email(
        multipart("mixed", "Content-Type: text/plain\n\nhi", encoded, raw8), channel="email"
    )
    assert [a.filename for a in msg.attachments] == ["大学.docx", "Übersicht.csv"]


def test_corpus_attachment_names() -> None:
    expected = {
        "ruby-mail/attachment_emails/attachment_with_quoted_filename.eml": "Eelanalüüsi päring.jpg",
        "ruby-mail/attachment_emails/attachment_nonascii_filename.eml": "ciële.txt",
        "ruby-mail/attachment_emails/attachment_with_base64_encoded_name.eml": "This is a test.pdf",
        "ruby-mail/multi_charset/japanese_attachment.eml": "てすと.txt",
    }
    for rel, name in expected.items():
        msg = parse_email(corpus_file(rel), channel="email")
        assert name in [a.filename for a in msg.attachments], rel


def test_filenames_are_reduced_to_a_bare_name() -> None:
    part = (
        'Content-Type: application/octet-stream; name="..\\..\\windows\\evil.exe"\n'
        'Content-Disposition: attachment; filename="../../etc/pass\x01wd"\n\nx'
    )
    msg = parse_email(multipart("mixed", part), channel="email")
    assert msg.attachments[0].filename == "passwd"


def test_inline_cid_images_are_mappable_from_the_html() -> None:
    msg = parse_email(corpus_file("stalwart-mail-parser/thirdparty/016.eml"), channel="email")
    cid = "part1.8C5E6A81.D0C1B91A@example.com"
    assert f'src="cid:{cid}"' in (msg.html or "")
    image = next(a for a in msg.attachments if a.content_id == cid)
    assert image.inline and image.content_type == "image/png"
    assert image.data is not None and image.data.startswith(b"\x89PNG")


def test_related_with_start_parameter_picks_the_root() -> None:
    raw = multipart(
        "related",
        "Content-Type: image/gif\nContent-ID: <img1@x>\nContent-Transfer-Encoding: base64\n\n"
        + base64.b64encode(b"GIF89a").decode(),
        'Content-Type: text/html\nContent-ID: <root@x>\n\n<img src="cid:img1@x"> Hi',
        headers=('X-Note: "start" names the root',),
    ).replace(b'boundary="b1"', b'boundary="b1"; start="<root@x>"; type="text/html"')
    msg = parse_email(raw, channel="email")
    assert msg.text == "Hi"
    assert [(a.content_id, a.inline, a.data) for a in msg.attachments] == [
        ("img1@x", True, b"GIF89a")
    ]


def test_tnef_winmail_dat_is_unpacked() -> None:
    tnef = corpus_file("mimekit/tnef/one-file.tnef")
    part = (
        'Content-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="winmail.dat"\n\n'
        + base64.encodebytes(tnef).decode()
    )
    msg = parse_email(
        multipart("mixed", "Content-Type: text/plain\n\nfile attached", part), channel="email"
    )
    assert [a.filename for a in msg.attachments] == ["AUTHORS"]
    assert msg.attachments[0].size == 244
    assert msg.text == "file attached"


def test_tnef_with_several_attachments() -> None:
    tnef = corpus_file("mimekit/tnef/winmail.tnef")
    part = (
        "Content-Type: application/ms-tnef\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(tnef).decode()
    )
    msg = parse_email(multipart("mixed", "Content-Type: text/plain\n\nx", part), channel="email")
    assert [a.size for a in msg.attachments] == [29034, 68261]


def test_tnef_body_is_used_when_the_mime_has_none() -> None:
    # ukr.eml: Outlook put the HTML body only inside winmail.dat.
    msg = parse_email(corpus_file("mimekit/tnef/ukr.eml"), channel="email")
    assert msg.text.startswith("шостий")
    assert msg.html is not None and "шостий" in msg.html


def _png_called_winmail_dat() -> bytes:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))
    return mail(
        "Subject: Read: invitation",
        "MIME-Version: 1.0",
        'Content-Type: application/ms-tnef;\r\n name="winmail.dat"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment;\r\n filename="winmail.dat"',
        body=base64.encodebytes(png).decode(),
    )


@pytest.mark.parametrize(
    "rel",
    [None, pytest.param("hunnysoft-mime-samples/m4006.txt", marks=pytest.mark.corpus(HUNNYSOFT))],
)
def test_unreadable_tnef_stays_an_attachment(rel: str | None) -> None:
    # A PNG called "winmail.dat" (as m4006.txt of the Hunny Software samples
    # has it): keep it as it is.
    raw = corpus_file(rel) if rel else _png_called_winmail_dat()
    msg = parse_email(raw, channel="email")
    assert [a.filename for a in msg.attachments] == ["winmail.dat"]
    if rel is None:
        assert (msg.attachments[0].data or b"").startswith(b"\x89PNG")


def test_attached_message_is_an_eml_attachment() -> None:
    inner = "From: a@b.c\nSubject: Inner subject\n\ninner body"
    raw = multipart(
        "mixed", "Content-Type: text/plain\n\nouter", f"Content-Type: message/rfc822\n\n{inner}"
    )
    msg = parse_email(raw, channel="email")
    assert msg.text == "outer"
    (att,) = msg.attachments
    assert att.filename == "Inner subject.eml"
    assert att.content_type == "message/rfc822"
    assert att.data is not None and b"inner body" in att.data


def test_multipart_without_usable_boundary_is_resplit() -> None:
    # A tab instead of ";" before the boundary parameter (stalwart 017).
    msg = parse_email(corpus_file("stalwart-mail-parser/malformed/017.eml"), channel="email")
    assert msg.subject == "Hello world"
    assert msg.text or msg.attachments
    raw = mail(
        "Content-Type: multipart/alternative",  # boundary parameter missing
        body="--zzz\nContent-Type: text/plain\n\nrecovered text\n--zzz--\n",
    )
    assert parse_email(raw, channel="email").text == "recovered text"


def test_bogus_transfer_encodings_are_read_leniently() -> None:
    for cte in ("quoted-printable;", " Quoted-Printable ", "QUOTED-PRINTABLE"):
        raw = mail(
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Transfer-Encoding: {cte}",
            body="caf=C3=A9 soft=\nbreak",
        )
        assert parse_email(raw, channel="email").text == "café softbreak"
    for cte in ("7-bit", "8bits", "plain", "text/html", ""):
        raw = mail(
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Transfer-Encoding: {cte}",
            body="naïve",
        )
        assert parse_email(raw, channel="email").text == "naïve"


def test_truncated_and_dirty_base64() -> None:
    data = base64.b64encode("Grüße aus Köln, bitte um Rückruf".encode()).decode()
    dirty = data[:10] + " \n*" + data[10:-3]  # junk inside, last quantum cut
    raw = mail(
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        body=dirty,
    )
    assert parse_email(raw, channel="email").text.startswith("Grüße aus Köln, bitte um R")


def test_uuencoded_part() -> None:
    import binascii

    line = binascii.b2a_uu(b"hello uu").decode()
    part = (
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: x-uuencode\n"
        'Content-Disposition: attachment; filename="a.bin"\n\n'
        f"begin 644 a.bin\n{line}`\nend\n"
    )
    msg = parse_email(multipart("mixed", "Content-Type: text/plain\n\nx", part), channel="email")
    assert msg.attachments[0].data == b"hello uu"


def test_format_flowed_is_unwrapped() -> None:
    raw = mail(
        "Content-Type: text/plain; charset=utf-8; format=flowed",
        body="This is a long \nline that flows.\n> quoted \n> flowed\nHard break\n-- \nsig",
    )
    msg = parse_email(raw, channel="email")
    assert msg.full_text == (
        "This is a long line that flows.\n> quoted flowed\nHard break\n-- \nsig"
    )
    assert msg.text == "This is a long line that flows.\nHard break"


def test_apple_mail_text_split_around_an_inline_image() -> None:
    raw = multipart(
        "mixed",
        "Content-Type: text/plain\n\nBefore the picture",
        'Content-Type: image/png\nContent-Disposition: inline; filename="p.png"\n\nPNG',
        "Content-Type: text/plain\n\nafter the picture",
    )
    msg = parse_email(raw, channel="email")
    assert msg.text == "Before the picture\nafter the picture"
    assert [(a.filename, a.inline) for a in msg.attachments] == [("p.png", True)]


def test_signed_mail_uses_the_signed_content() -> None:
    msg = parse_email(corpus_file("cpython-test_email/msg_45.txt"), channel="email")
    assert msg.text == "This is the signed contents."


def test_deeply_nested_structures_do_not_crash() -> None:
    depth = 200
    body = ""
    for i in range(depth):
        body += f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n'
    body += f"--b{depth}\nContent-Type: text/plain\n\ndeep\n"
    raw = mail('Content-Type: multipart/mixed; boundary="b0"', body=body)
    msg = parse_email(raw, channel="email")
    assert msg.sender.address == "customer@example.org"


def test_nul_bytes_never_reach_the_text() -> None:
    raw = mail("Content-Type: text/plain; charset=utf-8", body=b"a\x00b")
    assert parse_email(raw, channel="email").text == "ab"
