"""Real peers for the e-mail channels: a Dovecot started once per test
session (its own loopback ports, passwd-file users, Maildir in a temp dir),
a TLS CA from trustme, an aiosmtpd relay that captures what we send, a TCP
proxy that can cut connections, and helpers to send mail with real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import itertools
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import pytest
import trustme

from omnidesk.app import Daemon
from omnidesk.channels.imap import quote_mailbox
from tests.conftest import free_port, make_config, require_service

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
SUPPORT = "support@example.com"


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, every: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


def mail(
    subject: str = "Where is my order?",
    body: str = "Hello, where is my order 1234? Thanks, Ann",
    *,
    sender: str = "Ann Customer <ann@example.org>",
    to: str = SUPPORT,
    msgid: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """A plain customer mail; returns (bytes, Message-ID without brackets)."""
    ident = msgid or make_msgid(domain="example.org")[1:-1]
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {formatdate()}",
        f"Message-ID: <{ident}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()
    return raw, ident


# -- TLS -----------------------------------------------------------------------
@dataclass
class Tls:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    t = Tls(ca, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(t.ca_file))
    cert.private_key_pem.write_to_path(str(t.key_file))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(t.cert_file), append=i > 0)
    return t


# -- Dovecot ----------------------------------------------------------------------
@dataclass
class ImapUser:
    name: str
    password: str


@dataclass
class Dovecot:
    root: Path
    port: int
    tls_port: int
    mail_owner: str
    proc: subprocess.Popen[bytes] | None = None
    _users: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    def add_user(self, password: str = "secret") -> ImapUser:
        """A fresh mailbox for one test."""
        user = ImapUser(f"user{next(self._users)}", password)
        self.set_password(user, password)
        return user

    def set_password(self, user: ImapUser, password: str) -> None:
        # One passwd-file per user: Dovecot notices a changed file by its
        # mtime, and one shared file written twice in a second looks unchanged.
        (self.root / "users" / user.name).write_text(f"{user.name}:{{PLAIN}}{password}::::::\n")
        user.password = password

    def maildir(self, user: ImapUser) -> Path:
        return self.root / "mail" / user.name

    def connect(self, user: ImapUser) -> imaplib.IMAP4:
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        m.login(user.name, user.password)
        return m

    def append(
        self,
        user: ImapUser,
        raw: bytes,
        folder: str = "INBOX",
        flags: str = "",
        when: float | None = None,
    ) -> None:
        """Deliver like an MTA would; ``when`` sets the INTERNALDATE (epoch)."""
        m = self.connect(user)
        try:
            box = quote_mailbox(folder)
            if folder != "INBOX":
                m.create(box)
            typ, data = m.append(box, flags or None, when, raw)
            assert typ == "OK", data
        finally:
            m.logout()

    def flags(self, user: ImapUser, folder: str = "INBOX") -> dict[str, str]:
        """Message-ID -> FLAGS of every message in a folder."""
        m = self.connect(user)
        try:
            typ, _ = m.select(quote_mailbox(folder))
            if typ != "OK":
                return {}
            typ, data = m.uid("fetch", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out: dict[str, str] = {}
            for item in data:
                if isinstance(item, tuple):
                    head, body = item
                    mid = body.decode().partition(":")[2].strip().strip("<>")
                    out[mid] = head.decode()
            return out
        finally:
            m.logout()

    def doveadm(self, *args: str) -> str:
        r = subprocess.run(
            [DOVEADM, "-c", str(self.config_file), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    def uidvalidity(self, user: ImapUser, folder: str = "INBOX") -> int:
        out = self.doveadm("mailbox", "status", "-u", user.name, "uidvalidity", folder)
        return int(out.split("uidvalidity=")[1].split()[0])

    def renumber(self, user: ImapUser) -> None:
        """What a server migration does to INBOX: a new UIDVALIDITY and every
        message numbered afresh from 1 (Dovecot rebuilds both from the
        Maildir when its uid list and index are gone)."""
        old = self.uidvalidity(user)
        box = self.maildir(user)
        for p in box.iterdir():
            if p.name.startswith(("dovecot-uidlist", "dovecot.index", "dovecot-keywords")):
                p.unlink()
        # Dovecot derives the new value from the clock: make sure it differs.
        self.doveadm(
            "mailbox", "update", "-u", user.name, "--uid-validity", str(old + 1000), "INBOX"
        )

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        out = (self.root / "master.out").open("ab")
        # -F: stay in the foreground so the fixture owns the process; its
        # stdout/stderr go to a file (it keeps them open).
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_file)], stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"dovecot did not start: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _dovecot_config(root: Path, port: int, tls_port: int, t: Tls) -> tuple[str, str]:
    """The config text and the owner of mail files. Rootless: every service
    runs as the current user. As root: Dovecot's own users for its services,
    and ``nobody`` owns the Maildirs (Dovecot refuses mail access as root)."""
    import grp
    import pwd

    if os.geteuid() == 0:
        internal = ("dovecot", "dovecot") if _has_user("dovecot") else ("nobody", "nogroup")
        login = "dovenull" if _has_user("dovenull") else "nobody"
        owner_uid, owner_gid = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        extra = "first_valid_uid = 1\n"
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        internal, login, owner_uid, owner_gid = (me, group), me, me, group
        extra = f"first_valid_uid = {os.getuid()}\nlast_valid_uid = {os.getuid()}\n"
    text = f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = omnidesk-test-{port}
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal[0]}
default_internal_group = {internal[1]}
default_login_user = {login}
{extra}
ssl = yes
ssl_cert = <{t.cert_file}
ssl_key = <{t.key_file}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
  default_fields = uid={owner_uid} gid={owner_gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
    return text, owner_uid


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def new_dovecot(tls: Tls) -> Dovecot:
    """A Dovecot of its own (not started): its folder, config and ports.
    Remove ``root`` when done."""
    require_service(
        Path(DOVECOT).exists() and Path(DOVEADM).exists(),
        "Dovecot",
        "apt-get install -y dovecot-imapd",
    )
    # Not under pytest's 0700 temp folder: Dovecot's unprivileged processes
    # must reach the Maildirs when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="omnidesk-dovecot-"))
    root.chmod(0o755)
    port, tls_port = free_port(), free_port()
    text, owner = _dovecot_config(root, port, tls_port, tls)
    (root / "dovecot.conf").write_text(text)
    for sub in ("mail", "home", "users"):
        (root / sub).mkdir()
        if sub != "users":
            shutil.chown(root / sub, owner)
    for f in (tls.cert_file, tls.key_file):
        f.chmod(0o644)
    tls.cert_file.parent.chmod(0o755)
    return Dovecot(root=root, port=port, tls_port=tls_port, mail_owner=owner)


@pytest.fixture(scope="session")
def dovecot(tls: Tls) -> Iterator[Dovecot]:
    d = new_dovecot(tls)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)


# -- a TCP proxy that can cut connections ------------------------------------------
class Proxy:
    """Forwards 127.0.0.1:port to a target. ``cut()`` drops every open
    connection; ``cut_after(n)`` drops the connection that carries the
    server's n-th byte from now (mid-FETCH), once; ``refuse`` makes new
    connections fail."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.refuse = False
        self._cut_after: int | None = None
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    def cut(self) -> None:
        for w in list(self._open):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._open.clear()

    def cut_after(self, n: int | None) -> None:
        self._cut_after = n

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse:
            writer.transport.abort()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, uw))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            try:
                while data := await src.read(65536):
                    budget = self._cut_after
                    if down and budget is not None:
                        if len(data) >= budget:
                            dst.write(data[:budget])
                            await dst.drain()
                            self._cut_after = None  # once
                            writer.transport.abort()
                            uw.transport.abort()
                            return
                        self._cut_after = budget - len(data)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, uw, False), pipe(ur, writer, True))
        self._open.discard(writer)
        self._open.discard(uw)


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[[int], Awaitable[Proxy]]]:
    made: list[Proxy] = []

    async def make(target: int) -> Proxy:
        p = Proxy(target)
        await p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.stop()


