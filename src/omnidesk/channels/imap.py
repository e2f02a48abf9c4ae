"""The ``imap`` channel: pull a mailbox with IMAP IDLE (push), polling where
the server has no IDLE.

::

    [[channels]]
    name = "inbox"
    type = "imap"
    host = "imap.example.com"
    port = 993                   # default: 993 with tls = "tls", 143 with "none"
    tls = "tls"                  # implicit TLS, or "none" (plaintext, trusted networks only)
    username = "support@example.com"
    password = "env:IMAP_PASSWORD"
    folders = ["INBOX"]          # each folder has its own connection and cursor
    mark = "seen"                # after accept: "seen" (flag \\Seen), "keyword", "move", "none"
    keyword = "$Omnidesk"        # with mark = "keyword"
    move_to = "Processed"        # with mark = "move" (created when missing)
    idle = true                  # push; false polls every poll_interval
    poll_interval = 60           # seconds, when polling (no IDLE)
    idle_refresh = 600           # re-issue IDLE (and re-check) this often; RFC 2177: < 29 min
    fetch_batch = 100            # messages per UID FETCH
    first_sync = "unseen"        # on first start take unread mail ("all", "none")
    backfill_days = 0            # on first start, also take mail of the last N days
    max_message_size = 26214400  # larger mail: headers only, left in the mailbox
    timeout = 30                 # seconds per IMAP command
    max_login_failures = 3       # consecutive refusals before the channel shows unhealthy
    backoff_base = 1.0           # reconnect delays grow from here ...
    backoff_max = 300.0          # ... to here
    verify = true                # TLS certificate checks; ca_file = "..." for a private CA

aioimaplib has no STARTTLS, so ``tls = "starttls"`` is refused rather than
sending the password in clear: use the server's implicit-TLS port (993).

What makes it safe:

* a **UID cursor** per folder in the ``channel_state`` table (with the
  folder's UIDVALIDITY) says what was taken; the ``\\Seen`` flag is only a
  courtesy for humans, so a message someone else read first is not skipped;
* a message is marked or moved **only after** ``intake.accept()`` returned,
  and the cursor moves after that: a crash or a cut connection means the
  same UIDs are looked at again;
* the intake key is the Message-ID (see :func:`mailout.envelope_id`), and
  before downloading a chunk we ask the store which ids it already holds:
  a replay, a copy of the message in a second folder, or a UIDVALIDITY
  change (the server renumbered the folder: we re-read the recent days)
  store nothing twice;
* connection problems reconnect with exponential backoff; a login that keeps
  being refused marks the channel unhealthy (``/healthz``, the
  ``omnidesk_channel_healthy`` metric, a log line) and keeps backing off
  instead of hammering the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..email.headers import extract_msgids
from ..model import Envelope
from .base import ChannelContext
from .mailout import EmailChannel, envelope_id

if TYPE_CHECKING:
    import argparse
    from contextlib import AbstractAsyncContextManager

    from ..config import Config, Secret
    from .base import ChannelAdapter

    OpenAdapters = Callable[[Config], AbstractAsyncContextManager[Mapping[str, ChannelAdapter]]]

T = TypeVar("T")

MARK_MODES = ("seen", "keyword", "move", "none")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FETCH_START = re.compile(rb"^\d+ FETCH \(", re.I)
_UID = re.compile(rb"\bUID (\d+)", re.I)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)", re.I)
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]*)"', re.I)
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]", re.I)
_EXISTS = re.compile(rb"^(\d+) EXISTS", re.I)
# Keep-alives and status text a server sends during IDLE: not news.
_IDLE_NOISE = re.compile(rb"^(?:\* )?OK\b", re.I)
_NEWS = re.compile(rb"^(?:\* )?\d+ (?:EXISTS|RECENT)\b", re.I)


class ImapError(Exception):
    """The server refused a command or the conversation broke: reconnect."""


class LoginRefused(ImapError):
    pass


class ConnectionLost(ImapError):
    pass


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + data.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(d: date) -> str:
    """``01-Feb-2026``: SEARCH dates are English whatever the locale."""
    return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year}"


def uid_set(uids: Sequence[int]) -> str:
    """``1:3,7,9:10`` for a sorted list of UIDs."""
    parts: list[str] = []
    start = prev = None
    for u in sorted(set(uids)):
        if start is None:
            start = prev = u
        elif prev is not None and u == prev + 1:
            prev = u
        else:
            parts.append(f"{start}" if start == prev else f"{start}:{prev}")
            start = prev = u
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}:{prev}")
    return ",".join(parts)


@dataclass(slots=True)
class Fetched:
    uid: int
    text: bytes = b""  # the FETCH response items around the literal
    body: bytes | None = None

    @property
    def internaldate(self) -> str | None:
        m = _INTERNALDATE.search(self.text)
        return m.group(1).decode("ascii", "replace") if m else None


def parse_fetch(lines: Sequence[Any]) -> list[Fetched]:
    """FETCH responses as aioimaplib returns them: a line ending in ``{n}``,
    the literal as a ``bytearray``, then the rest of the items (some servers
    put ``UID`` after the literal). Unsolicited flag updates without UID are
    dropped. The last line is the tagged status text."""
    records: list[tuple[bytes, bytes | None]] = []
    text: bytes | None = None
    body: bytes | None = None
    for line in lines[:-1] if lines else ():
        if isinstance(line, bytearray):
            if text is not None and body is None:
                body = bytes(line)
            continue
        if _FETCH_START.match(line):
            if text is not None:
                records.append((text, body))
            text, body = bytes(line), None
        elif text is not None:
            text += b" " + bytes(line)
    if text is not None:
        records.append((text, body))
    out: list[Fetched] = []
    for t, b in records:
        m = _UID.search(t)
        if m:
            out.append(Fetched(uid=int(m.group(1)), text=t, body=b))
    return out


@dataclass(slots=True)
class Selected:
    uidvalidity: int | None
    uidnext: int | None
    exists: int


@dataclass(slots=True)
class FolderState:
    uidvalidity: int | None = None
    last_uid: int = 0
    synced_at: float | None = None


@dataclass(slots=True)
class SyncReport:
    found: int = 0
    new: int = 0
    known: int = 0
    oversize: int = 0
    gone: int = 0

    def add(self, other: SyncReport) -> None:
        self.found += other.found
        self.new += other.new
        self.known += other.known
        self.oversize += other.oversize
        self.gone += other.gone


class ImapSession:
    """One authenticated connection with one folder selected."""

    def __init__(self, channel: ImapChannel, folder: str) -> None:
        self.ch = channel
        self.folder = folder
        self.client: Any = None
        self.selected: Selected | None = None
        self._lost: asyncio.Future[None] | None = None
        # Set when the server reports new mail outside IDLE (during a FETCH,
        # between commands): aioimaplib drops those lines, and the server
        # will not repeat them once we IDLE - a mail arriving mid-sync would
        # wait for the next idle_refresh.
        self.news = False

    def _watch_untagged(self) -> None:
        proto = self.client.protocol
        original = proto._untagged_response

        def spy(line: bytes) -> Any:
            if _NEWS.match(line):
                self.news = True
            return original(line)

        proto._untagged_response = spy

    def _on_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def run(self, aw: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """Await an aioimaplib call, failing at once when the connection drops
        (aioimaplib itself would wait for its timeout)."""
        task: asyncio.Future[T] = asyncio.ensure_future(aw)
        assert self._lost is not None
        limit = timeout if timeout is not None else self.ch.timeout * 4
        waiting: set[asyncio.Future[Any]] = {task, self._lost}
        done, _ = await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except TimeoutError as exc:
                raise ImapError(f"{what}: no answer within {self.ch.timeout:g}s") from exc
            except ImapError:
                raise
            except Exception as exc:
                raise ImapError(f"{what}: {type(exc).__name__}: {exc}") from exc
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if self._lost.done():
            raise ConnectionLost(f"connection lost during {what}")
        raise ImapError(f"{what}: no answer within {limit:g}s")

    async def ok(self, aw: Awaitable[Any], what: str, timeout: float | None = None) -> Any:
        resp = await self.run(aw, what, timeout)
        if resp.result != "OK":
            text = resp.lines[-1] if resp.lines else b""
            raise ImapError(f"{what} refused: {resp.result} {_text(text)}")
        return resp

    async def open(self) -> None:
        import aioimaplib

        ch = self.ch
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self.client = aioimaplib.IMAP4(
            host=ch.host,
            port=ch.port,
            timeout=ch.timeout,
            conn_lost_cb=self._on_lost,
            ssl_context=ch.ssl_context,
        )
        self._watch_untagged()
        try:
            await self.run(self.client.wait_hello_from_server(), "connect")
        except ImapError as exc:
            raise ConnectionLost(f"cannot connect to {ch.host}:{ch.port}: {exc}") from None
        resp = await self.run(
            self.client.login(aioimaplib.quoted(ch.username), ch.password.reveal()), "LOGIN"
        )
        if resp.result != "OK":
            raise LoginRefused(f"login as {ch.username} refused: {_text(resp.lines[-1])}")
        resp = await self.ok(self.client.select(quote_mailbox(self.folder)), "SELECT")
        validity = nxt = None
        exists = 0
        for line in resp.lines:
            if not isinstance(line, bytes | bytearray):
                continue
            for name, value in _CODE.findall(bytes(line)):
                if name.upper() == b"UIDVALIDITY":
                    validity = int(value)
                else:
                    nxt = int(value)
            m = _EXISTS.match(bytes(line))
            if m:
                exists = int(m.group(1))
        self.selected = Selected(uidvalidity=validity, uidnext=nxt, exists=exists)

    @property
    def can_idle(self) -> bool:
        return bool(self.client is not None and self.client.has_capability("IDLE"))

    def has(self, capability: str) -> bool:
        return bool(self.client is not None and self.client.has_capability(capability))

    async def search(self, *criteria: str) -> list[int]:
        resp = await self.ok(self.client.uid_search(*criteria, charset=None), "UID SEARCH")
        uids: list[int] = []
        for line in resp.lines[:-1]:
            if isinstance(line, bytes | bytearray):
                text = bytes(line)
                if text.upper().startswith(b"SEARCH"):
                    text = text[6:]
                uids.extend(int(x) for x in text.split() if x.isdigit())
        return sorted(set(uids))

    async def uids_after(self, last_uid: int) -> list[int]:
        # "n:*" always includes the highest UID, even below n: filter.
        return [u for u in await self.search("UID", f"{last_uid + 1}:*") if u > last_uid]

    async def fetch(self, uids: Sequence[int], items: str) -> list[Fetched]:
        if not uids:
            return []
        resp = await self.ok(
            self.client.uid("fetch", uid_set(uids), items),
            "UID FETCH",
            timeout=self.ch.timeout * 20,
        )
        return parse_fetch(resp.lines)

    async def mark(self, uids: Sequence[int]) -> None:
        """Flag or move messages we hold durably. A refusal is logged, not
        raised: the mail is safe, marking is a courtesy to humans."""
        ch = self.ch
        if not uids or ch.mark == "none":
            return
        uset = uid_set(uids)
        try:
            if ch.mark in ("seen", "keyword"):
                flag = r"\Seen" if ch.mark == "seen" else ch.keyword
                await self.ok(
                    self.client.uid("store", uset, "+FLAGS.SILENT", f"({flag})"), "UID STORE"
                )
            elif self.has("MOVE"):
                await self.ok(self.client.uid("move", uset, quote_mailbox(ch.move_to)), "UID MOVE")
            else:
                await self.ok(self.client.uid("copy", uset, quote_mailbox(ch.move_to)), "UID COPY")
                await self.ok(
                    self.client.uid("store", uset, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE"
                )
                if self.has("UIDPLUS"):
                    await self.ok(self.client.uid("expunge", uset), "UID EXPUNGE")
        except ConnectionLost:
            raise
        except ImapError as exc:
            ch.log.warning("imap_mark_failed", folder=self.folder, mode=ch.mark, error=str(exc))

    async def ensure_folder(self, name: str) -> None:
        resp = await self.run(self.client.create(quote_mailbox(name)), "CREATE")
        if (
            resp.result != "OK"
            and b"exist"
            not in b" ".join(
                bytes(x) for x in resp.lines if isinstance(x, bytes | bytearray)
            ).lower()
        ):
            self.ch.log.warning("imap_create_failed", folder=name, answer=_text(resp.lines[-1]))

    async def wait_for_news(self) -> None:
        """Return when the server reports a change, or after ``idle_refresh``
        (IDLE), or after ``poll_interval`` (no IDLE)."""
        ch = self.ch
        if not (ch.idle and self.can_idle):
            assert self._lost is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ch.poll_interval):  # not wait_for: see pipeline
                    await asyncio.shield(self._lost)
            if self._lost.done():
                raise ConnectionLost("connection lost while polling")
            await self.ok(self.client.noop(), "NOOP")
            return
        from aioimaplib import STOP_WAIT_SERVER_PUSH

        if self.news:
            return  # reported while we were busy: look now
        idle = await self.run(self.client.idle_start(timeout=ch.idle_refresh), "IDLE")
        try:
            if self.news:
                return  # arrived just before IDLE took effect
            while True:
                try:
                    push = await self.run(
                        self.client.wait_server_push(timeout=ch.idle_refresh + ch.timeout),
                        "IDLE",
                        timeout=ch.idle_refresh + 2 * ch.timeout,
                    )
                except ImapError as exc:
                    if isinstance(exc, ConnectionLost):
                        raise
                    return  # no push within the refresh period: re-check anyway
                if push == STOP_WAIT_SERVER_PUSH:
                    return
                lines = [bytes(x) for x in push if isinstance(x, bytes | bytearray)]
                if any(not _IDLE_NOISE.match(line) for line in lines):
                    return
        finally:
            if self.client.has_pending_idle():
                self.client.idle_done()
                with contextlib.suppress(ImapError):
                    await self.run(asyncio.shield(idle), "IDLE DONE", timeout=ch.timeout)

    async def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        with contextlib.suppress(Exception):
            if self._lost is not None and not self._lost.done():
                await asyncio.wait_for(client.logout(), 2.0)
        with contextlib.suppress(Exception):
            transport = client.protocol.transport
            if transport is not None:
                transport.close()


class FolderSync:
    """Brings one folder's new mail into the intake, chunk by chunk."""

    def __init__(self, channel: ImapChannel, folder: str) -> None:
        self.ch = channel
        self.folder = folder
        self.state = FolderState()
        self.loaded = False

    @property
    def _prefix(self) -> str:
        return f"folder:{self.folder}:"

    async def load(self) -> None:
        state = self.ch.ctx.state
        assert state is not None
        raw = await state.items(self._prefix)
        p = self._prefix
        self.state = FolderState(
            uidvalidity=int(raw[p + "uidvalidity"]) if p + "uidvalidity" in raw else None,
            last_uid=int(raw.get(p + "last_uid", "0")),
            synced_at=float(raw[p + "synced_at"]) if p + "synced_at" in raw else None,
        )
        self.loaded = True

    async def save(self, *, uidvalidity: int | None, last_uid: int) -> None:
        state = self.ch.ctx.state
        assert state is not None
        now = time.time()
        p = self._prefix
        await state.put(
            {
                p + "uidvalidity": None if uidvalidity is None else str(uidvalidity),
                p + "last_uid": str(last_uid),
                p + "synced_at": repr(now),
            },
        )
        self.state = FolderState(uidvalidity=uidvalidity, last_uid=last_uid, synced_at=now)

    async def sync(self, s: ImapSession) -> SyncReport:
        """Everything the cursor has not covered yet; on first start or after a
        UIDVALIDITY change, the recent days first."""
        if not self.loaded:
            await self.load()
        sel = s.selected
        assert sel is not None
        s.news = False  # from here on, any report of new mail means: look again
        report = SyncReport()
        if self.state.uidvalidity is None or self.state.uidvalidity != sel.uidvalidity:
            report.add(await self._resync(s, sel))
        # Always ask: EXISTS from SELECT is stale after an IDLE wake-up.
        new = await s.uids_after(self.state.last_uid)
        report.add(await self.take(s, new, advance=True))
        self.ch.touch()
        return report

    async def _resync(self, s: ImapSession, sel: Selected) -> SyncReport:
        st = self.state
        since: date | None = None
        first: list[int] = []
        if st.uidvalidity is None:
            # First start: what nobody has read yet (or everything), plus
            # the backfill window.
            if self.ch.first_sync != "none" and sel.exists:
                first = await s.search("UNSEEN" if self.ch.first_sync == "unseen" else "ALL")
            if self.ch.backfill_days > 0:
                since = (datetime.now(UTC) - timedelta(days=self.ch.backfill_days)).date()
        else:
            # The server renumbered the folder: UIDs mean nothing any more.
            # Re-read from shortly before the last sync; what we hold already
            # is recognised by Message-ID and not downloaded again.
            last = st.synced_at or time.time()
            since = (datetime.fromtimestamp(last, UTC) - timedelta(days=2)).date()
            self.ch.log.warning(
                "imap_uidvalidity_changed",
                folder=self.folder,
                old=st.uidvalidity,
                new=sel.uidvalidity,
                since=str(since),
            )
        report = SyncReport()
        top = (sel.uidnext - 1) if sel.uidnext else None
        uids = set(first)
        if since is not None and sel.exists:
            uids.update(await s.search("SINCE", imap_date(since)))
        wanted = sorted(u for u in uids if top is None or u <= top)
        if wanted:
            report = await self.take(
                s, wanted, advance=False, backfill=True, progress=self._progress
            )
        if top is None:
            found = await s.search("ALL") if sel.exists else []
            top = max(found, default=0)
        await self.save(uidvalidity=sel.uidvalidity, last_uid=top)
        return report

    def _progress(self, done: int, total: int, report: SyncReport) -> None:
        detail = f"catching up on {self.folder}: {done}/{total} ({report.new} new)"
        self.ch.set_health(True, "starting", detail)
        self.ch.log.info("imap_catch_up", folder=self.folder, done=done, total=total)

    async def take(
        self,
        s: ImapSession,
        uids: Sequence[int],
        *,
        advance: bool,
        backfill: bool = False,
        mark: bool = True,
        progress: Callable[[int, int, SyncReport], None] | None = None,
    ) -> SyncReport:
        """Accept ``uids`` in chunks: look at sizes and Message-IDs, download
        what the store does not hold, accept, mark, then move the cursor."""
        ch = self.ch
        queries = ch.ctx.queries
        assert queries is not None and s.selected is not None
        report = SyncReport()
        total = len(uids)
        for start in range(0, total, ch.fetch_batch):
            chunk = list(uids[start : start + ch.fetch_batch])
            info = await s.fetch(chunk, "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            present = {f.uid: f for f in info}
            ids: dict[int, str] = {}
            for f in info:
                found = extract_msgids(
                    (f.body or b"").decode("ascii", "surrogateescape").partition(":")[2]
                )
                if found:
                    ids[f.uid] = found[0]
            known = await queries.known_external_ids(list(ids.values()))
            sizes = {u: int(m.group(1)) for u, f in present.items() if (m := _SIZE.search(f.text))}
            wanted = [u for u in chunk if u in present and ids.get(u) not in known]
            small = [u for u in wanted if sizes.get(u, 0) <= ch.max_size]
            big = [u for u in wanted if sizes.get(u, 0) > ch.max_size]
            fetched = await s.fetch(small, "(UID INTERNALDATE BODY.PEEK[])")
            if big:
                fetched += await s.fetch(big, "(UID INTERNALDATE BODY.PEEK[HEADER])")
            missing = set(wanted) - {f.uid for f in fetched if f.body is not None}
            if missing:
                # Never move the cursor past a message we did not get, unless
                # it is gone from the folder (expunged meanwhile).
                still = await s.search("UID", uid_set(sorted(missing)))
                if still:
                    raise ImapError(f"the server sent no content for UIDs {uid_set(still)}")
            envelopes: list[Envelope] = []
            for f in fetched:
                if f.body is None:
                    continue  # expunged meanwhile
                meta: dict[str, Any] = {
                    "transport": "imap",
                    "folder": self.folder,
                    "uid": f.uid,
                    "uidvalidity": s.selected.uidvalidity,
                    "internaldate": f.internaldate,
                }
                if backfill:
                    meta["backfill"] = True
                if f.uid in big:
                    meta["oversize"] = {"size": sizes.get(f.uid), "limit": ch.max_size}
                    report.oversize += 1
                envelopes.append(
                    Envelope(
                        channel=ch.name,
                        external_id=envelope_id(f.body),
                        payload=f.body,
                        content_type="message/rfc822",
                        meta=meta,
                    )
                )
            results = await ch.ctx.intake.accept_many(envelopes) if envelopes else []
            new = sum(results)
            report.found += len(chunk)
            report.new += new
            report.known += len(results) - new + (len(present) - len(wanted))
            report.gone += len(chunk) - len(present)
            if mark:
                # Oversized mail stays unread where it is: a human must see it.
                await s.mark([u for u in chunk if u in present and u not in big])
            if advance and chunk:
                await self.save(
                    uidvalidity=s.selected.uidvalidity,
                    last_uid=max(self.state.last_uid, max(chunk)),
                )
            if new:
                ch.log.info("imap_accepted", folder=self.folder, new=new, known=len(chunk) - new)
            if progress is not None:
                progress(min(start + len(chunk), total), total, report)
        return report


class ImapChannel(EmailChannel):
    type = "imap"
    single_consumer = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.tls: str = o.string("tls", "tls", choices=("tls", "none", "starttls"))
        if self.tls == "starttls":
            raise o.error(
                "tls",
                "STARTTLS is not supported (aioimaplib has none): use tls = 'tls' on the"
                " server's implicit-TLS port (usually 993); 'none' only on a trusted network",
            )
        self.host: str = o.string("host")
        self.port: int = o.integer("port", 993 if self.tls == "tls" else 143, min=1)
        if self.port > 65535:
            raise o.error("port", "must be at most 65535")
        self.username: str = o.string("username")
        self.password: Secret = o.secret("password")
        folders = o.strings("folders", None)
        folder = o.string("folder", None)
        if folders is not None and folder is not None:
            raise o.error("folder", "give folder or folders, not both")
        self.folders: list[str] = folders or [folder or "INBOX"]
        if not self.folders or len(set(self.folders)) != len(self.folders):
            raise o.error("folders", "must be a list of distinct folder names")
        self.mark: str = o.string("mark", "seen", choices=MARK_MODES)
        self.keyword: str = o.string("keyword", "$Omnidesk")
        if not re.fullmatch(r"\$?[A-Za-z0-9_.-]+", self.keyword):
            raise o.error("keyword", "must be an IMAP keyword (letters, digits, _ . -, $ first)")
        self.move_to: str = o.string("move_to", "Processed")
        if self.mark == "move" and self.move_to in self.folders:
            raise o.error("move_to", "must not be one of the folders this channel reads")
        self.idle: bool = o.boolean("idle", True)
        self.poll_interval: float = o.number("poll_interval", 60.0, min=0.05)
        self.idle_refresh: float = o.number("idle_refresh", 600.0, min=0.5)
        if self.idle_refresh >= 29 * 60:
            raise o.error("idle_refresh", "must be below 29 minutes (RFC 2177)")
        self.fetch_batch: int = o.integer("fetch_batch", 100, min=1)
        self.first_sync: str = o.string("first_sync", "unseen", choices=("unseen", "all", "none"))
        self.backfill_days: int = o.integer("backfill_days", 0, min=0)
        self.max_size: int = o.integer("max_message_size", 25 * 1024 * 1024, min=1024)
        self.timeout: float = o.number("timeout", 30.0, min=0.1)
        self.max_login_failures: int = o.integer("max_login_failures", 3, min=1)
        self.backoff_base: float = o.number("backoff_base", 1.0, min=0.01)
        self.backoff_max: float = o.number("backoff_max", 300.0, min=0.01)
        verify = o.boolean("verify", True)
        ca_file = o.path("ca_file", None)
        default_from = self.username if "@" in self.username else None
        self.read_sending_options(o, default_from=default_from)
        o.check_unused()
        self.ssl_context: ssl.SSLContext | None = None
        if self.tls == "tls":
            sctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not verify:
                sctx.check_hostname = False
                sctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = sctx
        self._tasks: list[asyncio.Task[None]] = []
        self._sessions: set[ImapSession] = set()
        self.login_failures = 0
        self.logins = 0  # attempts, for tests and metrics

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        if self.ctx.state is None or self.ctx.queries is None:
            raise RuntimeError("the imap channel needs its state and queries (for its cursor)")
        self.set_health(True, "starting", f"connecting to {self.host}:{self.port}")
        for folder in self.folders:
            coro = self._watch(FolderSync(self, folder))
            task = (
                self.ctx.spawn(coro, f"imap-{self.name}-{folder}")
                if self.ctx.spawn is not None
                else asyncio.ensure_future(coro)
            )
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for s in list(self._sessions):
            await s.close()
        self.set_health(True, "stopped")

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return delay * random.uniform(0.8, 1.2)

    async def open_session(self, folder: str) -> ImapSession:
        s = ImapSession(self, folder)
        self._sessions.add(s)
        self.logins += 1
        try:
            await s.open()
        except BaseException:
            await self.close_session(s)
            raise
        self.login_failures = 0
        if self.mark == "move":
            await s.ensure_folder(self.move_to)
        return s

    async def close_session(self, s: ImapSession) -> None:
        self._sessions.discard(s)
        await s.close()

    async def _watch(self, sync: FolderSync) -> None:
        """Connect, catch up, wait for news, catch up... forever; reconnect
        with backoff on any failure."""
        attempt = 0
        while True:
            s: ImapSession | None = None
            try:
                s = await self.open_session(sync.folder)
                report = await sync.sync(s)
                attempt = 0
                how = (
                    "IDLE"
                    if (self.idle and s.can_idle)
                    else f"polling every {self.poll_interval:g}s"
                )
                self.set_health(True, "running", f"{how} on {', '.join(self.folders)}")
                if report.found:
                    self.log.info("imap_synced", folder=sync.folder, **_report_fields(report))
                while True:
                    await s.wait_for_news()
                    await sync.sync(s)
            except asyncio.CancelledError:
                raise
            except LoginRefused as exc:
                self.login_failures += 1
                attempt += 1
                delay = self.backoff(attempt)
                if self.login_failures >= self.max_login_failures:
                    self.set_health(
                        False,
                        "failing",
                        f"{exc} ({self.login_failures} times in a row);"
                        " check username and password",
                    )
                self.log.warning(
                    "imap_login_refused",
                    folder=sync.folder,
                    failures=self.login_failures,
                    retry_in=round(delay, 2),
                )
            except Exception as exc:
                attempt += 1
                delay = self.backoff(attempt)
                reason = str(exc) if isinstance(exc, ImapError) else f"{type(exc).__name__}: {exc}"
                if attempt > 1 or self.health().state != "running":
                    self.set_health(
                        False, "degraded", f"{reason}; retrying in {delay:.0f}s (attempt {attempt})"
                    )
                self.log.warning(
                    "imap_disconnected",
                    folder=sync.folder,
                    error=reason,
                    attempt=attempt,
                    retry_in=round(delay, 2),
                )
            finally:
                if s is not None:
                    await self.close_session(s)
            await asyncio.sleep(delay)

    # -- backfill ----------------------------------------------------------
    async def backfill(
        self,
        since: date,
        *,
        folders: Sequence[str] | None = None,
        mark: bool = True,
        progress: Callable[[str, int, int, SyncReport], None] | None = None,
    ) -> SyncReport:
        """Take every message since ``since`` (the cursor does not move);
        what the store holds already is recognised and not downloaded."""
        total = SyncReport()
        for folder in folders or self.folders:
            s = await self.open_session(folder)
            try:
                uids = (
                    await s.search("SINCE", imap_date(since))
                    if s.selected and s.selected.exists
                    else []
                )
                if progress is not None:
                    progress(folder, 0, len(uids), SyncReport())
                sync = FolderSync(self, folder)
                report = await sync.take(
                    s,
                    uids,
                    advance=False,
                    backfill=True,
                    mark=mark,
                    progress=_bind_folder(progress, folder),
                )
                total.add(report)
            finally:
                await self.close_session(s)
        return total


def _bind_folder(
    progress: Callable[[str, int, int, SyncReport], None] | None, folder: str
) -> Callable[[int, int, SyncReport], None] | None:
    if progress is None:
        return None
    return lambda done, total, report: progress(folder, done, total, report)


def _text(line: Any) -> str:
    if isinstance(line, bytes | bytearray):
        return bytes(line).decode("utf-8", "replace")
    return str(line)


def _report_fields(r: SyncReport) -> dict[str, int]:
    return {"found": r.found, "new": r.new, "known": r.known, "oversize": r.oversize}


# -- the `omnidesk imap backfill` command -------------------------------------
def parse_since(text: str) -> date:
    """``2026-01-31`` or a number of days back (``30d``)."""
    m = re.fullmatch(r"\s*(\d+)\s*d\s*", text)
    if m:
        return (datetime.now(UTC) - timedelta(days=int(m.group(1)))).date()
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since wants a date like 2026-01-31 or a day count like 30d, not {text!r}"
        ) from None


