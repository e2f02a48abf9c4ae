"""Sending a reply that the provider takes as several messages (an SMS over
1,600 characters, a DM over X's limit) so that a retry never sends a part
twice: the provider ids of the parts already sent are kept in the channel's
state under the outbox id until the last part is out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from ..model import SendError
from .base import ChannelState


async def send_parts(
    state: ChannelState | None,
    outbox_id: int,
    parts: Sequence[str],
    send_one: Callable[[str, list[str]], Awaitable[str]],
) -> list[str]:
    """Send each part with ``send_one(part, ids sent so far)``, which returns
    the provider's id for it; returns every part's id. On a retried failure
    the ids so far stay recorded and the next attempt resumes after them; on a
    final one (``retry=False``) the record is dropped."""
    key = f"sending:{outbox_id}"
    track = state is not None and len(parts) > 1
    done: list[str] = []
    if track:
        assert state is not None
        saved = await state.get(key)
        done = json.loads(saved) if saved else []
    for i, part in enumerate(parts):
        if i < len(done):
            continue  # sent before a retry: never twice
        try:
            done.append(await send_one(part, done))
        except SendError as exc:
            if track and not exc.retry and done:
                assert state is not None
                await state.put({key: None})
            raise
        if track:
            assert state is not None
            await state.put({key: json.dumps(done) if len(done) < len(parts) else None})
    return done


async def send_steps(
    state: ChannelState | None,
    outbox_id: int,
    steps: Sequence[Callable[[], Awaitable[str | None]]],
) -> list[str]:
    """``send_parts`` for sends that are not all text (a text, then files to
    upload and send): each step sends one message and returns its provider
    id ("" or None when the provider gives none); a step done before a retry
    is not done again."""

    async def one(part: str, _before: list[str]) -> str:
        return await steps[int(part)]() or ""

    return await send_parts(state, outbox_id, [str(i) for i in range(len(steps))], one)
