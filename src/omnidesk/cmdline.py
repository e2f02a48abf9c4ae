"""Commands the program suggests, written so they run as printed.

A hint like ``omnidesk agents passwd demo`` fails for a user who installed
omnidesk in a virtualenv they did not activate (``omnidesk`` is not on PATH)
or who gave ``-c`` a config other than the default: the hint is built from
how this process was started and the config it read.

Also what the command modules (``cli.py``, ``classify_cli.py``) share: the
one-line error and where the rules come from.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import load_config

if TYPE_CHECKING:
    import argparse

    from .config import Config


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it."""
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(rel)


def program() -> str:
    """How to run ``omnidesk`` again from here: ``omnidesk`` when that name on
    PATH is this program, else the script's path, else ``python -m``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "omnidesk" and argv0.exists():
        on_path = shutil.which("omnidesk")
        if on_path is not None and Path(on_path).resolve() == argv0.resolve():
            return "omnidesk"
        return shlex.quote(_runnable(argv0))
    return f"{shlex.quote(_runnable(Path(sys.executable)))} -m omnidesk.cli"


def _runnable(path: Path) -> str:
    """A program's path as a shell runs it: ``./omnidesk``, not ``omnidesk``."""
    text = shown_path(path)
    return text if os.sep in text else f".{os.sep}{text}"


def config_args(config: Path | None) -> list[str]:
    """``-c FILE`` unless FILE is what omnidesk reads without being told."""
    if config is None:
        return []
    default = Path(os.environ.get("OMNIDESK_CONFIG", "config.toml"))
    if default.exists() and default.resolve() == config.resolve():
        return []
    return ["-c", shown_path(config)]


def command(*args: str, config: Path | None = None) -> str:
    """A runnable ``omnidesk ...`` command line for ``args``, with ``-c`` for
    ``config`` when it is needed."""
    parts = [*args, *config_args(config)]
    return " ".join([program(), *(shlex.quote(a) for a in parts)])


# -- what several commands share ----------------------------------------------
class CliError(Exception):
    """A user's mistake or a missing resource: one line on stderr, no
    traceback; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def rules_error(exc: Exception, config: Config | None) -> CliError:
    """Rules that do not load, as one line: the first problem and where to
    see them all."""
    from .rules import RulesError

    problems = exc.problems if isinstance(exc, RulesError) else []
    first = str(problems[0]) if problems else str(exc)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    check = command("rules", "check", config=config.file if config else None)
    return CliError(f"rules: {first}{more}; see {check}")


def rules_source(args: argparse.Namespace) -> tuple[Path, Config | None]:
    """The rules folder and the config naming it. ``-c`` (or
    $OMNIDESK_CONFIG) must name a config that loads; without either,
    ./config.toml when there is one. ``--rules`` picks the folder."""
    config = None
    if args.config is not None:
        config = load_config(args.config)
    elif os.environ.get("OMNIDESK_CONFIG"):
        config = load_config(os.environ["OMNIDESK_CONFIG"])
    elif Path("config.toml").is_file():
        config = load_config("config.toml")
    if args.rules:
        return Path(args.rules), config
    return (config.rules_dir if config is not None else Path("rules")), config


def rules_of(args: argparse.Namespace) -> Any:
    from .rules import RulesError, load_rules

    folder, config = rules_source(args)
    try:
        return load_rules(folder)
    except RulesError as exc:
        raise rules_error(exc, config) from None
