"""The Procfile's ``web`` line refuses to start, once and for good, when the configuration is
missing or malformed: the gunicorn master exits non-zero with one message naming the variable,
before it boots a worker, instead of binding the port and booting failing workers forever.

Each test runs the real line with ``bash -c`` from the repository root, with only what a
platform gives (no CHAT_ENV: the line's own production default applies)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from devstack import BIN, ROOT, LiveProcess, free_port, procfile, wait_answering
from tests.conftest import REDIS_URL

# The line is started without any database it could reach (see PRODUCTION).
pytestmark = [pytest.mark.integration, pytest.mark.one_pass]

PRODUCTION = {
    "SECRET_KEY": "s3cret",
    # Never connected to: a refused start stops before any connection, and the start that
    # succeeds below only answers /livez, which touches nothing.
    "DATABASE_URL": "postgresql://postgres:hunter2@127.0.0.1:5432/unused",
    "REDIS_URL": REDIS_URL,
}


def _platform_env(env: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        **env,
    }


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run_web(env: dict[str, str]) -> tuple[int, str]:
    """Run the ``web`` line until it exits; (exit status, everything it printed). A line that
    does not exit (the crash loop this file is about) is killed, whole group, and fails."""
    process = subprocess.Popen(
        ["bash", "-c", procfile()["web"]],
        cwd=ROOT,
        env=_platform_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        pytest.fail(f"the web line was still running after 30 s:\n{output[-3000:]}")
    return process.returncode, output


def _assert_refused(env: dict[str, str], message: str) -> str:
    status, output = _run_web(env)
    assert status != 0, output
    # The message, on a line of its own, exactly once: the master said it, not each worker.
    assert output.splitlines().count(message) == 1, output
    assert "Booting worker" not in output, output
    return output


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"])
def test_the_web_line_refuses_without(missing):
    env = {name: value for name, value in PRODUCTION.items() if name != missing}
    _assert_refused(env, f"CHAT_ENV=production needs these environment variables: {missing}")


def test_the_web_line_names_everything_missing_at_once():
    _assert_refused(
        {}, "CHAT_ENV=production needs these environment variables: SECRET_KEY, DATABASE_URL, REDIS_URL"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_POOL_SIZE": "abc"}, "DB_POOL_SIZE must be a whole number, not 'abc'"),
        (
            {"DATABASE_URL": "mysql://chat:hunter2@127.0.0.1/chat"},
            "DATABASE_URL must be a postgresql:// (or postgres://) or sqlite:/// URL, not 'mysql://'",
        ),
        ({"WEBHOOK_READ_TIMEOUT": "10s"}, "WEBHOOK_READ_TIMEOUT must be a number, not '10s'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of text, json, not 'xml'"),
        ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS must be a whole number, not 'many'"),
    ],
)
def test_the_web_line_refuses_a_malformed_setting(env, message):
    output = _assert_refused({**PRODUCTION, **env}, message)
    assert "hunter2" not in output


def _few_open_files() -> None:
    """A platform's usual soft limit (1024), below what a web worker needs."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def test_the_web_line_starts_when_the_configuration_is_complete(tmp_path):
    """The check refuses only what is wrong: with everything set, the line serves."""
    env = _platform_env(PRODUCTION)
    process = LiveProcess("web", ["bash", "-c", procfile()["web"]], env, tmp_path, inherit_env=False)
    process.start(preexec_fn=_few_open_files)
    try:
        wait_answering(
            f"http://127.0.0.1:{env['PORT']}/livez",
            process,
            timeout=30,
            interval=0.1,
            what="the web line to answer /livez",
        )
        # Each gevent worker may hold thousands of connections, a file descriptor each: the
        # line raises the open-files limit (to 16384, or the hard limit when that is lower).
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 16384 if hard == resource.RLIM_INFINITY else min(16384, hard)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
        assert soft == "unlimited" or int(soft) >= wanted
    finally:
        process.kill()
        process.process.wait(10)
