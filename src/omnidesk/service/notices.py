"""E-mail copies of notices: a ``notify`` action with ``email = true`` (an SLA
warning or breach, a time-based rule) queues, beside each agent's in-app
notification, an e-mail to the agent's address (``omnidesk agents``/the users
page). This loop sends them through an e-mail channel's relay.

Durable and at least once: the queue is the ``notifications`` table itself
(``email_state``); a notice is claimed for ``LEASE`` seconds before it is
sent, so a crash mid-send gives it back and several instances on PostgreSQL
never send the same one twice while the lease runs. A refused or unreachable
relay is tried again with backoff (30 s doubling, at most an hour) up to
``MAX_ATTEMPTS`` times, then the notice is marked ``failed`` with the reason;
an agent without an address (or disabled) is ``skipped``. Addresses and the
notice's text never go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ..model import now_ts
from ..store import Store
from ..store.service import claim_notice_mail, finish_notice_mail

log = structlog.get_logger("omnidesk.notices")

LEASE = 120.0  # seconds a claimed notice is ours before another may take it
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0


@dataclass(frozen=True, slots=True)
class NoticeMail:
    to: str
    to_name: str | None
    subject: str
    body: str


Send = Callable[[NoticeMail], Awaitable[None]]

_HEADS = {"sla_warning": "SLA warning", "sla_breach": "SLA breached"}


def compose(row: dict[str, Any], public_url: str) -> NoticeMail:
    """The e-mail for one claimed notice: what happened, on which
    conversation, and the link that opens it in the inbox."""
    head = _HEADS.get(str(row["kind"]), "Notice")
    cid = row.get("conversation_id")
    subject = f"[omnidesk] {head}"
    if cid is not None:
        subject += f": #{cid}"
        if row.get("subject"):
            subject += f" {str(row['subject'])[:120]}"
    lines = [str(row["text"]), ""]
    if cid is not None:
        lines.append(f"Open it: {public_url.rstrip('/')}/inbox/c/{cid}")
    lines += [
        "",
        "You get this because a service rule of your help desk names you;",
        "the same notice is in the inbox's notifications.",
    ]
    return NoticeMail(
        to=str(row["email"]),
        to_name=row.get("display_name") or row.get("username"),
        subject=subject.replace("\r", " ").replace("\n", " "),
        body="\n".join(lines) + "\n",
    )


class NoticeMailer:
    def __init__(
        self,
        store: Store,
        send: Send | None,
        *,
        public_url: str,
        why_not: str = "no e-mail channel with a relay to send through",
        backoff_base: float = BACKOFF_BASE,
        poll: float = 30.0,
    ) -> None:
        self.store = store
        self.send = send
        self.public_url = public_url
        self.why_not = why_not  # the reason recorded when there is no way to send
        self.backoff_base = backoff_base
        self.poll = poll
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Send what is due now; how many were handled."""
        now = now_ts()
        rows = await self.store.write(claim_notice_mail, now, LEASE)
        for row in rows:
            await self._one(row)
        return len(rows)

    async def _one(self, row: dict[str, Any]) -> None:
        nid = int(row["id"])
        if not row.get("email") or row.get("disabled"):
            why = "the agent is disabled" if row.get("disabled") else "the agent has no e-mail"
            await self.store.write(finish_notice_mail, nid, "skipped", error=why)
            return
        attempts = int(row["email_attempts"]) + 1
        try:
            if self.send is None:
                raise RuntimeError(self.why_not)
            await self.send(compose(row, self.public_url))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempts >= MAX_ATTEMPTS or self.send is None:
                await self.store.write(
                    finish_notice_mail, nid, "failed", error=error, attempts=attempts
                )
                log.warning("notice_mail_failed", notification=nid, attempts=attempts)
                return
            delay = min(BACKOFF_MAX, self.backoff_base * 2 ** (attempts - 1))
            await self.store.write(
                finish_notice_mail,
                nid,
                "pending",
                error=error,
                attempts=attempts,
                next_at=now_ts() + delay,
            )
            log.info("notice_mail_retry", notification=nid, attempts=attempts, after=delay)
            return
        await self.store.write(finish_notice_mail, nid, "sent", attempts=attempts)
        self.sent += 1

    async def run(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except Exception:
                log.exception("notice_mail_pass_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            self._wake.clear()
