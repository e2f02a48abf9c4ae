"""The Telegram parser as a pure function: external ids, threads, skips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from omnidesk.channels.telegram import (
    _parse_thread_key,
    _reply_target,
    split_text,
    update_external_id,
)
from omnidesk.channels.textsplit import utf16_len
from omnidesk.model import Envelope, Message, MessageKind, NormalizeError, Skip

from .test_corpus import _adapter

USER = {"id": 1001, "is_bot": False, "first_name": "Ann"}
CHAT = {"id": 1001, "type": "private", "first_name": "Ann"}


def msg(**kw: Any) -> dict[str, Any]:
    return {"message_id": 5, "from": USER, "chat": CHAT, "date": 1700000000, **kw}


def normalize(update: dict[str, Any], meta: dict[str, Any] | None = None) -> Any:
    ext = update_external_id(update) or "x"
    return _adapter().normalize(Envelope("tg", ext, json.dumps(update).encode(), meta=meta or {}))


def test_external_ids_make_redeliveries_and_edits_distinct_but_stable() -> None:
    assert update_external_id({"update_id": 9, "message": msg()}) == "1001:5"
    assert update_external_id({"update_id": 10, "message": msg()}) == "1001:5"
    edit = {"update_id": 11, "edited_message": msg(edit_date=1700000100)}
    assert update_external_id(edit) == "1001:5:edit:11"
    assert update_external_id({"update_id": 12, "callback_query": {}}) == "update:12"
    assert update_external_id({"message_id": 5}) is None
    assert update_external_id([1]) is None


def test_edit_points_at_the_original_message() -> None:
    item = normalize({"update_id": 11, "edited_message": msg(text="new", edit_date=1700000100)})
    assert isinstance(item, Message)
    assert (item.kind, item.edit_of, item.text) == (MessageKind.EDIT, "1001:5", "new")
    assert item.sent_at == 1700000100


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"message": msg(new_chat_members=[USER])}, "service message (new_chat_members)"),
        ({"message": msg(pinned_message={})}, "service message (pinned_message)"),
        ({"channel_post": msg()}, "Telegram channel"),
        (
            {
                "my_chat_member": {
                    "chat": CHAT,
                    "from": USER,
                    "new_chat_member": {"status": "kicked"},
                }
            },
            "the user 1001 blocked the bot",
        ),
        ({"callback_query": {"id": "1"}}, "a button press on a message omnidesk did not send"),
        ({"inline_query": {"id": "1"}}, "inline_query is not a customer message"),
        ({}, "no content"),
    ],
)
def test_what_is_not_a_customer_message_is_skipped_with_a_reason(
    update: dict[str, Any], reason: str
) -> None:
    item = normalize({"update_id": 1, **update})
    assert isinstance(item, Skip)
    assert reason in item.reason


def test_anonymous_admin_writes_as_the_group() -> None:
    group = {"id": -100, "type": "supergroup", "title": "Shop"}
    m = msg(chat=group, sender_chat=group, text="posted anonymously")
    del m["from"]
    item = normalize({"update_id": 1, "message": m})
    assert isinstance(item, Message)
    assert (item.sender.address, item.sender.display_name) == ("-100", "Shop")
    assert item.thread_key == "-100"


def test_downloaded_files_become_attachment_bytes() -> None:
    photo = [{"file_id": "small", "file_size": 10}, {"file_id": "big", "file_size": 99}]
    meta = {"files": {"big": {"data": "aGVsbG8="}}}
    item = normalize({"update_id": 1, "message": msg(photo=photo)}, meta)
    assert isinstance(item, Message)
    [att] = item.attachments
    assert (att.data, att.ref, att.content_type) == (b"hello", "big", "image/jpeg")
    assert item.text == "[photo]"


def test_missing_file_data_keeps_the_reference_and_the_reason() -> None:
    doc = {"file_id": "D1", "file_name": "a.pdf", "mime_type": "application/pdf"}
    item = normalize({"update_id": 1, "message": msg(document=doc, caption="invoice")})
    assert isinstance(item, Message)
    [att] = item.attachments
    assert (att.data, att.ref, att.filename) == (None, "D1", "a.pdf")
    assert item.meta["telegram"]["file_errors"] == {"D1": "not downloaded"}


def test_unknown_content_is_kept_visibly() -> None:
    item = normalize({"update_id": 1, "message": msg(brand_new_thing={"x": 1})})
    assert isinstance(item, Message)
    assert item.text == "[unsupported Telegram message: brand_new_thing]"


def test_non_integer_ids_are_refused() -> None:
    with pytest.raises(NormalizeError, match=r"integer chat\.id"):
        normalize({"update_id": 1, "message": msg(message_id="5")})


def test_split_text_respects_utf16_length_and_word_boundaries() -> None:
    emoji = "😀" * 3000  # two UTF-16 units each
    parts = split_text(emoji)
    assert all(utf16_len(p) <= 4096 for p in parts) and "".join(parts) == emoji
    words = "word " * 2000
    parts = split_text(words)
    assert all(utf16_len(p) <= 4096 and not p.endswith("wor") for p in parts)
    assert split_text("short") == ["short"]


def test_reply_routing_helpers() -> None:
    assert _parse_thread_key("-100:77", "x") == (-100, 77)
    assert _parse_thread_key(None, "1001") == (1001, None)
    assert _reply_target("1001:5:edit:9", 1001) == 5
    assert _reply_target("2002:5", 1001) is None
