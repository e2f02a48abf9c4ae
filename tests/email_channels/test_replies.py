"""Replies leave through a relay (aiosmtpd capturing them) with the headers
that thread them, and what comes back - the customer's answer from Outlook,
an out-of-office notice, a bounce - finds its conversation without loops."""

from __future__ import annotations

import asyncio
import base64
import json
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from omnidesk.app import Daemon
from tests.conftest import admin_token, settle

from .conftest import (
    SUPPORT,
    Dovecot,
    Relay,
    Tls,
    eventually,
    imap_channel,
    mail,
    relay_options,
    rows,
    send_smtp,
    smtp_channel,
    smtp_port,
)

FAST_OUTBOX = {"backoff_base": 0.05, "backoff_max": 0.2}
ACK = "Thank you, we received your message (ticket #{conversation_id})."


async def customer_writes(daemon: Daemon, raw: bytes, mail_from: str = "ann@example.org") -> None:
    assert await asyncio.to_thread(send_smtp, smtp_port(daemon), raw, mail_from=mail_from) == {}
    await settle(daemon)


async def conversations(daemon: Daemon) -> list[dict[str, Any]]:
    return await rows(daemon, "SELECT id, subject, contact_id FROM conversations ORDER BY id")


async def messages(daemon: Daemon, conv: int) -> list[dict[str, Any]]:
    return await rows(
        daemon,
        "SELECT id, direction, kind, auto, text, full_text, delivery_state, delivery_error,"
        " provider_id FROM messages WHERE conversation_id = ? ORDER BY id",
        (conv,),
    )


