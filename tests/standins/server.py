"""What every HTTP stand-in shares: an aiohttp server on a free loopback
port that records each request and lets a test wait for the ones it expects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


class StandInServer:
    """Subclasses route every request to ``_handle`` and call ``_recorded``
    after appending to ``calls``."""

    base_url = ""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    _handle: Callable[[web.Request], Awaitable[web.StreamResponse]]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _recorded(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(done)

        await asyncio.wait_for(wait(), timeout)


async def read_form(request: web.Request) -> dict[str, Any]:
    """A multipart/form-data body: text fields as strings, files as
    ``(filename, content_type, bytes)``."""
    form = await request.post()
    return {
        k: (v.filename, v.content_type, v.file.read()) if isinstance(v, web.FileField) else str(v)
        for k, v in form.items()
    }
