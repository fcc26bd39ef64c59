"""``make stack`` (``python devstack.py stack``): the Procfile's processes started by one
command under honcho, on the test's database and Redis prefix, listening on 127.0.0.1; every
output line is prefixed by its process; beat keeps its schedule outside the source tree; and
one Ctrl-C (SIGINT to the terminal's process group) stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from devstack import ROOT, ApiUser, LiveProcess, free_port, wait_answering, wait_until
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def test_one_command_runs_the_stack_and_one_ctrl_c_stops_it(empty_database_url, redis_prefix, tmp_path):
    port = free_port()
    state = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_ENV", "FLASK_APP", "TEST_DATABASE_URL")}
    env.update(
        {
            "STACK_DATABASE_URL": empty_database_url,
            "STACK_REDIS_URL": REDIS_URL,
            "STACK_REDIS_KEY_PREFIX": redis_prefix,
            "STACK_STATE_DIR": str(state),
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "WEBHOOK_CONCURRENCY": "1",
        }
    )
    # A session of its own (as every LiveProcess has) stands for the terminal: Ctrl-C signals
    # its whole group.
    stack = LiveProcess("stack", [sys.executable, "devstack.py", "stack"], env, tmp_path, inherit_env=False)
    stack.start()
    log_path = stack.log_path
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{base}/livez", stack, timeout=90, what="the stack's web process")
        key = (state / "web-app-key").read_text().strip()
        alice, bob = ApiUser(base, key, "stack-alice"), ApiUser(base, key, "stack-bob")
        conversation = alice.open_with(bob)
        sent = alice.send(conversation, "through make stack")
        # The push is the worker's: ispushed turns 1 once the worker process did it.
        wait_until(
            lambda: bob.call("GET", "/message", params={"conversationid": conversation})[0]["ispushed"] == 1,
            60,
            interval=0.3,
            what="the worker to push the message",
        )
        assert sent["messagekey"]
        wait_until(
            lambda: (
                (state / "celerybeat-schedule").exists()
                or any(p.name.startswith("celerybeat-schedule") for p in state.iterdir())
            ),
            60,
            interval=0.3,
            what="beat to write its schedule",
        )
        text = log_path.read_text()
        for name in ("web.1", "worker.1", "webhooks.1", "beat.1"):
            assert f" {name}" in text and "|" in text, name
    finally:
        stack.kill(signal.SIGINT)
        try:
            stack.process.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill(signal.SIGKILL)
            raise
    text = log_path.read_text()
    assert all(f"{name} stopped" in text for name in ("web.1", "worker.1", "webhooks.1", "beat.1")), text[
        -3000:
    ]
    with pytest.raises(requests.RequestException):
        requests.get(f"{base}/livez", timeout=1)
    assert not list(ROOT.glob("celerybeat-schedule*"))  # nothing written into the source tree
