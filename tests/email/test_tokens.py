"""Conversation tokens in subjects and plus-addresses; clean subjects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnidesk.email import (
    clean_subject,
    format_subject_token,
    parse_conversation_token,
    parse_email,
    plus_address,
)
from omnidesk.model import Identity

from .conftest import mail


@pytest.mark.parametrize(
    ("subject", "clean"),
    [
        ("Re: Fwd: AW: WG: Broken kettle", "Broken kettle"),
        ("RE: RE[2]: Re(3): order", "order"),
        ("回复：答复: 转发: 订单问题", "订单问题"),
        ("Re: [#OD-17] AW: Lieferung", "Lieferung"),
        ("Lieferung [#OD-17]", "Lieferung"),
        ("SV: VS: TR: Rif: R: Antw: question", "question"),
        ("Réf : RE : x", "x"),
        ("Réponse: x", "Réponse: x"),
        ("Regarding: the refund", "Regarding: the refund"),
        ("Re:", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_subject(subject: str | None, clean: str) -> None:
    assert clean_subject(subject) == clean


def test_format_subject_token_appears_once() -> None:
    assert format_subject_token(123, "Broken kettle") == "Broken kettle [#OD-123]"
    assert format_subject_token(123, "Re: Broken kettle [#OD-123]") == "Broken kettle [#OD-123]"
    assert format_subject_token(5, None) == "[#OD-5]"
    assert format_subject_token(5, "x", prefix="HD") == "x [#HD-5]"


@given(
    st.integers(min_value=0, max_value=10**15),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60),
)
def test_token_round_trip(conv_id: int, subject: str) -> None:
    tokened = format_subject_token(conv_id, subject)
    assert parse_conversation_token(tokened) == conv_id
    assert parse_conversation_token("Re: AW: " + tokened) == conv_id
    assert "[#OD-" not in clean_subject(tokened)


def test_plus_address_round_trip() -> None:
    addr = plus_address("support@example.com", 77)
    assert addr == "support+od77@example.com"
    assert plus_address("support+old@example.com", 78) == "support+od78@example.com"
    assert parse_conversation_token(None, [addr]) == 77
    assert parse_conversation_token(None, [Identity(kind="email", address=addr)]) == 77
    with pytest.raises(ValueError):
        plus_address("not-an-address", 1)


def test_address_token_wins_over_subject_token() -> None:
    assert parse_conversation_token("Fwd: [#OD-1]", ["support+od2@example.com"]) == 2
    assert parse_conversation_token("no token", ["support@example.com"]) is None
    assert parse_conversation_token("[#OD-x]", []) is None
    assert parse_conversation_token("[#od-9]", []) == 9


def test_parse_email_sets_conversation_hint_and_clean_subject() -> None:
    msg = parse_email(mail("Subject: RE: AW: Lieferung [#OD-321]"), channel="email")
    assert msg.conversation_hint == 321
    assert msg.subject == "Lieferung"
    assert msg.meta["subject_raw"] == "RE: AW: Lieferung [#OD-321]"


def test_conversation_hint_from_envelope_or_delivered_to() -> None:
    msg = parse_email(
        mail("To: support@example.com", "Subject: new question"),
        channel="email",
        envelope={"rcpt_tos": ["support+od55@example.com"]},
    )
    assert msg.conversation_hint == 55
    msg = parse_email(mail("Delivered-To: support+od56@example.com"), channel="email")
    assert msg.conversation_hint == 56
