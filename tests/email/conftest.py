"""Shared helpers for the email tests: where the third-party corpus lives and
a tiny builder for synthetic messages (bytes exactly as written)."""

from __future__ import annotations

from tests.conftest import CORPORA, require_service

EMAIL_CORPUS = CORPORA / "email"


def corpus_file(rel: str) -> bytes:
    """A corpus message by its path relative to ``corpora/email``.

    Missing corpus: skipped on a developer machine, a failure in CI (a
    silently skipped corpus would hide every regression it guards).
    """
    path = EMAIL_CORPUS / rel
    require_service(
        path.is_file(),
        f"email corpus file {path}",
        "set OMNIDESK_CORPORA to the shared corpora folder",
    )
    return path.read_bytes()


def mail(*headers: str, body: str | bytes = "Hello", crlf: bool = True) -> bytes:
    """Build raw message bytes from header lines and a body.

    ``str`` parts are encoded as UTF-8 (use ``bytes`` bodies for other
    charsets); a From and a Message-ID are added when missing.
    """
    names = {h.split(":", 1)[0].lower() for h in headers}
    lines = list(headers)
    if "from" not in names:
        lines.insert(0, "From: Customer <customer@example.org>")
    if "message-id" not in names:
        lines.append("Message-ID: <test-1@example.org>")
    nl = b"\r\n" if crlf else b"\n"
    head = nl.join(line.encode("utf-8") for line in lines)
    data = body.encode("utf-8") if isinstance(body, str) else body
    if crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return head + nl + nl + data
