"""Fuzzing every operation of the OpenAPI document against the real server: schemathesis makes
requests that fit the document and requests that break it (wrong types, missing fields, odd
paths), authorised and not; whatever comes, the answer is never a 5xx. Requests that fit the
document get answers that fit it too (status codes, content types, bodies): every check but
"valid data should be accepted", which a VW line the schema cannot parse would fail."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from shoal.serve.http.openapi import document
from tests.serve.conftest import Running

OPERATIONS = [op.ok() for op in schemathesis.openapi.from_dict(document()).get_all_operations()]


def _breakable(op: schemathesis.APIOperation) -> bool:
    """Negative cases break a body or a query or header parameter (any path text is a name)."""
    return bool(len(op.body)) or any(p.location != "path" for p in op.iter_parameters())


CASES = [
    pytest.param(op, mode, id=f"{op.method.upper()} {op.path} {mode.value}")
    for op in OPERATIONS
    for mode in GenerationMode
    if mode == GenerationMode.POSITIVE or _breakable(op)
]


@pytest.mark.slow
@pytest.mark.parametrize(("op", "mode"), CASES)
def test_no_request_gets_a_server_error(
    start: Callable[..., Running], op: schemathesis.APIOperation, mode: GenerationMode
) -> None:
    r = start()
    r.service.predict(["| a"])  # a little state for the routes that read it

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        headers = {**(case.headers or {}), **r.auth}
        response = case.call(base_url=str(r.client.base_url), headers=headers, timeout=30)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code >= 400:
            assert "error" in response.json(), response.text
        if mode == GenerationMode.POSITIVE:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    fuzz()
