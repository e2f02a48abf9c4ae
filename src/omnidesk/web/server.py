"""uvicorn embedded in the daemon."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# Bytes asyncio reads from one connection at a time: uvicorn's own
# flow-control mark (it pauses a connection holding more than this unread).
READ_SIZE = 64 * 1024


class BoundedReadsH11Protocol(H11Protocol):
    """HTTP/1.1 with reads of :data:`READ_SIZE` instead of asyncio's 256 KB.

    Each connection's parser keeps a buffer as large as the largest read it
    was handed, so many uploads at once cost that much each whatever their
    cap: 130 hostile uploads held about 40 MB of the daemon's memory in
    these buffers alone, and a quarter of that with 64 KB reads (measured,
    tests/security/test_hostile_uploads.py). ``max_size`` is the selector
    transport's read size; another transport simply lacks it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if hasattr(transport, "max_size"):
            transport.max_size = READ_SIZE
        super().connection_made(transport)


class EmbeddedServer(uvicorn.Server):
    """The daemon owns SIGINT/SIGTERM (it stops channels and drains the intake
    first); uvicorn must not install its own handlers or re-raise signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        config.http = BoundedReadsH11Protocol
        super().__init__(config)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
