"""Files in a reply, checked against what a provider's media API takes.

Each provider documents which content types it accepts as which kind of
message (WhatsApp's image/document/audio/video, WeChat's image/voice/video/
file ...) and how large each may be. An adapter describes that as a list of
``MediaKind`` and asks ``media_plan`` before it sends anything: a file the
provider would refuse fails the reply at once, with a reason an agent can act
on (``SendError(retry=False)``), instead of half a reply going out and the
rest failing on every retry."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

from ..model import Attachment, OutboundMessage, SendError


@dataclass(frozen=True, slots=True)
class MediaKind:
    """One kind of media message: the provider's name for it, the content
    types it takes (empty: any type not taken by an earlier kind) and the
    largest file in bytes."""

    name: str
    types: frozenset[str]  # exact types, or ``audio/*`` for a whole family
    max_bytes: int

    def takes(self, content_type: str) -> bool:
        if not self.types or content_type in self.types:
            return True
        family = content_type.split("/", 1)[0] + "/*"
        return family in self.types


def content_type_of(a: Attachment) -> str:
    """The attachment's bare content type, lower case; a generic one
    (``application/octet-stream``) is guessed again from the file name."""
    ctype = (a.content_type or "").split(";", 1)[0].strip().lower()
    if not ctype or ctype == "application/octet-stream":
        guessed, _ = mimetypes.guess_type(a.filename or "")
        ctype = guessed or ctype or "application/octet-stream"
    return ctype


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.0f} KB"


def media_plan(
    message: OutboundMessage, kinds: Sequence[MediaKind], product: str
) -> list[tuple[Attachment, MediaKind, str]]:
    """Every file of the reply with the kind it goes out as and its content
    type; a file the provider does not take fails the whole reply before
    anything is sent, naming the file and what the provider allows."""
    plan: list[tuple[Attachment, MediaKind, str]] = []
    for a in message.attachments:
        if a.data is None:
            continue  # only a provider reference: nothing to upload
        ctype = content_type_of(a)
        name = a.filename or ctype
        kind = next((k for k in kinds if k.takes(ctype)), None)
        if kind is None:
            allowed = ", ".join(sorted({t for k in kinds for t in k.types}))
            raise SendError(
                f"{product} cannot send {name} ({ctype}): it takes only {allowed};"
                " share a link to the file instead",
                retry=False,
            )
        if len(a.data) > kind.max_bytes:
            raise SendError(
                f"{name} is too large for {product} ({_size(len(a.data))};"
                f" {'an' if kind.name[0] in 'aeiou' else 'a'} {kind.name}"
                f" may be at most {_size(kind.max_bytes)}); share a link to the file instead",
                retry=False,
            )
        if not a.data:
            raise SendError(f"{name} is empty: {product} refuses empty files", retry=False)
        plan.append((a, kind, ctype))
    return plan


def upload_name(a: Attachment, ctype: str, *, ascii: bool = False) -> str:
    """A file name for an upload: the attachment's own, else one made from
    its type (providers want an extension to tell the format); ``ascii``
    drops other characters (Meta's attachment upload refuses them)."""
    name = a.filename or ""
    if ascii:
        name = name.encode("ascii", "ignore").decode().strip()
        if name.startswith("."):
            name = ""
    if name:
        return name
    ext = mimetypes.guess_extension(ctype) or ".bin"
    return f"file{ext}"
