"""What the capped body reader (web/limits.py) costs a request, in process.

Each row calls a do-nothing ASGI app that reads the body, with and without
``BodyLimits`` in front, on the same event loop in the same run: a GET, a
700-byte webhook delivery (the size ``bench_webhooks.py`` sends, with JSON
``\\u`` escapes so the NUL/surrogate scan runs), and a 1 MB body arriving in
64 KB chunks. The HTTP benchmarks on this shared machine vary by more than
this cost; this isolates it.

    python bench/bench_limits.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from omnidesk.web.limits import BodyLimits, Limit

WEBHOOK = json.dumps(
    {"object": "whatsapp_business_account", "text": "caf\u00e9 na\u00efve \u2603 " * 20},
    ensure_ascii=True,
).encode()[:700]


async def app(scope: Any, receive: Any, send: Any) -> None:
    more = True
    while more:
        m = await receive()
        more = m.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def one(handler: Any, method: str, chunks: list[bytes]) -> None:
    left = list(chunks)

    async def receive() -> dict[str, Any]:
        body = left.pop(0) if left else b""
        return {"type": "http.request", "body": body, "more_body": bool(left)}

    async def send(_m: Any) -> None:
        return None

    headers = [(b"content-type", b"application/json")]
    if len(chunks) > 1:
        headers.append((b"transfer-encoding", b"chunked"))
    elif chunks[0]:
        headers.append((b"content-length", str(len(chunks[0])).encode()))
    scope = {"type": "http", "method": method, "path": "/webhooks/wa", "headers": headers}
    await handler(scope, receive, send)


async def per_request_us(handler: Any, method: str, chunks: list[bytes], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await one(handler, method, chunks)
    return (time.perf_counter() - t0) / n * 1e6


async def main(requests: int, rounds: int) -> None:
    cap = Limit(16 << 20, api=False, channel=True)
    limited = BodyLimits(app, limit_for=lambda _p: cap, budget_bytes=32 << 20)
    cases = [
        ("GET, no body", "GET", [b""]),
        ("webhook, 700 bytes", "POST", [WEBHOOK]),
        ("1 MB in 64 KB chunks", "POST", [b"x" * 65536] * 16),
    ]
    table = Table(title=f"per request, median of {rounds} rounds (shared 2-core machine)")
    for col in ("request", "app alone µs", "with BodyLimits µs", "added µs"):
        table.add_column(col, justify="right" if "µs" in col else "left")
    for label, method, chunks in cases:
        n = requests if len(chunks) == 1 else max(requests // 50, 100)
        bare = statistics.median(
            [await per_request_us(app, method, chunks, n) for _ in range(rounds)]
        )
        capped = statistics.median(
            [await per_request_us(limited, method, chunks, n) for _ in range(rounds)]
        )
        table.add_row(label, f"{bare:.1f}", f"{capped:.1f}", f"{capped - bare:.1f}")
    Console().print(table)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.requests, args.rounds))
