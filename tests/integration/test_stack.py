"""The production stack exactly as the Procfile runs it: ``release`` (migrations) on an empty
database, then ``web``, ``worker`` and ``beat``, each line run by bash from the repository
root with only what a platform provides (PORT, DATABASE_URL, REDIS_URL, SECRET_KEY; no
CHAT_ENV, so the lines' own production default applies). It serves the README's flow, and
the push (``ispushed`` turning 1) and the read receipt are done by the real worker.

Whatever the web line says (plain ``gunicorn wsgi:app`` or one that reads gunicorn.conf.py),
the test only relies on it binding ``$PORT``.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from tests.conftest import REDIS_URL
from devstack import BIN, ROOT, LiveProcess, flask_command, free_port, procfile, wait_until

pytestmark = pytest.mark.integration


def test_the_procfile_names_the_four_process_types():
    assert set(procfile()) == {"release", "web", "worker", "beat"}


@pytest.fixture
def platform_env(empty_database_url, redis_prefix, tmp_path) -> dict[str, str]:
    """What a platform gives each process: its config vars, PORT, and PATH with the app's
    executables. CHAT_ENV is deliberately absent."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_ENV", "FLASK_APP", "TEST_DATABASE_URL")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": empty_database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "SECRET_KEY": "procfile-test-secret",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",  # gunicorn's worker count when its configuration sets none
        "METRICS_TOKEN": "procfile-test-metrics",
        # Production's default is instance/metrics of the checkout (tests/ops/test_config.py);
        # this run keeps its numbers to itself.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class ProcfileProcess(LiveProcess):
    """One Procfile line, run the way a platform runs it: ``bash -c`` in the app's root."""

    def start(self) -> "ProcfileProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["bash", "-c", self.argv[0]], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self


def test_the_procfile_stack_serves_the_readme_flow(platform_env, tmp_path):
    commands = procfile()
    release = subprocess.run(["bash", "-c", commands["release"]], cwd=ROOT, env=platform_env,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr

    processes = [ProcfileProcess(name, [commands[name]], platform_env, tmp_path).start()
                 for name in ("web", "worker", "beat")]
    web = processes[0]
    base = f"http://127.0.0.1:{platform_env['PORT']}"
    try:
        def ready():
            for process in processes:
                assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
            try:
                return requests.get(f"{base}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 45, interval=0.2, what="the web process to be ready")
        assert requests.get(f"{base}/readyz").json()["checks"] == {"database": "ok", "redis": "ok"}
        _readme_flow(base, platform_env)
        _metrics_count_the_worker(base, platform_env)
        for process in processes:
            assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
    finally:
        for process in processes:
            process.stop()
    assert "beat: Starting" in processes[2].log_path.read_text()


def _readme_flow(base: str, env: dict[str, str]) -> None:
    key = flask_command(env, "app-key", "create", "readme").strip().splitlines()[-1]
    app = {"X-APP-Key": key}
    ids = {}
    for name in ("alice", "bob"):
        r = requests.post(f"{base}/auth/register", headers=app,
                          json={"username": name, "password": f"{name}-password"})
        assert r.status_code == 200, r.text
        ids[name] = r.json()["data"]["id"]
    heads = {}
    for name in ("alice", "bob"):
        r = requests.post(f"{base}/auth/login", headers=app,
                          json={"username": name, "password": f"{name}-password"})
        assert r.status_code == 200, r.text
        heads[name] = {**app, "X-APP-Session": r.json()["data"]["session"]}

    opened = requests.post(f"{base}/conversation", headers=heads["alice"],
                           json={"passiveuser": ids["bob"], "time": "1700000000000"})
    assert opened.status_code == 200, opened.text
    cid = opened.json()["data"]["conversationid"]
    assert opened.json()["data"]["match"] == [str(ids["alice"]), str(ids["bob"])]

    sent = requests.post(f"{base}/message", headers=heads["alice"], json={
        "conversationid": cid, "type": -1, "content": "hi bob", "time": "1700000000000"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["issent"] == 1
    msg_key = sent.json()["data"]["messagekey"]

    def alices_view():
        page = requests.get(f"{base}/message", headers=heads["alice"],
                            params={"conversationid": cid}).json()["data"]
        return next(m for m in page if m["messagekey"] == msg_key)

    wait_until(lambda: alices_view()["ispushed"] == 1, 20, interval=0.1,
               what="the worker to push the message (ispushed 1)")

    listing = requests.get(f"{base}/conversation", headers=heads["bob"]).json()["data"]
    assert [(c["conversationid"], c["unread_count"]) for c in listing] == [(cid, 1)]

    page = requests.get(f"{base}/message", headers=heads["bob"], params={"conversationid": cid})
    assert [m["content"] for m in page.json()["data"]] == ["hi bob"]
    wait_until(lambda: alices_view()["isread"] == 1, 20, interval=0.1,
               what="bob's read to reach alice (isread 1)")
    listing = requests.get(f"{base}/conversation", headers=heads["bob"]).json()["data"]
    assert listing[0]["unread_count"] == 0

    deleted = requests.delete(f"{base}/message", headers=heads["alice"],
                              json={"messagekey": msg_key, "type": 2})
    assert deleted.json()["code"] == 0
    page = requests.get(f"{base}/message", headers=heads["bob"], params={"conversationid": cid})
    assert page.json()["data"] == []


def _metrics_count_the_worker(base: str, env: dict[str, str]) -> None:
    """/metrics of the web line shows the push the worker line made (one directory, summed)."""
    assert requests.get(f"{base}/metrics").status_code == 401
    text = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {env['METRICS_TOKEN']}"}).text
    assert 'chat_deliveries_total{outcome="delivered"} 1.0' in text, text
    assert "chat_push_lag_seconds_count 1.0" in text, text
