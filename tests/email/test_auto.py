"""Automatic mail is recognised (it never opens a conversation); bounces
name the outbound messages that failed."""

from __future__ import annotations

import pytest

from omnidesk.email import parse_email
from omnidesk.model import MessageKind

from .conftest import HUNNYSOFT, corpus_file, mail


@pytest.mark.parametrize(
    ("rel", "auto", "refs"),
    [
        ("flanker/bounce/gmail-invalid-address.eml", "bounce",
         ["mid:CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com"]),
        ("flanker/bounce/office365.eml", "bounce",
         ["mid:20171013111011.20866.254C2F3A4D7AA526@ninomail.com"]),
        ("flanker/bounce/zed.eml", "bounce", ["mid:20090708054735.GC7578@example.com"]),
        ("flanker/bounce/mailbox-full.eml", "bounce", ["mid:4E326A95.3010907@example.com"]),
        ("flanker/bounce/broken-mime.eml", "bounce", []),
        ("flanker/bounce/no-mx.eml", "delivery-delay", []),
        ("mimekit/messages/bounce.txt", "bounce", [
            "mid:44565655.JitbitHelpdesk.13439.691a0afc-a0a0-457c-8208-f20b7c4a4cb1@jitbit.com"]),
        ("mimekit/messages/delivery-status.txt", "bounce", ["mid:31FC7EB4.41C6@netscape.com"]),
        ("mimekit/messages/delivery-status-multiple-blank-lines.txt", "bounce", []),
        ("ruby-mail/multipart_report_emails/multi_address_bounce1.eml", "bounce",
         ["mid:118707422.15521266992174819.JavaMail.root@lvmail01"]),
        ("ruby-mail/multipart_report_emails/report_422.eml", "delivery-delay", []),
        ("cpython-test_email/msg_16.txt", "bounce", ["mid:002001c144a6$8752e060$56104586@oxy.edu"]),
        ("flanker/disposition-notification.eml", "read-receipt", []),
        ("mimekit/messages/disposition-notification.txt", "read-receipt", []),
        ("flanker/complaints/aol.eml", "abuse-report", []),
        ("mimekit/messages/feedback-report.txt", "abuse-report", []),
        ("stalwart-mail-parser/thirdparty/014.eml", "list", []),
        ("cpython-test_email/msg_32.txt", "bulk", []),
    ],
)  # fmt: skip
def test_real_automatic_mail(rel: str, auto: str, refs: list[str]) -> None:
    msg = parse_email(corpus_file(rel), channel="email")
    assert msg.kind == MessageKind.AUTO
    assert msg.auto == auto
    assert msg.bounced_refs == refs


@pytest.mark.parametrize(
    "rel",
    [
        "ruby-mail/plain_emails/basic_email.eml",
        pytest.param("hunnysoft-mime-samples/m0001.txt", marks=pytest.mark.corpus(HUNNYSOFT)),
        "stalwart-mail-parser/thirdparty/015.eml",
        "flanker/iphone.eml",
    ],
)
def test_human_mail_is_not_automatic(rel: str) -> None:
    msg = parse_email(corpus_file(rel), channel="email")
    assert msg.kind == MessageKind.MESSAGE
    assert msg.auto is None
    assert msg.bounced_refs == []


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        (["Auto-Submitted: auto-replied"], "auto-reply"),
        (["Auto-Submitted: auto-generated (vacation)"], "auto-reply"),
        (["Auto-Submitted: auto-replied", "Subject: Out of Office: Re: order"], "out-of-office"),
        (["X-Autoreply: yes"], "auto-reply"),
        (["X-Autorespond: Thanks for your mail"], "auto-reply"),
        (["Precedence: auto_reply"], "auto-reply"),
        (["Subject: Automatic reply: Where is my order?"], "out-of-office"),
        (["Subject: Automatische Antwort: Bestellung"], "out-of-office"),
        (["Subject: Réponse automatique : commande"], "out-of-office"),
        (["Subject: 自动回复: 订单问题"], "out-of-office"),
        (["Subject: Out of office until Monday"], "out-of-office"),
        (["List-Id: Users <users.lists.example.org>"], "list"),
        (["List-Post: <mailto:users@lists.example.org>"], "list"),
        (["Precedence: list"], "list"),
        (["Precedence: bulk"], "bulk"),
        (["Precedence: junk"], "bulk"),
        (["X-Failed-Recipients: gone@example.com"], "bounce"),
        (["From: MAILER-DAEMON@mx.example.com", "Subject: failure notice"], "bounce"),
        (["From: Mail Delivery System <Mailer-Daemon@mx.example.com>"], "bounce"),
        (["From: postmaster@example.com", "Subject: Delivery Status Notification (Failure)"],
         "bounce"),
        (["Subject: Undeliverable: Your ticket [#OD-4]"], "bounce"),
        (["Subject: 系统退信"], None),  # a human subject alone is not enough ...
        (["From: postmaster@example.com", "Subject: 系统退信"], "bounce"),  # ... with postmaster
        (["From: MAILER-DAEMON@x.example", "Subject: Warning: message delayed"], "delivery-delay"),
        (["Auto-Submitted: no"], None),
        (["Precedence: first-class"], None),
        (["Subject: Re: my office is out of paper"], None),
    ],
)  # fmt: skip
def test_synthetic_automatic_mail(headers: list[str], auto: str | None) -> None:
    msg = parse_email(mail(*headers), channel="email")
    assert msg.auto == auto
    assert msg.kind == (MessageKind.AUTO if auto else MessageKind.MESSAGE)


