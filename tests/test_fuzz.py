"""Schema-driven fuzzing (schemathesis) of every operation in /openapi.json.

Whatever the generated input, the answer is never a server error, always carries the
dialect's envelope, and is what the document says it is: a documented status code
(``status_code_conformance``), a documented content type (``content_type_conformance``) and a
body that validates against the documented schema for that status
(``response_schema_conformance``), errors included. Authenticated as a real user (and bot) so
the handlers behind the credential checks are reached too.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat import create_app
from chat.db import end_read
from chat.services import accounts, conversations, credentials, messages
from config import TestingConfig
from tests.conftest import app_with_clean_database

# The operations are read from the spec at collection time (no database is touched);
# schemathesis' own pytest plugin is not used, its fixture support lags pytest 9.
# The event stream is left out: a valid call never ends (tests/realtime/test_sse.py covers its
# parameters and errors).
# /metrics answers Prometheus' text, not an envelope (tests/test_metrics.py covers it).
STREAMING = {"GET /api/v3/events", "GET /metrics"}
OPERATIONS = sorted(
    op.ok().label
    for op in schemathesis.openapi.from_wsgi("/openapi.json", create_app(TestingConfig)).get_all_operations()
    if op.ok().label not in STREAMING
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_app(config_class, _schema):
    class FuzzConfig(config_class):
        # Generated webhook URLs must never be called: this machine may send traffic only to
        # itself. With no webhook slots, every registration is refused before any request.
        WEBHOOK_MAX_PER_USER = 0
        WEBHOOK_ALLOW_PRIVATE = False

    with app_with_clean_database(FuzzConfig) as app:
        yield app


@pytest.fixture(scope="module")
def fuzz_credentials(fuzz_app):
    key = accounts.create_app_key("fuzz")
    alice = accounts.register("fuzz-alice", "fuzz-password")
    accounts.register("fuzz-bob", "fuzz-password")
    bob = accounts.find_user_by_code("fuzz-bob")
    view = conversations.open_conversation(alice, bob.id)
    messages.send(alice, view, "text", "seed message", 1700000000000)
    _, bot_token = accounts.create_bot("fuzz-bot")
    return key, bot_token


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


_alice: dict[str, str] = {}


def _session() -> str:
    """alice's session, a new one whenever a case has ended it: the fuzzer may well call
    /auth/logout or end her sessions. Logging in for every case instead was a quarter of the
    module's time."""
    raw = _alice.get("session")
    ended = raw is None or credentials.token_problem(raw) is not None
    end_read()  # the check's read, which on SQLite would hold the write lock the case may need
    if ended:
        raw = _alice["session"] = accounts.login("fuzz-alice", "fuzz-password")[0]
    return raw


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_is_as_documented(label, fuzz_schema, fuzz_credentials):
    key, bot_token = fuzz_credentials
    operation = next(op.ok() for op in fuzz_schema.get_all_operations() if op.ok().label == label)

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        headers = {"X-APP-Key": key, "X-APP-Session": _session(), "Authorization": f"Bot {bot_token}"}
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text[:500])
        case.validate_response(response, checks=CHECKS)
        body = response.json()
        if case.path.startswith("/api/v3") or case.path == "/gateway":
            assert set(body) == {"code", "message", "data"}, body
        elif case.path not in ("/livez", "/readyz", "/openapi.json"):
            assert set(body) == {"code", "msg", "data"}, body

    check()
