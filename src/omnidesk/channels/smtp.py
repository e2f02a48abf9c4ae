"""The ``smtp`` channel: an SMTP listener (aiosmtpd) your MTA forwards to.

::

    [[channels]]
    name = "email"
    type = "smtp"
    host = "127.0.0.1"          # default; 0.0.0.0 to listen on every interface
    port = 2525
    accept = ["support@example.com", "example.org"]   # addresses or whole domains; "*" = any
    max_message_size = 26214400 # bytes; larger mail is refused with 552
    max_recipients = 100
    max_connections = 100       # more concurrent clients get 421 (try later)
    timeout = 300               # idle seconds before a client is dropped
    hostname = "mx.example.com" # in the greeting (default: the machine's name)
    tls_cert = "/etc/omnidesk/smtp.pem"  # enables STARTTLS (with tls_key)
    tls_key = "/etc/omnidesk/smtp.key"
    tls_mode = "starttls"       # or "implicit" (TLS from the first byte, port 465 style)
    require_tls = false         # refuse MAIL before STARTTLS
    auth_users = { mta = "env:SMTP_MTA_PASSWORD" }   # AUTH PLAIN/LOGIN; then required
    auth_required = true        # default: true when auth_users is set
    # plus the sending settings of every e-mail channel (see mailout.py):
    from_address = "support@example.com"
    relay = { host = "smtp.example.com", port = 587, tls = "starttls", ... }

Acknowledgement: ``250`` is answered only after ``intake.accept()`` returned,
i.e. after the raw message is committed; any failure before that answers
``451`` so the sending MTA keeps the message and retries. Recipients we do
not accept get ``550`` at RCPT time, oversized mail ``552``. The envelope
(MAIL FROM, RCPT TO, peer, HELO, TLS, AUTH user) is kept in the envelope's
meta, and the message itself is stored byte for byte.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
import socket
import ssl
from typing import Any

from ..config import Secret
from ..model import Envelope
from ..startup import listen_failure
from .base import ChannelContext
from .mailout import EmailChannel, envelope_id

# RFC 5321 caps lines at 1,000 octets, but real mail breaks it (long HTML
# lines, base64 without wrapping) and MTAs pass it on; refusing would bounce a
# customer's message. Keep a bound so one client cannot buffer without end.
LINE_LIMIT = 1024 * 1024
# RFC 5321 4.5.3.1.6 answers 500; 5.5.2 (syntax) is the nearest enhanced code.
LINE_TOO_LONG = (
    f"500 5.5.2 Line too long: more than {LINE_LIMIT} bytes without a line break"
    " (RFC 5321 4.5.3.1.6)"
)
ACCEPT_TIMEOUT = 120.0  # seconds; an MTA waits up to 10 minutes after DATA
BACKLOG = 2048  # connections the kernel queues before the listener accepts them

# ``<local@domain>`` as nearly every MTA writes it in MAIL FROM and RCPT TO: a
# dot-atom local part and a host name, then parameters or nothing.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+|\Z)"
)


def _strip_tag(address: str) -> str:
    """``support+od123@example.com`` -> ``support@example.com`` (lower-case)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}".lower()


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of a MAIL FROM / RCPT TO argument written as
    nearly every MTA writes it, or None for anything else (quoted local parts,
    address literals, source routes, comments, ``<>``), which aiosmtpd's own
    ``_getaddr`` then parses. aiosmtpd 1.4 defines a ``typing.Protocol``
    class on every call there and runs the e-mail header parser: together a
    fifth of the listener's CPU per mail. Same answers (a test compares)."""
    m = _PLAIN_PATH.match(arg)
    if m is None or arg.startswith("(", m.end()):
        return None
    return m.group(1), arg[m.end() :]


class RecipientPolicy:
    """Which RCPT TO addresses the listener takes: exact addresses (any
    ``+tag`` ignored, so reply addresses with conversation tokens pass),
    whole domains (``example.org`` or ``@example.org``), or ``*``."""

    def __init__(self, entries: list[str]) -> None:
        self.any = "*" in entries
        self.addresses = {_strip_tag(e) for e in entries if "@" in e.lstrip("@")}
        self.domains = {
            e.lstrip("@").lower() for e in entries if e != "*" and "@" not in e.lstrip("@")
        }

    def accepts(self, address: str) -> bool:
        if self.any:
            return True
        if "@" not in address:
            return False
        bare = _strip_tag(address)
        return bare in self.addresses or bare.rpartition("@")[2] in self.domains


