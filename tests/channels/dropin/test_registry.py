"""Loading channel adapters: drop-in modules from a folder and installed
packages' ``omnidesk.channels`` entry points, with a clear error naming the
file or entry point for every way one can be broken."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from omnidesk.app import Daemon
from omnidesk.channels.base import ChannelAdapter
from omnidesk.channels.registry import (
    BUILTIN,
    ChannelLoadError,
    UnknownChannelType,
    adapter_class,
    dropin_adapters,
)
from omnidesk.config import ConfigError
from tests.conftest import make_config

ADAPTER = """
from omnidesk.channels.base import ChannelAdapter
from omnidesk.model import Envelope, Normalized, OutboundMessage, SendResult, Skip


class {cls}(ChannelAdapter):
    type = "{type}"

    def normalize(self, envelope: Envelope) -> Normalized:
        return Skip("test adapter")

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult()
"""


def adapter_source(type_: str, cls: str = "TestChannel") -> str:
    return ADAPTER.format(type=type_, cls=cls)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "channels"
    d.mkdir()
    return d


def write(folder: Path, name: str, source: str) -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(source), encoding="utf-8")
    return p


def load_error(folder: Path) -> ChannelLoadError:
    with pytest.raises(ChannelLoadError) as info:
        dropin_adapters(folder)
    return info.value


# -- drop-in modules -----------------------------------------------------------


def test_dropin_module_is_found_by_its_type(folder: Path) -> None:
    write(folder, "echo.py", adapter_source("echo"))
    found = dropin_adapters(folder)
    assert list(found) == ["echo"]
    cls = adapter_class("echo", dropins=found)
    assert issubclass(cls, ChannelAdapter) and cls.type == "echo"


def test_a_missing_folder_has_no_dropins(tmp_path: Path) -> None:
    assert dropin_adapters(tmp_path / "nowhere") == {}


def test_one_module_may_define_several_types_and_a_shared_base(folder: Path) -> None:
    write(
        folder,
        "pair.py",
        """
        from omnidesk.channels.base import ChannelAdapter
        from omnidesk.model import SendResult, Skip


        class _Base(ChannelAdapter):
            def normalize(self, envelope):
                return Skip("x")

            async def send(self, message):
                return SendResult()


        class Left(_Base):
            type = "left"


        class Right(_Base):
            type = "right"
        """,
    )
    assert sorted(dropin_adapters(folder)) == ["left", "right"]


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("def broken(:\n    pass\n", ["SyntaxError", "line 1"]),
        ("x = 1\nraise RuntimeError('no config for you')\n", ["RuntimeError", "line 2"]),
        ("import omnidesk_no_such_module\n", ["ModuleNotFoundError", "omnidesk_no_such_module"]),
    ],
    ids=["syntax", "raises", "import"],
)
def test_module_that_fails_to_import_names_the_file(
    folder: Path, source: str, fragments: list[str]
) -> None:
    path = write(folder, "bad.py", source)
    err = load_error(folder)
    assert isinstance(err, ConfigError)
    assert err.file == str(path)
    for fragment in fragments:
        assert fragment in str(err)
    # A failed module leaves nothing half-imported behind.
    assert "omnidesk_dropin_bad" not in sys.modules


def test_module_without_an_adapter_is_an_error(folder: Path) -> None:
    path = write(folder, "helpers.py", "def useful():\n    return 1\n")
    err = load_error(folder)
    assert err.file == str(path)
    assert "defines no channel adapter" in err.reason


def test_modules_starting_with_underscore_are_skipped(folder: Path) -> None:
    write(folder, "_wip.py", "raise RuntimeError('never imported')\n")
    write(folder, "echo.py", adapter_source("echo"))
    assert list(dropin_adapters(folder)) == ["echo"]


def test_two_modules_claiming_one_type_are_refused(folder: Path) -> None:
    first = write(folder, "a.py", adapter_source("dup", "A"))
    second = write(folder, "b.py", adapter_source("dup", "B"))
    err = load_error(folder)
    assert err.file == str(second)
    assert "'dup'" in err.reason and str(first) in err.reason


@pytest.mark.parametrize("builtin", ["api", "webchat", "telegram"])
def test_dropin_cannot_shadow_a_builtin_type(folder: Path, builtin: str) -> None:
    path = write(folder, "mine.py", adapter_source(builtin))
    err = load_error(folder)
    assert err.file == str(path)
    assert "built-in channel type" in err.reason


def test_adapter_missing_a_method_is_refused(folder: Path) -> None:
    write(
        folder,
        "half.py",
        """
        from omnidesk.channels.base import ChannelAdapter
        from omnidesk.model import Skip


        class Half(ChannelAdapter):
            type = "half"

            def normalize(self, envelope):
                return Skip("x")
        """,
    )
    err = load_error(folder)
    assert "does not implement send" in err.reason


@pytest.mark.parametrize("bad", ["Web Form", "1form", "", "FORM"])
def test_type_names_are_plain(folder: Path, bad: str) -> None:
    write(folder, "odd.py", adapter_source(bad))
    err = load_error(folder)
    assert "'type' must be" in err.reason


def test_unknown_type_lists_what_is_available(folder: Path) -> None:
    write(folder, "echo.py", adapter_source("echo"))
    with pytest.raises(UnknownChannelType) as info:
        adapter_class("fax", dropins=dropin_adapters(folder))
    assert "'fax'" in str(info.value) and "echo" in str(info.value) and "webchat" in str(info.value)


# -- at start-up ---------------------------------------------------------------


def sqlite_config(tmp_path: Path, **sections: Any) -> Any:
    """Loading happens before the store opens: one engine is enough here."""
    return make_config(tmp_path, f"sqlite:///{tmp_path / 'od.db'}", **sections)


def test_daemon_does_not_start_with_a_broken_dropin(tmp_path: Path, folder: Path) -> None:
    path = write(folder, "bad.py", "raise ValueError('boom')\n")
    with pytest.raises(ConfigError) as info:
        Daemon(sqlite_config(tmp_path, daemon={"channels_dir": str(folder)}))
    assert str(path) in str(info.value) and "boom" in str(info.value)


def test_channels_dir_defaults_to_channels_next_to_the_config(tmp_path: Path) -> None:
    from omnidesk.config import load_config

    write_dir = tmp_path / "channels"
    write_dir.mkdir()
    write(write_dir, "echo.py", adapter_source("echo"))
    cfg = tmp_path / "omnidesk.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "data"
            [storage]
            url = "sqlite:///{tmp_path}/od.db"
            [rules]
            dir = "{Path(__file__).resolve().parents[3] / "rules"}"
            watch = false
            [[channels]]
            name = "e"
            type = "echo"
            """
        )
    )
    d = Daemon(load_config(cfg))
    assert d.adapters["e"].type == "echo"


