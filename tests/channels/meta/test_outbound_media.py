"""Replies with files on WhatsApp, Messenger and Instagram: each file is
uploaded in the documented multipart form (WhatsApp's media endpoint, the
Attachment Upload API), then sent as a message naming the id the upload
returned; a file the platform does not take fails the reply with the reason
before anything leaves."""

from __future__ import annotations

from typing import Any

from omnidesk.model import Attachment
from tests.channels.meta.conftest import IG_ID, PAGE_ID, PHONE_NUMBER_ID, Meta
from tests.channels.meta.test_messenger import customer_writes as page_customer_writes
from tests.channels.meta.test_messenger import delivery_state
from tests.channels.meta.test_whatsapp import CUSTOMER
from tests.channels.meta.test_whatsapp import customer_writes as wa_customer_writes
from tests.conftest import reply_with_files
from tests.standins.graph_api import ScriptedError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4 invoice 1234\n%%EOF"


async def failed(meta: Meta, conv_id: int, message_id: int) -> dict[str, Any]:
    await delivery_state(meta, conv_id, message_id, "failed")
    return await meta.message(conv_id, message_id)


# -- WhatsApp ---------------------------------------------------------------------------


async def test_whatsapp_image_and_pdf_are_uploaded_then_sent_by_media_id(meta: Meta) -> None:
    conv_id = await wa_customer_writes(meta)
    mid = await reply_with_files(
        meta.daemon,
        conv_id,
        "Here is the photo and your invoice.",
        Attachment("photo.png", "image/png", data=PNG),
        Attachment("invoice.pdf", "application/pdf", data=PDF),
    )
    await delivery_state(meta, conv_id, mid, "sent")
    uploads = list(meta.graph.uploads.values())
    assert [(u.path, u.filename, u.content_type, u.data) for u in uploads] == [
        (f"{PHONE_NUMBER_ID}/media", "photo.png", "image/png", PNG),
        (f"{PHONE_NUMBER_ID}/media", "invoice.pdf", "application/pdf", PDF),
    ]
    assert all(u.fields["messaging_product"] == "whatsapp" for u in uploads)
    assert [u.fields["type"] for u in uploads] == ["image/png", "application/pdf"]
    text, image, document = (c.body for c in meta.graph.sends())
    assert text["type"] == "text" and text["text"]["body"] == "Here is the photo and your invoice."
    assert image["type"] == "image" and image["image"] == {"id": uploads[0].id}
    assert image["to"] == CUSTOMER
    assert document["type"] == "document"
    assert document["document"] == {"id": uploads[1].id, "filename": "invoice.pdf"}
    provider_id = (await meta.message(conv_id, mid))["provider_id"]
    assert provider_id.startswith("wamid.STANDIN")


async def test_whatsapp_file_without_text_is_sent_alone(meta: Meta) -> None:
    conv_id = await wa_customer_writes(meta)
    mid = await reply_with_files(
        meta.daemon, conv_id, "", Attachment("a.pdf", "application/pdf", PDF)
    )
    await delivery_state(meta, conv_id, mid, "sent")
    [send] = meta.graph.sends()
    assert send.body["type"] == "document"


async def test_whatsapp_oversized_or_unsupported_file_fails_with_the_reason(meta: Meta) -> None:
    conv_id = await wa_customer_writes(meta)
    big = Attachment("huge.jpg", "image/jpeg", data=b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024))
    mid = await reply_with_files(meta.daemon, conv_id, "see photo", big)
    m = await failed(meta, conv_id, mid)
    assert "huge.jpg is too large for WhatsApp" in m["delivery_error"]
    assert "at most 5.2 MB" in m["delivery_error"]
    zipped = Attachment("logs.zip", "application/zip", data=b"PK\x03\x04" * 10)
    mid = await reply_with_files(meta.daemon, conv_id, "logs", zipped)
    m = await failed(meta, conv_id, mid)
    assert "WhatsApp cannot send logs.zip (application/zip)" in m["delivery_error"]
    assert "application/pdf" in m["delivery_error"]
    # Nothing left: not the text, not an upload; and no retry.
    assert meta.graph.sends() == [] and meta.graph.uploads == {}
    assert "retrying" not in m["delivery_error"]