class _Handler:
    """aiosmtpd hooks; the protocol logic lives in aiosmtpd."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        ch = self.channel
        if not ch.policy.accepts(address):
            return f"550 5.1.1 <{address}>: recipient not accepted here"
        if len(envelope.rcpt_tos) >= ch.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return await self.channel.receive(session, envelope)

    async def handle_exception(self, error: Exception) -> str:
        # Never a 5xx for our own fault: the sender would give up on the mail.
        self.channel.log.error("smtp_session_error", error=f"{type(error).__name__}: {error}")
        return "451 4.3.0 Temporary local problem, please try again later"


class _DataReader:
    """The bookkeeping of ``read_data``: what is kept, the section's size and
    the longest line seen."""

    __slots__ = ("chunks", "error", "line", "size", "size_limit")

    def __init__(self, size_limit: int | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0  # bytes as sent (dot-stuffing included), without the final "."
        self.line = 0  # length of the line being read so far
        self.error = ""
        self.size_limit = size_limit

    def take(self, piece: bytes, sent: int) -> None:
        """``piece`` is kept (if no error so far); ``sent`` bytes of the
        section it stands for (one more than the piece after a dropped dot).
        Lines end at LF, with or without a CR before it: many clients and
        scripts send bare LF, and a 1.5 MB mail so sent is many lines, not one."""
        self.size += sent
        first_end = piece.find(b"\n")
        if first_end < 0:
            longest = self.line = self.line + sent
        else:
            longest = self.line + first_end + 1 + (sent - len(piece))
            if len(piece) > LINE_LIMIT:  # only then can a line inside it be too long
                longest = max(longest, *(len(x) + 1 for x in piece[first_end:].split(b"\n")))
            self.line = len(piece) - piece.rfind(b"\n") - 1
        if longest > LINE_LIMIT:
            self.error = self.error or LINE_TOO_LONG
        if self.size_limit and self.size > self.size_limit:
            self.error = self.error or "552 Error: Too much mail data"
        if self.error:
            self.chunks.clear()  # read on to the end, keeping nothing
        else:
            self.chunks.append(piece)


async def _until(reader: asyncio.StreamReader, separator: bytes) -> tuple[bytes, bool]:
    """(bytes up to and with ``separator``, True), or, where the reader's
    limit comes first, (as much as can be taken without splitting a
    separator, False); the reader keeps the rest."""
    try:
        return await reader.readuntil(separator), True
    except asyncio.LimitOverrunError as exc:
        return await reader.readexactly(exc.consumed), False


async def read_data(reader: asyncio.StreamReader, size_limit: int | None) -> bytes | str:
    """The DATA section after the 354, up to the lone dot, dot-unstuffed.
    Returns the message, or the error reply once everything up to the dot is
    read: 552 past ``size_limit``, 500 for a line longer than ``LINE_LIMIT``
    (lines end at LF, CRLF or bare; the end and dot-stuffing follow CRLF only,
    as RFC 5321 and aiosmtpd have them).

    Read in blocks that end only where a line starts with a dot (the end, or
    a dot the client doubled), rather than line by line: aiosmtpd 1.4 reads
    each line with its own ``readuntil`` and Python work around it, most of
    its CPU per mail, and even a search for ``.<CRLF>`` stops at every line
    that ends a sentence. A line-start dot is always dropped (RFC 5321
    4.5.2), which is the unstuffing. The reader's limit (``LINE_LIMIT``)
    bounds each block."""
    data = _DataReader(size_limit)
    at_line_start = True  # where the DATA command's line ended
    while True:
        if at_line_start:
            byte = await reader.readexactly(1)
            if byte != b".":
                # A line that starts with a dot can only follow a CRLF that the
                # block search below sees: past an empty line (or CRs before
                # a CRLF) byte by byte, to be at a line start again.
                data.take(byte, 1)
                crs = 0
                while byte == b"\r":
                    crs += 1
                    byte = await reader.readexactly(1)
                    data.take(byte, 1)
                at_line_start = crs > 0 and byte == b"\n"
                continue
        else:
            # Up to the next dot that starts a line, which is then dropped.
            piece, found = await _until(reader, b"\r\n.")
            if not found:
                data.take(piece, len(piece))
                continue
            data.take(piece[:-1], len(piece) - 1)
        # Just after a line-start dot: alone on its line, it ends the section.
        rest, found = await _until(reader, b"\r\n")
        if rest == b"\r\n":
            break
        data.take(rest, len(rest) + 1)
        while not found:  # a dotted line longer than the reader's limit
            rest, found = await _until(reader, b"\r\n")
            data.take(rest, len(rest))
        at_line_start = True
    return data.error or b"".join(data.chunks)


@functools.cache
def _protocol_class() -> Any:
    from aiosmtpd.smtp import MISSING, SMTP, syntax

    class _Smtp(SMTP):
        line_length_limit = LINE_LIMIT

        def __init__(self, channel: SmtpChannel, **kw: Any) -> None:
            self._channel = channel
            self._counted = True
            super().__init__(**kw)

        def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
            plain = plain_path(arg)
            if plain is None:
                return super()._getaddr(arg)
            if self.local_part_limit and len(plain[0].rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return plain

        @syntax("DATA")
        async def smtp_DATA(self, arg: str) -> None:
            # aiosmtpd's own, but the section is read by ``read_data``; with
            # decode_data off and a handle_DATA hook, as this listener has.
            if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
                return
            assert self.envelope is not None
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            if arg:
                await self.push("501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                data = await read_data(self._reader, self.data_size_limit)
            except asyncio.CancelledError:
                self._writer.close()  # the client hung up in the middle
                raise
            if isinstance(data, str):
                await self.push(data)
                self._set_post_data_state()
                return
            self.envelope.content = self.envelope.original_content = data
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)

        def connection_lost(self, error: Exception | None) -> None:
            if self._counted:
                self._counted = False
                self._channel.active -= 1
            super().connection_lost(error)

    return _Smtp


class _Refuse(asyncio.Protocol):
    """Answers a client over the connection limit and hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
        transport.close()


