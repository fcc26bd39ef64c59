"""The fault suite (``make faults``): the production stack under load while its parts are
killed, then proof that nothing was lost, doubled or miscounted.

Everything runs on this machine, privately: a PostgreSQL cluster of its own (``initdb`` on a
free port, so restarting it harms nothing else), a redis-server of its own, gunicorn (2
workers), the Procfile's two Celery workers (push and counters; webhooks) and beat. One
recipient has a webhook whose receiver trickles its answer a byte at a time for the whole
run. Users send messages from several threads while, on a schedule, the push worker is
SIGKILLed (and started again), Redis is SIGKILLed and started again empty, and PostgreSQL
is restarted. Afterwards:

- every send answered 2xx is in the database exactly once, and pushed;
- no answer other than 2xx and 503 (503 only while a dependency was down);
- every unread counter equals ``flask counters rebuild``;
- every process is still running;
- push lag with the trickling receiver still attached is that of an idle system;
- deletes for everyone racing edits of the same messages leave every one deleted, empty;

and a table says how long each fault took to recover from (the service back -> a probe
message sent then is pushed). ``run(short=True)`` is the short version ``make test`` runs:
one fault of each kind, a few hundred messages.

    python -m bench.faults [--messages 10000] [--users 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from bench.notifications import PushService
from devstack import (
    ApiUser,
    LiveProcess,
    Trickler,
    flask_command,
    free_port,
    start_beat,
    start_redis,
    start_server,
    start_worker,
    wait_until,
)

PG_BIN = next((p for p in (Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin")))
               if (p / "initdb").exists()), Path("/usr/local/bin"))

# Short sweeps and visibility, so recovery is measured in seconds, not in the defaults' minute.
FAST = {
    "PUSH_SWEEP_INTERVAL_SECONDS": "2",
    "PUSH_SWEEP_MIN_AGE_SECONDS": "2",
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "WEBHOOK_ALLOW_PRIVATE": "1",  # the trickling receiver is on 127.0.0.1
    "WEBHOOK_ATTEMPT_TIMEOUT": "5",
    # A delivery (webhook or notification) whose task Redis lost is queued again after this.
    "WEBHOOK_REQUEUE_AFTER": "5",
    # Device notifications (run_notifications): a local push service, a short delay.
    "PUSH_ALLOW_PRIVATE": "1",
    "NOTIFY_DELAY_SECONDS": "1",
    "RATELIMIT_GLOBAL": "1000000 per second",
    "RATELIMIT_ROUTE": "1000000 per second",
    "RATELIMIT_SEND": "1000000 per second",
    "RATELIMIT_LOGIN": "1000000 per second",
    "RATELIMIT_LOGIN_ACCOUNT": "1000000 per second",
}


class PrivatePostgres:
    """A PostgreSQL cluster of its own, run as the ``postgres`` system user when this runs as
    root (the server refuses to run as root)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="chat-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/chat"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        engine = create_engine(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                               isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE chat"))
        engine.dispose()

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Tally:
    """What the senders saw."""
    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # messagekey -> content
    statuses: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Recovery:
    fault: str
    resumed: float  # the service back -> the first push after it
    seconds: float  # the service back -> a probe sent then is pushed (behind any backlog)


class Stack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pg = PrivatePostgres()
        self.pg.start()
        self.pg.create_database()
        self.redis, redis_url = start_redis(workdir)
        self.redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        self.env = {
            "CHAT_ENV": "production", "DATABASE_URL": self.pg.url, "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": "faults:", "SECRET_KEY": "fault-suite-secret",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), **FAST,
            "VAPID_KEY_FILE": str(workdir / "vapid.pem"),
        }
        flask_command(self.env, "db", "upgrade")
        self.web, self.base = start_server(self.env, workdir)
        self.worker = self.start_push_worker()
        self.webhooks = start_worker(self.env, workdir, extra_args=["-Q", "webhooks", "-n", "webhooks@%h"])
        self.beat = start_beat(self.env, workdir)
        self.app_key = flask_command(self.env, "app-key", "create", "faults").strip().splitlines()[-1]
        self._engine = None

    def start_push_worker(self) -> LiveProcess:
        """The Procfile's ``worker``: pushes and counters, never webhooks."""
        return start_worker(self.env, self.workdir, extra_args=["-Q", "push,counters", "-n", "worker@%h"])

    def processes(self) -> dict[str, LiveProcess]:
        return {"web": self.web, "worker": self.worker, "webhooks": self.webhooks, "beat": self.beat}

    def scalar(self, sql: str):
        if self._engine is None:
            self._engine = create_engine(self.pg.url, pool_pre_ping=True)
        with self._engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        for process in (self.beat, self.webhooks, self.worker, self.web, self.redis):
            process.stop()
        self.pg.destroy()


