"""sanitize_html: nothing that can run script survives (classic XSS
payloads); html_to_text: readable text for classification."""

from __future__ import annotations

import re

import pytest

from omnidesk.htmltext import html_to_text, sanitize_html

# Classic payloads (OWASP XSS filter evasion cheat sheet and friends).
XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<IMG SRC=" + "".join(f"&#{ord(c)};" for c in "javascript:alert('XSS')") + ">",
    "<IMG SRC=" + "".join(f"&#x{ord(c):X}" for c in "javascript:alert('XSS')") + ">",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    "<img src=x onerror=alert(1)>",
    "<img src=x oNeRrOr=alert(1)//",
    '<svg onload=alert(1)><circle r="1"/></svg>',
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JAVASCRIPT:alert(1)">click</a>',
    '<a href="  javascript:alert(1)">click</a>',
    '<a href="data:text/html,<script>alert(1)</script>">click</a>',
    '<a href="vbscript:msgbox(1)">click</a>',
    "<body onload=alert(1)>",
    '<div style="background-image: url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="behavior: url(xss.htc)">x</div>',
    '<div style="-moz-binding: url(http://x/xss.xml#xss)">x</div>',
    '<div style="color: red; background: url(&#1;javascript:alert(1))">x</div>',
    '<div style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</div>',
    '<div style="color:\\65xpression(alert(1))">x</div>',
    "<style>@import 'http://xss.example/xss.css';</style>",
    '<link rel="stylesheet" href="http://xss.example/xss.css">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<button formaction="javascript:alert(1)">x</button>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    '<video><source onerror="alert(1)"></video>',
    "<input onfocus=alert(1) autofocus>",
    "<marquee onstart=alert(1)>",
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<td background="javascript:alert(1)">',
    "<!--<img src=x onerror=alert(1)>-->",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<a href="/relative/admin/delete">rel</a>',
    '<div id="__proto__" class="btn btn-danger" name="x">clobber</div>',
]

_DANGER = re.compile(
    r"<\s*(script|iframe|object|embed|svg|math|style|link|meta|base|form|input|button|video)"
    r"|\son[a-z]+\s*=|javascript:|vbscript:|data:|expression|behavior|binding|url\(|position"
    r"|\sid=|\sclass=|\sname=|href=\"/",
    re.I,
)


@pytest.mark.parametrize("payload", XSS)
def test_xss_payloads_are_neutralised(payload: str) -> None:
    cleaned = sanitize_html(payload)
    assert not _DANGER.search(cleaned), cleaned
    # Whatever remains is stable: cleaning again changes nothing.
    assert sanitize_html(cleaned) == cleaned


def test_formatting_links_tables_and_cid_images_survive() -> None:
    html = (
        '<p style="color: red; font-weight: bold">Hi <b>there</b> <i>you</i></p>'
        '<a href="https://example.com/x?a=1&amp;b=2">link</a> '
        '<a href="mailto:a@example.com">mail</a>'
        '<table border="1"><tr><td colspan="2">cell</td></tr></table>'
        '<img src="cid:logo@acme" alt="logo" width="20">'
        '<blockquote type="cite">quoted</blockquote><font color="#f00">red</font>'
    )
    cleaned = sanitize_html(html)
    assert '<p style="color:red;font-weight:bold">' in cleaned
    assert 'href="https://example.com/x?a=1&amp;b=2"' in cleaned
    assert 'rel="noopener noreferrer nofollow"' in cleaned
    assert 'target="_blank"' in cleaned
    assert 'href="mailto:a@example.com"' in cleaned
    assert '<td colspan="2">cell</td>' in cleaned
    assert '<img src="cid:logo@acme" alt="logo" width="20">' in cleaned
    assert "<blockquote" in cleaned and '<font color="#f00">' in cleaned


def test_full_documents_lose_head_title_and_style_content() -> None:
    doc = (
        "<html><head><title>Secret title</title><style>body{display:none}</style></head>"
        "<body><p>Visible</p></body></html>"
    )
    assert sanitize_html(doc) == "<p>Visible</p>"
    assert sanitize_html("") == ""


def test_html_to_text_blocks_lists_tables_and_entities() -> None:
    html = (
        "<h1>Order</h1><p>Hello&nbsp;Anna,<br>your order&#8217;s status:</p>"
        "<ul><li>kettle</li><li>toaster</li></ul>"
        "<table><tr><td>Total</td><td>12 &euro;</td></tr></table>"
        "<script>var hidden = 1;</script><style>.x{}</style><!-- comment -->"
        "<div>Thanks\u200b!</div>"
    )
    assert html_to_text(html) == (
        "Order\n\nHello Anna,\nyour order’s status:\n\n- kettle\n- toaster\n\nTotal 12 €\n\nThanks!"
    )


def test_html_to_text_quotes_blockquotes_and_keeps_pre() -> None:
    html = "<p>New</p><blockquote>Old<blockquote>older</blockquote></blockquote><pre>a\n  b</pre>"
    assert html_to_text(html) == "New\n\n> Old\n> > older\n\na\n  b"


def test_html_to_text_handles_garbage_and_deep_nesting() -> None:
    assert html_to_text("") == ""
    assert html_to_text("   ") == ""
    assert html_to_text("plain text, no tags") == "plain text, no tags"
    assert html_to_text("<p>unclosed <b>bold <i>both") == "unclosed bold both"
    deep = "<div>" * 5000 + "deep" + "</div>" * 5000
    assert html_to_text(deep) == "deep"
    assert html_to_text("<p>\ud800 lone surrogate</p>").endswith("lone surrogate")
