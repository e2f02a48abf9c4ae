"""Micro-benchmark: full email normalization against a bare stdlib parse.

    .venv/bin/python bench/bench_mime.py [--seconds 2] [--corpus PATH]

Workloads: every message of the third-party e-mail corpus (by default the
sets in the repository, tests/corpora/email; ``--corpus "$OMNIDESK_CORPORA"``
for a fuller copy kept outside it; mbox files split), and a synthetic 5 KB
multipart reply (text + HTML alternative, quoted history, a small
attachment), the typical support mail.

Baseline, measured in the same run: ``email.message_from_bytes(raw,
policy=compat32)`` and walking every part (``get_payload(decode=True)``) -
the floor any normalizer built on the stdlib parser pays. ``parse_email``
adds header decoding, charset handling, HTML sanitizing and HTML->text,
quote stripping and auto-reply detection on top.

Target: parse_email well above 1,200 msgs/s on one core (the email channel
must do >= 1,200 emails/s end to end). Timings never go into pass/fail tests.
"""

from __future__ import annotations

import argparse
import base64
import email
import mailbox
import sys
import time
from collections.abc import Callable
from email.policy import compat32
from pathlib import Path

from benchrows import record

from omnidesk.email import parse_email
from omnidesk.model import NormalizeError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "tests" / "corpora"
TARGET = 1200.0


def corpus_messages(root: Path) -> list[bytes]:
    """Every corpus message parse_email accepts (the refused non-mail files
    would only measure how fast we say no)."""
    out: list[bytes] = []
    for path in sorted(p for p in (root / "email").rglob("*") if p.is_file()):
        if path.name in ("SOURCE.md", "README.md", "TRAPS.md"):
            continue
        if path.name.endswith(".mbox.txt"):
            box = mailbox.mbox(str(path), create=False)
            items = [m.as_bytes() for m in box]
            box.close()
        else:
            items = [path.read_bytes()]
        for raw in items:
            try:
                parse_email(raw, channel="email")
            except NormalizeError:
                continue
            out.append(raw)
    return out


def synthetic_5kb() -> bytes:
    """A customer's HTML reply as Outlook/Gmail send it, about 5 KB."""
    new = (
        "Hello,\n\nthe kettle I ordered (order 55213) arrived with a cracked lid. "
        "I would like a replacement or a refund, whichever is faster.\n\n"
        "Photos attached.\n\nThanks,\nAnna Müller\n"
    )
    history = "".join(
        f"> Line {i} of your earlier answer: thank you for contacting ACME support.\n"
        for i in range(20)
    )
    attribution = "On Mon, Mar 4, 2024 at 10:12 AM ACME Support <support@acme.example> wrote:"
    plain = f"{new}\n{attribution}\n{history}"
    html_quote = "".join(
        f"<div>Line {i} of your earlier answer: thank you for contacting ACME support.</div>"
        for i in range(20)
    )
    html = (
        '<html><head><meta charset="utf-8"><style>p{margin:0}</style></head><body>'
        + "".join(f"<p>{line}</p>" for line in new.split("\n"))
        + '<div class="gmail_quote"><div>On Mon, Mar 4, 2024 at 10:12 AM ACME Support '
        "&lt;support@acme.example&gt; wrote:<br></div>"
        f'<blockquote class="gmail_quote" style="margin:0 0 0 .8ex">{html_quote}</blockquote>'
        "</div></body></html>"
    )
    image = base64.encodebytes(bytes(range(256)) * 2).decode()
    raw = f"""\
From: =?utf-8?q?Anna_M=C3=BCller?= <anna@example.org>
To: ACME Support <support+od42@acme.example>
Subject: =?utf-8?q?Re=3A_Broken_kettle_=5B=23OD-42=5D?=
Date: Mon, 04 Mar 2024 11:00:00 +0100
Message-ID: <CAF=abc123@mail.example.org>
In-Reply-To: <od.42.x@acme.example>
References: <cust-1@example.org> <od.42.x@acme.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{plain.replace("ü", "=C3=BC")}
--alt
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: 8bit

{html}
--alt--

--mixed
Content-Type: image/jpeg; name="lid.jpg"
Content-Disposition: attachment; filename="lid.jpg"
Content-Transfer-Encoding: base64

{image}
--mixed--
"""
    return raw.replace("\n", "\r\n").encode("utf-8")


def baseline(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=compat32)
    for part in msg.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def normalize(raw: bytes) -> None:
    try:
        parse_email(raw, channel="email")
    except NormalizeError:
        pass


def rate(fn: Callable[[bytes], None], messages: list[bytes], seconds: float) -> float:
    """Messages per second, best of three rounds of at least ``seconds``/3."""
    best = 0.0
    for _ in range(3):
        done = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for raw in messages:
                fn(raw)
            done += len(messages)
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, done / (now - start))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = ap.parse_args(argv)

    workloads: list[tuple[str, list[bytes]]] = [("synthetic 5 KB multipart", [synthetic_5kb()])]
    if (args.corpus / "email").is_dir():
        corpus = corpus_messages(args.corpus)
        workloads.append((f"corpus ({len(corpus)} msgs)", corpus))
        small = [m for m in corpus if len(m) <= 64 * 1024]
        workloads.append((f"corpus <= 64 KB ({len(small)} msgs)", small))
    else:
        print(f"(corpus not found at {args.corpus}: synthetic workload only)", file=sys.stderr)

    print(f"{'workload':34} {'avg size':>9} {'baseline/s':>11} {'parse_email/s':>14} {'ratio':>6}")
    print("-" * 78)
    worst = float("inf")
    for name, messages in workloads:
        avg = sum(map(len, messages)) / len(messages)
        base = rate(baseline, messages, args.seconds)
        ours = rate(normalize, messages, args.seconds)
        worst = min(worst, ours)
        print(f"{name:34} {avg / 1024:7.1f}KB {base:11,.0f} {ours:14,.0f} {base / ours:5.1f}x")
        record(
            "mime",
            f"parse_email, {name}",
            ours,
            "msgs/s",
            baseline="bare stdlib parse (compat32)",
            baseline_value=base,
            ratio=base / ours,
            ratio_means="baseline / parse_email: what the full normalization costs",
        )
    print("-" * 78)
    print(
        f"ratio = baseline / parse_email (how much the full normalization costs over a bare "
        f"parse). Target: >= {TARGET:,.0f} msgs/s: "
        + ("met" if worst >= TARGET else "NOT met")
        + f" (slowest workload {worst:,.0f} msgs/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