async def agent_replies(daemon: Daemon, conv: int, text: str, html: str | None = None) -> int:
    headers = await admin_token(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        r = await c.post(
            f"/api/v1/conversations/{conv}/messages",
            json={"text": text, "html": html, "force": True},
            headers=headers,
        )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def delivery(daemon: Daemon, message_id: int, state: str, timeout: float = 10) -> Any:
    async def reached() -> Any:
        (row,) = await rows(
            daemon,
            "SELECT delivery_state, delivery_error, provider_id FROM messages WHERE id = ?",
            (message_id,),
        )
        return row if row["delivery_state"] == state else None

    row = await eventually(reached, timeout)
    assert row is not None, f"message {message_id} never reached {state}"
    return row


async def test_reply_has_threading_headers_and_outlook_answer_joins(
    email_daemon: Any, relay: Relay
) -> None:
    daemon = await email_daemon(smtp_channel(**relay_options(relay)), outbox=FAST_OUTBOX)
    first, first_id = mail("Where is my order 1234?")
    await customer_writes(daemon, first)
    (conv,) = await conversations(daemon)

    reply_id = await agent_replies(
        daemon, conv["id"], "It ships tomorrow.", html="<p>It ships <b>tomorrow</b>.</p>"
    )
    (out,) = await relay.wait(1)
    sent = await delivery(daemon, reply_id, "sent")
    msg = out.message
    assert out.mail_from == SUPPORT and out.rcpt_tos == ["ann@example.org"]
    assert msg["From"] == "Example Support <support@example.com>"
    assert msg["To"] == "ann@example.org"
    assert msg["Subject"] == f"Re: Where is my order 1234? [#OD-{conv['id']}]"
    assert msg["In-Reply-To"] == f"<{first_id}>"
    assert f"<{first_id}>" in msg["References"]
    our_id = msg["Message-ID"].strip("<>")
    assert our_id.startswith(f"od.{conv['id']}.") and our_id.endswith("@example.com")
    assert sent["provider_id"] == f"mid:{our_id}"
    assert msg["Auto-Submitted"] is None, "a human reply is not automatic"
    assert msg.get_content_type() == "multipart/alternative"
    assert "It ships tomorrow." in msg.get_body(("plain",)).get_content()
    assert "<b>tomorrow</b>" in msg.get_body(("html",)).get_content()

    # The customer answers from Outlook: "RE:", Thread-Index, and the quote
    # as a From:/Sent: block rather than "> " lines.
    answer, answer_id = mail(
        f"RE: Where is my order 1234? [#OD-{conv['id']}]",
        "Great, thanks! Can you deliver to my office instead?\n\n"
        "From: Example Support <support@example.com>\n"
        f"Sent: {formatdate()}\nTo: Ann Customer <ann@example.org>\n"
        f"Subject: Re: Where is my order 1234? [#OD-{conv['id']}]\n\nIt ships tomorrow.\n",
        headers={
            "In-Reply-To": f"<{our_id}>",
            "References": f"<{first_id}> <{our_id}>",
            "Thread-Topic": "Where is my order 1234?",
            "Thread-Index": "AQHZ1234567890abcdefABCDEF==",
            "X-MS-Has-Attach": "",
            "X-Mailer": "Microsoft Outlook 16.0",
        },
    )
    await customer_writes(daemon, answer)
    assert len(await conversations(daemon)) == 1
    inbound = [m for m in await messages(daemon, conv["id"]) if m["direction"] == "in"]
    assert len(inbound) == 2
    assert inbound[1]["text"] == "Great, thanks! Can you deliver to my office instead?"
    assert "It ships tomorrow." in inbound[1]["full_text"]

    # A second reply continues the chain: References carry the whole thread.
    await agent_replies(daemon, conv["id"], "Sure, noted.")
    second = (await relay.wait(2))[1].message
    assert second["In-Reply-To"] == f"<{answer_id}>"
    refs = second["References"].split()
    assert refs[0] == f"<{first_id}>" and f"<{our_id}>" in refs and f"<{answer_id}>" in refs


async def test_reply_with_files_from_the_inbox_carries_them(
    email_daemon: Any, relay: Relay
) -> None:
    daemon = await email_daemon(smtp_channel(**relay_options(relay)), outbox=FAST_OUTBOX)
    first, _ = mail("Please send the signed contract")
    await customer_writes(daemon, first)
    (conv,) = await conversations(daemon)
    pdf = b"%PDF-1.4 signed contract \x00\xff"
    headers = await admin_token(daemon)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as c:
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "text": "Here it is, signed.",
                "force": True,
                "attachments": [
                    {
                        "filename": "Vertrag März.pdf",
                        "content_type": "application/pdf",
                        "data": base64.b64encode(pdf).decode(),
                    },
                    {
                        "filename": "notes.txt",
                        "content_type": "text/plain",
                        "data": base64.b64encode("à bientôt\n".encode()).decode(),
                    },
                ],
            },
            headers=headers,
        )
    assert r.status_code == 201, r.text
    (out,) = await relay.wait(1)
    await delivery(daemon, int(r.json()["id"]), "sent")
    msg = out.message
    assert "Here it is, signed." in msg.get_body(("plain",)).get_content()
    files = [
        (p.get_filename(), p.get_content_type(), p.get_content()) for p in msg.iter_attachments()
    ]
    assert files[0] == ("Vertrag März.pdf", "application/pdf", pdf)
    assert files[1][0:2] == ("notes.txt", "text/plain") and "à bientôt" in files[1][2]


async def test_reply_goes_to_the_reply_to_the_customer_asked_for(
    email_daemon: Any, relay: Relay
) -> None:
    daemon = await email_daemon(
        smtp_channel(auto_acknowledge=ACK, **relay_options(relay)), outbox=FAST_OUTBOX
    )
    # A shop's contact form relayed by its server: the customer is in Reply-To.
    form, _ = mail(
        "Contact form: order 77",
        "Name: Bo\nMessage: my order 77 is late",
        sender="Shop Forms <forms@shop.example>",
        headers={"Reply-To": "Bo Li <bo@example.net>, Bo at work <bo@work.example>"},
    )
    await customer_writes(daemon, form, mail_from="forms@shop.example")
    (conv,) = await conversations(daemon)
    (ack,) = await relay.wait(1)
    assert ack.rcpt_tos == ["forms@shop.example"], "automatic mail goes to the sender"
    await agent_replies(daemon, conv["id"], "It left our warehouse today.")
    reply = (await relay.wait(2))[1]
    assert reply.rcpt_tos == ["bo@example.net", "bo@work.example"]
    assert reply.message["To"] == "bo@example.net, bo@work.example"

    # A Reply-To naming only our own address is not followed (no mail to ourselves).
    own, _ = mail(
        "Question",
        "Do you ship to Norway?",
        sender="Kari <kari@example.no>",
        headers={"Reply-To": SUPPORT},
    )
    await customer_writes(daemon, own, mail_from="kari@example.no")
    (second,) = [c for c in await conversations(daemon) if c["id"] != conv["id"]]
    await agent_replies(daemon, second["id"], "Yes, we do.")
    last = (await relay.wait(4))[3]
    assert last.rcpt_tos == ["kari@example.no"] and last.message["To"] == "kari@example.no"


