"""Charsets: each family we meet, decoded through the superset clients really
write; wrong labels fixed by detection; U+FFFD only where bytes are broken."""

from __future__ import annotations

import pytest

from omnidesk.email import parse_email
from omnidesk.email.charsets import decode_bytes, decoders_for

from .conftest import mail

# (label written by the client, codec that produced the bytes, text)
SAMPLES = [
    # GB2312 label on GBK/GB18030 text: 镕 and 𠀀 are outside GB2312.
    ("gb2312", "gb18030", "您好，朱镕基总理𠀀。我的订单还没有到"),
    ("GBK", "gbk", "退款申请：订单号 12345"),
    ("GB18030", "gb18030", "投诉：快递太慢了 €"),
    # Big5 label on HKSCS (香港字 "𥚃") and on cp950 (€ at 0xA3E1).
    ("big5", "big5hkscs", "您好，請問訂單何時送達？𥚃"),
    ("big5", "cp950", "退款金額 €100"),
    # Shift_JIS label on cp932 text: ① and ㈱ are NEC extensions.
    ("Shift_JIS", "cp932", "お問い合わせ①：㈱テスト"),
    ("ISO-2022-JP", "iso2022_jp", "注文がまだ届きません"),
    # EUC-KR label on cp949 (Unified Hangul: 똠 is outside EUC-KR).
    ("EUC-KR", "cp949", "배송이 늦어요 똠양꿍"),
    ("ks_c_5601-1987", "cp949", "환불 요청"),
    ("UTF-7", "utf-7", "Grüße, 你好"),
    ("UTF-16", "utf-16", "Grüße, 你好"),
    ("utf-16le", "utf-16-le", "Grüße, 你好"),
    ("utf-16be", "utf-16-be", "Grüße, 你好"),
    ("iso-8859-1", "cp1252", "Café – “quoted” €"),  # windows-1252 under a Latin-1 label
    ("windows-1251", "cp1251", "Здравствуйте"),
    ("koi8-r", "koi8_r", "Привет"),
    ("iso-8859-2", "iso8859_2", "Zażółć gęślą jaźń"),
    ("euc-jp", "euc_jp", "日本語のテキスト"),
]


@pytest.mark.parametrize(("label", "codec", "text"), SAMPLES)
def test_declared_charset_decodes_through_its_superset(label: str, codec: str, text: str) -> None:
    assert decode_bytes(text.encode(codec), label) == text


@pytest.mark.parametrize(("label", "codec", "text"), SAMPLES)
def test_body_in_each_charset_normalizes(label: str, codec: str, text: str) -> None:
    raw = mail(
        f'Content-Type: text/plain; charset="{label}"',
        "Content-Transfer-Encoding: base64",
        body=__import__("base64").encodebytes(text.encode(codec)),
    )
    msg = parse_email(raw, channel="email")
    assert msg.text == text


def test_iso_2022_jp_with_windows_extensions() -> None:
    # ① is JIS row 13 (NEC special characters): Outlook's CP50220 writes it,
    # Python's iso2022_jp codecs refuse it.
    raw = b"\x1b$B-!%F%9%H\x1b(B ok"
    assert decode_bytes(raw, "iso-2022-jp") == "①テスト ok"


def test_hz_and_unknown_labels() -> None:
    assert decoders_for("x-unknown") == ()
    assert decoders_for("") == ()
    assert decoders_for(None) == ()
    assert decoders_for("windows-1252") == ("cp1252",)
    assert decoders_for("3Dutf-8") == ("utf-8",)
    assert decoders_for('"UTF-8";') == ("utf-8",)


@pytest.mark.parametrize(
    ("label", "data", "text"),
    [
        # UTF-8 under a Latin-1 / ASCII / unknown / missing label.
        ("iso-8859-1", "Grüße aus Zürich".encode(), "Grüße aus Zürich"),
        ("us-ascii", "naïve café".encode(), "naïve café"),
        ("x-unknown", "Envoyé par le service".encode(), "Envoyé par le service"),
        (None, "Привет, как дела?".encode(), "Привет, как дела?"),
        # Latin-1 under a UTF-8 label or none.
        ("utf-8", "Die Hasen und die Frösche".encode("latin-1"), "Die Hasen und die Frösche"),
        (None, "Über uns".encode("cp1252"), "Über uns"),
        # A wrong CJK label: GBK text labelled Shift_JIS is detected.
        (
            "shift_jis",
            "我们的产品质量问题非常严重，请尽快处理退款。谢谢！我们等了三个星期。".encode(
                "gb18030"
            ),
            "我们的产品质量问题非常严重，请尽快处理退款。谢谢！我们等了三个星期。",
        ),
    ],
)
def test_wrong_labels_are_fixed(label: str | None, data: bytes, text: str) -> None:
    assert decode_bytes(data, label) == text


def test_wrong_label_in_a_real_message_is_fixed_by_detection() -> None:
    body = (
        "您好，我上周在你们网店买的洗衣机用了两天就坏了，现在要求退货退款，请尽快回复。谢谢！"
    ).encode("gb18030")
    raw = mail("Content-Type: text/plain; charset=iso-2022-kr", body=body)
    assert parse_email(raw, channel="email").text == body.decode("gb18030")


def test_ascii_only_bytes_in_a_stateful_charset_are_not_taken_as_ascii() -> None:
    assert decode_bytes(b"Hi +AGEAYgBj-", "utf-7") == "Hi abc"
    assert decode_bytes("ab".encode("utf-16-le"), "utf-16le") == "ab"


def test_really_broken_bytes_keep_the_readable_rest() -> None:
    # Mostly valid GB18030 with one truncated character: the declared charset
    # still reads every other character; only the damage is marked.
    data = "订单已发货".encode("gb18030") + b"\x81"
    assert decode_bytes(data, "gb2312").startswith("订单已发货")
    # Random bytes under a UTF-8 label: every byte stays visible, no U+FFFD.
    assert "\ufffd" not in decode_bytes(b"\x82\xb6\xad\xa2\x07\xab", "utf-8")


def test_never_raises_on_any_label() -> None:
    for label in ("", "bogus", "utf-8'en'", "x-mac-roman", "ucs-4", "cp-850", "\x00"):
        assert isinstance(decode_bytes(b"caf\xe9 \x80\xff", label), str)
