"""``config.example.toml`` documents every setting the schema accepts, and
nothing the schema refuses; every setting the docs name exists.

The schema is what the code reads: every key asked of an ``Options`` table
(``parse_config`` for the core tables, each adapter's ``__init__`` for a
channel type's options) is recorded while the example is loaded. The
example's channel blocks are commented out (a new install runs with the API
channel only): each ``# [[channels]]`` block is loaded uncommented, and
again with its alternatives (``# # key = ...`` lines) uncommented too.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from omnidesk.app import build_adapters
from omnidesk.config import Options, parse_config
from omnidesk.intake import Intake
from omnidesk.store import open_store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
DOCS = sorted([*REPO.glob("docs/**/*.md"), REPO / "README.md", REPO / "channels" / "README.md"])
# Tables whose keys are the user's own names, not settings.
FREE_FORM = {"channels.smtp.auth_users", "health.channels", "privacy.retention"}
CORE_TABLES = {
    "daemon",
    "storage",
    "web",
    "sla",
    "rules",
    "pipeline",
    "outbox",
    "teams",
    "channels",
}


# -- reading the example ------------------------------------------------------------
SETTING = re.compile(r"([a-z_]+) = ")
ALTERNATIVE = re.compile(r"# ([a-z_]+) = ")
HEADER = re.compile(r"\[\[?([a-z_.]+)\]\]?")


def channel_blocks(text: str) -> list[tuple[str, str]]:
    """The commented-out ``[[channels]]`` blocks: (as shipped uncommented,
    with the alternatives uncommented instead of the lines they replace: the
    same key, or the one named in "# instead of KEY")."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "# [[channels]]":
            i += 1
            continue
        block: list[str] = []
        while i < len(lines) and lines[i].startswith("# "):
            block.append(lines[i][2:])
            i += 1
        replaced: set[tuple[str, str]] = set()
        section = ""
        for line in block:
            if header := HEADER.match(line):
                section = header.group(1)
            elif alt := ALTERNATIVE.match(line):
                replaced.add((section, alt.group(1)))
                if instead := re.search(r"# instead of ([a-z_]+)", line):
                    replaced.add((section, instead.group(1)))
        variant: list[str] = []
        section = ""
        for line in block:
            if header := HEADER.match(line):
                section = header.group(1)
            setting = SETTING.match(line)
            if setting and (section, setting.group(1)) in replaced:
                continue
            variant.append(line[2:] if ALTERNATIVE.match(line) else line)
        blocks.append(("\n".join(block), "\n".join(variant)))
    return blocks


def commented_settings(text: str) -> Iterator[str]:
    """Settings shown commented out in the live tables (``# key = value``
    where setting it would change what the example does)."""
    table = ""
    channel_type = ""
    in_block = False
    for line in text.splitlines():
        if line.strip() == "# [[channels]]":
            in_block = True
        elif in_block and not line.startswith("# "):
            in_block = False
        if in_block:
            continue
        if header := HEADER.match(line):
            table, channel_type = header.group(1), ""
        elif (entry := re.match(r"# \[([a-z_.]+)\.[a-z_]+\]$", line)) and entry[1] in FREE_FORM:
            # An example entry of a free-form table (``# [health.channels.api]``):
            # its settings are read only where such an entry exists.
            table, channel_type = "", ""
        elif kind := re.match(r'type = "([a-z_]+)"', line):
            channel_type = kind.group(1)
        elif (alt := ALTERNATIVE.match(line)) and table:
            where = f"channels.{channel_type}" if table == "channels" else table
            yield f"{where}.{alt.group(1)}"


def flatten(prefix: str, table: dict[str, Any]) -> Iterator[str]:
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and name not in FREE_FORM:
            yield from flatten(name, value)
        else:
            yield name


def example_keys() -> set[str]:
    """Every setting the example shows, as ``table.key`` (channel options as
    ``channels.<type>.key``)."""
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    keys: set[str] = set()
    for table, value in data.items():
        if table == "teams":
            keys |= {f"teams.{k}" for t in value for k in t}
        elif table == "channels":
            for ch in value:
                keys |= set(flatten(f"channels.{ch['type']}", ch))
        else:
            keys |= set(flatten(table, value))
    keys |= set(commented_settings(text))
    # A free-form table shown by a commented example entry (``# [health.channels.api]``).
    for table in FREE_FORM:
        if f"# [{table}." in text:
            keys.add(table)
    for main, alternative in channel_blocks(text):
        for block in (main, alternative):
            ch = tomllib.loads(block)["channels"][0]
            keys |= set(flatten(f"channels.{ch['type']}", ch))
    return keys


# -- reading the schema ---------------------------------------------------------------
@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every ``env:`` secret the example names, and the certificate files its
    TLS settings point at (relative to ``tmp_path``, the config's folder)."""
    for name in set(re.findall(r"env:([A-Z0-9_]+)", EXAMPLE.read_text())):
        # A Telegram bot token is digits:letters, a WeChat EncodingAESKey 43
        # characters; the rest take any text.
        value = "example-value-" + "x" * 24
        if "TELEGRAM_TOKEN" in name:
            value = "123456:" + value
        elif name.endswith("AES_KEY"):
            value = "exampleAESkey".ljust(43, "0")
        monkeypatch.setenv(name, value)
    ca = trustme.CA()
    cert = ca.issue_cert("desk.example.com")
    for path in re.findall(r'(?:tls_cert|ca_file) = "([^"]+)"', EXAMPLE.read_text()):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / path))
    for path in re.findall(r'tls_key = "([^"]+)"', EXAMPLE.read_text()):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        cert.private_key_pem.write_to_path(str(tmp_path / path))
    return tmp_path