async def run_backfill(
    adapters: Mapping[str, ChannelAdapter],
    channel: str,
    since: date,
    *,
    folders: Sequence[str] | None = None,
    mark: bool = True,
    show_progress: bool = True,
) -> SyncReport:
    """Backfill the named imap channel into the intake. The daemon's
    pipeline processes the messages (now, or when it next runs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    adapter = adapters.get(channel)
    if adapter is None:
        known = ", ".join(n for n, a in adapters.items() if isinstance(a, ImapChannel))
        raise KeyError(f"no enabled channel named {channel!r} (imap channels: {known or 'none'})")
    if not isinstance(adapter, ImapChannel):
        raise KeyError(f"channel {channel!r} is of type {adapter.type!r}, not imap")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(folder: str, done: int, total: int, r: SyncReport) -> None:
            if folder not in tasks:
                tasks[folder] = bar.add_task(folder, total=total, detail="")
            bar.update(
                tasks[folder],
                completed=done,
                total=total,
                detail=f"new {r.new}, known {r.known}"
                + (f", oversize {r.oversize}" if r.oversize else ""),
            )

        return await adapter.backfill(since, folders=folders, mark=mark, progress=progress)


async def _backfill(config: Config, open_adapters: OpenAdapters, **kw: Any) -> SyncReport:
    async with open_adapters(config) as adapters:
        return await run_backfill(adapters, **kw)


def cmd_backfill(args: argparse.Namespace, open_adapters: OpenAdapters) -> int:
    import sys

    from .. import logging as odlog
    from ..config import load_config

    config = load_config(args.config)
    # Problems (a refused login, a cut connection) go to stderr; the progress
    # bar and the summary own stdout.
    odlog.configure("warning")
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            _backfill(
                config,
                open_adapters,
                channel=args.channel,
                since=since,
                folders=args.folder or None,
                mark=not args.no_mark,
                show_progress=not args.quiet,
            )
        )
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    except ImapError as exc:
        print(f"backfill failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.found} messages since {since.isoformat()}: {report.new} new,"
        f" {report.known} already stored"
        + (f", {report.oversize} over the size limit (headers kept)" if report.oversize else "")
        + ("; the daemon's pipeline processes them" if report.new else "")
    )
    return 0


def register_cli(
    sub: Any, add_config: Callable[[argparse.ArgumentParser], None], open_adapters: OpenAdapters
) -> None:
    """``omnidesk imap backfill CHANNEL --since DATE``. ``open_adapters``
    opens the store and builds the configured channels with their ports (the
    composition root's): the adapters by name, the intake drained and the
    store closed on exit."""
    imap = sub.add_parser("imap", help="IMAP mailbox channels")
    isub = imap.add_subparsers(dest="imap_command", required=True)
    bf = isub.add_parser(
        "backfill",
        help="take a mailbox's mail since a date (already stored mail is skipped)",
    )
    bf.add_argument("channel", help="the imap channel's name")
    bf.add_argument("--since", required=True, help="a date (2026-01-31) or days back (30d)")
    bf.add_argument("--folder", action="append", help="only this folder (repeatable)")
    bf.add_argument("--no-mark", action="store_true", help="leave flags and folders as they are")
    bf.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config(bf)
    bf.set_defaults(func=lambda args: cmd_backfill(args, open_adapters))
