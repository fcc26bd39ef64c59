"""Search on the production stack's web server (gunicorn, as configured): found through the
real HTTP API, and the words searched for in none of its logs, access lines included."""

from __future__ import annotations

import pytest
import requests

from devstack import ROOT, ApiUser, start_server, wait_until
from tests.conftest import live_credential

pytestmark = pytest.mark.integration

PRIVATE = "appendicitis"


def test_a_search_on_gunicorn_finds_and_never_logs_its_words(live_env, tmp_path):
    access_log = tmp_path / "access.log"
    key = live_credential(live_env, "app-key", "live-search")
    server, base = start_server(
        {**live_env, "LOG_FORMAT": "text"},
        tmp_path,
        extra_args=[
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            "%(r)s | %(q)s | %({raw_uri}e)s",
        ],
    )
    try:
        alice, bob = ApiUser(base, key, "live-alice"), ApiUser(base, key, "live-bob")
        alice.send(alice.open_with(bob), f"the doctor says {PRIVATE}, 明天手术")
        found = bob.call("GET", "/message/search", params={"q": f"{PRIVATE[:6]} 手术"})
        assert [(i["content"], i["highlights"]) for i in found["items"]] == [
            (f"the doctor says {PRIVATE}, 明天手术", [[16, 22], [32, 34]])
        ]
        response = requests.get(
            f"{base}/api/v3/direct-message/search",
            params={"q": PRIVATE},
            headers={"Authorization": f"Bearer {bob.token}"},
            timeout=10,
        )
        assert response.status_code == 200 and len(response.json()["data"]["items"]) == 1
        wait_until(
            lambda: access_log.exists() and access_log.read_text().count("search?q=") >= 2,
            10,
            what="the access lines",
        )
    finally:
        server.stop()
    for log in (access_log.read_text(), server.log_path.read_text()):
        assert PRIVATE[:6] not in log and "手术" not in log and "%E6%89%8B" not in log
    assert (
        "GET /message/search?q=[redacted] HTTP/1.1 | q=[redacted] | /message/search?q=[redacted]"
        in access_log.read_text()
    )