def schema_keys(monkeypatch: pytest.MonkeyPatch, base: Path) -> set[str]:
    """Every key the code asks for while loading the example and building
    each of its channels (check_unused then refuses any key it did not ask for)."""
    asked: list[tuple[str, str]] = []
    raw = Options.raw

    def recording(self: Options, name: str, *args: Any) -> Any:
        asked.append((self.prefix, name))
        return raw(self, name, *args)

    monkeypatch.setattr(Options, "raw", recording)
    # Each channel block is built alone: what a block names of another (the web
    # chat's email_channel) is checked at start-up (tests/core/test_startup.py).
    from omnidesk.channels.webchat import WebchatChannel

    monkeypatch.setattr(WebchatChannel, "check_peers", lambda self, peers: None)
    keys: set[str] = set()

    def build(data: dict[str, Any]) -> None:
        asked.clear()
        data.setdefault("daemon", {})["channels_dir"] = str(REPO / "channels")
        cfg = parse_config(data, file=EXAMPLE, base_dir=base)
        store = open_store(f"sqlite:///{base / 'unused.db'}")
        build_adapters(cfg, Intake(store), store)
        for prefix, name in asked:
            m = re.match(r"(teams|channels)\[(\d+)\](.*)", prefix)
            if m and m.group(1) == "teams":
                prefix = "teams" + m.group(3)
            elif m:
                prefix = f"channels.{cfg.channels[int(m.group(2))].type}{m.group(3)}"
            key = f"{prefix}.{name}" if prefix else name
            if prefix not in FREE_FORM and key not in CORE_TABLES:
                keys.add(key)

    text = EXAMPLE.read_text()
    build(tomllib.loads(text))
    for main, alternative in channel_blocks(text):
        build(tomllib.loads(main))
        build(tomllib.loads(alternative))
    return keys


# What every channel takes, documented once (the daemon reads these itself).
COMMON = ("name", "type", "enabled", "auto_acknowledge")


def common(key: str) -> str:
    """``channels.smtp.enabled`` -> ``channels.*.enabled``."""
    parts = key.split(".")
    if parts[0] == "channels" and len(parts) == 3 and parts[2] in COMMON:
        return f"channels.*.{parts[2]}"
    return key


def test_example_documents_every_setting_and_only_settings(
    monkeypatch: pytest.MonkeyPatch, example_env: Path
) -> None:
    shown = {common(k) for k in example_keys()}
    tables = {".".join(k.split(".")[:i]) for k in shown for i in range(1, k.count(".") + 1)}
    # (a table is no setting)
    schema = {common(k) for k in schema_keys(monkeypatch, example_env)} - tables
    missing = sorted(schema - shown)
    assert not missing, f"settings config.example.toml does not show: {missing}"
    unknown = sorted(shown - schema)
    assert not unknown, f"settings in config.example.toml the code does not read: {unknown}"
    # Every built-in channel type has its block.
    from omnidesk.channels.registry import BUILTIN

    assert {k.split(".")[1] for k in shown if k.startswith("channels.")} >= {*BUILTIN, "*"}


def test_example_pipeline_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert data["pipeline"]["processes"] == "auto"


# -- the docs -----------------------------------------------------------------------------
def doc_settings() -> Iterator[tuple[str, str]]:
    """(where, ``table.key``) for each setting a doc names: config snippets in
    ```toml blocks, and mentions like `[pipeline] processes`."""
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"```toml\n(.*?)```", text, re.S):
            line = text.count("\n", 0, m.start()) + 2
            try:
                data = tomllib.loads(m.group(1))
            except tomllib.TOMLDecodeError:
                continue  # a fragment (a channel's options without their table)
            if not set(data) <= CORE_TABLES or "rule" in data or isinstance(data.get("sla"), list):
                continue  # a rules file (rules, [[sla]] policies), not a config
            where = f"{doc.relative_to(REPO)}:{line}"
            for table, value in data.items():
                entries = value if isinstance(value, list) else [value]
                for entry in entries:
                    prefix = table
                    if table == "channels":  # a fragment ([channels.relay]) is any type's
                        prefix = f"channels.{entry.get('type', '*')}"
                    for key in flatten(prefix, entry):
                        yield where, key
        for m in re.finditer(r"`\[([a-z]+)\] ([a-z_]+)", text):
            if m.group(1) in CORE_TABLES:
                line = text.count("\n", 0, m.start()) + 1
                yield f"{doc.relative_to(REPO)}:{line}", f"{m.group(1)}.{m.group(2)}"


def test_every_setting_the_docs_name_exists() -> None:
    shown = {common(k) for k in example_keys()}
    any_channel = {re.sub(r"^channels\.[^.]+", "channels.*", k) for k in shown}
    found = list(doc_settings())
    assert len(found) > 50, "the docs' settings were not found"
    unknown = []
    for where, key in found:
        # The IMAP channel's relay table is the SMTP channel's (the example says so).
        key = common(key).replace("channels.imap.relay.", "channels.smtp.relay.")
        if key not in shown and key not in any_channel:
            unknown.append(f"{where}: {key}")
    assert not unknown, f"settings the docs name that do not exist: {unknown}"
