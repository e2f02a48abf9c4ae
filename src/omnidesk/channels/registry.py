"""Finding the adapter class for a ``type =`` in ``[[channels]]``.

Three sources:

1. the built-in adapters below;
2. Python modules in the drop-in folder (``channels_dir`` in ``[daemon]``,
   by default ``channels/`` next to the config file), each defining one or
   more ``ChannelAdapter`` subclasses with a ``type``; files whose name starts
   with ``_`` are skipped (helpers, work in progress);
3. installed packages exposing the entry point group ``omnidesk.channels``
   (``name = type``, value ``module:Class``).

A type name belongs to exactly one source. Built-in names are reserved: a
drop-in module or entry point claiming one is refused at start-up rather than
silently replacing (or being silently ignored in favour of) the adapter the
docs describe. Two drop-in modules, or two installed distributions, claiming
the same name are refused too. A drop-in file that does not import, or defines
no adapter, is an error naming the file. All of these are
:class:`ChannelLoadError` (a :class:`~omnidesk.config.ConfigError`): the
daemon does not start and ``omnidesk run`` exits with code 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from importlib.metadata import EntryPoint, distributions
from pathlib import Path

from ..config import ConfigError
from .base import ChannelAdapter

# Imported lazily: a daemon with only an API channel never imports an SDK it
# does not use.
BUILTIN: dict[str, str] = {
    "api": "omnidesk.channels.api:ApiChannel",
    "smtp": "omnidesk.channels.smtp:SmtpChannel",
    "imap": "omnidesk.channels.imap:ImapChannel",
    "telegram": "omnidesk.channels.telegram:TelegramChannel",
    "slack": "omnidesk.channels.slack:SlackChannel",
    "messenger": "omnidesk.channels.meta.messenger:MessengerChannel",
    "instagram": "omnidesk.channels.meta.instagram:InstagramChannel",
    "whatsapp": "omnidesk.channels.meta.whatsapp:WhatsAppChannel",
    "webchat": "omnidesk.channels.webchat:WebchatChannel",
    "wechat": "omnidesk.channels.wechat.official:WeChatOfficialChannel",
    "wechat_kf": "omnidesk.channels.wechat.kf:WeChatKfChannel",
    "sms": "omnidesk.channels.sms:SmsChannel",
    "x": "omnidesk.channels.x:XChannel",
    "qq": "omnidesk.channels.qq:QqChannel",
}

ENTRY_POINT_GROUP = "omnidesk.channels"

# Type names appear in config files, URLs (``/{type}/{name}/...`` for adapter
# routes) and metrics labels: keep them plain.
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class UnknownChannelType(LookupError):
    pass


class ChannelLoadError(ConfigError):
    """A built-in, drop-in or entry-point adapter that cannot be used.
    ``file`` names the module file or the entry point."""


def _short_error(exc: BaseException, path: Path | None = None) -> str:
    """One line: the exception, and where in ``path`` it was raised."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" (line {exc.lineno})"
    elif path is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        if frames:
            where = f" (line {frames[-1].lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