class SmtpChannel(EmailChannel):
    type = "smtp"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options
        self.host: str = o.string("host", "127.0.0.1")
        self.port: int = o.integer("port", 2525, min=0)
        if self.port > 65535:
            raise o.error("port", "must be at most 65535")
        accept = o.strings("accept")
        if not accept:
            raise o.error("accept", "list the addresses or domains to accept (or '*' for any)")
        for entry in accept:
            if entry != "*" and (not entry.strip() or any(c.isspace() for c in entry)):
                raise o.error("accept", f"not an address or domain: {entry!r}")
        self.policy = RecipientPolicy(accept)
        self.max_size: int = o.integer("max_message_size", 25 * 1024 * 1024, min=1024)
        self.max_recipients: int = o.integer("max_recipients", 100, min=1)
        self.max_connections: int = o.integer("max_connections", 100, min=1)
        self.timeout: float = o.number("timeout", 300.0, min=1.0)
        self.hostname: str = o.string("hostname", None) or socket.gethostname()
        cert = o.path("tls_cert", None)
        key = o.path("tls_key", None)
        if (cert is None) != (key is None):
            raise o.error(
                "tls_key" if key is None else "tls_cert", "needs both tls_cert and tls_key"
            )
        self.tls_mode: str = o.string("tls_mode", "starttls", choices=("starttls", "implicit"))
        self.require_tls: bool = o.boolean("require_tls", False)
        self.tls_context: ssl.SSLContext | None = None
        if cert is not None:
            ctx_ = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx_.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                raise o.error("tls_cert", f"cannot load the certificate and key: {exc}") from None
            self.tls_context = ctx_
        elif self.require_tls:
            raise o.error("require_tls", "needs tls_cert and tls_key")
        users = o.table("auth_users")
        self.auth_users: dict[str, Secret] = {
            name: users.secret(name) for name in list(users.keys())
        }
        users.check_unused()
        self.auth_required: bool = o.boolean("auth_required", bool(self.auth_users))
        self.allow_plaintext_auth: bool = o.boolean("allow_plaintext_auth", False)
        if self.auth_users and self.tls_context is None and not self.allow_plaintext_auth:
            raise o.error(
                "auth_users",
                "AUTH sends passwords: configure tls_cert/tls_key"
                " (or allow_plaintext_auth = true on a trusted network)",
            )
        if self.auth_required and not self.auth_users:
            raise o.error("auth_required", "needs auth_users")
        self.read_sending_options(o)
        o.check_unused()
        self.active = 0
        self._server: asyncio.Server | None = None
        self._handler = _Handler(self)
        self._smtp_class = _protocol_class()

    # -- listener ----------------------------------------------------------
    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            expected = self.auth_users.get(user)
            given = auth_data.password
            if expected is not None and hmac.compare_digest(expected.reveal().encode(), given):
                return AuthResult(success=True, auth_data=user)
            self.log.info("smtp_auth_refused", user=user, peer=str(session.peer))
        return AuthResult(success=False, handled=False)

    def _make_protocol(self) -> asyncio.BaseProtocol:
        if self.active >= self.max_connections:
            return _Refuse()
        self.active += 1
        implicit = self.tls_context is not None and self.tls_mode == "implicit"
        return self._smtp_class(  # type: ignore[no-any-return,unused-ignore]
            self,
            handler=self._handler,
            data_size_limit=self.max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="omnidesk ESMTP",
            # On an implicit-TLS listener aiosmtpd sees no STARTTLS and would
            # refuse AUTH; the connection is encrypted all the same.
            tls_context=None if implicit else self.tls_context,
            require_starttls=self.require_tls and not implicit,
            timeout=self.timeout,
            auth_required=self.auth_required,
            auth_require_tls=not (self.allow_plaintext_auth or implicit),
            authenticator=self._authenticate if self.auth_users else None,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        implicit = self.tls_context is not None and self.tls_mode == "implicit"
        try:
            self._server = await loop.create_server(
                self._make_protocol,
                self.host,
                self.port,
                ssl=self.tls_context if implicit else None,
                reuse_address=True,
                # asyncio's default of 100 pending connections drops the SYNs
                # of a burst beyond it (clients then wait seconds for the
                # retransmit): uvicorn's 2048, capped by net.core.somaxconn.
                backlog=BACKLOG,
            )
        except OSError as exc:
            failure = listen_failure(f"smtp channel {self.name}", self.host, self.port, exc)
            self.set_health(False, "failing", str(failure))
            raise failure from None
        self.set_health(True, "running", f"listening on {self.host}:{self.bound_port}")

    @property
    def bound_port(self) -> int:
        """The port actually bound (``port = 0`` picks a free one)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.set_health(True, "stopped")

    async def receive(self, session: Any, envelope: Any) -> str:
        """Store one message; the SMTP answer says whether it is ours now."""
        raw = envelope.original_content
        if not isinstance(raw, bytes | bytearray):
            return "451 4.3.0 No message data, please try again"
        raw = bytes(raw)
        meta: dict[str, Any] = {
            "transport": "smtp",
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": str(session.peer[0]) if session.peer else None,
            "helo": session.host_name,
            "tls": session.ssl is not None
            or (self.tls_context is not None and self.tls_mode == "implicit"),
        }
        if session.authenticated:
            meta["auth_user"] = session.auth_data
        try:
            ident = envelope_id(raw)
            env = Envelope(
                channel=self.name,
                external_id=ident,
                payload=raw,
                content_type="message/rfc822",
                meta=meta,
            )
            async with asyncio.timeout(ACCEPT_TIMEOUT):  # no extra task, unlike wait_for
                await self.ctx.intake.accept(env)
        except Exception as exc:
            # Nothing acknowledged: the sender keeps the mail and retries (a
            # commit that lands late is deduplicated on the retry).
            self.log.warning("smtp_accept_failed", error=f"{type(exc).__name__}: {exc}")
            return "451 4.3.0 Could not store the message now, please try again later"
        self.touch()
        shown = ident.encode("ascii", "replace").decode()[:200]
        return f"250 2.0.0 OK: queued as <{shown}>"