async def test_mail_a_listed_system_sends_for_a_customer_is_filed_under_the_customer(
    email_daemon: Any, relay: Relay
) -> None:
    """``customer_from_reply_to``: a shop's form relay writes From itself with
    the customer in Reply-To. Each customer becomes their own contact (not one
    contact for every form), is acknowledged and answered; a person who is
    not listed stays the contact whatever their Reply-To says."""
    daemon = await email_daemon(
        smtp_channel(
            auto_acknowledge=ACK,
            customer_from_reply_to=["forms@shop.example", "crm.example"],
            **relay_options(relay),
        ),
        outbox=FAST_OUTBOX,
    )
    sent = [
        ("Shop Forms <forms@shop.example>", "Bo Li <bo@example.net>", "order 77"),
        ("Shop Forms <forms@shop.example>", "ana@example.org", "order 78"),
        ("CRM <noreply@crm.example>", "Chen Wei <chen@example.cn>", "order 79"),
        ("Kari <kari@example.no>", "Kari at home <kari@home.example>", "Norway"),
    ]
    for sender, reply_to, about in sent:
        raw, _ = mail(
            f"About {about}", f"Message: {about}?", sender=sender, headers={"Reply-To": reply_to}
        )
        await customer_writes(daemon, raw, mail_from=sender.split("<")[1].rstrip(">"))
    convs = await conversations(daemon)
    assert len(convs) == 4 and len({c["contact_id"] for c in convs}) == 4
    found = await rows(
        daemon,
        "SELECT m.subject, m.sender_address, m.sender_name, m.meta FROM messages m"
        " WHERE m.direction = 'in' ORDER BY m.id",
    )
    assert [(m["sender_address"], m["sender_name"]) for m in found] == [
        ("bo@example.net", "Bo Li"),
        ("ana@example.org", None),
        ("chen@example.cn", "Chen Wei"),
        ("kari@example.no", "Kari"),
    ]
    relayed = [json.loads(m["meta"]).get("relayed_by") for m in found]
    assert relayed == ["forms@shop.example", "forms@shop.example", "noreply@crm.example", None]
    acks = await relay.wait(4)
    assert sorted(a.rcpt_tos[0] for a in acks) == [
        "ana@example.org",
        "bo@example.net",
        "chen@example.cn",
        "kari@example.no",
    ]
    await agent_replies(daemon, convs[0]["id"], "It left our warehouse today.")
    assert (await relay.wait(5))[4].rcpt_tos == ["bo@example.net"]


async def test_token_threads_a_reply_without_headers_and_a_new_subject_opens_a_new_conversation(
    email_daemon: Any, relay: Relay
) -> None:
    daemon = await email_daemon(smtp_channel(**relay_options(relay)), outbox=FAST_OUTBOX)
    first, _ = mail("Broken zipper")
    await customer_writes(daemon, first)
    (conv,) = await conversations(daemon)
    await agent_replies(daemon, conv["id"], "Please send a photo.")
    await relay.wait(1)

    # A webmail that dropped In-Reply-To/References; the subject token remains.
    stripped, _ = mail(
        f"Re: Broken zipper [#OD-{conv['id']}]", "Photo attached (well, not really)."
    )
    await customer_writes(daemon, stripped)
    # Replying to a plus address from a token-less subject works too.
    plus, _ = mail("my photo", "here it is", to=f"support+od{conv['id']}@example.com")
    await asyncio.to_thread(
        send_smtp, smtp_port(daemon), plus, to=[f"support+od{conv['id']}@example.com"]
    )
    await settle(daemon)
    assert len(await conversations(daemon)) == 1
    # The same customer, a new matter: a new conversation.
    other, _ = mail("Invoice address change", "Please update my invoice address.")
    await customer_writes(daemon, other)
    convs = await conversations(daemon)
    assert len(convs) == 2 and convs[1]["subject"] == "Invoice address change"
    assert convs[0]["contact_id"] == convs[1]["contact_id"]


