"""Quoted history and signatures are separated from the new text; the
whole body stays in ``full_text``."""

from __future__ import annotations

import pytest

from omnidesk.email import parse_email, split_reply

from .conftest import mail

OUTLOOK = """\
Hi team,

the replacement arrived broken again. I want a refund.

Regards,
Anna

-----Original Message-----
From: Support <support@example.com>
Sent: Monday, March 4, 2024 10:12 AM
To: Anna <anna@example.org>
Subject: RE: Broken kettle [#OD-17]

Hello Anna, we are sorry to hear that. A replacement is on its way!
"""

OUTLOOK_WEB = """\
Still waiting for an answer.

________________________________
From: Support <support@example.com>
Sent: Tuesday, 5 March 2024 09:00
To: anna@example.org
Subject: Re: Order 5521

Thank you for contacting us! Your order ships tomorrow.
"""

OUTLOOK_NO_SEPARATOR = """\
Thanks, that solved it.

From: Support [mailto:support@example.com]
Sent: Tuesday, March 5, 2024 9:00 AM
To: Ben
Subject: Order 5521

Please restart the router.
"""

GMAIL = """\
This is unacceptable, I was charged twice!

On Mon, Mar 4, 2024 at 10:12 AM Support Team <support@example.com> wrote:

> Hello,
> thank you for your purchase. We are happy to help!
>
> > earlier quote
"""

GMAIL_WRAPPED = """\
Yes please cancel it.

On Mon, Mar 4, 2024 at 10:12 AM Very Long Support Team Name <
support@example.com> wrote:
> Shall we cancel your subscription?
"""

APPLE_INTERLEAVED = """\
> What is your order number?
It is 5521.

> When did you order?
Last Friday.

--
Carl
"""

QQ_MAIL = """\
东西还没收到，请尽快处理！

------------------ 原始邮件 ------------------
发件人: "客服" <support@example.com>;
发送时间: 2024年3月4日(星期一) 上午10:12
收件人: "张三" <zhang@example.cn>;
主题: 回复：订单 5521

您好，您的订单已经发货，感谢您的耐心等待！
"""

NETEASE = """\
好的，谢谢。

在 2024-03-04 10:12:00，"客服" <support@example.com> 写道：
>您好，请问还有什么可以帮您？
"""

FOXMAIL = """\
质量太差了，我要投诉。

发件人：客服
发送时间：2024-03-04 10:12
收件人：张三
主题：您的订单

感谢您的购买！
"""

GERMAN_OUTLOOK = """\
Die Lieferung ist immer noch nicht da.

Von: Support <support@example.com>
Gesendet: Montag, 4. März 2024 10:12
An: Jörg <jorg@example.de>
Betreff: AW: Lieferung

Vielen Dank für Ihre Geduld!
"""

# "-- " (with its trailing space) is the RFC 3676 signature delimiter.
SIGNATURE = (
    "Where is my parcel?\n\n-- \nDana Smith | ACME Corp | +1 555 0100\n"
    "Friendly footer that is not the message\n"
)

MOBILE = """\
Please call me back.

Sent from my iPhone
"""

FORWARD_ONLY = """\
---------- Forwarded message ---------
From: Shop <shop@example.com>
Date: Mon, Mar 4, 2024
Subject: Your invoice
To: <anna@example.org>

Invoice total: 120 EUR
"""


@pytest.mark.parametrize(
    ("body", "new_text"),
    [
        (OUTLOOK, "Hi team,\n\nthe replacement arrived broken again. I want a refund.\n\n"
         "Regards,\nAnna"),
        (OUTLOOK_WEB, "Still waiting for an answer."),
        (OUTLOOK_NO_SEPARATOR, "Thanks, that solved it."),
        (GMAIL, "This is unacceptable, I was charged twice!"),
        (GMAIL_WRAPPED, "Yes please cancel it."),
        (APPLE_INTERLEAVED, "It is 5521.\n\nLast Friday."),
        (QQ_MAIL, "东西还没收到，请尽快处理！"),
        (NETEASE, "好的，谢谢。"),
        (FOXMAIL, "质量太差了，我要投诉。"),
        (GERMAN_OUTLOOK, "Die Lieferung ist immer noch nicht da."),
        (SIGNATURE, "Where is my parcel?"),
        (MOBILE, "Please call me back."),
    ],
    ids=[
        "outlook", "outlook-web", "outlook-no-separator", "gmail", "gmail-wrapped",
        "interleaved", "qq-mail", "netease", "foxmail", "german-outlook", "signature",
        "mobile",
    ],
)  # fmt: skip
def test_new_text_is_separated_from_history(body: str, new_text: str) -> None:
    assert split_reply(body) == new_text


def test_bare_forward_keeps_the_forwarded_text() -> None:
    # Nothing new was written: classification needs the forwarded text.
    assert "Invoice total: 120 EUR" in split_reply(FORWARD_ONLY)


def test_bulleted_lists_are_not_signatures() -> None:
    body = "Problems:\n- screen flickers\n- battery dies\n\nPlease help."
    assert split_reply(body) == body


def test_a_from_line_in_prose_is_not_a_header_block() -> None:
    body = "From: the shop in Berlin I bought a lamp.\nIt does not work.\nPlease help."
    assert split_reply(body) == body


def test_parse_email_fills_text_and_full_text() -> None:
    msg = parse_email(
        mail("Content-Type: text/plain; charset=utf-8", body=QQ_MAIL), channel="email"
    )
    assert msg.text == "东西还没收到，请尽快处理！"
    assert msg.full_text is not None and "原始邮件" in msg.full_text
    assert "您的订单已经发货" in msg.full_text


def test_gmail_html_quote_is_stripped_via_blockquote() -> None:
    html = (
        '<div dir="ltr">My parcel is <b>damaged</b>.</div><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Mar 4, 2024 at '
        "10:12 AM Support &lt;support@example.com&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote">Thanks for your order!</blockquote></div>'
    )
    msg = parse_email(mail("Content-Type: text/html; charset=utf-8", body=html), channel="email")
    assert msg.text == "My parcel is damaged."
    assert "Thanks for your order!" in (msg.full_text or "")


def test_outlook_html_reply_header_is_cut() -> None:
    html = (
        "<div>Refund please.</div><hr><div id=divRplyFwdMsg><b>From:</b> Support "
        "&lt;support@example.com&gt;<br><b>Sent:</b> Monday, March 4, 2024<br>"
        "<b>To:</b> Anna<br><b>Subject:</b> Order</div><div>We shipped it.</div>"
    )
    msg = parse_email(mail("Content-Type: text/html; charset=utf-8", body=html), channel="email")
    assert msg.text == "Refund please."
