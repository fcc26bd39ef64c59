"""/openapi.json describes error answers as they are really given: the dialect's envelope for
each status an operation can answer, never flask-smorest's generic error schema.
(tests/test_fuzz.py checks real answers against the document.)"""

from __future__ import annotations


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_error_answers_use_the_dialects_envelope(client):
    spec = client.get("/openapi.json").json
    for method, path, operation in _operations(spec):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        if path in ("/livez", "/readyz"):
            continue
        # KOOK's WebSocket gateway sits outside /api/v3, as KOOK's own does.
        envelope = "Kook" if path.startswith("/api/v3/") or path == "/gateway" else "Classic"
        errors = {status: r for status, r in responses.items() if int(status) >= 400}
        assert {"429", "503"} <= set(errors), (method, path, sorted(errors))
        if operation.get("security"):
            assert "401" in errors, (method, path)
        for status, response in errors.items():
            assert response == {"$ref": f"#/components/responses/{envelope}Error{status}"}, (method, path)
    schemas = spec["components"]["schemas"]
    assert set(schemas["ClassicError"]["required"]) == {"code", "msg", "data"}
    assert set(schemas["KookError"]["required"]) == {"code", "message", "data"}
    assert "Retry-After" in spec["components"]["responses"]["KookError429"]["headers"]
    assert "Retry-After" in spec["components"]["responses"]["ClassicError503"]["headers"]


def test_refusals_are_documented_where_they_happen(client):
    spec = client.get("/openapi.json").json
    send = spec["paths"]["/message"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "413"} <= set(send)
    assert "409" in spec["paths"]["/api/v3/direct-message/create"]["post"]["responses"]
    assert "413" not in spec["paths"]["/api/v3/user/me"]["get"]["responses"]  # no body