def _send_loop(chats: list[tuple[ApiUser, int]], total: int, tally: Tally, counter,
               stop: threading.Event) -> None:
    while True:
        n = next(counter)
        if n >= total and stop.is_set():
            return  # at least ``total``, and on until the last fault is over
        sender, chat = chats[n % len(chats)]
        content = f"fault-suite {n} {uuid.uuid4().hex[:8]}"
        try:
            response = sender.http.post(f"{sender.base}/message", timeout=10, json={
                "conversationid": chat, "type": -1, "content": content, "time": str(int(time.time() * 1000))})
            status = response.status_code
        except requests.RequestException as exc:
            status = f"no answer ({type(exc).__name__})"
            response = None
        with tally.lock:
            tally.sent += 1
            tally.statuses[status] += 1
            if response is not None and 200 <= response.status_code < 300:
                tally.accepted[response.json()["data"]["messagekey"]] = content


def _probe_pushed(stack: Stack, probe: tuple[ApiUser, int], timeout: float = 120) -> float:
    """Send one probe message, retrying while the service refuses; seconds until it is pushed."""
    sender, chat = probe
    started = time.monotonic()
    key = None
    while key is None:
        try:
            response = sender.http.post(f"{sender.base}/message", timeout=5, json={
                "conversationid": chat, "type": -1, "content": "probe", "time": "1700000000000"})
            if response.status_code == 200:
                key = response.json()["data"]["messagekey"]
        except requests.RequestException:
            pass
        if key is None:
            if time.monotonic() - started > timeout:
                raise AssertionError("the service did not take a probe message after the fault")
            time.sleep(0.2)

    def pushed():
        try:
            return stack.scalar(f"SELECT pushed_at IS NOT NULL FROM messages WHERE key = '{key}'")
        except Exception:  # noqa: BLE001 - the database may still be coming back
            return False
    wait_until(pushed, timeout, interval=0.005, what="the probe message to be pushed")
    return time.monotonic() - started


