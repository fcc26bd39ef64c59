"""Schema-driven fuzzing of the KOOK routes (schemathesis over /openapi.json): whatever the
input, an authenticated caller gets a KOOK envelope and never a server error."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from chat.services import accounts

EXAMPLES = 25


def test_no_input_breaks_a_kook_route(app):
    _, token = accounts.create_bot("fuzzer")
    accounts.create_bot("fuzz-target")
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app).include(path_regex=r"^/api/v3/")
    broken = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers={"Authorization": f"Bot {token}"})
            body = response.json()
            if response.status_code >= 500 or set(body) != {"code", "message", "data"}:
                broken.append((operation.label, case.query, case.body, response.status_code, response.text))

        check()
    assert not broken, broken[:5]