def test_null_reverse_path_means_automatic() -> None:
    msg = parse_email(mail("Subject: hello"), channel="email", envelope={"mail_from": ""})
    assert msg.auto == "auto-reply"
    msg = parse_email(mail("Return-Path: <>"), channel="email")
    assert msg.auto == "auto-reply"
    normal = parse_email(mail(), channel="email", envelope={"mail_from": "a@example.org"})
    assert normal.auto is None


DSN = """\
--dsn
Content-Type: text/plain

Your message could not be delivered.

--dsn
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; gone@example.com
Action: {action}
Status: {status}

--dsn
Content-Type: {returned}

From: Support <support@example.com>
To: gone@example.com
Subject: Re: Your ticket [#OD-42]
Message-ID: <od.42.abc@help.example.com>

Our answer.
--dsn--
"""


@pytest.mark.parametrize("returned", ["message/rfc822", "text/rfc822-headers"])
def test_dsn_failure_names_our_message(returned: str) -> None:
    raw = mail(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>",
        "Subject: Undelivered Mail Returned to Sender",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"',
        body=DSN.format(action="failed", status="5.1.1", returned=returned),
    )
    msg = parse_email(raw, channel="email")
    assert msg.auto == "bounce"
    assert msg.bounced_refs == ["mid:od.42.abc@help.example.com"]
    assert msg.conversation_hint is None  # the returned subject is not ours to read


def test_dsn_delay_and_success_are_not_failures() -> None:
    for action, status, auto in (
        ("delayed", "4.4.7", "delivery-delay"),
        ("delivered", "2.0.0", "delivery-report"),
    ):
        raw = mail(
            'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"',
            body=DSN.format(action=action, status=status, returned="message/rfc822"),
        )
        msg = parse_email(raw, channel="email")
        assert msg.auto == auto
        assert msg.bounced_refs == []


def test_non_standard_bounce_refs_from_pasted_headers_or_in_reply_to() -> None:
    pasted = mail(
        "From: MAILER-DAEMON@mx.example.com",
        "Subject: failure notice",
        body="Sorry.\n\n--- Below this line is a copy of the message.\n\n"
        "Message-ID: <od.7.x@help.example.com>\nSubject: hi\n\nbody\n",
    )
    assert parse_email(pasted, channel="email").bounced_refs == ["mid:od.7.x@help.example.com"]
    threaded = mail(
        "From: postmaster@example.net",
        "Subject: Undeliverable: Re: order",
        "In-Reply-To: <od.9.y@help.example.com>",
        body="Delivery has failed to these recipients.",
    )
    assert parse_email(threaded, channel="email").bounced_refs == ["mid:od.9.y@help.example.com"]


def test_interesting_headers_are_kept_in_meta() -> None:
    msg = parse_email(
        mail(
            "Auto-Submitted: auto-replied",
            "List-Id: <x.example.org>",
            "Reply-To: Other <Other@Example.org>",
            "Precedence: bulk",
        ),
        channel="email",
        envelope={"mail_from": "a@example.org", "rcpt_tos": ["support@example.com"]},
    )
    assert msg.meta["auto_submitted"] == "auto-replied"
    assert msg.meta["list_id"] == "<x.example.org>"
    assert msg.meta["reply_to"] == ["other@example.org"]
    assert msg.meta["envelope"] == {
        "mail_from": "a@example.org",
        "rcpt_tos": ["support@example.com"],
    }
