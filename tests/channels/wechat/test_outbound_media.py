"""Replies with files on the WeChat Official Account and WeChat customer
service: each file is uploaded as temporary media with wechatpy's
``media.upload`` (multipart ``media`` field, ``type`` in the query), then
sent as a customer-service message of that type naming the media_id; a type
or size the API does not take fails the reply with the reason, before
anything is sent."""

from __future__ import annotations

from typing import Any

from omnidesk.model import Attachment
from tests.channels.wechat.conftest import CUSTOMER, OPEN_KFID, WeChat
from tests.channels.wechat.test_kf import USER
from tests.channels.wechat.test_kf import customer_writes as kf_customer_writes
from tests.channels.wechat.test_official import customer_writes as oa_customer_writes
from tests.conftest import reply_with_files

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4 fapiao 1234\n%%EOF"


async def test_official_account_image_is_uploaded_then_sent_after_the_text(
    wechat: WeChat,
) -> None:
    conv_id = await oa_customer_writes(wechat, 9101)
    mid = await reply_with_files(
        wechat.daemon, conv_id, "请看图片。", Attachment("发票.png", "image/png", data=PNG)
    )
    await wechat.delivery_state(conv_id, mid, "sent")
    [up] = wechat.api.of("media/upload")
    assert up.query["type"] == "image"
    [stored] = wechat.api.uploads.values()
    assert (stored.filename, stored.content_type, stored.data) == ("发票.png", "image/png", PNG)
    sends = [c.body for c in wechat.api.of("message/custom/send")]
    assert sends == [
        {"touser": CUSTOMER, "msgtype": "text", "text": {"content": "请看图片。"}},
        {"touser": CUSTOMER, "msgtype": "image", "image": {"media_id": stored.media_id}},
    ]
    assert up.query["access_token"] == wechat.api.of("message/custom/send")[0].query["access_token"]


async def test_official_account_refuses_a_pdf_and_an_oversized_image(wechat: WeChat) -> None:
    conv_id = await oa_customer_writes(wechat, 9102)
    mid = await reply_with_files(
        wechat.daemon, conv_id, "发票", Attachment("invoice.pdf", "application/pdf", data=PDF)
    )
    m = await wechat.delivery_state(conv_id, mid, "failed")
    assert m["delivery_error"].startswith(
        "WeChat Official Account cannot send invoice.pdf (application/pdf)"
    )
    big = Attachment("big.jpg", "image/jpeg", data=b"\xff\xd8" + b"\x00" * (10 * 1024 * 1024))
    mid = await reply_with_files(wechat.daemon, conv_id, "", big)
    m = await wechat.delivery_state(conv_id, mid, "failed")
    assert "big.jpg is too large for WeChat Official Account" in m["delivery_error"]
    assert wechat.api.of("media/upload") == []
    assert wechat.api.of("message/custom/send") == []


async def test_kf_sends_image_and_pdf_as_uploaded_media(wechat: WeChat) -> None:
    conv_id = await kf_customer_writes(wechat, "m1")
    mid = await reply_with_files(
        wechat.daemon,
        conv_id,
        "您的发票和照片。",
        Attachment("photo.png", "image/png", data=PNG),
        Attachment("invoice.pdf", "application/pdf", data=PDF),
    )
    await wechat.delivery_state(conv_id, mid, "sent")
    assert [c.query["type"] for c in wechat.api.of("media/upload")] == ["image", "file"]
    image, pdf = wechat.api.uploads.values()
    assert (image.data, pdf.data, pdf.filename) == (PNG, PDF, "invoice.pdf")
    sends = [c.body for c in wechat.api.of("kf/send_msg")]
    assert [s["msgtype"] for s in sends] == ["text", "image", "file"]
    assert sends[1]["image"] == {"media_id": image.media_id}
    assert sends[2]["file"] == {"media_id": pdf.media_id}
    assert all(s["touser"] == USER and s["open_kfid"] == OPEN_KFID for s in sends)
    assert len({s["msgid"] for s in sends}) == 3
    assert all(c.answer["errcode"] == 0 for c in wechat.api.of("kf/send_msg"))


async def test_kf_refuses_oversized_and_tiny_files(wechat: WeChat) -> None:
    conv_id = await kf_customer_writes(wechat, "m2")
    big = Attachment("scan.pdf", "application/pdf", data=b"%PDF" + b"\x00" * (20 * 1024 * 1024))
    mid = await reply_with_files(wechat.daemon, conv_id, "scan", big)
    m: dict[str, Any] = await wechat.delivery_state(conv_id, mid, "failed")
    assert "scan.pdf is too large for WeChat customer service" in m["delivery_error"]
    assert "at most 21.0 MB" in m["delivery_error"]
    tiny = Attachment("x.txt", "text/plain", data=b"hi")
    mid = await reply_with_files(wechat.daemon, conv_id, "", tiny)
    m = await wechat.delivery_state(conv_id, mid, "failed")
    assert "x.txt is too small for WeChat customer service" in m["delivery_error"]
    assert wechat.api.of("media/upload") == [] and wechat.api.of("kf/send_msg") == []


async def test_kf_retry_after_a_busy_answer_sends_nothing_twice(wechat: WeChat) -> None:
    conv_id = await kf_customer_writes(wechat, "m3")
    # The text goes out; WeChat is busy for the file's message, then takes it.
    wechat.api.fail_nth("kf/send_msg", 1, -1, "system error")
    mid = await reply_with_files(
        wechat.daemon, conv_id, "发票如下", Attachment("invoice.pdf", "application/pdf", data=PDF)
    )
    await wechat.delivery_state(conv_id, mid, "sent")
    sent = [c.body for c in wechat.api.of("kf/send_msg") if c.answer["errcode"] == 0]
    assert [s["msgtype"] for s in sent] == ["text", "file"]
    assert [c.answer["errcode"] for c in wechat.api.of("kf/send_msg")] == [0, -1, 0]
