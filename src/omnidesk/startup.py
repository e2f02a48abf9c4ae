"""Start-up failures: one line naming the cause, and the exit code.

The daemon starts all or nothing. Whatever stops it from starting (a port in
use, a data directory it cannot write, a database it cannot reach, rules that
do not load, a channel that does not start) is raised as a
:class:`StartupError`; the daemon closes what it had opened, and ``omnidesk
run`` prints the message as one line and exits with the error's code:
1 for the environment (something outside the configuration is wrong or
missing) and 2 for the configuration.
"""

from __future__ import annotations

import errno
import getpass
import socket
import tempfile
from pathlib import Path

ENVIRONMENT = 1
CONFIGURATION = 2


class StartupError(Exception):
    """The daemon cannot start; ``str()`` is the one line to show."""

    def __init__(self, message: str, code: int = ENVIRONMENT) -> None:
        super().__init__(message)
        self.code = code


def listen_failure(what: str, host: str, port: int, exc: OSError) -> StartupError:
    """A listener that could not bind, named for a person: which port, whose."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"port {port} ({what}) is already in use")
    if exc.errno == errno.EACCES:
        return StartupError(
            f"port {port} ({what}): permission denied (ports below 1024 need privileges)"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return StartupError(
            f"cannot listen on {host}:{port} ({what}): {host} is not an address of this machine"
        )
    reason = exc.strerror or str(exc)
    return StartupError(f"cannot listen on {host}:{port} ({what}): {reason}")


def bind(what: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a :class:`StartupError` naming the port.

    Bound before anything is served, so a port in use stops the start instead
    of leaving a daemon without that listener."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise listen_failure(what, host, port, exc) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_failure(what, host, port, exc) from None
    return sock


def check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be written in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except FileExistsError:
        raise StartupError(f"data directory {directory} is a file, not a directory") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            reason = f"{reason} (omnidesk runs as user {getpass.getuser()})"
        raise StartupError(f"data directory {directory} is not writable: {reason}") from None
