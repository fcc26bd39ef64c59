"""The production stack exactly as the Procfile runs it: ``release`` (migrations) on an empty
database, then ``web``, ``worker``, ``webhooks`` and ``beat``, each line run by bash from the
repository root with only what a platform provides (PORT, DATABASE_URL, REDIS_URL,
SECRET_KEY; no CHAT_ENV, so the lines' own production default applies). It serves the
README's flow, the push (``ispushed`` turning 1) and the read receipt are done by the real
worker, and receivers that never finish answering hold only the webhook worker.

Whatever the web line says (plain ``gunicorn wsgi:app`` or one that reads gunicorn.conf.py),
the test only relies on it binding ``$PORT``.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack, contextmanager

import pytest
import requests

from devstack import (
    BIN,
    ROOT,
    ApiUser,
    LiveProcess,
    Trickler,
    flask_command,
    free_port,
    procfile,
    wait_answering,
    wait_until,
)
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def test_the_procfile_names_its_process_types():
    assert set(procfile()) == {"release", "web", "worker", "webhooks", "beat"}


@pytest.fixture
def platform_env(empty_database_url, redis_prefix, tmp_path) -> dict[str, str]:
    """What a platform gives each process: its config vars, PORT, and PATH with the app's
    executables. CHAT_ENV is deliberately absent."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_ENV", "FLASK_APP", "TEST_DATABASE_URL")}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": empty_database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": redis_prefix,
            "SECRET_KEY": "procfile-test-secret",
            "PORT": str(free_port()),
            "WEB_CONCURRENCY": "2",  # gunicorn's worker count when its configuration sets none
            "METRICS_TOKEN": "procfile-test-metrics",
            # Production's default is instance/metrics of the checkout (tests/test_config.py);
            # this run keeps its numbers to itself.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            # beat's schedule file, which the Procfile keeps out of the checkout (under $TMPDIR by
            # default): this run's own, so parallel runs never share one.
            "CELERY_BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def procfile_stack(env: dict[str, str], log_dir):
    """``release``, then every long-running line of the Procfile; yields the processes by
    name once the web process is ready, and checks at the end that none of them died."""
    commands = procfile()
    release = subprocess.run(
        ["bash", "-c", commands["release"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert release.returncode == 0, release.stdout + release.stderr
    # Each line run the way a platform runs it: ``bash -c`` in the app's root, with only the
    # platform's environment.
    processes = {
        name: LiveProcess(name, ["bash", "-c", commands[name]], env, log_dir, inherit_env=False).start()
        for name in ("web", "worker", "webhooks", "beat")
    }
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_answering(
            f"{base}/readyz",
            *processes.values(),
            timeout=45,
            interval=0.2,
            request_timeout=2,
            what="the web process to be ready",
        )
        yield processes
        for process in processes.values():
            assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
    finally:
        for process in processes.values():
            process.stop()


def test_the_procfile_stack_serves_the_readme_flow(platform_env, tmp_path):
    base = f"http://127.0.0.1:{platform_env['PORT']}"
    with procfile_stack(platform_env, tmp_path) as processes:
        assert requests.get(f"{base}/readyz").json()["checks"] == {"database": "ok", "redis": "ok"}
        _readme_flow(base, platform_env)
        _metrics_count_the_worker(base, platform_env)
    assert "beat: Starting" in processes["beat"].log_path.read_text()


def test_pushes_arrive_while_slow_webhook_receivers_hold_every_webhook_process(platform_env, tmp_path):
    # Four receivers that trickle their answer a byte at a time (every read well inside the
    # read timeout) for one user, against two webhook processes: every webhook process is
    # stuck on someone's receiver, and another chat's pushes must arrive all the same.
    env = {
        **platform_env,
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_CONCURRENCY": "2",
        "WEBHOOK_READ_TIMEOUT": "2",
        "WEBHOOK_ATTEMPT_TIMEOUT": "4",
    }
    base = f"http://127.0.0.1:{env['PORT']}"
    with procfile_stack(env, tmp_path), ExitStack() as receivers:
        key = flask_command(env, "app-key", "create", "isolation").strip().splitlines()[-1]
        alice, bob, carol, dave = (ApiUser(base, key, name) for name in ("alice", "bob", "carol", "dave"))
        tricklers = [receivers.enter_context(Trickler(interval=0.2)) for _ in range(4)]
        for trickler in tricklers:
            bob.call(
                "POST",
                "/api/v3/webhooks",
                json={"url": trickler.url},
                headers={"Authorization": f"Bearer {bob.token}"},
            )
        stream = dave.stream().wait_open()
        chat = carol.open_with(dave)
        alice.send(alice.open_with(bob), "to bob's slow hooks")

        def held() -> tuple[int, int]:
            """(attempts holding a webhook process now, attempts made so far)."""
            return sum(t.open for t in tricklers), sum(t.connections for t in tricklers)

        # A push proves the isolation only if both webhook processes were held from its send
        # to its arrival by the same two attempts: had one ended meanwhile (at its deadline,
        # which frees the process for the next delivery), the count of open or of all attempts
        # would differ. A push that straddles such a change proves nothing and is not counted.
        isolated, pushes = 0, 0
        while isolated < 10 and pushes < 40:
            wait_until(
                lambda: held()[0] == 2,
                30,
                interval=0.05,
                what="both webhook processes to be held by a receiver",
            )
            before = held()
            sent = carol.send(chat, f"push {pushes}")["messagekey"]
            _, _, data, _ = stream.next(timeout=30, event="message.created")
            assert data["messagekey"] == sent
            pushes += 1
            isolated += before[0] == 2 and held() == before
        stream.close()
        assert isolated == 10, (
            f"only {isolated} of {pushes} pushes came and went while both webhook processes were held"
        )

        # Each attempt ends at its deadline (the receivers never finish), one at a time per
        # delivery: no receiver ever saw two connections at once.
        seen = []

        def all_cut_off():
            seen[:] = bob.call(
                "GET", "/api/v3/webhooks/deliveries", headers={"Authorization": f"Bearer {bob.token}"}
            )["items"]
            return len(seen) == 4 and all(i["last_error"] == "no complete response within 4 s" for i in seen)

        try:
            wait_until(all_cut_off, 30, interval=0.2, what="every attempt to end at its deadline")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the deliveries: {seen}") from None
        assert [t.most_open for t in tricklers] == [1, 1, 1, 1]


def _readme_flow(base: str, env: dict[str, str]) -> None:
    key = flask_command(env, "app-key", "create", "readme").strip().splitlines()[-1]
    app = {"X-APP-Key": key}
    ids = {}
    for name in ("alice", "bob"):
        r = requests.post(
            f"{base}/auth/register", headers=app, json={"username": name, "password": f"{name}-password"}
        )
        assert r.status_code == 200, r.text
        ids[name] = r.json()["data"]["id"]
    heads = {}
    for name in ("alice", "bob"):
        r = requests.post(
            f"{base}/auth/login", headers=app, json={"username": name, "password": f"{name}-password"}
        )
        assert r.status_code == 200, r.text
        heads[name] = {**app, "X-APP-Session": r.json()["data"]["session"]}

    opened = requests.post(
        f"{base}/conversation",
        headers=heads["alice"],
        json={"passiveuser": ids["bob"], "time": "1700000000000"},
    )
    assert opened.status_code == 200, opened.text
    cid = opened.json()["data"]["conversationid"]
    assert opened.json()["data"]["match"] == [str(ids["alice"]), str(ids["bob"])]

    sent = requests.post(
        f"{base}/message",
        headers=heads["alice"],
        json={"conversationid": cid, "type": -1, "content": "hi bob", "time": "1700000000000"},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["issent"] == 1
    msg_key = sent.json()["data"]["messagekey"]

    def alices_view():
        page = requests.get(f"{base}/message", headers=heads["alice"], params={"conversationid": cid}).json()[
            "data"
        ]
        return next(m for m in page if m["messagekey"] == msg_key)

    wait_until(
        lambda: alices_view()["ispushed"] == 1,
        20,
        interval=0.1,
        what="the worker to push the message (ispushed 1)",
    )

    listing = requests.get(f"{base}/conversation", headers=heads["bob"]).json()["data"]
    assert [(c["conversationid"], c["unread_count"]) for c in listing] == [(cid, 1)]

    page = requests.get(f"{base}/message", headers=heads["bob"], params={"conversationid": cid})
    assert [m["content"] for m in page.json()["data"]] == ["hi bob"]
    wait_until(
        lambda: alices_view()["isread"] == 1, 20, interval=0.1, what="bob's read to reach alice (isread 1)"
    )
    listing = requests.get(f"{base}/conversation", headers=heads["bob"]).json()["data"]
    assert listing[0]["unread_count"] == 0

    deleted = requests.delete(
        f"{base}/message", headers=heads["alice"], json={"messagekey": msg_key, "type": 2}
    )
    assert deleted.json()["code"] == 0
    page = requests.get(f"{base}/message", headers=heads["bob"], params={"conversationid": cid})
    assert page.json()["data"] == []


def _metrics_count_the_worker(base: str, env: dict[str, str]) -> None:
    """/metrics of the web line shows the push the worker line made (one directory, summed)."""
    assert requests.get(f"{base}/metrics").status_code == 401
    text = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {env['METRICS_TOKEN']}"}).text
    assert 'chat_deliveries_total{outcome="delivered"} 1.0' in text, text
    assert "chat_push_lag_seconds_count 1.0" in text, text
