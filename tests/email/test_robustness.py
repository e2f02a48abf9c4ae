"""Whatever bytes arrive, parse_email returns a Message or raises
NormalizeError - never anything else (the pipeline quarantines on it)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnidesk.email import parse_email
from omnidesk.model import Message, NormalizeError

from .conftest import mail

SEED = mail(
    "To: =?utf-8?q?J=C3=B6rg?= <j@example.de>, undisclosed-recipients:;",
    "Subject: =?gb2312?b?xOO6ww==?= [#OD-3]",
    "In-Reply-To: <a@b>",
    'Content-Type: multipart/mixed; boundary="zz"',
    body=(
        "--zz\nContent-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s\x1b(B\n"
        "--zz\nContent-Type: text/html; charset=big5\nContent-Transfer-Encoding: base64\n\n"
        "PGI+aGk8L2I+\n"
        '--zz\nContent-Type: application/ms-tnef; name="winmail.dat"\n\nxxxx\n'
        "--zz\nContent-Type: message/delivery-status\n\nAction: failed\n--zz--\n"
    ),
)


def _check(raw: bytes) -> None:
    try:
        msg = parse_email(raw, channel="email")
    except NormalizeError as exc:
        # Refusals name what is missing; "unreadable message (...)" is the
        # catch-all for an exception inside the normalizer: a bug to fix.
        assert str(exc) and not str(exc).startswith("unreadable message"), str(exc)
        return
    assert isinstance(msg, Message)
    assert "\x00" not in msg.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_message(data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 50))]
        elif op == "insert":
            raw[pos:pos] = data.draw(
                st.sampled_from([b"\r\n", b"--zz", b"=?", b"?=", b"\x1b$B", b":"])
            )
        else:
            raw[pos:pos] = raw[pos : pos + data.draw(st.integers(1, 80))]
    _check(bytes(raw))


def test_seed_parses() -> None:
    msg = parse_email(SEED, channel="email")
    assert msg.subject == "你好"
    assert msg.conversation_hint == 3
    assert msg.text == "こん"


def test_non_bytes_and_empty_input_are_refused_with_a_reason() -> None:
    for bad in (b"", b"\r\n\r\n", b"   "):
        try:
            parse_email(bad, channel="email")
        except NormalizeError as exc:
            assert "empty" in str(exc)
        else:
            raise AssertionError("accepted empty input")
    try:
        parse_email("From: a@b\n\nx", channel="email")  # type: ignore[arg-type]
    except NormalizeError as exc:
        assert "bytes" in str(exc)
    else:
        raise AssertionError("accepted str input")
