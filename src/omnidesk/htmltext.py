"""Customer HTML: made safe to display, and turned into text to classify.

Shared by the email normaliser and the web UI. Both functions take any
string (a full document, a fragment, garbage) and never raise.

Display safety is an allow-list (nh3/ammonia): nothing that can run script
survives - no ``<script>``/``<style>``/``<iframe>``/``<svg>``/``<object>``,
no ``on*`` handlers, no ``javascript:``/``data:``/relative URLs, no ``class``
or ``id`` (they would let mail restyle or clobber the agent UI), and inline
``style`` is cut down to harmless layout properties. ``cid:`` URLs are kept so
the UI can map inline images to their attachments by Content-ID.
"""

from __future__ import annotations

import re

import nh3
from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = ["html_to_text", "sanitize_html"]

_TAGS = {
    "a",
    "abbr",
    "acronym",
    "address",
    "b",
    "bdi",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
}

# Removed with their content: code, metadata, and embedded documents.
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "title",
    "head",
    "template",
    "noscript",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "svg",
    "math",
    "xml",
    "textarea",
    "select",
    "button",
    "audio",
    "video",
    "canvas",
}

_TABLE_ATTRS = {"align", "valign", "width", "height", "bgcolor", "border"}
_ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"color", "face", "size"},
    "table": _TABLE_ATTRS | {"cellpadding", "cellspacing", "summary"},
    "td": _TABLE_ATTRS | {"colspan", "rowspan", "nowrap"},
    "th": _TABLE_ATTRS | {"colspan", "rowspan", "nowrap", "scope"},
    "tr": _TABLE_ATTRS,
    "tbody": _TABLE_ATTRS,
    "thead": _TABLE_ATTRS,
    "tfoot": _TABLE_ATTRS,
    "col": {"span", "width", "align", "valign"},
    "colgroup": {"span", "width", "align", "valign"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite", "type"},
    "hr": {"width", "size", "noshade"},
    "div": {"width"},
    "p": {"width"},
}

# Layout and typography only: no position/z-index (overlays over the agent
# UI), no background images, content, behaviours or transforms.
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "white-space",
    "vertical-align",
    "direction",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "width",
    "height",
    "max-width",
    "min-width",
    "list-style-type",
    "table-layout",
    "word-wrap",
    "overflow-wrap",
    "word-break",
}

# Defence in depth for what survives in a style value: legacy script hooks
# (IE expression(), behavior, -moz-binding), any url() fetch, and CSS escapes
# that could spell those out.
_BAD_STYLE = re.compile(r"expression|url\s*\(|javascript|behavior|binding|@import|\\|<", re.I)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    # nh3 reports exceptions from this callback through sys.unraisablehook:
    # keep it trivially safe.
    if attr == "style" and _BAD_STYLE.search(value):
        return None
    return value


_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    strip_comments=True,
    link_rel="noopener noreferrer nofollow",
    url_schemes={"http", "https", "mailto", "tel", "cid"},
    url_relative="deny",
    filter_style_properties=_STYLE_PROPERTIES,
    set_tag_attribute_values={"a": {"target": "_blank"}},
)


def sanitize_html(html: str) -> str:
    """HTML that is safe to put into an agent's page as markup."""
    if not html:
        return ""
    return _CLEANER.clean(html)


# --- HTML -> text -----------------------------------------------------------

_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
        "caption",
    }
)
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre"})
_SKIP = frozenset(_DROP_WITH_CONTENT | {"-comment", "img", "map", "area", "input"})
_CELLS = frozenset({"td", "th"})

