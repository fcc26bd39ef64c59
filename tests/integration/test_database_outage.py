"""The database goes away under a running server, and comes back.

Requests answer 503 in the dialect's envelope while it is gone (never a 500, never a hang),
/readyz says the database is down, /livez stays up, and once the database is back the same
server process serves again by itself. The outage is made by cutting a TCP forwarder the
server connects through, so the shared PostgreSQL server is never disturbed.
"""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy.engine import make_url

from devstack import start_server, wait_until
from tests.integration.test_concurrency import _headers, _seed
from tests.netproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("postgres_only")]

UNAVAILABLE = {"code": 1, "msg": "database is unavailable, try again", "data": None}


@pytest.fixture
def proxy(live_env):
    url = make_url(live_env["DATABASE_URL"])
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


def test_requests_get_503_while_the_database_is_gone_and_recover_after(live_env, proxy, tmp_path):
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    through_proxy = make_url(live_env["DATABASE_URL"]).set(host="127.0.0.1", port=proxy.port)
    env = {
        **live_env,
        "DATABASE_URL": through_proxy.render_as_string(hide_password=False),
        "LOG_FORMAT": "json",
        "DB_CONNECT_TIMEOUT": "2",
    }
    server, base = start_server(env, tmp_path)
    h = _headers(key, alice)

    def send(content: str) -> requests.Response:
        return requests.post(
            f"{base}/message",
            headers=h,
            timeout=30,
            json={"conversationid": cid, "type": -1, "content": content, "time": "1700000000000"},
        )

    try:
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": bob["id"], "time": "1"}
        ).json()["data"]["conversationid"]
        assert send("before").status_code == 200

        proxy.cut()
        failed = send("during")
        assert failed.status_code == 503
        assert failed.json() == UNAVAILABLE
        listing = requests.get(f"{base}/conversation", headers=h, timeout=30)
        assert listing.status_code == 503 and listing.json() == UNAVAILABLE
        ready = requests.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "down"
        assert requests.get(f"{base}/livez", timeout=30).status_code == 200

        proxy.restore()
        wait_until(
            lambda: send("after").status_code == 200,
            30,
            interval=0.2,
            what="the server to use the database again",
        )
        assert requests.get(f"{base}/readyz", timeout=30).status_code == 200
        assert server.alive()  # the same processes recovered; nothing was restarted
        page = requests.get(f"{base}/message", headers=h, params={"conversationid": cid}).json()["data"]
    finally:
        server.stop()
    contents = [m["content"] for m in page]
    assert contents[-1] == "before" and contents[0] == "after"
    assert "during" not in contents
    # The failure was logged once per failed request, with that request's id.
    lines = [json.loads(raw) for raw in server.log_path.read_text().splitlines() if raw.startswith("{")]
    logged = {line["request_id"] for line in lines if line["message"].startswith("database unavailable")}
    assert failed.headers["X-Request-ID"] in logged
