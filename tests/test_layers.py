"""The layering contracts (``[tool.importlinter]`` in pyproject.toml, run by
``lint-imports`` in .ci/run) hold, break when the code breaks them, and keep
up with the package's modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "omnidesk"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# One import for each contract that breaks it, as a module a careless change
# might add (path in the package, source).
BREAKS = {
    "domain": ("model.py", "\nfrom .config import Config as _Config  # noqa\n"),
    "pure": ("rules/_shortcut.py", "from ..store import Store\n"),
    "service": ("service/sla.py", "\nfrom ..store import Store as _Store  # noqa\n"),
    "store": ("store/_shortcut.py", "from ..channels.base import ChannelAdapter\n"),
    "channels": ("channels/_shortcut.py", "from ..store.conversations import last_inbound_at\n"),
    "pipeline": ("pipeline/_shortcut.py", "from ..channels.base import ChannelAdapter\n"),
    "root": ("health.py", "\nfrom .app import Daemon as _Daemon  # noqa\n"),
    "acyclic": ("config.py", "\nfrom .routing import choose_assignee as _choose  # noqa\n"),
}


def contracts() -> list[dict[str, object]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = data["tool"]["importlinter"]["contracts"]
    return found


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the repository's contracts over the package
    copied under ``root/src``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_package(root: Path) -> Path:
    target = root / "src" / "omnidesk"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_every_contract_is_kept_and_each_breaks_when_code_breaks_it(tmp_path: Path) -> None:
    assert {c["id"] for c in contracts()} == set(BREAKS), "each contract needs its breaking import"
    pkg = copy_package(tmp_path)
    kept = lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    for where, source in BREAKS.values():
        path = pkg / where
        path.write_text(
            (path.read_text(encoding="utf-8") if path.exists() else "") + source, encoding="utf-8"
        )
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    out = " ".join(broken.stdout.split())  # lint-imports wraps long names
    for contract in contracts():
        if contract["id"] in BREAKS:
            assert f"{' '.join(str(contract['name']).split())} BROKEN" in out, contract["id"]
    for where, _ in BREAKS.values():
        assert "omnidesk." + where.removesuffix(".py").replace("/", ".") in out


def test_imports_only_contracts_name_every_other_module() -> None:
    """A contract that says what a layer may import lists everything else:
    a module added to the package must be placed in it (or allowed)."""
    top = {
        f"omnidesk.{p.stem}"
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    [pure] = [c for c in contracts() if c["id"] == "pure"]
    allowed = {"omnidesk.model", "omnidesk.htmltext"}
    listed = set(pure["forbidden_modules"]) | set(pure["source_modules"]) | allowed  # type: ignore[call-overload]
    assert sorted(top - listed) == [], "add these to the contract's forbidden_modules"
    assert sorted(listed - top) == [], "these modules are gone: take them out of the contract"
