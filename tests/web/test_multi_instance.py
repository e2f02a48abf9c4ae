"""Two daemons on one PostgreSQL database: an agent on one instance sees live
what happens on the other (new messages, presence), and a session made on one
works on the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from tests.conftest import PG_URL, make_config, message, post_inbound, require_service
from tests.web.conftest import add_users, login, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def shared_pg() -> Iterator[str]:
    from tests.postgres.pgtools import pg_available, temp_schema

    require_service(
        pg_available(PG_URL),
        f"PostgreSQL at {PG_URL}",
        "start it or set OMNIDESK_TEST_PG=postgresql://user@host:port/db",
    )
    with temp_schema(PG_URL) as url:
        yield url


async def test_live_feed_and_presence_cross_instances(shared_pg: str, tmp_path: Path) -> None:
    a = Daemon(make_config(tmp_path / "a", shared_pg))
    b = Daemon(make_config(tmp_path / "b", shared_pg, pipeline={"workers": 0}))
    await a.start()
    await b.start()
    events: list[dict[str, Any]] = []
    try:
        tokens = await add_users(a)
        ready = asyncio.Event()

        async def follow() -> None:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{b.web_port}", timeout=None
            ) as c:
                async with c.stream("GET", "/api/v1/events", headers=tokens["alice"]) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            data = json.loads(line[5:])
                            if "user" in data:
                                ready.set()
                            else:
                                events.append(data)

        task = asyncio.ensure_future(follow())
        await asyncio.wait_for(ready.wait(), 5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{a.web_port}") as ca:
            # The message arrives and is processed on instance A ...
            await post_inbound(ca, message("mi-1", "Do you have this in blue?"))
            # ... and Alice, connected to B, hears of it.
            created = await wait_for(lambda: _first(events, "conversation.created"), timeout=10)
            cid = created["conversation_id"]
            r = await ca.post(
                f"/api/v1/conversations/{cid}/presence",
                json={"state": "typing"},
                headers=tokens["bob"],
            )
            assert r.status_code == 200
            await wait_for(lambda: _first(events, "presence"), timeout=10)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.web_port}") as cb:

                async def bob_on_b() -> bool:
                    r = await cb.get(f"/api/v1/conversations/{cid}", headers=tokens["alice"])
                    return any(p["username"] == "bob" for p in r.json()["presence"])

                await wait_for(bob_on_b, timeout=10)
                # A session made on A is valid on B (sessions live in the database).
                csrf = await login(ca, "alice")
                cb.cookies.update(ca.cookies)
                r = await cb.post(
                    f"/api/v1/conversations/{cid}/tags", json={"add": ["blue"]}, headers=csrf
                )
                assert r.status_code == 200
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await b.stop()
        await a.stop()


async def _first(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in events if e.get("type") == kind), None)
