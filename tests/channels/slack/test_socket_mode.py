"""Socket Mode: slack-bolt's AsyncSocketModeHandler (slack_sdk's aiohttp
SocketModeClient) against the stand-in's apps.connections.open and WebSocket.
The ack goes out only after the event is stored."""

from __future__ import annotations

import asyncio
from typing import Any

from omnidesk.app import Daemon
from tests.conftest import conversations_full, wait_for
from tests.standins.slack_api import APP_TOKEN, SlackStandIn, event_callback, message_event

from .conftest import StartSlack, inbound_rows, processed


async def start_socket(start_slack: StartSlack) -> Daemon:
    d = await start_slack(mode="socket", app_token=APP_TOKEN)

    async def connected() -> bool:
        return d.adapters["sl"].health().detail == "Socket Mode connected"

    await wait_for(connected)
    return d


async def test_events_arrive_over_the_socket_and_are_acked_after_storing(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_socket(start_slack)
    opened = slack.calls_to("apps.connections.open")
    assert opened and all(c.token == APP_TOKEN for c in opened), "the app-level token opens it"
    slack.add_user()
    payload = event_callback(message_event("Hello over the socket"))
    envelope_id = await slack.push_socket(payload)
    ack = await slack.wait_ack(envelope_id)
    assert ack == {"envelope_id": envelope_id}
    rows = await inbound_rows(d)
    assert [r["external_id"] for r in rows] == [f"D0ANN:{payload['event']['ts']}"]
    # Slack redelivers (no ack in time on its side): acked again, stored once.
    again = await slack.push_socket(payload, retry_attempt=1)
    await slack.wait_ack(again)
    await processed(d, 1)
    assert len(await inbound_rows(d)) == 1
    [conv] = await conversations_full(d)
    assert [m["text"] for m in conv["messages"]] == ["Hello over the socket"]


async def test_no_ack_when_the_event_could_not_be_stored(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_socket(start_slack)
    slack.add_user()
    called = asyncio.Event()

    async def broken(envelope: Any) -> bool:
        called.set()
        raise RuntimeError("database unavailable")

    real = d.intake.accept
    d.intake.accept = broken  # type: ignore[method-assign]
    payload = event_callback(message_event("keep me"))
    first = await slack.push_socket(payload)
    await asyncio.wait_for(called.wait(), 10)
    await asyncio.sleep(0.2)  # the handler finishes; an ack would be on the wire by now
    assert first not in slack.acks, "not acked: Slack will deliver it again"
    d.intake.accept = real  # type: ignore[method-assign]
    retry = await slack.push_socket(payload, retry_attempt=1)
    await slack.wait_ack(retry)
    assert len(await processed(d, 1)) == 1


async def test_client_moves_to_a_new_socket_when_slack_asks(
    start_slack: StartSlack, slack: SlackStandIn
) -> None:
    d = await start_socket(start_slack)
    slack.add_user()
    await slack.refresh()

    async def reconnected() -> bool:
        return slack.connections == 2

    await wait_for(reconnected)
    payload = event_callback(message_event("after the refresh"))
    await slack.wait_ack(await slack.push_socket(payload))
    assert len(await processed(d, 1)) == 1
    assert d.adapters["sl"].health().state == "running"


async def test_refused_app_token_is_visible(start_slack: StartSlack, slack: SlackStandIn) -> None:
    d = await start_slack(mode="socket", app_token="xapp-1-WRONG")

    async def failing() -> bool:
        return d.adapters["sl"].health().state == "failing"

    await wait_for(failing)
    detail = d.adapters["sl"].health().detail
    assert "Socket Mode connect failed" in detail and "invalid_auth" in detail
    assert "xapp-1-WRONG" not in detail