_WS = re.compile(r"[ \t\r\n\f\xa0]+")
# Invisible characters HTML mail uses for preheaders and tracking padding.
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200d\u2060\ufeff]")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextWriter:
    """Collects lines; a line remembers the blockquote depth it started in so
    quoted history reads as ``> `` lines, like plain-text mail."""

    __slots__ = ("depth", "line", "line_depth", "lines", "trail", "want")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.line: list[str] = []
        self.line_depth = 0
        self.depth = 0  # blockquote nesting now
        self.want = 0  # line breaks wanted before the next text
        self.trail = 0  # line breaks written since the last text

    def text(self, s: str, pre: bool) -> None:
        if not pre:
            s = _WS.sub(" ", s)
            if not self.line or self.want:
                s = s.lstrip(" ")
            if not s:
                return
        self._settle()
        if pre and "\n" in s:
            first, *rest = s.split("\n")
            self._add(first)
            for part in rest:
                self._newline()
                self._add(part)
            return
        self._add(s)

    def brk(self, n: int = 1) -> None:
        if self.line or self.lines:
            self.want = max(self.want, n)

    def hard_break(self) -> None:
        """``<br>``: always ends the line, even an empty one."""
        self._settle()
        self._newline()

    def _settle(self) -> None:
        if self.want:
            if self.line:
                self._newline()
            while self.trail < self.want:
                self._newline()
            self.want = 0

    def _add(self, s: str) -> None:
        if not self.line:
            self.line_depth = self.depth
        self.line.append(s)
        self.trail = 0

    def _newline(self) -> None:
        text = "".join(self.line).rstrip()
        # A blank line between an outer paragraph and a quote belongs to the
        # outer text: it takes the shallower of the two depths.
        depth = self.line_depth if self.line else min(self.depth, self.line_depth)
        prefix = "> " * depth
        self.lines.append(prefix + text if text else prefix.rstrip())
        self.line = []
        self.trail += 1

    def result(self) -> str:
        if self.line:
            self._newline()
        text = "\n".join(self.lines)
        return _BLANK_LINES.sub("\n\n", text).strip("\n")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: blocks and ``<br>`` become newlines,
    list items ``- ``, table cells are space-separated, blockquotes are
    ``> ``-prefixed; scripts, styles, comments and images are dropped."""
    if not html or not html.strip():
        return ""
    try:
        tree = LexborHTMLParser(html)
    except Exception:  # selectolax rejects some inputs (e.g. lone surrogates)
        tree = LexborHTMLParser(html.encode("utf-8", "replace").decode("utf-8"))
    start = tree.body or tree.root
    if start is None:
        return ""
    w = _TextWriter()
    _walk(start, w)
    return _INVISIBLE.sub("", w.result())


def _walk(start: LexborNode, w: _TextWriter) -> None:
    # Iterative walk with explicit enter/leave: mail HTML nests deep enough
    # (forward chains, table layouts) to hit Python's recursion limit.
    pre = 0
    node: LexborNode | None = start.child
    depth = 1 if node is not None else 0
    while node is not None:
        tag = node.tag or ""
        descend = False
        if tag == "-text":
            w.text(node.text_content or "", pre > 0)
        elif tag in _SKIP or tag.startswith(("o:", "v:", "w:", "!")):
            pass  # Word's XML islands and the like carry no message text
        elif tag == "br":
            w.hard_break()
        else:
            _enter(tag, w)
            if tag == "pre":
                pre += 1
            descend = node.child is not None
            if not descend:
                _leave(tag, w)
                if tag == "pre":
                    pre -= 1
        if descend:
            node = node.child
            depth += 1
            continue
        # Move to the next sibling, leaving finished ancestors on the way up.
        while node is not None:
            nxt = node.next
            if nxt is not None:
                node = nxt
                break
            node = node.parent
            depth -= 1
            if depth <= 0 or node is None:
                return
            ptag = node.tag or ""
            _leave(ptag, w)
            if ptag == "pre":
                pre -= 1


def _enter(tag: str, w: _TextWriter) -> None:
    if tag in _BLOCKS:
        w.brk(2 if tag in _PARAGRAPHS else 1)
        if tag == "blockquote":
            w.depth += 1
        elif tag == "li":
            w.text("- ", True)
        elif tag == "hr":
            w.brk(1)
    elif tag in _CELLS:
        if w.line and not w.want:
            w.text(" ", True)


def _leave(tag: str, w: _TextWriter) -> None:
    if tag in _BLOCKS:
        if tag == "blockquote":
            w.depth = max(0, w.depth - 1)
        w.brk(2 if tag in _PARAGRAPHS else 1)