# -- the relay: an aiosmtpd server capturing what we send ---------------------------
@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> Any:
        from email import message_from_bytes, policy

        return message_from_bytes(self.data, policy=policy.default)


class Relay:
    def __init__(self) -> None:
        self.received: list[Captured] = []
        self.answer: str | None = None  # e.g. "451 4.3.0 busy" to refuse
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answer:
            return self.answer
        self.received.append(
            Captured(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 OK relayed"

    async def start(self, tls: Tls | None = None, auth: tuple[str, str] | None = None) -> None:
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        loop = asyncio.get_running_loop()
        ctx = None
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))

        def authenticator(server: Any, session: Any, envelope: Any, mech: str, data: Any) -> Any:
            ok = (
                auth is not None
                and isinstance(data, LoginPassword)
                and (data.login.decode(), data.password.decode()) == auth
            )
            return AuthResult(success=ok, handled=False)

        def factory() -> SMTP:
            return SMTP(
                self,
                hostname="relay.test",
                tls_context=ctx,
                require_starttls=ctx is not None,
                auth_required=auth is not None,
                authenticator=authenticator if auth else None,
                loop=loop,
            )

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait(self, n: int, timeout: float = 10.0) -> list[Captured]:
        async def enough() -> bool:
            return len(self.received) >= n

        await eventually(enough, timeout)
        return self.received


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay()
    await r.start()
    yield r
    await r.stop()


