"""Every channel's text as stored: no NUL, no lone surrogate, and within the
cap, with the whole text kept as an attachment (omnidesk/textcap.py)."""

from __future__ import annotations

from omnidesk.model import Identity, Message
from omnidesk.textcap import FULL_TEXT_NAME, MAX_TEXT_CHARS, bound_message, storable


def msg(text: str, **kw: object) -> Message:
    return Message(
        channel="x",
        external_id="1",
        sender=Identity("email", "ann@example.com", kw.pop("name", None)),  # type: ignore[arg-type]
        text=text,
        **kw,  # type: ignore[arg-type]
    )


def test_nul_is_dropped_and_lone_surrogates_replaced() -> None:
    m = bound_message(msg("a\x00b \ud800c", subject="s\x00", name="N\udc00"))
    assert (m.text, m.subject, m.sender.display_name) == ("ab \ufffdc", "s", "N\ufffd")
    assert storable("emoji 😀 stays") == "emoji 😀 stays"
    m.text.encode("utf-8")  # storable everywhere


def test_text_past_the_cap_is_kept_whole_as_an_attachment() -> None:
    whole = "x" * (MAX_TEXT_CHARS + 5)
    m = bound_message(msg(whole))
    assert len(m.text) == MAX_TEXT_CHARS
    [att] = m.attachments
    assert att.filename == FULL_TEXT_NAME and att.data == whole.encode()
    assert m.meta["text_folded"] == {"chars": len(whole), "attachment": FULL_TEXT_NAME}


def test_a_long_full_text_is_what_the_attachment_keeps() -> None:
    body = "new words\n" + "> quoted " * 20_000
    m = bound_message(msg("new words", full_text=body))
    assert m.text == "new words" and len(m.full_text or "") == MAX_TEXT_CHARS
    assert m.attachments[0].data == body.encode()


def test_text_within_the_cap_is_left_alone() -> None:
    m = bound_message(msg("short"))
    assert m.text == "short" and m.attachments == [] and "text_folded" not in m.meta
