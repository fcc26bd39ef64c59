"""Real processes for the integration tests: a web server, Celery workers, beat.

Each process gets its environment explicitly (``CHAT_ENV``, ``DATABASE_URL``, ``REDIS_URL``,
``SECRET_KEY``), runs from the repository root with this virtualenv's executables, logs to a
file under the test's temporary directory, and is stopped (TERM, then KILL) when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveProcess:
    """A child process with a log file; ``stop()`` ends it and its children."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "LiveProcess":
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (gunicorn/celery fork children)."""
        if self.alive():
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def start_server(env: dict[str, str], log_dir: Path, *, port: int | None = None,
                 extra_args: list[str] | None = None) -> tuple[LiveProcess, str]:
    """gunicorn serving ``wsgi:app``; returns (process, base URL) once /livez answers."""
    port = port or free_port()
    argv = [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--threads", "4", "--timeout", "60", *(extra_args or [])]
    server = LiveProcess("web", argv, env, log_dir).start()
    base = f"http://127.0.0.1:{port}"

    def up():
        if not server.alive():
            raise AssertionError(f"server exited:\n{server.log_tail()}")
        try:
            return requests.get(f"{base}/livez", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(up, 30, what="the web server")
    return server, base


def start_worker(env: dict[str, str], log_dir: Path, *, concurrency: int = 2,
                 extra_args: list[str] | None = None) -> LiveProcess:
    """A Celery worker on every queue of the app."""
    argv = [str(BIN / "celery"), "-A", "workers", "worker", "--loglevel=info",
            f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
            *(extra_args or [])]
    return LiveProcess("worker", argv, env, log_dir).start()


def start_beat(env: dict[str, str], log_dir: Path) -> LiveProcess:
    argv = [str(BIN / "celery"), "-A", "workers", "beat", "--loglevel=info",
            "--schedule", str(log_dir / f"beat-schedule-{time.time_ns()}")]
    return LiveProcess("beat", argv, env, log_dir).start()


def flask_command(env: dict[str, str], *args: str) -> str:
    """Run ``flask <args>`` against ``env``; returns its output (raises on failure)."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
