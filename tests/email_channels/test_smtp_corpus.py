"""Every message of the broken-mail corpus, sent through the SMTP listener
with smtplib, comes out of the pipeline as a stored message (or a
recognised automatic message) or a quarantine entry with its raw bytes and a
reason - never a crash, never a refusal, never a silent drop."""

from __future__ import annotations

import asyncio
import re
import smtplib
from typing import Any

from omnidesk.channels.mailout import envelope_id
from tests.conftest import settle
from tests.email.conftest import corpus_messages, message_files

from .conftest import SUPPORT, rows, smtp_channel, smtp_port


def corpus() -> list[tuple[str, bytes]]:
    """Every message of the e-mail sets in the repository (mbox files split)."""
    return [m for rel in message_files() for m in corpus_messages(rel)]


def on_the_wire(data: bytes) -> bytes:
    """What an MTA hands the listener for a file: lines end in CRLF (the
    corpus files mostly use bare LF, which SMTP does not carry; the dot
    stuffing smtplib adds is undone by the server)."""
    fixed = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    return fixed if fixed.endswith(b"\r\n") else fixed + b"\r\n"


async def test_every_corpus_message_is_stored_or_quarantined_with_its_bytes(
    email_daemon: Any,
) -> None:
    messages = corpus()
    assert len(messages) > 280
    daemon = await email_daemon(smtp_channel(accept=["*"], max_message_size=50 * 1024 * 1024))
    port = smtp_port(daemon)

    def send_all() -> dict[str, Any]:
        answers: dict[str, Any] = {}
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("corpus.test")
            for name, data in messages:
                try:
                    s.sendmail("corpus@example.org", [SUPPORT], on_the_wire(data))
                    answers[name] = 250
                except smtplib.SMTPResponseException as exc:
                    answers[name] = (exc.smtp_code, exc.smtp_error)
                    s.rset()
                except smtplib.SMTPRecipientsRefused as exc:
                    answers[name] = exc.recipients
                    s.rset()
        return answers

    answers = await asyncio.to_thread(send_all)
    refused = {n: a for n, a in answers.items() if a != 250}
    assert not refused, f"the listener refused corpus mail: {refused}"

    await settle(daemon)
    inbound = {
        r["external_id"]: r
        for r in await rows(
            daemon,
            "SELECT i.id, i.external_id, i.state, i.note, i.payload, q.error, q.detail"
            " FROM inbound i LEFT JOIN quarantine q ON q.inbound_id = i.id"
            " WHERE i.channel = 'email'",
        )
    }
    stored = {
        r["inbound_id"]
        for r in await rows(daemon, "SELECT inbound_id FROM messages WHERE direction = 'in'")
    }
    first: dict[str, bytes] = {}
    for _, data in messages:
        wire = on_the_wire(data)
        first.setdefault(envelope_id(wire), wire)
    assert set(inbound) == set(first), "one intake row per distinct Message-ID"
    outcomes = {"stored": 0, "automatic": 0, "quarantined": 0}
    for ident, wire in first.items():
        row = inbound[ident]
        assert bytes(row["payload"]) == wire, f"{ident}: raw bytes changed"
        if row["state"] == "quarantined":
            assert row["error"], f"{ident}: quarantined without a reason"
            assert row["detail"] is None, f"{ident}: a crash, not a reason: {row['detail']}"
            outcomes["quarantined"] += 1
        else:
            assert row["state"] == "done", f"{ident}: left {row['state']}"
            if row["id"] in stored:
                outcomes["stored"] += 1
            else:
                assert re.search(r"automatic|own outbound|skipped", row["note"] or ""), row["note"]
                outcomes["automatic"] += 1
    # Most of the corpus is readable mail; only non-messages are refused.
    assert outcomes["stored"] > 180 and outcomes["quarantined"] < 20, outcomes
