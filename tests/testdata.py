"""Where the tests' third-party data lives, and what a test does when a set is missing.

Sets whose licence lets us copy them are in ``tests/corpora`` (its NOTICE names each
one, its source, version and licence). Tests read them with ``vendored(...)``; they are
part of every clone, so those tests always run.

The other sets stay outside the repository, in a folder named by ``OMNIDESK_CORPORA``
(``.ci/run`` points it at ``../shared/corpora`` when that exists). A test that needs one
carries ``@pytest.mark.corpus("labelled/waimai_10k")`` (on the test or on a parameter;
``corpus_params`` marks parameters) and reads it with ``outside(...)``:

* ``OMNIDESK_CORPORA`` unset: the test is skipped, the reason naming the set and the
  variable. Also with ``CI=true``: data we may not redistribute is optional.
* ``OMNIDESK_CORPORA`` set but without that set: the test fails (a wrong path must not
  pass as a skip).

``pytest -m corpus`` runs just these tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
VENDORED = REPO / "tests" / "corpora"
ENV = "OMNIDESK_CORPORA"

# The sets read from outside, and why each is not copied in.
OUTSIDE_SETS = {
    "email/hunnysoft-mime-samples": "redistributed by others with the author's permission, "
    "no licence granted to us",
    "labelled/complaints-twitter": "no licence stated",
    "labelled/waimai_10k": "no licence stated",
    "webhooks/meta/courier": "AGPL-3.0",
    "webhooks/slack/courier": "AGPL-3.0",
    "webhooks/telegram/courier": "AGPL-3.0",
    "webhooks/telegram/pytelegrambotapi": "GPL-2.0",
    "webhooks/x-twitter/courier": "AGPL-3.0",
}

# The test running now (set around each test by tests/conftest.py), so that
# ``outside`` can insist on the mark.
running: pytest.Item | None = None


def vendored(name: str) -> Path:
    """A set, folder or file under tests/corpora."""
    return VENDORED / name


def outside_root() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def present(name: str) -> Path | None:
    """An outside set's folder when it is there (for collecting its files)."""
    _known(name)
    root = outside_root()
    return root / name if root is not None and (root / name).exists() else None


def outside(name: str) -> Path:
    """An outside set's folder, for a test that carries the ``corpus`` mark
    (which made sure it is there before the test began)."""
    _known(name)
    if running is not None and name not in _marked(running):
        raise RuntimeError(
            f'{running.nodeid} reads the outside set {name} without @pytest.mark.corpus("{name}")'
        )
    root = outside_root()
    assert root is not None, f"{ENV} is not set"
    return root / name


def require(name: str) -> None:
    """Skip or fail the running test as the module docstring says."""
    why = _known(name)
    root = outside_root()
    if root is None:
        pytest.skip(
            f"needs the {name} test data, which is not in the repository ({why}): "
            f"set {ENV} to a folder that holds {name}"
        )
    if not (root / name).exists():
        pytest.fail(f"{ENV}={root} has no {name}: point it at a folder that holds it")


def corpus_params(name: str, values: Iterable[Any], absent: Any = None) -> list[Any]:
    """Parameters drawn from an outside set, each carrying its mark. While the set
    is absent, one stand-in (``absent``) is returned instead, so the run reports the
    skip rather than collecting nothing; a set present but yielding nothing gives no
    parameters, which fails at collection."""
    mark = pytest.mark.corpus(name)
    if present(name) is None:
        return [pytest.param(absent, marks=mark, id=f"{name} absent")]
    return [pytest.param(v, marks=mark) for v in values]


def _known(name: str) -> str:
    if name not in OUTSIDE_SETS:
        raise KeyError(f"{name} is not an outside set (tests/testdata.py OUTSIDE_SETS)")
    return OUTSIDE_SETS[name]


def _marked(item: pytest.Item) -> set[str]:
    return {str(a) for m in item.iter_markers("corpus") for a in m.args}
