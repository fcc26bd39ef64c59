"""Revoking a credential counts at once in every process, though each caches lookups.

Two apps stand for two web processes (same database, same Redis). Each caches what it looked
up; a logout or an app-key revocation in one is broadcast, and the other refuses the
credential at once, long before its cache would have let the entry go. Without a way to hear
revocations, a process trusts an entry for AUTH_CACHE_SECONDS only; and a revocation whose
broadcast is lost is found in the database by every process within AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import time

from sqlalchemy import update

from chat import backends
from chat.extensions import db
from chat.models import Token, now_ms
from chat.services import accounts, credentials
from chat.services.credential_cache import CredentialCache
from devstack import wait_until
from tests.conftest import REDIS_URL, ClassicUser

LONG = 600.0  # far longer than any test waits: only a broadcast can end an entry in time


def _process(app_with, redis_prefix):
    """One 'web process': an app on the shared database and Redis, caching for a long time."""
    return app_with(
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=redis_prefix,
        AUTH_CACHE_SECONDS=LONG,
        AUTH_CACHE_TRUSTED_SECONDS=LONG,
    )


def _listening(client) -> None:
    """Wait until that process hears broadcasts (its subscriber has subscribed)."""
    with client.application.app_context():
        credentials._cache()  # the cache registers for revocations when it is made
        subscriber = backends.of(client.application).broadcasts
        wait_until(lambda: subscriber.listening_since() is not None, 10, what="the subscriber to listen")


def _two_processes(app_with, redis_prefix, key_name: str):
    """Two listening 'processes' that have both looked alice's credentials up (cached)."""
    one, two = _process(app_with, redis_prefix), _process(app_with, redis_prefix)
    alice = ClassicUser(one, accounts.create_app_key(key_name), "alice", "correct horse")
    for client in (one, two):
        _listening(client)
        assert client.get("/conversation", headers=alice.headers).status_code == 200  # now cached
    return one, two, alice


def _refused_soon(client, alice, what: str) -> None:
    wait_until(
        lambda: client.get("/conversation", headers=alice.headers).status_code == 401,
        3,
        interval=0.05,
        what=f"the other process to refuse the {what}",
    )


def test_a_logout_in_one_process_ends_the_session_in_another_at_once(app, app_with, redis_prefix):
    one, two, alice = _two_processes(app_with, redis_prefix, "revocation")
    assert one.post("/auth/logout", headers=alice.headers).status_code == 200
    _refused_soon(two, alice, "session")


def test_a_revoked_app_key_is_refused_by_every_process_at_once(app, app_with, redis_prefix):
    one, two, alice = _two_processes(app_with, redis_prefix, "to-revoke")
    with one.application.app_context():
        accounts.revoke_app_key("to-revoke")
    _refused_soon(two, alice, "app key")


def test_a_revocation_whose_broadcast_is_lost_counts_within_the_short_time(app, app_with, redis_prefix):
    # The other process listens (so it would trust its entry for LONG), but the revocation
    # is only in the database, as when the revoking process could not reach Redis.
    two = app_with(
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=redis_prefix,
        AUTH_CACHE_SECONDS=0.5,
        AUTH_CACHE_TRUSTED_SECONDS=LONG,
    )
    alice = ClassicUser(two, accounts.create_app_key("lost-broadcast"), "alice", "correct horse")
    _listening(two)
    assert two.get("/conversation", headers=alice.headers).status_code == 200  # now cached
    with two.application.app_context():
        db.session.execute(update(Token).values(revoked_at=now_ms()))
        db.session.commit()
    _refused_soon(two, alice, "session revoked without a broadcast")


def test_entries_are_trusted_long_only_while_revocations_are_heard():
    since = [None]
    cache = CredentialCache(0.2, 60, lambda: since[0])
    read_at = time.monotonic()
    cache.put("d", "value", read_at)
    time.sleep(0.3)
    assert cache.get("d") is None  # nobody listening: the short time applies

    since[0] = time.monotonic()  # listening from now on
    cache.put("d", "value", time.monotonic())
    time.sleep(0.3)
    assert cache.get("d") == "value"  # heard since it was read: trusted

    since[0] = time.monotonic()  # a reconnect: revocations may have been missed meanwhile
    time.sleep(0.3)
    assert cache.get("d") is None


def test_an_answer_read_before_a_revocation_is_not_kept():
    cache = CredentialCache(60, 60, lambda: 0.0)
    read_at = time.monotonic()  # a lookup starts...
    cache.forget("d")  # ...the credential is revoked meanwhile...
    cache.put("d", "stale", read_at)  # ...and the lookup's answer arrives
    assert cache.get("d") is None
    cache.put("d", "fresh", time.monotonic())  # a lookup after the revocation is kept
    assert cache.get("d") == "fresh"
