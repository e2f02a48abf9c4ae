"""Settings: schema, loading and secret resolution.

One TOML file (see ``config.example.toml``). Every problem is reported as one
:class:`ConfigError` naming the file and the key, and the CLI exits with code 2.
Secrets may be written as ``env:VAR`` or ``file:PATH`` and are wrapped in
:class:`Secret`, whose ``repr``/``str`` never show the value, so a secret that
reaches a log line prints as ``***``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .customers.fields import CustomerFields
from .customers.settings import PrivacySettings, parse_customers, parse_privacy


class ConfigError(Exception):
    """A configuration problem, naming the file and the key."""

    def __init__(self, file: str | Path | None, key: str, reason: str) -> None:
        self.file = str(file) if file is not None else "<config>"
        self.key = key
        self.reason = reason
        super().__init__(f"{self.file}: {key}: {reason}")


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_secret(raw: str, *, file: Path | None, key: str, base_dir: Path) -> Secret:
    """``env:VAR`` reads the environment, ``file:PATH`` reads a file (relative
    paths are relative to the config file); anything else is the literal value."""
    if raw.startswith("env:"):
        var = raw[4:]
        value = os.environ.get(var)
        if value is None:
            raise ConfigError(file, key, f"environment variable {var} is not set")
        return Secret(value)
    if raw.startswith("file:"):
        path = Path(raw[5:]).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        try:
            return Secret(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(
                file, key, f"cannot read secret file {path}: {exc.strerror}"
            ) from None
    return Secret(raw)


_MISSING = object()


class Options:
    """Typed access to one table of the config, with errors naming file and key.

    Channel adapters get their ``[[channels]]`` table as an ``Options`` and read
    their own keys with it; keys nobody read are reported by :meth:`check_unused`.
    """

    def __init__(
        self, data: Mapping[str, Any], *, file: Path | None, prefix: str, base_dir: Path
    ) -> None:
        self._data = dict(data)
        self.file = file
        self.prefix = prefix
        self.base_dir = base_dir
        self._used: set[str] = set()

    def _key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self._key(name), reason)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._used.add(name)
        if name not in self._data:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self._data[name]

    def string(self, name: str, default: Any = _MISSING, *, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(name, default)
        if value is None or value is default:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {type(value).__name__}")
        if choices and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def integer(self, name: str, default: Any = _MISSING, *, min: int | None = None) -> Any:
        value = self.raw(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, not {type(value).__name__}")
        if min is not None and value < min:
            raise self.error(name, f"must be at least {min}")
        return value

    def number(self, name: str, default: Any = _MISSING, *, min: float | None = None) -> Any:
        value = self.raw(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, not {type(value).__name__}")
        if min is not None and value < min:
            raise self.error(name, f"must be at least {min}")
        return float(value)

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default:
            return value
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def strings(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default:
            return value
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings")
        return list(value)

    def secret(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default or value is None:
            return value
        if not isinstance(value, str):
            raise self.error(name, "must be a string (a literal, env:VAR or file:PATH)")
        return resolve_secret(value, file=self.file, key=self._key(name), base_dir=self.base_dir)

    def duration(self, name: str, default: Any = _MISSING) -> Any:
        """Seconds from ``"90s"``, ``"30m"``, ``"24h"`` or ``"7d"``."""
        value = self.raw(name, default)
        if value is default or value is None:
            return value
        m = (
            re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
            if isinstance(value, str)
            else None
        )
        if m is None or float(m[1]) <= 0:
            raise self.error(name, f'must be a duration like "30m", "24h" or "7d", got {value!r}')
        return float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]

    def path(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default or value is None:
            return value
        if not isinstance(value, str):
            raise self.error(name, "must be a path string")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def table(self, name: str) -> Options:
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise self.error(name, "must be a table")
        return Options(value, file=self.file, prefix=self._key(name), base_dir=self.base_dir)

    def keys(self) -> Iterator[str]:
        return iter(self._data)

    def check_unused(self) -> None:
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown setting")


@dataclass(slots=True)
class ChannelConfig:
    name: str
    type: str
    options: Options
    enabled: bool = True


@dataclass(slots=True)
class TeamConfig:
    name: str
    members: list[str]
    strategy: str = "round_robin"  # round_robin | least_loaded | manual
    max_open_per_agent: int = 25
    sticky: bool = True  # a returning contact goes back to the agent who last handled it


@dataclass(frozen=True, slots=True)
class AssignmentConfig:
    """``[assignment]``: who may get new work (store/assignment.py)."""

    # Only agents who are online get new conversations (off: every member,
    # as for agents who never sign in and work through API tokens).
    only_online: bool = True
    # An online agent with no sign of activity for this long counts as away.
    idle_away_seconds: float = 600.0


@dataclass(slots=True)
class HealthConfig:
    """``[health]``: when /readyz turns 503, and whom to tell (see health.py)."""

    pipeline_stall_seconds: float = 60.0
    channel_failure_seconds: float = 120.0
    # per channel name: its own channel_failure_seconds ([health.channels.NAME])
    channel_seconds: dict[str, float] = field(default_factory=dict)
    check_interval: float = 5.0
    notify_webhook: Secret | None = None
    notify_webhook_secret: Secret | None = None
    notify_email: list[str] = field(default_factory=list)
    notify_email_channel: str | None = None

    def failure_seconds(self, channel: str) -> float:
        return self.channel_seconds.get(channel, self.channel_failure_seconds)


def parse_health(top: Options, channels: list[ChannelConfig]) -> HealthConfig:
    h = top.table("health")
    per: dict[str, float] = {}
    tables = h.table("channels")
    for name in list(tables.keys()):
        if not any(c.name == name for c in channels):
            raise tables.error(name, "no [[channels]] entry has this name")
        o = tables.table(name)
        seconds = o.number("failure_seconds", None, min=0)
        o.check_unused()
        if seconds is None:
            raise o.error("failure_seconds", "is required")
        per[name] = seconds
    tables.check_unused()
    cfg = HealthConfig(
        pipeline_stall_seconds=h.number("pipeline_stall_seconds", 60.0, min=0.1),
        channel_failure_seconds=h.number("channel_failure_seconds", 120.0, min=0),
        channel_seconds=per,
        check_interval=h.number("check_interval", 5.0, min=0.05),
        notify_webhook=h.secret("notify_webhook", None),
        notify_webhook_secret=h.secret("notify_webhook_secret", None),
        notify_email=h.strings("notify_email", []),
        notify_email_channel=h.string("notify_email_channel", None),
    )
    if cfg.notify_webhook is not None and not cfg.notify_webhook.reveal().startswith(
        ("http://", "https://")
    ):
        raise h.error("notify_webhook", "must be an http:// or https:// URL")
    for address in cfg.notify_email:
        if "@" not in address or any(c.isspace() for c in address):
            raise h.error("notify_email", f"not an e-mail address: {address!r}")
    via = cfg.notify_email_channel
    if via is not None and not any(c.name == via for c in channels):
        raise h.error("notify_email_channel", f"no [[channels]] entry named {via!r}")
    h.check_unused()
    return cfg


@dataclass(slots=True)
class Config:
    file: Path | None
    base_dir: Path
    data_dir: Path
    storage_url: str
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    trust_proxy: bool = False
    rules_dir: Path = Path("rules")
    rules_watch: bool = True
    channels_dir: Path | None = None
    log_level: str = "info"
    pipeline_workers: int = 1
    pipeline_processes: int = 0
    pipeline_batch: int = 64
    chat_session_hours: float = 24.0
    reopen_days: float = 30.0
    default_team: str | None = None
    outbox_max_attempts: int = 8
    outbox_backoff_base: float = 2.0
    outbox_backoff_max: float = 900.0
    statement_timeout: float = 30.0
    pool_size: int = 10
    instance_name: str = ""
    session_idle_hours: float = 12.0
    session_max_days: float = 7.0
    cookie_secure: str = "auto"  # auto | always | never
    login_lockout_after: int = 5
    login_lockout_max_minutes: float = 15.0
    body_memory_mb: float = 32.0  # request bodies held at once (web/limits.py)
    # [inbox]: files an agent attaches to a reply or note (web/inbox.py)
    reply_attachment_max: int = 10240 * 1024  # bytes, each file
    reply_attachments_total_max: int = 20480 * 1024  # bytes, all files of one reply
    reply_attachments_max_count: int = 10
    retrain_every: float | None = None  # [classifier]: seconds between scheduled retrains
    retrain_min_new: int = 50  # new corrections and confirmations a retrain needs
    # first-response targets in minutes per priority: the SLA policy used when
    # the rules define no [[sla]] (rules/service.py)
    sla_minutes: dict[str, float] = field(default_factory=dict)
    teams: list[TeamConfig] = field(default_factory=list)
    channels: list[ChannelConfig] = field(default_factory=list)
    health: HealthConfig = field(default_factory=HealthConfig)
    # [customers] typed fields and [privacy] (customers/settings.py, docs/customers.md)
    customer_fields: CustomerFields = field(default_factory=CustomerFields)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)

    def channel(self, name: str) -> ChannelConfig:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(name)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def normalize_storage_url(url: str, base_dir: Path) -> str:
    """``sqlite:///relative/path`` is relative to the config file's folder;
    ``sqlite:////abs/path`` is absolute; other URLs pass through."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
        p = Path(rest).expanduser()
        if rest == ":memory:":
            return url
        return _sqlite_url(p if p.is_absolute() else (base_dir / p).resolve())
    return url