async def test_out_of_office_answer_to_our_acknowledgement_does_not_loop(
    email_daemon: Any, relay: Relay
) -> None:
    daemon = await email_daemon(
        smtp_channel(auto_acknowledge=ACK, reply_to_token=True, **relay_options(relay)),
        outbox=FAST_OUTBOX,
    )
    first, first_id = mail("Refund please")
    await customer_writes(daemon, first)
    (conv,) = await conversations(daemon)
    (ack,) = await relay.wait(1)
    ack_msg = ack.message
    assert ack_msg["Auto-Submitted"] == "auto-replied"
    assert ack_msg["X-Auto-Response-Suppress"] == "All"
    assert ack_msg["In-Reply-To"] == f"<{first_id}>"
    assert ack_msg["Reply-To"] == f"support+od{conv['id']}@example.com"
    assert f"ticket #{conv['id']}" in ack_msg.get_content()
    ack_id = ack_msg["Message-ID"].strip("<>")

    # Exchange's out-of-office, answering the acknowledgement.
    oof, _ = mail(
        f"Automatic reply: Refund please [#OD-{conv['id']}]",
        "I am out of the office until Monday.",
        headers={
            "Auto-Submitted": "auto-replied",
            "X-Auto-Response-Suppress": "All",
            "In-Reply-To": f"<{ack_id}>",
            "References": f"<{ack_id}>",
        },
    )
    await customer_writes(daemon, oof, mail_from="<>")
    await asyncio.sleep(0.5)  # an acknowledgement of the notice would be out by now
    await settle(daemon)
    assert len(relay.received) == 1, "no acknowledgement of an out-of-office notice"
    assert len(await conversations(daemon)) == 1
    notice = [m for m in await messages(daemon, conv["id"]) if m["direction"] == "in"][-1]
    assert notice["kind"] == "auto" and notice["auto"] in ("auto-reply", "out-of-office")


async def test_a_responder_without_auto_headers_cannot_start_a_loop(
    email_daemon: Any, relay: Relay
) -> None:
    """The classic mail loop: a customer's homemade responder answers every
    mail with a fresh subject, no threading headers and no Auto-Submitted.
    Each answer looks like a new matter; acknowledging each one would go on
    forever. One acknowledgement per sender per day stops it."""
    daemon = await email_daemon(
        smtp_channel(auto_acknowledge=ACK, **relay_options(relay)), outbox=FAST_OUTBOX
    )
    first, _ = mail("Question about my order")
    await customer_writes(daemon, first)
    await relay.wait(1)
    for i in range(3):
        echo, _ = mail(f"Your mail has been received (case {i})", "We will get back to you.")
        await customer_writes(daemon, echo)
    await asyncio.sleep(0.5)
    await settle(daemon)
    assert len(await conversations(daemon)) == 4
    assert len(relay.received) == 1, [c.message["Subject"] for c in relay.received]


async def test_bounce_of_our_reply_marks_it_failed(email_daemon: Any, relay: Relay) -> None:
    daemon = await email_daemon(smtp_channel(**relay_options(relay)), outbox=FAST_OUTBOX)
    first, _ = mail("Hello", sender="Typo <ann@exmaple.org>")
    await customer_writes(daemon, first, mail_from="ann@exmaple.org")
    (conv,) = await conversations(daemon)
    reply_id = await agent_replies(daemon, conv["id"], "Hi Ann, here is the answer.")
    (out,) = await relay.wait(1)
    await delivery(daemon, reply_id, "sent")
    our_id = out.message["Message-ID"].strip("<>")

    boundary = "dsn-boundary-1"
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate()}\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.com')}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; ann@exmaple.org\r\nAction: failed\r\n"
        "Status: 5.1.2\r\nDiagnostic-Code: smtp; 550 5.1.2 domain not found\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: Example Support <support@example.com>\r\nTo: ann@exmaple.org\r\n"
        f"Message-ID: <{our_id}>\r\nSubject: Re: Hello\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    await customer_writes(daemon, dsn, mail_from="<>")
    failed = await delivery(daemon, reply_id, "failed")
    assert "bounced" in failed["delivery_error"]
    assert len(await conversations(daemon)) == 1