# -- a daemon with e-mail channels -------------------------------------------------
def smtp_channel(name: str = "email", **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "smtp",
        "port": 0,
        "accept": [SUPPORT, "help.example.com"],
        "from_address": SUPPORT,
        "from_name": "Example Support",
        **options,
    }


def relay_options(relay: Relay, **extra: Any) -> dict[str, Any]:
    return {"relay": {"host": "127.0.0.1", "port": relay.port, "tls": "none", **extra}}


def imap_channel(
    dovecot: Dovecot, user: ImapUser, name: str = "inbox", port: int | None = None, **options: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "imap",
        "host": "127.0.0.1",
        "port": port or dovecot.port,
        "tls": "none",
        "username": user.name,
        "password": user.password,
        "from_address": SUPPORT,
        "timeout": 5,
        "backoff_base": 0.05,
        "backoff_max": 0.5,
        "idle_refresh": 60,
        **options,
    }


@pytest.fixture
def email_daemon(
    tmp_path: Path, store_url: str, daemon_factory: Any
) -> Callable[..., Awaitable[Daemon]]:
    """Start a daemon with the given channels (plus the API channel)."""

    async def start(*channels: dict[str, Any], web: bool = True, **sections: Any) -> Daemon:
        from tests.conftest import API_SECRET

        cfg = make_config(
            tmp_path,
            store_url,
            channels=[{"name": "api", "type": "api", "secret": API_SECRET}, *channels],
            **sections,
        )
        d: Daemon = await daemon_factory(cfg, web=web)
        return d

    return start


def smtp_port(daemon: Daemon, channel: str = "email") -> int:
    from omnidesk.channels.smtp import SmtpChannel

    adapter = daemon.adapters[channel]
    assert isinstance(adapter, SmtpChannel)
    return adapter.bound_port


def send_smtp(
    port: int,
    raw: bytes,
    *,
    mail_from: str = "ann@example.org",
    to: list[str] | None = None,
    starttls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One message with the stdlib client (blocking: run it in a thread)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.org")
        if starttls is not None:
            s.starttls(context=starttls)
            s.ehlo("client.example.org")
        if login is not None:
            s.login(*login)
        return s.sendmail(mail_from, to or [SUPPORT], raw)


async def rows(daemon: Daemon, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    def q(db: Any) -> list[dict[str, Any]]:
        return [{k: r[k] for k in r.keys()} for r in db.all(sql, params)]

    return await daemon.store.read(q)
