"""A single-consumer test channel: polls a folder of JSON files, the way an
IMAP channel polls a mailbox. With several instances on one database only the
instance holding the channel's lock may run it (``single_consumer``).

Each ``*.json`` file is one message: ``{"id", "from", "name", "text",
"thread"}``. A file is deleted only after ``accept`` returned (the
acknowledgement after the commit); a crash in between means it is read again
and the intake's (channel, external id) key stores it once. Replies are
appended to ``sent.jsonl`` in the folder.

Settings: ``folder`` (required), ``interval`` (seconds between empty polls).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from omnidesk.channels.base import ChannelAdapter, ChannelContext
from omnidesk.identity import normalize_identity
from omnidesk.model import Envelope, Message, NormalizeError, OutboundMessage, SendResult


class SpoolAdapter(ChannelAdapter):
    type = "spool"
    single_consumer = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.folder = Path(o.path("folder"))
        self.interval = float(o.number("interval", 0.05, min=0.01))
        o.check_unused()
        self._task: asyncio.Task[Any] | None = None
        self.polled = 0

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        assert self.ctx.spawn is not None
        self._task = self.ctx.spawn(self._run(), f"spool-{self.name}")
        # Tell the test (another process) which instance owns the folder now.
        (self.folder / "owner").write_text(str(os.getpid()))
        self.set_health(True, "running", f"polling {self.folder}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            files = sorted(self.folder.glob("*.json"))[:500]
            self.polled += 1
            if not files:
                await asyncio.sleep(self.interval)
                continue
            envs = []
            for f in files:
                try:
                    envs.append(Envelope(self.name, f.stem, f.read_bytes(), "application/json"))
                except FileNotFoundError:
                    continue
            await self.ctx.intake.accept_many(envs)
            for f in files:
                f.unlink(missing_ok=True)
            self.touch()

    def normalize(self, envelope: Envelope) -> Message:
        try:
            data = json.loads(envelope.payload)
            sender = normalize_identity("email", data["from"], data.get("name"))
        except (ValueError, KeyError, TypeError) as exc:
            raise NormalizeError(f"not a spool message: {exc}") from None
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=str(data.get("text", "")),
            subject=data.get("subject"),
            thread_key=data.get("thread"),
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        with (self.folder / "sent.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"to": message.recipient.address, "text": message.text}) + "\n")
        return SendResult(provider_id=None)