def _edit_delete_race(stack: Stack, sender: ApiUser, chat: int, messages: int = 10, edits: int = 5) -> int:
    """For each of ``messages`` new messages: one delete for everyone and ``edits`` edits at
    once. Returns how many of them still show content (or are not deleted) afterwards."""
    keys = [sender.send(chat, f"race {n}")["messagekey"] for n in range(messages)]
    bearer = {"Authorization": f"Bearer {sender.token}"}

    def delete(key):
        sender.http.delete(f"{sender.base}/message", json={"messagekey": key, "type": 2}, timeout=10)

    def edit(key, n):
        requests.post(f"{sender.base}/api/v3/direct-message/update", headers=bearer, timeout=10,
                      json={"msg_id": key, "content": f"edited {n}"})

    for key in keys:
        racers = [threading.Thread(target=delete, args=(key,))]
        racers += [threading.Thread(target=edit, args=(key, n)) for n in range(edits)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(15)
    listed = ", ".join(f"'{key}'" for key in keys)
    return stack.scalar(f"SELECT count(*) FROM messages WHERE key IN ({listed}) "
                        "AND (deleted_at IS NULL OR content <> '')")


def _faults(short: bool) -> list[str]:
    if short:
        return ["worker", "redis", "postgres"]
    return ["worker", "worker", "redis", "worker", "postgres", "worker", "redis", "worker", "worker"]


def _inflict(stack: Stack, fault: str, probe) -> Recovery:
    if fault == "worker":
        stack.worker.kill(signal.SIGKILL)
        stack.worker.process.wait(10)
        stack.worker = stack.start_push_worker()
    elif fault == "redis":
        stack.redis.kill(signal.SIGKILL)
        stack.redis.process.wait(10)
        time.sleep(2)
        stack.redis, _ = start_redis(stack.workdir, stack.redis_port)
    elif fault == "postgres":
        stack.pg.stop("immediate")
        time.sleep(2)
        stack.pg.start()
    back_ms = int(time.time() * 1000)
    probe_seconds = _probe_pushed(stack, probe)
    first = stack.scalar(f"SELECT min(pushed_at) FROM messages WHERE pushed_at >= {back_ms}")
    return Recovery(fault, max(0.0, (first - back_ms) / 1000), probe_seconds)


def run(messages: int = 10_000, users: int = 20, senders: int = 8, short: bool = False,
        workdir: Path | None = None) -> dict:
    """Run the suite; returns its numbers (and raises AssertionError if a promise broke)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chat-faults-"))
    stack = Stack(workdir)
    try:
        people = [ApiUser(stack.base, stack.app_key, f"f{n}") for n in range(users)]
        chats = [(people[n], people[n].open_with(people[(n + 1) % users])) for n in range(users)]
        probe_users = [ApiUser(stack.base, stack.app_key, f"probe{n}") for n in range(2)]
        probe = (probe_users[0], probe_users[0].open_with(probe_users[1]))
        trickler = Trickler(interval=1.0).__enter__()
        people[1].call("POST", "/api/v3/webhooks", json={"url": trickler.url},
                       headers={"Authorization": f"Bearer {people[1].token}"})

        tally, counter, stop = Tally(), itertools.count(), threading.Event()
        threads = [threading.Thread(target=_send_loop, args=(chats, messages, tally, counter, stop),
                                    daemon=True) for _ in range(senders)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        recoveries = []
        faults = _faults(short)
        for fault in faults:
            time.sleep(1.5 if short else 3)
            recoveries.append(_inflict(stack, fault, probe))
        stop.set()
        for thread in threads:
            thread.join(600)
        load_seconds = time.monotonic() - started
        wait_until(lambda: stack.scalar("SELECT count(*) FROM messages WHERE pushed_at IS NULL") == 0,
                   120, interval=0.5, what="every stored message to be pushed")
        # The trickling receiver has held webhook processes all along: pushes do not notice.
        time.sleep(2)  # past the last sweeps and retries the faults left behind
        lags = sorted(_probe_pushed(stack, probe) * 1000 for _ in range(20))
        trickled = trickler.connections
        trickler.__exit__(None, None, None)
        still_there = _edit_delete_race(stack, people[0], chats[0][1])

        stored = stack.scalar("SELECT count(*) FROM messages WHERE content LIKE 'fault-suite %'")
        found = Counter()
        engine = create_engine(stack.pg.url)
        with engine.connect() as conn:
            for key, pushed in conn.execute(text(
                    "SELECT key, pushed_at IS NOT NULL FROM messages WHERE content LIKE 'fault-suite %'")):
                found[key] += 1
                found["pushed"] += int(pushed)
            duplicates = conn.execute(text(
                "SELECT count(*) FROM (SELECT content FROM messages WHERE content LIKE 'fault-suite %' "
                "GROUP BY content HAVING count(*) > 1) d")).scalar_one()
        engine.dispose()
        missing = sum(1 for key in tally.accepted if found[key] == 0)
        rebuild = re.search(r"(\d+) member rows were wrong", flask_command(stack.env, "counters", "rebuild"))
        drift = int(rebuild.group(1)) if rebuild else -1
        alive = {name: process.alive() for name, process in stack.processes().items()}
        unexpected = {str(s): c for s, c in tally.statuses.items() if not (s == 503 or (isinstance(s, int) and 200 <= s < 300))}
        result = {
            "messages sent": tally.sent,
            "accepted (2xx)": len(tally.accepted),
            "refused with 503": tally.statuses.get(503, 0),
            "other answers": sum(unexpected.values()),
            "stored": stored,
            "pushed": found["pushed"],
            "accepted but missing": missing,
            "duplicates": duplicates,
            "counter drift (rows the rebuild changed)": drift,
            "load seconds": round(load_seconds, 1),
            "push lag with a trickling webhook receiver, p50 / max (ms)": f"{lags[len(lags) // 2]:.0f} / {lags[-1]:.0f}",
            "trickling receiver's connections (each cut at its deadline)": trickled,
            "deleted messages showing content after a delete/edit race": still_there,
            "recoveries": recoveries,
            "alive": alive,
            "unexpected": unexpected,
        }
        return result
    finally:
        stack.stop()


def run_notifications(users: int = 30, rounds: int = 6, workdir: Path | None = None) -> dict:
    """Device notifications while the process that sends them (the Procfile's ``webhooks``
    worker) is SIGKILLed mid-batch and Redis is killed: ``users`` offline users with a Web Push
    device each (a local, slow push service) get a message per round from one sender, and
    after each round one of those faults strikes. Afterwards every device must have been
    notified, nothing may be left waiting, and a notification may have gone out twice only
    where a worker died with it on the wire (its delivery shows a second attempt)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chat-faults-notify-"))
    stack = Stack(workdir)
    service = PushService(hold_seconds=0.05)
    try:
        sender = ApiUser(stack.base, stack.app_key, "notifier")
        people = [ApiUser(stack.base, stack.app_key, f"n{n}") for n in range(users)]
        for person in people:
            service.register(person)
        chats = [sender.open_with(person) for person in people]
        faults = []
        for round_number in range(rounds):
            threads = [threading.Thread(target=sender.send, args=(chat, f"round {round_number}")) for chat in chats]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            time.sleep(1.5)  # the delay runs out: notifications are on their way
            fault = "webhooks" if round_number % 3 != 2 else "redis"
            if fault == "webhooks":
                stack.webhooks.kill(signal.SIGKILL)
                stack.webhooks.process.wait(10)
                stack.webhooks = start_worker(stack.env, stack.workdir,
                                              extra_args=["-Q", "webhooks", "-n", "webhooks@%h"])
            else:
                stack.redis.kill(signal.SIGKILL)
                stack.redis.process.wait(10)
                time.sleep(1)
                stack.redis, _ = start_redis(stack.workdir, stack.redis_port)
            faults.append(fault)

        def settled():
            try:
                return (stack.scalar("SELECT count(*) FROM push_pending") == 0
                        and stack.scalar("SELECT count(*) FROM push_deliveries WHERE status = 'queued'") == 0)
            except Exception:  # noqa: BLE001 - the database may be busy with the recovery
                return False
        started = time.monotonic()
        wait_until(settled, 180, interval=0.5, what="every notification to be sent")
        settle_seconds = time.monotonic() - started
        engine = create_engine(stack.pg.url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT d.address, count(*) FILTER (WHERE pd.status = 'sent'), "
                "count(*) FILTER (WHERE pd.attempts > 1), count(*) FILTER (WHERE pd.status <> 'sent') "
                "FROM push_deliveries pd JOIN push_devices d ON d.id = pd.device_id GROUP BY d.address")).all()
        engine.dispose()
        received = {f"{service.base}{path}": count for path, count in service.per_path.items()}
        repeats = sum(max(0, received.get(address, 0) - sent) for address, sent, _, _ in rows)
        second_attempts = sum(retried for _, _, retried, _ in rows)
        return {
            "devices": users,
            "devices notified": sum(1 for address, sent, _, _ in rows if sent and received.get(address)),
            "notifications sent (log)": sum(sent for _, sent, _, _ in rows),
            "received by the push service": service.count,
            "sent twice (a worker died with it on the wire)": repeats,
            "deliveries with a second attempt": second_attempts,
            "deliveries not sent": sum(failed for _, _, _, failed in rows),
            "seconds to settle after the last fault": round(settle_seconds, 1),
            "faults": faults,
            "alive": {name: process.alive() for name, process in stack.processes().items()},
        }
    finally:
        service.close()
        stack.stop()


