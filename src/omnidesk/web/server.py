"""uvicorn embedded in the daemon."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """The daemon owns SIGINT/SIGTERM (it stops channels and drains the intake
    first); uvicorn must not install its own handlers or re-raise signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
