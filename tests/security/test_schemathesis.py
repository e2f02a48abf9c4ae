"""Generated requests against the OpenAPI schema: no answer is a 5xx, and
every answer the schema describes (a 200's model, a 422's validation error)
has the declared shape.

schemathesis draws the requests from the schema (valid ones, boundary values
such as integers past 2^63, and invalid ones), a bounded number per
operation, and sends them as an admin (a token made without a user, so that
nothing it generates can disable or demote the account it runs as) to a
daemon in a process of its own. The live event stream never ends by design
and is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import engines
from tests.security.daemon_proc import DaemonProc, start_daemon

MAX_EXAMPLES = 20  # per operation and mode: about 2,000 requests in all
SKIP = {"/api/v1/events"}  # the live stream: it never ends, by design


@pytest.fixture(scope="module", params=engines())
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProc]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'omnidesk.db'}"
        d = start_daemon(tmp, url, log_level="warning")
        try:
            yield d
        finally:
            d.stop()
        return
    from tests.conftest import PG_URL, require_service
    from tests.postgres.pgtools import pg_available, temp_schema

    require_service(pg_available(PG_URL), f"PostgreSQL at {PG_URL}", "start it")
    with temp_schema(PG_URL) as url:
        d = start_daemon(tmp, url, log_level="warning")
        try:
            yield d
        finally:
            d.stop()


def test_no_5xx_and_declared_shapes(running: DaemonProc) -> None:
    api = schemathesis.openapi.from_url(running.base + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,  # the same requests every run: a failure reproduces
                database=None,
            )
            def run(case: Any) -> None:
                case.call_and_validate(
                    base_url=running.base,
                    headers=running.bearer("ci"),
                    checks=[not_a_server_error, response_schema_conformance],
                    timeout=30,
                )

            try:
                run()
            except Unsatisfiable:
                pass  # negative mode: nothing in this operation can be made invalid
            except Exception as exc:  # one report per operation and mode, then go on
                failures.append(f"{op.label} ({mode}): {str(exc)[:1500]}")
        assert running.alive(), f"the daemon died during {op.label}"
    assert operations >= 50
    assert not failures, "\n\n".join(failures)
