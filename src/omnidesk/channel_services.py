"""The daemon's side of the ports channel adapters get (``channels/base.py``):
intake, state, queries and contact links, each bound to one channel and
backed by the store.

The store stays out of reach of the adapter: each port keeps what it works
with in closures, not in attributes, so an adapter looking through its
context's attributes finds ports, never the store, the intake's internals or
the daemon (``tests/channels/dropin/test_ports.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .channels.base import Accept, ChannelQueries, ChannelState, ContactLinks
from .config import AssignmentConfig
from .events import Event
from .model import Attachment, Envelope, Identity
from .store import Db, Store
from .store import conversations as convs
from .store.assignment import online_agents
from .store.channel_state import get_state, get_states, known_external_ids, set_states
from .store.contact_admin import merge_contacts
from .store.contacts import link_identity
from .store.inbox import name_authors

Run = Callable[..., Awaitable[Any]]


def _runners(store: Store) -> tuple[Run, Run]:
    """``store.read`` and ``store.write`` without a reference to the store
    in anything an adapter can look at."""

    async def read(fn: Callable[..., Any], *args: Any) -> Any:
        return await store.read(fn, *args)

    async def write(fn: Callable[..., Any], *args: Any) -> Any:
        return await store.write(fn, *args)

    return read, write


class IntakePort(Accept):
    """``accept`` and ``accept_many`` of the daemon's intake, nothing else."""

    __slots__ = ("_accept", "_accept_many")

    def __init__(self, intake: Accept) -> None:
        self._accept: Callable[[Envelope], Awaitable[bool]] = lambda e: intake.accept(e)
        self._accept_many: Callable[[Sequence[Envelope]], Awaitable[list[bool]]] = lambda es: (
            intake.accept_many(es)
        )

    async def accept(self, envelope: Envelope) -> bool:
        return await self._accept(envelope)

    async def accept_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        return await self._accept_many(envelopes)


class StoredState(ChannelState):
    """The ``channel_state`` rows of one channel."""

    __slots__ = ("_channel", "_read", "_write")

    def __init__(self, store: Store, channel: str) -> None:
        self._channel = channel
        self._read, self._write = _runners(store)

    async def get(self, key: str) -> str | None:
        value: str | None = await self._read(get_state, self._channel, key)
        return value

    async def items(self, prefix: str = "") -> dict[str, str]:
        found: dict[str, str] = await self._read(get_states, self._channel, prefix)
        return found

    async def put(self, values: Mapping[str, str | None]) -> None:
        await self._write(set_states, self._channel, dict(values))


def _thread_messages(db: Db, channel: str, thread_key: str) -> list[dict[str, Any]]:
    conv = convs.find_by_thread_key(db, channel, thread_key)
    if conv is None:
        return []
    rows = convs.message_rows(db, int(conv["id"]))
    name_authors(db, rows)
    return rows


def _thread_file(
    db: Db, channel: str, thread_key: str, message_id: int, index: int
) -> Attachment | None:
    rows = db.all(
        "SELECT a.sha256, a.filename, a.content_type FROM attachments a"
        " JOIN messages m ON m.id = a.message_id"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE a.message_id = ? AND c.channel = ? AND c.thread_key = ?"
        " AND m.direction = 'out' AND m.kind <> 'note' ORDER BY a.id",
        (message_id, channel, thread_key),
    )
    if not 0 <= index < len(rows) or rows[index]["sha256"] is None:
        return None
    r = rows[index]
    data = convs.get_blob(db, r["sha256"])
    if data is None:
        return None
    return Attachment(filename=r["filename"], content_type=r["content_type"], data=data)


def _customer_email(db: Db, conversation_id: int) -> str | None:
    address: str | None = db.val(
        "SELECT i.address FROM identities i JOIN conversations c ON c.contact_id = i.contact_id"
        " WHERE c.id = ? AND i.kind = 'email' ORDER BY i.id DESC LIMIT 1",
        (conversation_id,),
    )
    return address


def _agents_online(db: Db, policy: AssignmentConfig) -> bool:
    members = [r["username"] for r in db.all("SELECT DISTINCT username FROM team_members")]
    return bool(online_agents(db, members, policy))


