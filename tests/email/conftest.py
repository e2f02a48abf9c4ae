"""Shared helpers for the email tests: where the third-party corpus lives and
a tiny builder for synthetic messages (bytes exactly as written)."""

from __future__ import annotations

import mailbox
from pathlib import Path

from tests.testdata import OUTSIDE_SETS, outside, present, vendored

# The sets copied into the repository (tests/corpora/NOTICE); every clone has them.
EMAIL_CORPUS = vendored("email")
NOT_MESSAGES = {"SOURCE.md", "README.md", "TRAPS.md"}
# Kept outside the repository (tests/testdata.py says why).
HUNNYSOFT = "email/hunnysoft-mime-samples"


def corpus_path(rel: str) -> Path:
    """A corpus message by its path relative to ``corpora/email``: in the
    repository, or in a set kept outside it (the test then carries that set's
    ``corpus`` mark)."""
    name = "email/" + rel.split("/", 1)[0]
    if name in OUTSIDE_SETS:
        return outside(name).parent / rel
    return EMAIL_CORPUS / rel


def corpus_file(rel: str) -> bytes:
    return corpus_path(rel).read_bytes()


def message_files(name: str | None = None) -> list[str]:
    """The files of the vendored sets (``name`` None), or of one outside set
    when it is there, as paths relative to ``corpora/email``."""
    root = EMAIL_CORPUS if name is None else present(name)
    if root is None:
        return []
    top = root if name is None else root.parent
    return sorted(
        str(p.relative_to(top))
        for p in root.rglob("*")
        if p.is_file() and p.name not in NOT_MESSAGES
    )


def corpus_messages(rel: str) -> list[tuple[str, bytes]]:
    """The messages in a corpus file: one, or each message of an mbox."""
    path = corpus_path(rel)
    if rel.endswith((".mbox.txt", ".mbox")):
        box = mailbox.mbox(str(path), create=False)
        try:
            return [(f"{rel}#{i}", m.as_bytes()) for i, m in enumerate(box)]
        finally:
            box.close()
    return [(rel, path.read_bytes())]


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