def test_cli_exits_2_naming_the_broken_file(tmp_path: Path, folder: Path) -> None:
    path = write(folder, "bad.py", "import omnidesk_nonexistent_sdk\n")
    cfg = tmp_path / "omnidesk.toml"
    cfg.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/od.db"\n[web]\nport = 0\n'
        f'[rules]\ndir = "{Path(__file__).resolve().parents[3] / "rules"}"\nwatch = false\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    assert "omnidesk_nonexistent_sdk" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- entry points ----------------------------------------------------------------


def make_distribution(
    root: Path, dist: str, entry_points: dict[str, str], package: str, source: str
) -> None:
    """An installed distribution as importlib.metadata finds it on sys.path:
    the package and a ``.dist-info`` with ``entry_points.txt``."""
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[omnidesk.channels]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for this test only."""
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    return d


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_entry_point_adapter_is_loaded(site: Path) -> None:
    pkg = unique("odtest_pkg")
    make_distribution(site, "odtest-fax", {"fax": f"{pkg}:Fax"}, pkg, adapter_source("fax", "Fax"))
    cls = adapter_class("fax")
    assert cls.__name__ == "Fax" and cls.__module__ == pkg


def test_entry_point_name_must_match_the_type(site: Path) -> None:
    pkg = unique("odtest_pkg")
    make_distribution(
        site, "odtest-pager", {"pager": f"{pkg}:P"}, pkg, adapter_source("beeper", "P")
    )
    with pytest.raises(ChannelLoadError) as info:
        adapter_class("pager")
    assert "odtest-pager" in str(info.value) and "'beeper'" in str(info.value)


def test_entry_point_that_fails_to_import_names_it(site: Path) -> None:
    pkg = unique("odtest_pkg")
    make_distribution(
        site, "odtest-telex", {"telex": f"{pkg}:T"}, pkg, "raise ImportError('needs libtelex')\n"
    )
    with pytest.raises(ChannelLoadError) as info:
        adapter_class("telex")
    msg = str(info.value)
    assert "omnidesk.channels:telex" in msg and "odtest-telex" in msg and "libtelex" in msg


def test_two_distributions_claiming_one_type_are_refused(site: Path) -> None:
    a, b = unique("odtest_a"), unique("odtest_b")
    make_distribution(site, "odtest-one", {"morse": f"{a}:M"}, a, adapter_source("morse", "M"))
    make_distribution(site, "odtest-two", {"morse": f"{b}:M"}, b, adapter_source("morse", "M"))
    with pytest.raises(ChannelLoadError) as info:
        adapter_class("morse")
    assert "odtest-one" in str(info.value) and "odtest-two" in str(info.value)


def test_entry_point_cannot_shadow_a_builtin(site: Path) -> None:
    pkg = unique("odtest_pkg")
    make_distribution(site, "odtest-evil", {"api": f"{pkg}:A"}, pkg, adapter_source("api", "A"))
    with pytest.raises(ChannelLoadError) as info:
        adapter_class("api")
    assert "built-in channel type" in str(info.value) and "odtest-evil" in str(info.value)
    assert "api" in BUILTIN


def test_entry_point_and_dropin_claiming_one_type_are_refused(site: Path, folder: Path) -> None:
    pkg = unique("odtest_pkg")
    make_distribution(
        site, "odtest-pager", {"pager": f"{pkg}:S"}, pkg, adapter_source("pager", "S")
    )
    write(folder, "pager.py", adapter_source("pager"))
    with pytest.raises(ChannelLoadError) as info:
        adapter_class("pager", dropins=dropin_adapters(folder))
    assert "odtest-pager" in str(info.value) and "drop-in" in str(info.value)


def build_wheel(out: Path, dist: str, package: str, type_: str) -> Path:
    """A minimal, valid pure-Python wheel (RECORD with hashes)."""
    files = {
        f"{package}/__init__.py": adapter_source(type_, "Plugin").encode(),
        f"{dist}-0.1.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n"
        ).encode(),
        f"{dist}-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: omnidesk-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{dist}-0.1.dist-info/entry_points.txt": (
            f"[omnidesk.channels]\n{type_} = {package}:Plugin\n"
        ).encode(),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}-0.1.dist-info/RECORD,,")
    files[f"{dist}-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{dist}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def test_pip_installed_package_provides_a_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = unique("odtest_carrier_pigeon")
    wheel = build_wheel(tmp_path, dist, dist, "pigeon")
    target = tmp_path / "target"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / dist / "__init__.py").is_file()
    monkeypatch.syspath_prepend(str(target))
    d = Daemon(sqlite_config(tmp_path, channels=[{"name": "birds", "type": "pigeon"}]))
    adapter = d.adapters["birds"]
    assert type(adapter).__module__ == dist and adapter.type == "pigeon"