async def test_relay_answers_decide_retry_or_failure(email_daemon: Any, relay: Relay) -> None:
    daemon = await email_daemon(smtp_channel(**relay_options(relay)), outbox=FAST_OUTBOX)
    first, _ = mail("Hi")
    await customer_writes(daemon, first)
    (conv,) = await conversations(daemon)

    relay.answer = "451 4.3.0 Try again later"
    retried = await agent_replies(daemon, conv["id"], "first answer")

    async def retrying() -> bool:
        (row,) = await rows(daemon, "SELECT attempts FROM outbox WHERE message_id = ?", (retried,))
        return bool(row["attempts"] >= 2)

    assert await eventually(retrying, 10)
    (row,) = await rows(daemon, "SELECT delivery_state FROM messages WHERE id = ?", (retried,))
    assert row["delivery_state"] == "queued"
    relay.answer = None
    await delivery(daemon, retried, "sent")

    relay.answer = "550 5.7.1 Relaying denied"
    refused = await agent_replies(daemon, conv["id"], "second answer")
    failed = await delivery(daemon, refused, "failed")
    assert "550" in failed["delivery_error"]
    (ob,) = await rows(daemon, "SELECT attempts FROM outbox WHERE message_id = ?", (refused,))
    assert ob["attempts"] == 1, "a 5xx is not retried"

    relay.answer = None
    await relay.stop()  # connection refused: retried
    down = await agent_replies(daemon, conv["id"], "third answer")

    async def queued_with_error() -> bool:
        (r,) = await rows(daemon, "SELECT delivery_error FROM messages WHERE id = ?", (down,))
        return bool(r["delivery_error"] and "unreachable" in r["delivery_error"])

    assert await eventually(queued_with_error, 10)


async def test_relay_with_starttls_and_login(email_daemon: Any, tls: Tls) -> None:
    relay = Relay()
    await relay.start(tls=tls, auth=("desk", "relay-pass"))
    try:
        good = relay_options(
            relay, tls="starttls", ca_file=str(tls.ca_file), username="desk", password="relay-pass"
        )
        bad = relay_options(
            relay, tls="starttls", ca_file=str(tls.ca_file), username="desk", password="nope"
        )
        daemon = await email_daemon(
            smtp_channel(**good),
            smtp_channel(name="email2", accept=["other@example.com"], **bad),
            outbox=FAST_OUTBOX,
        )
        first, _ = mail("TLS please")
        await customer_writes(daemon, first)
        (conv,) = await conversations(daemon)
        reply_id = await agent_replies(daemon, conv["id"], "over TLS")
        await delivery(daemon, reply_id, "sent")
        assert len(relay.received) == 1

        other, _ = mail("to the second address", to="other@example.com")
        await asyncio.to_thread(
            send_smtp, smtp_port(daemon, "email2"), other, to=["other@example.com"]
        )
        await settle(daemon)
        conv2 = (await conversations(daemon))[1]
        stuck = await agent_replies(daemon, conv2["id"], "never leaves")

        async def degraded() -> bool:
            h = daemon.adapters["email2"].health()
            return not h.ok and "relay refused our login" in h.detail

        assert await eventually(degraded, 10)
        (row,) = await rows(daemon, "SELECT delivery_state FROM messages WHERE id = ?", (stuck,))
        assert row["delivery_state"] == "queued", "a login problem keeps the reply for a retry"
        assert daemon.adapters["email"].health().ok
    finally:
        await relay.stop()


async def test_imap_channel_replies_through_its_relay(
    email_daemon: Any, dovecot: Dovecot, relay: Relay
) -> None:
    user = dovecot.add_user()
    raw, mid = mail("Pulled from the mailbox")
    await asyncio.to_thread(dovecot.append, user, raw)
    daemon = await email_daemon(
        imap_channel(dovecot, user, **relay_options(relay)), outbox=FAST_OUTBOX
    )

    async def one() -> list[dict[str, Any]]:
        await settle(daemon)
        return await conversations(daemon)

    (conv,) = await eventually(one, 10)
    await agent_replies(daemon, conv["id"], "Answered from the inbox channel.")
    (out,) = await relay.wait(1)
    assert out.message["In-Reply-To"] == f"<{mid}>"
    assert out.message["From"] == SUPPORT
    meta = await rows(daemon, "SELECT meta FROM messages WHERE direction = 'in'")
    assert json.loads(meta[0]["meta"])["envelope"]["transport"] == "imap"