def check_notifications(result: dict) -> list[str]:
    """The promises ``run_notifications`` must keep; what broke, if anything."""
    broken = []
    if result["devices notified"] != result["devices"]:
        broken.append(f"{result['devices'] - result['devices notified']} devices were never notified")
    if result["deliveries not sent"]:
        broken.append(f"{result['deliveries not sent']} notification deliveries failed")
    if result["sent twice (a worker died with it on the wire)"] > result["deliveries with a second attempt"]:
        broken.append("notifications were sent twice without a worker dying mid-attempt")
    dead = [name for name, alive in result["alive"].items() if not alive]
    if dead:
        broken.append(f"processes that died: {dead}")
    return broken


def check(result: dict) -> list[str]:
    """The promises the result must keep; what broke, if anything."""
    broken = []
    if result["accepted but missing"]:
        broken.append(f"{result['accepted but missing']} accepted messages are not stored")
    if result["duplicates"]:
        broken.append(f"{result['duplicates']} messages are stored twice")
    if result["pushed"] != result["stored"]:
        broken.append(f"{result['stored'] - result['pushed']} stored messages were never pushed")
    if result["counter drift (rows the rebuild changed)"] != 0:
        broken.append(f"unread counters differ from the rebuild ({result['counter drift (rows the rebuild changed)']})")
    if result["deleted messages showing content after a delete/edit race"]:
        broken.append("a delete racing edits left content behind")
    # Normal: an idle system's lag (tens of ms) for most probes; one probe may land behind
    # the last retries and sweeps of the faults, so the worst gets a second.
    median, worst = (int(v) for v in result["push lag with a trickling webhook receiver, p50 / max (ms)"].split(" / "))
    if median > 100 or worst > 2000:
        broken.append("pushes were slow while a webhook receiver trickled")
    if result["other answers"]:
        broken.append(f"answers other than 2xx and 503: {result['unexpected']}")
    dead = [name for name, alive in result["alive"].items() if not alive]
    if dead:
        broken.append(f"processes that died: {dead}")
    return broken


def table(result: dict) -> str:
    rows = [(name, value) for name, value in result.items() if name not in ("recoveries", "alive", "unexpected")]
    rows += [(f"after {r.fault} ({n + 1}): pushing again / probe pushed", f"{r.resumed:.1f} s / {r.seconds:.1f} s")
             for n, r in enumerate(result["recoveries"])]
    rows.append(("processes alive at the end", ", ".join(f"{k}: {'yes' if v else 'NO'}"
                                                         for k, v in result["alive"].items())))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--short", action="store_true", help="one fault of each kind")
    parser.add_argument("--notifications", action="store_true",
                        help="device notifications while their worker and Redis are killed")
    args = parser.parse_args(argv)
    if args.notifications:
        result = run_notifications()
        for name, value in result.items():
            print(f"| {name} | {value} |")
        broken = check_notifications(result)
        for problem in broken:
            print(f"BROKEN: {problem}", file=sys.stderr)
        return 1 if broken else 0
    result = run(args.messages, args.users, args.senders, short=args.short)
    print(table(result))
    broken = check(result)
    for problem in broken:
        print(f"BROKEN: {problem}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
