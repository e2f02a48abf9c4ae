"""A raw HTTP/1.1 client for hostile uploads: it keeps sending a chunked
body until the server answers or hangs up, and says how far it got (an
ordinary client would wait to finish sending before it reads an answer)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass
class Outcome:
    status: int | None  # None: closed without an answer
    sent: int  # body bytes written before the answer or the hang-up


async def chunked_upload(
    port: int,
    path: str,
    total: int,
    *,
    host: str = "127.0.0.1",
    content_type: str = "application/json",
    timeout: float = 60.0,
) -> Outcome:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: {content_type}\r\n\r\n".encode()
    )
    piece = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while sent < total and not answer.done():
            writer.write(piece)
            await writer.drain()
            sent += CHUNK
        if not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except OSError:
        pass  # the server hung up on us: what it said is in the reader
    try:
        line = await asyncio.wait_for(answer, timeout)
    except (TimeoutError, OSError):
        line = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = line.split()
    status = int(parts[1]) if len(parts) >= 2 and line.startswith(b"HTTP/") else None
    return Outcome(status, sent)
