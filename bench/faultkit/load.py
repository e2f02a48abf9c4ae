"""Load that behaves like the real senders: each message is offered until it
is acknowledged (an MTA keeps its queue, a provider retries a webhook, an API
client retries on an error), so a daemon killed and started again underneath
is retried into. What got its acknowledgement is recorded per channel.

* SMTP: a plain client on asyncio streams (MAIL, RCPT, DATA, every reply
  read); ``250`` after the data is the acknowledgement.
* API: signed ``POST /api/v1/inbound/api``; ``202``.
* webhook: signed WhatsApp Cloud API deliveries to ``/webhooks/wa``; ``200``.
* IMAP: mail appended to a Dovecot mailbox; the daemon's acknowledgement is
  the ``\\Seen`` flag it sets after storing (read back at the end).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import imaplib
import json
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import httpx

from .daemon import API_SECRET, META_SECRET, NUMBER_ID, SUPPORT

TEXTS = [
    "Hello, where is my order {n}? Thanks",
    "This is unacceptable, order {n} arrived broken. I want a refund.",
    "Thanks a lot, order {n} came fast!",
    "你好，请问订单{n}什么时候发货？",
    "Can I change the delivery address for order {n}?",
]
RETRY_DELAY = (0.1, 0.4)  # seconds before a refused message is offered again


def mail(ident: str, n: int, padding: int = 0) -> bytes:
    """A customer mail with Message-ID ``<ident>``; ``padding`` bytes of body
    text more (the disk-full scenario fills the disk faster with them)."""
    text = random.choice(TEXTS).format(n=n)
    body = text + "\r\n" + ("Order details follow.\r\n" * (padding // 23 + 1) if padding else "")
    head = (
        f"From: Customer {n % 97} <customer{n % 97}@example.org>\r\n"
        f"To: {SUPPORT}\r\nSubject: Order {n}\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <{ident}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (head + body).encode()


class Sender:
    """``workers`` coroutines offering messages until each is acknowledged.
    New messages are made until :meth:`finish` (or ``limit`` of them); then
    only the ones still unacknowledged are offered again, until none is left."""

    channel = ""

    def __init__(
        self, tag: str, workers: int = 4, rate: float | None = None, limit: int | None = None
    ) -> None:
        self.tag = tag
        self.workers = workers
        self.rate = rate  # new messages per second at most (None: as fast as acknowledged)
        self.limit = limit  # messages in all (None: until finish())
        self.offered: list[str] = []
        self.acked: set[str] = set()
        self.refusals: collections.Counter[str] = collections.Counter()
        self._retry: collections.deque[str] = collections.deque()
        self._finishing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._made = 0
        self._t0 = 0.0

    # -- what a channel defines ------------------------------------------------------
    async def open(self) -> None:
        """Per-run resources (an HTTP client)."""

    async def close(self) -> None:
        pass

    async def offer(self, worker: int, ident: str) -> bool:
        """Send one message; True when acknowledged."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------
    def _next(self) -> str | None:
        if self._retry:
            return self._retry.popleft()
        if self._made >= self.limit if self.limit is not None else self._finishing:
            return None
        ident = f"{self.tag}-{self.channel}-{self._made}"
        self._made += 1
        self.offered.append(ident)
        return ident

    async def _worker(self, w: int) -> None:
        while True:
            if self.rate and not self._finishing:
                due = self._t0 + self._made / self.rate
                if (pause := due - time.monotonic()) > 0:
                    await asyncio.sleep(pause)
            ident = self._next()
            if ident is None:
                if (
                    self.outstanding() == 0
                    and not self._retry
                    and (self._finishing or self.limit is not None)
                ):
                    return
                await asyncio.sleep(0.05)
                continue
            try:
                ok = await self.offer(w, ident)
            except Exception as exc:  # the daemon is down, a connection cut
                self.refusals[type(exc).__name__] += 1
                ok = False
            if ok:
                self.acked.add(ident)
            else:
                self._retry.append(ident)
                await asyncio.sleep(random.uniform(*RETRY_DELAY))

    def outstanding(self) -> int:
        """Offered and not acknowledged yet."""
        return len(self.offered) - len(self.acked)

    async def start(self) -> None:
        await self.open()
        self._t0 = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._worker(w)) for w in range(self.workers)]

    def finish(self) -> None:
        """No new messages from now on."""
        self._finishing = True

    async def done(self, timeout: float) -> bool:
        """After :meth:`finish`: until every message is acknowledged."""
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close()
        return not pending

    async def abort(self) -> None:
        """Stop at once (the scenario failed)."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close()

    def redeliver(self, share: float) -> list[str]:
        """Offer again a share of what was acknowledged (a sender that lost
        the acknowledgement, a provider's retry): each must change nothing."""
        again = [i for i in sorted(self.acked) if random.random() < share]
        self._retry.extend(again)
        return again


class SmtpSender(Sender):
    channel = "smtp"

    def __init__(self, tag: str, port: int, workers: int = 4, **kw: Any) -> None:
        super().__init__(tag, workers, **kw)
        self.port = port
        self.padding = 0
        self._conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def _conn(self, w: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if w not in self._conns:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 10
            )
            try:
                await expect(reader, b"220")
                writer.write(b"EHLO client.example.org\r\n")
                await expect(reader, b"250")
            except BaseException:
                writer.close()
                raise
            self._conns[w] = (reader, writer)
        return self._conns[w]

    async def offer(self, worker: int, ident: str) -> bool:
        n = int(ident.rsplit("-", 1)[1])
        try:
            reader, writer = await self._conn(worker)
            answer = await transaction(reader, writer, mail(ident, n, self.padding))
        except BaseException:
            self._drop(worker)
            raise
        if answer.startswith(b"250"):
            return True
        self.refusals[answer[:3].decode(errors="replace")] += 1
        if answer.startswith(b"421"):
            self._drop(worker)
        return False

    def _drop(self, w: int) -> None:
        conn = self._conns.pop(w, None)
        if conn is not None:
            conn[1].close()

    async def close(self) -> None:
        for w in list(self._conns):
            self._drop(w)


async def expect(reader: asyncio.StreamReader, code: bytes, timeout: float = 30) -> bytes:
    """The next (last line of a multi-line) reply; raises unless it is ``code``."""
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            break
    if not line.startswith(code):
        raise ConnectionError(f"expected {code.decode()}, got {line[:80]!r}")
    return line


async def transaction(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> bytes:
    """MAIL, RCPT, DATA; the answer to the data (b"250 ..." or a refusal)."""
    writer.write(b"MAIL FROM:<customer@example.org>\r\n")
    await expect(reader, b"250")
    writer.write(f"RCPT TO:<{SUPPORT}>\r\n".encode())
    await expect(reader, b"250")
    writer.write(b"DATA\r\n")
    await expect(reader, b"354")
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in raw.split(b"\r\n"))
    writer.write(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    while True:
        line = await asyncio.wait_for(reader.readline(), 150)
        if not line:
            raise ConnectionError("connection closed after DATA")
        if line[3:4] != b"-":
            return line


class HttpSender(Sender):
    """Signed POSTs; ``ok_status`` is the acknowledgement."""

    ok_status = 200
    path = ""

    def __init__(self, tag: str, base_url: str, workers: int = 4, **kw: Any) -> None:
        super().__init__(tag, workers, **kw)
        self.base_url = base_url
        self.client: httpx.AsyncClient | None = None
        self.statuses: collections.Counter[int] = collections.Counter()
        self.retry_after: set[str] = set()  # Retry-After values seen on refusals

    def body(self, ident: str) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    async def open(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def offer(self, worker: int, ident: str) -> bool:
        assert self.client is not None
        raw, headers = self.body(ident)
        r = await self.client.post(self.path, content=raw, headers=headers)
        self.statuses[r.status_code] += 1
        if r.status_code != self.ok_status:
            self.refusals[str(r.status_code)] += 1
            if "retry-after" in r.headers:
                self.retry_after.add(r.headers["retry-after"])
        return r.status_code == self.ok_status


class ApiSender(HttpSender):
    channel = "api"
    ok_status = 202
    path = "/api/v1/inbound/api"

    def body(self, ident: str) -> tuple[bytes, dict[str, str]]:
        from omnidesk.channels.api import SIGNATURE_HEADER, sign

        n = int(ident.rsplit("-", 1)[1])
        raw = json.dumps(
            {
                "external_id": ident,
                "sender": {"address": f"api{n % 89}@example.com", "kind": "email"},
                "text": random.choice(TEXTS).format(n=n),
            },
            ensure_ascii=False,
        ).encode()
        return raw, {SIGNATURE_HEADER: sign(API_SECRET, raw), "Content-Type": "application/json"}


class WebhookSender(HttpSender):
    channel = "webhook"
    path = "/webhooks/wa"

    def wamid(self, ident: str) -> str:
        return f"wamid.{ident}"

    def body(self, ident: str) -> tuple[bytes, dict[str, str]]:
        from omnidesk.channels.meta.webhook import SIGNATURE_HEADER, sign

        n = int(ident.rsplit("-", 1)[1])
        wa_id = f"4915{100000000 + n % 5000:09d}"
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": NUMBER_ID},
            "contacts": [{"profile": {"name": f"Customer {n}"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": self.wamid(ident),
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": random.choice(TEXTS).format(n=n)},
                }
            ],
        }
        raw = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [{"id": "102290", "changes": [{"value": value, "field": "messages"}]}],
            },
            ensure_ascii=False,
        ).encode()
        return raw, {SIGNATURE_HEADER: sign(META_SECRET, raw), "Content-Type": "application/json"}


class ImapFeeder(Sender):
    """Appends mail to a Dovecot mailbox (Dovecot stays up: only the daemon
    is killed). ``acked`` is filled by :meth:`read_seen`."""

    channel = "imap"

    def __init__(self, tag: str, port: int, user: str, password: str, rate: float = 20) -> None:
        super().__init__(tag, workers=1, rate=rate)
        self.port, self.user, self.password = port, user, password
        self._imap: imaplib.IMAP4 | None = None

    def _append(self, ident: str) -> None:
        if self._imap is None:
            self._imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
            self._imap.login(self.user, self.password)
        n = int(ident.rsplit("-", 1)[1])
        typ, data = self._imap.append("INBOX", None, None, mail(ident, n))
        if typ != "OK":
            raise RuntimeError(f"APPEND: {data!r}")

    async def offer(self, worker: int, ident: str) -> bool:
        try:
            await asyncio.to_thread(self._append, ident)
        except (OSError, imaplib.IMAP4.error):
            self._imap = None
            raise
        # Delivered to the mailbox; the daemon's \Seen is the acknowledgement.
        self.acked.add(ident)
        return True

    async def close(self) -> None:
        if self._imap is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                await asyncio.to_thread(self._imap.logout)
            self._imap = None

    def read_seen(self) -> set[str]:
        """Message-IDs the daemon flagged \\Seen."""
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            m.login(self.user, self.password)
            m.select("INBOX", readonly=True)
            _, data = m.uid("fetch", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            seen = set()
            for item in data:
                if isinstance(item, tuple) and b"\\Seen" in item[0]:
                    seen.add(item[1].decode().partition(":")[2].strip().strip("<>"))
            return seen
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                m.logout()


async def run_senders(
    senders: list[Sender], during: Callable[[], Awaitable[None]], drain: float = 120
) -> dict[str, bool]:
    """Start the senders, run ``during`` (the faults), then let every sender
    finish its queue; which channels got everything acknowledged."""
    for s in senders:
        await s.start()
    try:
        await during()
    except BaseException:
        for s in senders:
            await s.abort()
        raise
    for s in senders:
        s.finish()
    done = await asyncio.gather(*(s.done(drain) for s in senders))
    return {s.channel: ok for s, ok in zip(senders, done, strict=True)}
