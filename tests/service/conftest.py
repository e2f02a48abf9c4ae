"""A manual clock for the service's tests (every ``now_ts`` reads it), and
the e-mail channels' upstream relay."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from omnidesk.service.clock import ManualClock
from tests.email_channels.conftest import relay  # noqa: F401  (a fixture)
from tests.service.helpers import control_time


@pytest.fixture
def clock_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], ManualClock]:
    def make(start: float) -> ManualClock:
        c = ManualClock(start)
        control_time(monkeypatch, c)
        return c

    return make