# -- [pipeline] processes = "auto" ---------------------------------------------
def auto_processes(cores: int | None = None) -> int:
    """What ``processes = "auto"`` (the default) means on a machine with
    ``cores`` usable cores: none on one core, where the pipeline processes
    (at the lowest CPU priority) would wait while the listener is busy; two
    from two cores on, the layout that meets the e-mail targets
    (bench/bench_email.py; docs/developing.md, "Pipeline processes")."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cores = cores or os.cpu_count() or 1
    return 0 if cores < 2 else 2


def parse_processes(pipeline: Options, workers: int) -> int:
    """``[pipeline] processes``: a number, or "auto" (the default)."""
    value = pipeline.raw("processes", "auto")
    if value == "auto":
        return auto_processes() if workers else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise pipeline.error("processes", f'must be "auto" or a number from 0 on (got {value!r})')
    return value


def load_config(path: str | Path) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", str(exc)) from None
    return parse_config(data, file=file.resolve(), base_dir=file.resolve().parent)


def parse_config(
    data: Mapping[str, Any], *, file: Path | None = None, base_dir: Path | None = None
) -> Config:
    base = base_dir or Path.cwd()
    top = Options(data, file=file, prefix="", base_dir=base)

    daemon = top.table("daemon")
    data_dir = daemon.path("data_dir", base / "data")
    log_level = daemon.string("log_level", "info", choices=("debug", "info", "warning", "error"))
    instance_name = daemon.string("instance_name", "")
    channels_dir = daemon.path("channels_dir", None)
    daemon.check_unused()

    storage = top.table("storage")
    url = storage.string("url", _sqlite_url(data_dir / "omnidesk.db"))
    if url.startswith(("env:", "file:")):  # a PostgreSQL URL carries a password
        url = storage.secret("url").reveal()
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise storage.error("url", "must start with sqlite:/// or postgresql://")
    statement_timeout = storage.number("statement_timeout", 30.0, min=0.1)
    pool_size = storage.integer("pool_size", 10, min=1)
    storage.check_unused()

    web = top.table("web")
    host = web.string("host", "127.0.0.1")
    port = web.integer("port", 8080, min=0)
    if port > 65535:
        raise web.error("port", "must be at most 65535")
    public_url = web.string("public_url", f"http://{host}:{port}")
    trust_proxy = web.boolean("trust_proxy", False)
    session_idle_hours = web.number("session_idle_hours", 12.0, min=0.01)
    session_max_days = web.number("session_max_days", 7.0, min=0.01)
    cookie_secure = web.string("cookie_secure", "auto", choices=("auto", "always", "never"))
    lockout_after = web.integer("login_lockout_after", 5, min=1)
    lockout_max = web.number("login_lockout_max_minutes", 15.0, min=0.1)
    body_memory_mb = web.number("body_memory_mb", 32.0, min=1)
    web.check_unused()

    inbox = top.table("inbox")
    reply_file_kb = inbox.integer("max_reply_attachment_kb", 10240, min=1)
    reply_total_kb = inbox.integer("max_reply_attachments_total_kb", 2 * reply_file_kb, min=1)
    reply_files = inbox.integer("max_reply_attachments", 10, min=0)
    if reply_total_kb < reply_file_kb:
        raise inbox.error(
            "max_reply_attachments_total_kb",
            f"must be at least max_reply_attachment_kb ({reply_file_kb})",
        )
    inbox.check_unused()

    sla = top.table("sla")
    sla_minutes = {
        p: sla.number(p, default, min=0)
        for p, default in (("urgent", 30.0), ("high", 120.0), ("normal", 480.0), ("low", 1440.0))
    }
    sla.check_unused()

    rules = top.table("rules")
    rules_dir = rules.path("dir", base / "rules")
    rules_watch = rules.boolean("watch", True)
    rules.check_unused()

    pipeline = top.table("pipeline")
    workers = pipeline.integer("workers", 1, min=0)
    processes = parse_processes(pipeline, workers)
    batch = pipeline.integer("batch_size", 64, min=1)
    chat_hours = pipeline.number("chat_session_hours", 24.0, min=0)
    reopen_days = pipeline.number("reopen_days", 30.0, min=0)
    default_team = pipeline.string("default_team", None)
    pipeline.check_unused()

    outbox = top.table("outbox")
    max_attempts = outbox.integer("max_attempts", 8, min=1)
    backoff_base = outbox.number("backoff_base", 2.0, min=0.01)
    backoff_max = outbox.number("backoff_max", 900.0, min=0.01)
    outbox.check_unused()

    asg = top.table("assignment")
    assignment = AssignmentConfig(
        only_online=asg.boolean("only_online", True),
        idle_away_seconds=asg.number("idle_away_minutes", 10.0, min=0.1) * 60,
    )
    asg.check_unused()

    teams: list[TeamConfig] = []
    raw_teams = top.raw("teams", [])
    if not isinstance(raw_teams, list):
        raise top.error("teams", "must be an array of tables ([[teams]])")
    for i, t in enumerate(raw_teams):
        if not isinstance(t, dict):
            raise top.error(f"teams[{i}]", "must be a table")
        o = Options(t, file=file, prefix=f"teams[{i}]", base_dir=base)
        team = TeamConfig(
            name=o.string("name"),
            members=o.strings("members", []),
            strategy=o.string(
                "strategy", "round_robin", choices=("round_robin", "least_loaded", "manual")
            ),
            max_open_per_agent=o.integer("max_open_per_agent", 25, min=1),
            sticky=o.boolean("sticky", True),
        )
        o.check_unused()
        if any(x.name == team.name for x in teams):
            raise o.error("name", f"duplicate team {team.name!r}")
        teams.append(team)

    channels: list[ChannelConfig] = []
    raw_channels = top.raw("channels", [])
    if not isinstance(raw_channels, list):
        raise top.error("channels", "must be an array of tables ([[channels]])")
    for i, c in enumerate(raw_channels):
        if not isinstance(c, dict):
            raise top.error(f"channels[{i}]", "must be a table")
        o = Options(c, file=file, prefix=f"channels[{i}]", base_dir=base)
        name = o.string("name")
        if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise o.error("name", "must be letters, digits, '-' or '_'")
        ctype = o.string("type")
        enabled = o.boolean("enabled", True)
        if any(x.name == name for x in channels):
            raise o.error("name", f"duplicate channel {name!r}")
        channels.append(ChannelConfig(name=name, type=ctype, options=o, enabled=enabled))

    classifier = top.table("classifier")
    retrain_every = classifier.duration("retrain_every", None)
    retrain_min_new = classifier.integer("retrain_min_new", 50, min=1)
    classifier.check_unused()

    if default_team is not None and teams and default_team not in {t.name for t in teams}:
        raise pipeline.error("default_team", f"no team named {default_team!r}")
    if processes and workers == 0:
        raise pipeline.error(
            "processes", "workers = 0 makes an accept-only instance: it runs no pipeline"
        )

    health = parse_health(top, channels)
    customer_fields = parse_customers(top.table("customers"))
    privacy = parse_privacy(top.table("privacy"))
    top.check_unused()
    return Config(
        retrain_every=retrain_every,
        retrain_min_new=retrain_min_new,
        file=file,
        base_dir=base,
        data_dir=data_dir,
        storage_url=normalize_storage_url(url, base),
        web_host=host,
        web_port=port,
        public_url=public_url.rstrip("/"),
        trust_proxy=trust_proxy,
        rules_dir=rules_dir,
        rules_watch=rules_watch,
        channels_dir=channels_dir,
        log_level=log_level,
        pipeline_workers=workers,
        pipeline_processes=processes,
        pipeline_batch=batch,
        chat_session_hours=chat_hours,
        reopen_days=reopen_days,
        default_team=default_team,
        assignment=assignment,
        outbox_max_attempts=max_attempts,
        outbox_backoff_base=backoff_base,
        outbox_backoff_max=backoff_max,
        statement_timeout=statement_timeout,
        pool_size=pool_size,
        instance_name=instance_name,
        session_idle_hours=session_idle_hours,
        session_max_days=session_max_days,
        cookie_secure=cookie_secure,
        login_lockout_after=lockout_after,
        login_lockout_max_minutes=lockout_max,
        body_memory_mb=body_memory_mb,
        reply_attachment_max=reply_file_kb * 1024,
        reply_attachments_total_max=reply_total_kb * 1024,
        reply_attachments_max_count=reply_files,
        sla_minutes=sla_minutes,
        teams=teams,
        channels=channels,
        health=health,
        customer_fields=customer_fields,
        privacy=privacy,
    )
