"""Finding the adapter class for a ``type =`` in ``[[channels]]``.

Three sources, first match wins: the built-in adapters below; Python modules
in the drop-in folder (top-level ``channels/`` or ``channels_dir`` in the
config), each defining a ``ChannelAdapter`` subclass with a ``type``; and
installed packages exposing the entry point group ``omnidesk.channels``
(``name = type``, value ``module:Class``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .base import ChannelAdapter

# Imported lazily: a daemon with only an API channel never imports an SDK it
# does not use.
BUILTIN: dict[str, str] = {
    "api": "omnidesk.channels.api:ApiChannel",
    "smtp": "omnidesk.channels.smtp:SmtpChannel",
    "imap": "omnidesk.channels.imap:ImapChannel",
    "telegram": "omnidesk.channels.telegram:TelegramChannel",
    "slack": "omnidesk.channels.slack:SlackChannel",
    "messenger": "omnidesk.channels.meta:MessengerChannel",
    "instagram": "omnidesk.channels.meta:InstagramChannel",
    "whatsapp": "omnidesk.channels.meta:WhatsAppChannel",
    "webchat": "omnidesk.channels.webchat:WebchatChannel",
}

ENTRY_POINT_GROUP = "omnidesk.channels"


class UnknownChannelType(LookupError):
    pass


def _load_ref(ref: str) -> type[ChannelAdapter]:
    module, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (inspect.isclass(cls) and issubclass(cls, ChannelAdapter)):
        raise TypeError(f"{ref} is not a ChannelAdapter subclass")
    return cls


def dropin_adapters(folder: Path) -> dict[str, type[ChannelAdapter]]:
    """Adapter classes defined by the ``*.py`` modules in ``folder``."""
    found: dict[str, type[ChannelAdapter]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        mod_name = f"omnidesk_dropin_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, ChannelAdapter)
                and obj is not ChannelAdapter
                and obj.__module__ == mod_name
                and isinstance(getattr(obj, "type", None), str)
            ):
                found[obj.type] = obj
    return found


def adapter_class(
    type_: str, *, dropins: dict[str, type[ChannelAdapter]] | None = None
) -> type[ChannelAdapter]:
    """``dropins`` is what :func:`dropin_adapters` found (scanned once at start)."""
    if type_ in BUILTIN:
        return _load_ref(BUILTIN[type_])
    if dropins and type_ in dropins:
        return dropins[type_]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == type_:
            cls = ep.load()
            if not (inspect.isclass(cls) and issubclass(cls, ChannelAdapter)):
                raise TypeError(f"entry point {ep.value} is not a ChannelAdapter subclass")
            return cls
    known = sorted(BUILTIN)
    raise UnknownChannelType(
        f"unknown channel type {type_!r} (built in: {', '.join(known)}; or a module in"
        f" the drop-in channels folder or an '{ENTRY_POINT_GROUP}' entry point)"
    )