class StoredQueries(ChannelQueries):
    """Read-only questions about one channel's stored data."""

    __slots__ = ("_channel", "_policy", "_read")

    def __init__(self, store: Store, channel: str, policy: AssignmentConfig | None = None) -> None:
        self._channel = channel
        self._policy = policy
        self._read, _ = _runners(store)

    async def known_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        found: set[str] = await self._read(known_external_ids, self._channel, list(external_ids))
        return found

    async def last_inbound_at(self, conversation_id: int, customer: Identity) -> float | None:
        at: float | None = await self._read(
            convs.last_inbound_at, conversation_id, customer.kind, customer.address
        )
        return at

    async def thread_messages(self, thread_key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._read(_thread_messages, self._channel, thread_key)
        return rows

    async def conversation_of(self, thread_key: str) -> int | None:
        conv = await self._read(convs.find_by_thread_key, self._channel, thread_key)
        return None if conv is None else int(conv["id"])

    async def customer_email(self, conversation_id: int) -> str | None:
        email: str | None = await self._read(_customer_email, conversation_id)
        return email

    async def thread_file(self, thread_key: str, message_id: int, index: int) -> Attachment | None:
        found: Attachment | None = await self._read(
            _thread_file, self._channel, thread_key, message_id, index
        )
        return found

    async def agents_online(self) -> bool:
        if self._policy is None:
            return True
        online: bool = await self._read(_agents_online, self._policy)
        return online


class StoredContactLinks(ContactLinks):
    """Identities customers give, attached to their contact (an agent joins
    two contacts; this never does)."""

    __slots__ = ("_write",)

    def __init__(self, store: Store) -> None:
        _, self._write = _runners(store)

    async def link(self, owner: Identity, extra: Identity | None = None) -> str:
        _, outcome = await self._write(link_identity, owner, extra)
        return str(outcome)

    async def confirmed(self, owner: Identity, extra: Identity) -> str:
        outcome: str = await self._write(_merge_confirmed, owner, extra)
        return outcome


def _merge_confirmed(db: Db, owner: Identity, extra: Identity) -> str:
    contact_id, outcome = link_identity(db, owner, extra)
    if outcome != "other":
        return "added" if outcome == "added" else "already"
    target = int(
        db.val(
            "SELECT contact_id FROM identities WHERE kind = ? AND address = ?",
            (extra.kind, extra.address),
        )
    )
    merge_contacts(
        db,
        contact_id,
        target,
        actor=f"{owner.kind}:confirmed",
        reason=f"the visitor confirmed {extra.address} with a code sent there",
    )
    return "merged"


def emitter(channel: str, publish: Callable[[list[Event]], None]) -> Callable[[Event], None]:
    """``ctx.emit``: the event on the live feed, marked with the channel."""

    def emit(event: Event) -> None:
        publish([{**event, "channel": channel}])

    return emit


class RelayMail:
    """``ctx.mail``: a plain e-mail sent at once through an e-mail channel's
    relay (the channels are looked up when sending: they are built after
    the contexts)."""

    __slots__ = ("_adapters",)

    def __init__(self, adapters: Mapping[str, Any]) -> None:
        self._adapters = adapters

    async def __call__(
        self,
        channel: str,
        to: list[str],
        subject: str,
        text: str,
        attachments: Sequence[Attachment] = (),
    ) -> str:
        from email.message import EmailMessage
        from email.policy import SMTP
        from email.utils import formataddr, formatdate, make_msgid

        from .channels.mailout import EmailChannel
        from .email.compose import add_file
        from .model import SendError

        ch = self._adapters.get(channel)
        if not isinstance(ch, EmailChannel) or ch.relay is None or not ch.from_address:
            raise SendError(f"{channel!r} is not an e-mail channel with a relay", retry=False)
        msg = EmailMessage()
        msg["From"] = formataddr((ch.from_name or "", ch.from_address))
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject[:200]
        msg["Date"] = formatdate(localtime=True)
        # od.* at our domain: our own mail, never opened as a conversation.
        msg["Message-ID"] = mid = make_msgid(idstring="od.chat", domain=ch.message_id_domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text)
        for a in attachments:
            if a.data is not None:
                add_file(msg, a)
        await ch.relay.deliver(
            msg.as_bytes(policy=SMTP),
            mail_from=ch.bounce_address or ch.from_address,
            recipients=list(to),
        )
        return mid
