"""Separate what the customer just wrote from quoted history and signature.

The rules look at the new text only: a complaint that quotes our friendly
answer must not be classified by our answer. The whole body is kept beside
it (``Message.full_text``).

Own line rules rather than mail-parser-reply: evaluated on the corpus and on
the client styles below, the library knows no Chinese client headers
("原始邮件", "发件人："), strips every line's indentation, treats any line
starting with "-" followed by a word as a signature (cutting bulleted lists),
and costs ~9x more per message (on the client styles in
tests/email/test_quotes.py it got 6 of 12 right). The rules here are the
ones that matter for support mail, each a single line test:

- a separator line: ``-----Original Message-----``, ``---- 原始邮件 ----``,
  ``---------- Forwarded message ---------`` and translations;
- an Outlook header block: ``From:`` followed within a few lines by
  ``Sent:``/``Date:``/``To:``/``Subject:`` (also ``发件人：``/``发送时间：``,
  ``Von:``/``Gesendet:``, ``De :``/``Envoyé :``...), optionally after a line
  of underscores;
- an attribution line: ``On <date>, <name> wrote:`` (also split over two
  lines, and ``... 写道：``, ``Am ... schrieb ...:``, ``Le ... a écrit :``);
- ``>``-quoted lines (interleaved answers between them are kept);
- a signature after ``-- `` and "Sent from my iPhone"-style trailers.
"""

from __future__ import annotations

import re

_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|"
    r"message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|"
    r"originalmeddelande|mensagem original|原始邮件|原始郵件|原始信件|邮件原文|"
    r"forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|"
    r"转发邮件|轉寄郵件|転送されたメッセージ|元のメッセージ)\s*[-_=*]{2,}\s*$",
    re.I,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_FROM_LINE = re.compile(
    r"^\s*\**\s*(?:from|von|de|van|da|från|fra|od|от|差出人|发件人|發件人|寄件者|寄件人|"
    r"보낸 사람)\s*\**\s*[:：]",
    re.I,
)
_OTHER_HEADER_LINE = re.compile(
    r"^\s*\**\s*(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|à|objet|"
    r"enviado|fecha|para|asunto|inviato|oggetto|verzonden|aan|onderwerp|skickat|till|"
    r"ämne|发送时间|發送時間|时间|日期|收件人|抄送|主题|主題|主旨|寄件日期|收件者|送信日時|宛先|件名|"
    r"보낸 날짜|받는 사람|제목)\s*\**\s*[:：]",
    re.I,
)
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"on\b.{0,300}\bwrote\s*:"
    r"|am\b.{0,300}\bschrieb\b.{0,200}:"
    r"|le\b.{0,300}\ba écrit\s*:"
    r"|el\b.{0,300}\bescribió\s*:"
    r"|il\b.{0,300}\bha scritto\s*:"
    r"|op\b.{0,300}\bschreef\b.{0,200}:"
    r"|em\b.{0,300}\bescreveu\s*:"
    r"|.{0,300}(?:写道|寫道)\s*[:：]"
    r"|\d{4}年\d{1,2}月\d{1,2}日.{0,200}<[^<>\s]+@[^<>\s]+>\s*[:：]?"
    r")\s*$",
    re.I,
)
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE_TRAILER = re.compile(
    r"^\s*(?:sent from my\b|sent from (?:mail|outlook|yahoo)\b|get outlook for\b|"
    r"sent via\b|von meinem\b.*\bgesendet|envoyé de mon\b|enviado desde mi\b|"
    r"inviato da(?:l mio)?\b|发自我的|來自我的|从我的.*发送|從我的.*傳送|"
    r"iphoneから送信|androidから送信)",
    re.I,
)
_BLANKS = re.compile(r"\n{3,}")

# A header block's lines come together; Outlook wraps long To:/Cc: lists.
_HEADER_WINDOW = 6


def _is_quoted(line: str) -> bool:
    return line.lstrip(" ").startswith(">")


def _header_block_at(lines: list[str], i: int) -> bool:
    if not _FROM_LINE.match(lines[i]):
        return False
    return any(_OTHER_HEADER_LINE.match(line) for line in lines[i + 1 : i + 1 + _HEADER_WINDOW])


def _next_nonblank(lines: list[str], i: int) -> str | None:
    for line in lines[i:]:
        if line.strip():
            return line
    return None


# Lines holding a marker character: every marker holds one (or ends a line
# that wraps onto one that does); most lines of a body hold none, so the line
# tests run on these and the lines before them only.
_MARKED_LINE = re.compile(r"^.*[:：\-_=*].*$", re.M)


def _candidates(body: str) -> list[int]:
    """Indexes of the lines of ``body`` that hold a marker character, and of
    the lines just before them, in order."""
    out: list[int] = []
    line = pos = 0
    for m in _MARKED_LINE.finditer(body):
        line += body.count("\n", pos, m.start())
        pos = m.start()
        if line and (not out or out[-1] < line - 1):
            out.append(line - 1)
        out.append(line)
    return out


def _find_cut(lines: list[str], candidates: list[int]) -> tuple[int | None, set[int]]:
    """Index where quoted history starts (None: none), and attribution lines
    that merely introduce a ``>`` block (dropped, not cut at)."""
    drop: set[int] = set()
    n = len(lines)
    for i in candidates:
        line = lines[i]
        if _is_quoted(line) or not line.strip():
            continue
        if _SEPARATOR.match(line):
            return i, drop
        if _UNDERSCORES.match(line):
            nxt = _next_nonblank(lines, i + 1)
            if nxt is not None and _FROM_LINE.match(nxt):
                return i, drop
            continue
        if _header_block_at(lines, i):
            return i, drop
        span = 0
        if len(line) < 400 and _ATTRIBUTION.match(line):
            span = 1
        elif i + 1 < n and len(line) < 300 and _ATTRIBUTION.match(line + " " + lines[i + 1]):
            span = 2  # "On ..., John <j@x>\nwrote:" wrapped by the client
        if span:
            nxt = _next_nonblank(lines, i + span)
            if nxt is not None and _is_quoted(nxt):
                drop.update(range(i, i + span))
                continue
            return i, drop
    return None, drop


def split_reply(body: str) -> str:
    """The new text of a reply: the body without quoted history and
    signature. Falls back to the whole body when nothing would be left
    (a bare forward, a fully quoted message)."""
    if not body:
        return ""
    lines = body.split("\n")
    cut, drop = _find_cut(lines, _candidates(body))
    kept = lines[:cut] if cut is not None else lines
    if drop or ">" in body:
        kept = [line for i, line in enumerate(kept) if i not in drop and not _is_quoted(line)]
    if "--" in body:
        for i, line in enumerate(kept):
            if _SIGNATURE.match(line):
                kept = kept[:i]
                break
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _MOBILE_TRAILER.match(kept[-1]) and len(kept[-1]) < 80:
        kept.pop()
    text = _BLANKS.sub("\n\n", "\n".join(kept)).strip()
    if not text:
        return body.strip()
    return text