def _check_class(cls: object, origin: str, file: str | Path) -> type[ChannelAdapter]:
    if not (inspect.isclass(cls) and issubclass(cls, ChannelAdapter)):
        raise ChannelLoadError(file, "(adapter)", f"{origin} is not a ChannelAdapter subclass")
    type_ = getattr(cls, "type", None)
    if not isinstance(type_, str) or not TYPE_NAME.match(type_):
        raise ChannelLoadError(
            file,
            "(adapter)",
            f"{origin}: 'type' must be lower-case letters, digits, '-' or '_'"
            f" starting with a letter (got {type_!r})",
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise ChannelLoadError(file, "(adapter)", f"{origin} does not implement {missing}")
    return cls


def _load_ref(type_: str, ref: str) -> type[ChannelAdapter]:
    module, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        raise ChannelLoadError(
            None,
            f"channel type {type_!r}",
            f"the built-in adapter {ref} cannot be loaded: {_short_error(exc)}",
        ) from exc
    return _check_class(cls, ref, f"built-in {ref}")


def _module_name(path: Path) -> str:
    return "omnidesk_dropin_" + re.sub(r"\W", "_", path.stem)


def _load_module_adapters(path: Path) -> list[type[ChannelAdapter]]:
    mod_name = _module_name(path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ChannelLoadError(path, "(import)", "not a loadable Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before running so dataclasses, pickling and typing.get_type_hints
    # inside the module can find it.
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(mod_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ChannelLoadError(
            path, "(import)", f"the drop-in channel module failed: {_short_error(exc, path)}"
        ) from exc
    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, ChannelAdapter)
        and obj is not ChannelAdapter
        and obj.__module__ == mod_name
        # A shared base class of several adapters has no type of its own.
        and "type" in vars(obj)
    ]
    if not classes:
        raise ChannelLoadError(
            path,
            "(adapter)",
            "defines no channel adapter (a ChannelAdapter subclass with a 'type');"
            " rename helper modules to start with '_'",
        )
    return [_check_class(c, f"{path.name}:{c.__name__}", path) for c in classes]


def dropin_adapters(folder: Path) -> dict[str, type[ChannelAdapter]]:
    """Adapter classes defined by the ``*.py`` modules in ``folder`` (a
    missing folder has none). Raises :class:`ChannelLoadError` naming the file
    for a module that fails to import, defines no adapter, or claims a type
    that is built in or already defined by another module."""
    found: dict[str, type[ChannelAdapter]] = {}
    origin: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for cls in _load_module_adapters(path):
            if cls.type in BUILTIN:
                raise ChannelLoadError(
                    path,
                    "(adapter)",
                    f"{cls.__name__} claims type {cls.type!r}, which is a built-in channel type;"
                    " give the drop-in its own type name",
                )
            if cls.type in origin:
                raise ChannelLoadError(
                    path,
                    "(adapter)",
                    f"{cls.__name__} claims type {cls.type!r}, already defined in"
                    f" {origin[cls.type]}",
                )
            found[cls.type] = cls
            origin[cls.type] = path
    return found


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def entry_point_types() -> dict[str, list[EntryPoint]]:
    """Installed ``omnidesk.channels`` entry points by name (not loaded).

    Walks the distributions rather than calling ``entry_points(group=...)``,
    which keeps only the first entry point of each name: a second package
    claiming the same type would then win or lose silently by ``sys.path``
    order."""
    by_name: dict[str, list[EntryPoint]] = {}
    seen: set[tuple[str, str, str]] = set()
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            # The same distribution found twice on sys.path is one claim.
            key = (ep.name, ep.value, _distribution(ep))
            if key not in seen:
                seen.add(key)
                by_name.setdefault(ep.name, []).append(ep)
    return by_name


def _load_entry_point(type_: str, eps: list[EntryPoint]) -> type[ChannelAdapter]:
    where = f"entry point {ENTRY_POINT_GROUP}:{type_}"
    if len(eps) > 1:
        owners = "; ".join(f"{ep.value} from {_distribution(ep)}" for ep in eps)
        raise ChannelLoadError(
            where, "(adapter)", f"several installed packages claim this type: {owners}"
        )
    ep = eps[0]
    origin = f"{ep.value} (from {_distribution(ep)})"
    try:
        cls = ep.load()
    except Exception as exc:
        raise ChannelLoadError(where, "(import)", f"{origin} failed: {_short_error(exc)}") from exc
    cls = _check_class(cls, origin, where)
    if cls.type != type_:
        raise ChannelLoadError(
            where,
            "(adapter)",
            f"{origin} has type {cls.type!r}; the entry point name must equal the adapter's type",
        )
    return cls


def adapter_class(
    type_: str, *, dropins: dict[str, type[ChannelAdapter]] | None = None
) -> type[ChannelAdapter]:
    """The adapter class for ``type_``. ``dropins`` is what
    :func:`dropin_adapters` found (scanned once at start). Raises
    :class:`UnknownChannelType` when no source defines it and
    :class:`ChannelLoadError` when the one that does cannot be used."""
    eps = entry_point_types().get(type_, [])
    if type_ in BUILTIN:
        if eps:
            raise ChannelLoadError(
                f"entry point {ENTRY_POINT_GROUP}:{type_}",
                "(adapter)",
                f"{eps[0].value} from {_distribution(eps[0])} claims {type_!r}, which is a"
                " built-in channel type; the package must use its own type name",
            )
        return _load_ref(type_, BUILTIN[type_])
    if dropins and type_ in dropins:
        if eps:
            raise ChannelLoadError(
                f"entry point {ENTRY_POINT_GROUP}:{type_}",
                "(adapter)",
                f"{eps[0].value} from {_distribution(eps[0])} and the drop-in"
                f" {dropins[type_].__module__} both claim {type_!r}",
            )
        return dropins[type_]
    if eps:
        return _load_entry_point(type_, eps)
    known = sorted({*BUILTIN, *(dropins or {}), *entry_point_types()})
    raise UnknownChannelType(
        f"unknown channel type {type_!r} (available: {', '.join(known)}; or write a module"
        f" in the drop-in channels folder or install a package with an '{ENTRY_POINT_GROUP}'"
        " entry point)"
    )
