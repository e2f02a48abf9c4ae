"""What the two e-mail channels share: the outbound relay, our sending
identity, and turning stored mail into messages.

``smtp`` (a listener an MTA forwards to) and ``imap`` (a mailbox we pull)
receive differently but answer the same way: replies are composed by
:func:`omnidesk.email.compose_reply` and handed to a relay with aiosmtplib.
Settings both read from their ``[[channels]]`` table::

    from_address = "support@example.com"   # From of replies (required to send)
    from_name = "Example Support"
    reply_to = "support@example.com"       # optional Reply-To
    reply_to_token = false                 # Reply-To support+od123@...: threads by address
    message_id_domain = "example.com"      # default: the from_address domain
    bounce_address = "bounces@example.com" # SMTP MAIL FROM, default from_address
    relay = { host = "smtp.example.com", port = 587, tls = "starttls",
              username = "support@example.com", password = "env:RELAY_PASSWORD" }
    customer_from_reply_to = ["forms@shop.example", "crm.example"]  # or true

``customer_from_reply_to``: mail that a system sends on a customer's behalf
(a shop's contact form, a CRM) comes From the system, with the customer in
``Reply-To``. From the addresses or domains listed (``true``: from anyone),
the Reply-To address is the contact, so each customer gets their own
history; the system's address is kept in ``meta["relayed_by"]``. Off by
default: a person's own Reply-To (a shared mailbox, another address of
theirs) is where replies go, but they are still the sender.

Every reply carries our own ``Message-ID``; its key (``mid:<id>``) is the
``SendResult.provider_id`` and a thread key, so the customer's answer and a
bounce of the reply both find their way back.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, ClassVar

from ..config import Options, Secret
from ..email import compose_reply, message_id_key, parse_email, plus_address, synthetic_message_id
from ..email.headers import RAW_POLICY, HeaderMap, extract_msgids, get_header
from ..email.parse import SYNTHETIC_DOMAIN
from ..model import (
    Envelope,
    Identity,
    Message,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
)
from .base import ChannelAdapter, ChannelContext, Health

TLS_MODES = ("none", "starttls", "tls")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
# Longer ids are hashed for the intake key: unique indexes have size limits
# (PostgreSQL b-tree rows) and no real Message-ID comes near this.
MAX_ID_LENGTH = 512

_HEADER_END = (b"\r\n\r\n", b"\n\n")
# A header block the stdlib reads as it is: every line a field (a name, a
# colon) or a continuation, nothing else (no mbox "From " line, no stray CR).
_PLAIN_HEAD = re.compile(rb"[!-9;-~]+:[^\r\n]*(?:\r?\n(?:[!-9;-~]+:|[ \t])[^\r\n]*)*(?:\r?\n)?")
_MESSAGE_ID = re.compile(rb"^message-id:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.I | re.M)
_PLAIN_ID = re.compile(rb"\s*<([!-;=?-~]+)>\s*")


def envelope_id(raw: bytes) -> str:
    """The intake key of a raw e-mail: its Message-ID without brackets (what
    :func:`parse_email` makes ``Message.external_id``), or the parser's
    synthetic id derived from the bytes when it has none. The same mail
    delivered twice, or found in two folders, is then stored once."""
    data = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    data = data.lstrip(b"\r\n")
    ends = [i for i in (data.find(sep) for sep in _HEADER_END) if i >= 0]
    head = data[: min(ends)] if ends else data[:65536]
    plain = _plain_message_id(head)
    if plain is not None:
        return plain
    try:
        parsed = BytesHeaderParser(policy=RAW_POLICY).parsebytes(head)
        ids = extract_msgids(get_header(HeaderMap(parsed), "message-id"))
    except Exception:  # a header block the stdlib chokes on: no usable id
        ids = []
    if not ids and b"message-id" in head.lower():
        # Obsolete or broken header syntax the parser repairs: ask it, so
        # the intake key and the stored message agree.
        try:
            ids = [parse_email(raw, channel="").external_id]
        except NormalizeError:
            ids = []
    ident = ids[0] if ids else synthetic_message_id(raw)
    if len(ident) > MAX_ID_LENGTH:
        ident = synthetic_message_id(ident.encode("utf-8", "surrogateescape"))
    return ident


def _plain_message_id(head: bytes) -> str | None:
    """The id of one well-formed ``Message-ID: <...>`` in a well-formed header
    block, found without the stdlib parser (a tenth of the SMTP listener's CPU
    per mail went to it); None sends every other case to the parser."""
    if _PLAIN_HEAD.fullmatch(head) is None:
        return None
    found = _MESSAGE_ID.findall(head)
    if len(found) != 1:
        return None
    m = _PLAIN_ID.fullmatch(found[0])
    if m is None or len(m.group(1)) > MAX_ID_LENGTH:
        return None
    return m.group(1).decode("ascii")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    host: str
    port: int
    tls: str  # none | starttls | tls
    username: str | None = None
    password: Secret | None = None
    timeout: float = 30.0
    verify: bool = True
    ca_file: Path | None = None
    local_hostname: str | None = None


def read_relay(o: Options) -> RelaySettings | None:
    """The ``relay`` table of a channel, or None when it has none."""
    if "relay" not in o:
        return None
    r = o.table("relay")
    tls = r.string("tls", "starttls", choices=TLS_MODES)
    port = r.integer("port", DEFAULT_PORTS[tls], min=1)
    if port > 65535:
        raise r.error("port", "must be at most 65535")
    settings = RelaySettings(
        host=r.string("host"),
        port=port,
        tls=tls,
        username=r.string("username", None),
        password=r.secret("password", None),
        timeout=r.number("timeout", 30.0, min=0.1),
        verify=r.boolean("verify", True),
        ca_file=r.path("ca_file", None),
        local_hostname=r.string("local_hostname", None),
    )
    r.check_unused()
    if (settings.username is None) != (settings.password is None):
        raise r.error("password" if settings.password is None else "username", "needs both")
    if settings.password is not None and tls == "none" and settings.host not in _LOOPBACK:
        # Credentials in clear over a network: refuse rather than leak them.
        raise r.error("tls", "sending a password needs tls = 'starttls' or 'tls'")
    return settings


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class RelayError(SendError):
    """A relay failure; ``config`` marks problems of ours (login refused,
    TLS unsupported) rather than of the message."""

    def __init__(self, reason: str, *, retry: bool, config: bool = False) -> None:
        super().__init__(reason, retry=retry)
        self.config = config


class MailRelay:
    """Hands composed mail to the configured SMTP relay, one connection per
    message (the outbox sends concurrently)."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self._tls_context: ssl.SSLContext | None = None
        if settings.tls != "none":
            ctx = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
            if not settings.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls_context = ctx

    async def deliver(self, raw: bytes, *, mail_from: str, recipients: list[str]) -> None:
        """Raises :class:`RelayError`: ``retry`` for 4xx answers and network
        trouble, not for 5xx (the relay will never take this message)."""
        import aiosmtplib

        s = self.settings
        try:
            await aiosmtplib.send(
                raw,
                sender=mail_from,
                recipients=recipients,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password.reveal() if s.password is not None else None,
                local_hostname=s.local_hostname,
                timeout=s.timeout,
                use_tls=s.tls == "tls",
                start_tls=s.tls == "starttls",
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise RelayError(
                f"relay refused the recipient: {detail}",
                retry=any(400 <= c < 500 for c in codes),
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not this message: keep it queued while an admin
            # fixes the relay settings (the channel shows unhealthy meanwhile).
            raise RelayError(
                f"relay refused our login: {exc.code} {exc.message}", retry=True, config=True
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise RelayError(
                f"relay answered {exc.code} {exc.message}", retry=not 500 <= exc.code < 600
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise RelayError(f"relay does not support {exc}", retry=True, config=True) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise RelayError(
                f"relay {s.host}:{s.port} unreachable: {type(exc).__name__}: {exc}", retry=True
            ) from None


class EmailChannel(ChannelAdapter):
    """Base of the ``smtp`` and ``imap`` channels: normalize and send."""

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"attachments", "threads", "subject", "html"}
    )

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._relay_problem: str | None = None

    def read_sending_options(self, o: Options, *, default_from: str | None = None) -> None:
        """Read the settings every e-mail channel shares (see module doc),
        ``customer_from_reply_to`` included."""
        # The daemon reads auto_acknowledge itself; mark it known here too so a
        # channel built outside the daemon (the backfill command) validates alike.
        o.string("auto_acknowledge", None)
        self.from_address: str | None = _address_option(o, "from_address", default_from)
        self.from_name: str | None = o.string("from_name", None)
        self.reply_to: str | None = _address_option(o, "reply_to", None)
        self.reply_to_token: bool = o.boolean("reply_to_token", False)
        domain = self.from_address.rpartition("@")[2] if self.from_address else None
        self.message_id_domain: str = o.string("message_id_domain", domain) or "omnidesk.local"
        self.bounce_address: str | None = _address_option(o, "bounce_address", self.from_address)
        self.relay_settings = read_relay(o)
        self.relay = MailRelay(self.relay_settings) if self.relay_settings else None
        if self.relay is not None and not self.from_address:
            raise o.error("from_address", "is required to send replies through the relay")
        relays = o.raw("customer_from_reply_to", False)
        if isinstance(relays, bool):
            self.customer_from_reply_to: bool | frozenset[str] = relays
        else:
            entries = o.strings("customer_from_reply_to")
            bad = [e for e in entries if not e.strip("@ ") or any(c.isspace() for c in e)]
            if bad:
                raise o.error("customer_from_reply_to", f"not an address or domain: {bad[0]!r}")
            self.customer_from_reply_to = frozenset(e.lower().lstrip("@") for e in entries)

    # -- inbound -----------------------------------------------------------
    def normalize(self, envelope: Envelope) -> Message | Skip:
        meta = dict(envelope.meta)
        msg = parse_email(envelope.payload, channel=self.name, envelope=meta)
        ours = f"@{self.message_id_domain}"
        if msg.external_id.startswith("od.") and msg.external_id.endswith(ours):
            # One of our own replies came back (a Bcc, a relay that delivers
            # locally, a mailbox that also receives sent mail): not a customer.
            return Skip("our own outbound message")
        oversize = meta.get("oversize")
        if isinstance(oversize, dict):
            note = (
                f"[omnidesk: this message is {oversize.get('size')} bytes, above the"
                f" {oversize.get('limit')} byte limit of channel {self.name}; only its"
                " headers were stored and it was left in the mailbox]"
            )
            msg.text = f"{note}\n\n{msg.text}".strip()
            msg.meta["oversize"] = oversize
        if meta.get("backfill"):
            # Old mail fetched in bulk: threaded and classified like any other,
            # but nobody is auto-acknowledged for last month's messages.
            msg.meta["backfill"] = True
        self._customer_from_reply_to(msg)
        return msg

    def _customer_from_reply_to(self, msg: Message) -> None:
        """The Reply-To address as the contact, for mail a listed system
        sent on a customer's behalf (``customer_from_reply_to``)."""
        relays = self.customer_from_reply_to
        sender = msg.sender.address
        if not relays or msg.auto or not sender:
            return
        if relays is not True and not (
            isinstance(relays, frozenset)
            and (sender in relays or sender.rpartition("@")[2] in relays)
        ):
            return
        asked = [a for a in self._asked_reply_to(msg.meta) if a != sender]
        if not asked:
            return
        first = msg.meta["reply_to"][0] == asked[0]
        name = msg.meta.get("reply_to_name") if first else None
        msg.meta["relayed_by"] = sender
        msg.sender = Identity(kind="email", address=asked[0], display_name=name or None)

    # -- outbound ----------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        if self.relay is None or not self.from_address or not self.bounce_address:
            raise SendError(
                f"channel {self.name} has no relay configured to send replies", retry=False
            )
        if message.recipient.kind != "email" or "@" not in message.recipient.address:
            raise SendError(
                f"cannot e-mail {message.recipient.kind} {message.recipient.address!r}",
                retry=False,
            )
        to = self._answer_to(message)
        reply_to = self.reply_to
        if self.reply_to_token:
            reply_to = plus_address(reply_to or self.from_address, message.conversation_id)
        parent = message.reply_to_external_id
        try:
            raw, mid = compose_reply(
                from_addr=self.from_address,
                from_name=self.from_name,
                to=to,
                subject=message.subject,
                text=message.text,
                html=message.html,
                conversation_id=message.conversation_id,
                in_reply_to=parent if parent and not _synthetic(parent) else None,
                references=[
                    r for r in message.references if r.startswith("mid:") and not _synthetic(r)
                ],
                domain=self.message_id_domain,
                automatic=message.automatic,
                reply_to=reply_to,
                attachments=message.attachments,
            )
        except ValueError as exc:
            raise SendError(f"cannot compose the e-mail: {exc}", retry=False) from None
        try:
            await self.relay.deliver(raw, mail_from=self.bounce_address, recipients=to)
        except RelayError as exc:
            if exc.config:
                self._relay_problem = exc.reason
            raise
        self._relay_problem = None
        key = message_id_key(mid)
        return SendResult(provider_id=key, keys=[key])

    def _answer_to(self, message: OutboundMessage) -> list[str]:
        """Where a reply goes: the addresses of the customer's Reply-To when
        their mail had one (a mail client's "Reply" does the same: a web form
        relayed by a shop's server, someone writing from a shared mailbox),
        else the sender. Not for automatic mail (an acknowledgement goes to
        whoever sent the message, RFC 3834), and never to our own addresses."""
        if not message.automatic:
            asked = self._asked_reply_to(message.meta)
            if asked:
                return list(dict.fromkeys(asked))
        return [message.recipient.address]

    def _asked_reply_to(self, meta: Mapping[str, Any]) -> list[str]:
        """The addresses of a message's Reply-To, without our own."""
        own = {a.lower() for a in (self.from_address, self.reply_to, self.bounce_address) if a}
        return [
            a
            for a in meta.get("reply_to", [])
            if isinstance(a, str) and "@" in a and a.lower() not in own
        ]

    def health(self) -> Health:
        h = super().health()
        if self._relay_problem is None:
            return h
        detail = f"{h.detail}; " if h.detail else ""
        return Health(
            ok=False,
            state="degraded",
            detail=f"{detail}outbound: {self._relay_problem}",
            since=h.since,
            last_activity=h.last_activity,
        )


def _synthetic(ref: str) -> bool:
    return ref.endswith(f"@{SYNTHETIC_DOMAIN}")


def _address_option(o: Options, name: str, default: Any) -> Any:
    value = o.string(name, default)
    if value is not None:
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in value):
            raise o.error(name, f"must be an e-mail address (got {value!r})")
    return value
