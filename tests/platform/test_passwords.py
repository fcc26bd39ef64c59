"""Password hashing never stops the event loop, runs a few at a time, and one address cannot
keep the hashing threads busy (per-address login limit).

The gevent cases run in a process of their own, monkey-patched as a gunicorn gevent worker
is. While a greenlet hashes, another greenlet counts loop turns: a hash on the loop lets it
count none, a hash on a thread lets it count many. No clock is involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from chat.platform import passwords
from devstack import ROOT

GEVENT_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()

import json, sys
import gevent
from flask_migrate import upgrade

from chat import create_app
from chat.platform import passwords
from chat.errors import ServiceError
from chat.extensions import db
from chat.services import accounts
from config import TestingConfig


class Config(TestingConfig):
    SQLALCHEMY_DATABASE_URI = sys.argv[1]
    ARGON2_TIME_COST = 3  # the production cost: a hash long enough to be seen
    ARGON2_MEMORY_COST_KIB = 65536
    PASSWORD_HASH_THREADS = 1
    PASSWORD_HASH_QUEUE = 1


app = create_app(Config)
turns = [0]


def count_turns():
    # A turn a millisecond, not a busy loop: spinning would take a core from the hashing
    # thread itself (a hash took minutes on a busy two-core machine), and proves no more.
    while True:
        turns[0] += 1
        gevent.sleep(0.001)


def turns_during(call):
    before = turns[0]
    try:
        call()
    except ServiceError as exc:
        assert exc.kind == "unauthorized", exc.kind
    return turns[0] - before


with app.app_context():
    upgrade()
    ticker = gevent.spawn(count_turns)
    gevent.sleep(0)
    result = {
        "register": turns_during(lambda: accounts.register("someone", "long enough password")),
        "login": turns_during(lambda: accounts.login("someone", "long enough password")),
        "unknown_login": turns_during(lambda: accounts.login("nobody", "whatever it is")),
    }
    ticker.kill()
    # One hashing thread and one waiting place: a third hash at the same moment is refused.
    hasher = accounts._hasher()

    def hash_one():
        try:
            with app.app_context():  # a greenlet starts without the spawner's context
                passwords.run(hasher.hash, "parallel password")
            return "hashed"
        except ServiceError as exc:
            return exc.kind

    result["parallel"] = sorted(g.value for g in gevent.joinall([gevent.spawn(hash_one) for _ in range(3)]))
    db.engine.dispose()
print(json.dumps(result))
"""


def test_hashing_under_gevent_leaves_the_loop_running_and_is_capped(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, f"sqlite:///{tmp_path / 'hash.db'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["register"] > 0 and result["login"] > 0 and result["unknown_login"] > 0, result
    assert result["parallel"] == ["hashed", "hashed", "unavailable"], result


def test_without_gevent_hashes_run_on_a_thread_of_the_pool(app):
    assert not passwords.running_under_gevent()
    assert passwords.run(threading.get_ident) != threading.get_ident()
    assert passwords.run(lambda: threading.current_thread().name).startswith("password-hash")