async def test_whatsapp_generic_content_type_is_told_by_the_file_name(meta: Meta) -> None:
    conv_id = await wa_customer_writes(meta)
    # application/octet-stream named .txt is guessed as text/plain and taken.
    mid = await reply_with_files(
        meta.daemon, conv_id, "", Attachment("notes.txt", "application/octet-stream", b"hello!")
    )
    await delivery_state(meta, conv_id, mid, "sent")
    [u] = meta.graph.uploads.values()
    assert u.fields["type"] == "text/plain"


async def test_a_retried_upload_does_not_send_the_text_again(meta: Meta) -> None:
    conv_id = await wa_customer_writes(meta)
    meta.graph.upload_script.append(ScriptedError(503, 2, "Service temporarily unavailable"))
    mid = await reply_with_files(
        meta.daemon, conv_id, "Your invoice:", Attachment("invoice.pdf", "application/pdf", PDF)
    )
    await delivery_state(meta, conv_id, mid, "sent")
    texts = [c for c in meta.graph.sends() if c.body["type"] == "text"]
    documents = [c for c in meta.graph.sends() if c.body["type"] == "document"]
    assert len(texts) == 1 and len(documents) == 1
    assert [u.data for u in meta.graph.uploads.values()] == [PDF]
    uploads = [c for c in meta.graph.calls if c.path.endswith("/media")]
    assert [c.status for c in uploads] == [503, 200]


# -- Messenger and Instagram -----------------------------------------------------------


async def test_messenger_image_and_pdf_go_through_the_attachment_upload_api(meta: Meta) -> None:
    conv_id = await page_customer_writes(meta, "fb", psid="7001")
    mid = await reply_with_files(
        meta.daemon,
        conv_id,
        "Your receipt:",
        Attachment("shelf.png", "image/png", data=PNG),
        Attachment("receipt.pdf", "application/pdf", data=PDF),
    )
    await delivery_state(meta, conv_id, mid, "sent")
    image_up, pdf_up = meta.graph.uploads.values()
    assert image_up.path == f"{PAGE_ID}/message_attachments"
    assert (image_up.filename, image_up.content_type) == ("shelf.png", "image/png")
    assert image_up.data == PNG
    assert (pdf_up.filename, pdf_up.data) == ("receipt.pdf", PDF)
    assert '"type": "image"' in image_up.fields["message"]
    assert '"type": "file"' in pdf_up.fields["message"]
    assert "platform" not in image_up.fields
    text, image, pdf = (c.body for c in meta.graph.sends())
    assert text["message"]["text"] == "Your receipt:"
    assert image["recipient"] == {"id": "7001"}
    assert image["message"]["attachment"] == {
        "type": "image",
        "payload": {"attachment_id": image_up.id},
    }
    assert pdf["message"]["attachment"] == {"type": "file", "payload": {"attachment_id": pdf_up.id}}
    assert image["message"]["metadata"] == "omnidesk"  # our echoes are recognised


async def test_instagram_takes_images_and_pdfs_and_refuses_other_files(meta: Meta) -> None:
    conv_id = await page_customer_writes(meta, "ig", psid="8001")
    mid = await reply_with_files(
        meta.daemon,
        conv_id,
        "Voilà",
        Attachment("café.png", "image/png", data=PNG),
        Attachment("guide.pdf", "application/pdf", data=PDF),
    )
    await delivery_state(meta, conv_id, mid, "sent")
    image_up, pdf_up = meta.graph.uploads.values()
    assert image_up.fields["platform"] == pdf_up.fields["platform"] == "instagram"
    assert pdf_up.data == PDF
    assert image_up.filename == "caf.png"  # Meta refuses non-ASCII file names
    assert image_up.path == f"{IG_ID}/message_attachments"
    sends = [c.body for c in meta.graph.sends()]
    assert [s["message"].get("attachment", {}).get("type") for s in sends] == [
        None,
        "image",
        "file",
    ]
    assert "metadata" not in sends[1]["message"]
    doc = Attachment("terms.docx", "application/msword", data=b"\xd0\xcf\x11\xe0" * 4)
    mid = await reply_with_files(meta.daemon, conv_id, "terms", doc)
    m = await failed(meta, conv_id, mid)
    assert m["delivery_error"].startswith("Instagram cannot send terms.docx (application/msword)")
    assert len(meta.graph.sends()) == 3
    big = Attachment("big.gif", "image/gif", data=b"GIF89a" + b"\x00" * (8 * 1024 * 1024))
    mid = await reply_with_files(meta.daemon, conv_id, "", big)
    m = await failed(meta, conv_id, mid)
    assert "big.gif is too large for Instagram" in m["delivery_error"]
