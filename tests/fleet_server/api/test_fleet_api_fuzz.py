"""The REST API fuzzed against its own OpenAPI document (schemathesis, in-process over ASGI, one
started app for the module): for every operation, valid and invalid requests, a bounded number of
each. No answer is a 5xx, and every answer's status, content type and body are the ones the
document declares for it (so the document is held to the errors the API really sends).

Marked ``fuzz`` (and ``slow``): ``pytest -m fuzz``. ``EDGEFLEET_FUZZ_EXAMPLES`` raises the number
of examples per operation (default 25, positive and negative each: about 25 s on two cores);
``EDGEFLEET_FUZZ_RANDOM=1`` draws new examples instead of the fixed ones CI runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleet_server.app import create_app
from fleet_server.config import Settings
from tests.fixtures.tuf_keys import server_keys

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("EDGEFLEET_FUZZ_EXAMPLES", "25"))
# CI runs the same examples every time (a failure there is reproducible); set
# EDGEFLEET_FUZZ_RANDOM=1 to explore new ones.
RANDOM = os.environ.get("EDGEFLEET_FUZZ_RANDOM")
STREAMS = {"/api/v1/events"}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("fuzz") / "server"
    app = create_app(
        Settings(
            host="127.0.0.1",
            port=0,
            data_dir=data,
            broker="embedded",
            mqtt_protocol="3.1.1",
            reconcile_interval_s=0.5,
            mqtt_client_id=f"fleet-server-fuzz-{data.parent.name}",
            keys_dir=server_keys(),
        )
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan once
    shutdown_lifespans()


def test_every_operation_answers_as_its_document_says(api_schema: Any) -> None:
    # schemathesis' own pytest plugin does not load with this pytest; hypothesis drives it directly.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # the whole document, not a part that happened to load
    # The event stream never ends by itself, so a call to it would not return; its answers are
    # tested against a real server (test_fleet_events.py).
    operations = [op for op in operations if op.path not in STREAMS]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                check_operation(operation.as_strategy(generation_mode=mode))
            except Unsatisfiable:
                pass  # no invalid request to make: an operation without parameters or a body
            except Exception as exc:  # every operation's failures, not only the first one's
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def check_operation(cases: Any) -> None:
    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=RANDOM is None,
    )
    def run(case: Any) -> None:
        response = case.call()
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
        case.validate_response(response, checks=CHECKS)

    run()
