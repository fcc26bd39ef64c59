"""Device notifications to FCM (HTTP v1) and APNs (HTTP/2, token auth), against local servers
that speak those protocols and check what they receive (tests/notifications/providers.py).

The rule is the one Web Push follows (tests/notifications/test_webpush.py); here each
provider shows it end to end: one notification for an offline recipient, none for one who
reads at once, three quick messages as one, and a device the provider says is gone removed.
"""

from __future__ import annotations

import threading

import pytest

from devstack import wait_until
from tests.notifications.providers import ApnsService, FcmService
from tests.realtime import Reader, open_stream
from tests.webhooks.receiver import self_signed, settle

APNS_TOKEN = "ab" * 32


class Fcm:
    kind = "fcm"

    def __init__(self, app, tmp_path, statuses=None):
        self.service = FcmService(statuses)
        self.app, self.tmp_path = app, tmp_path

    def __enter__(self):
        self.service.__enter__()
        self.app.config.update(
            FCM_CREDENTIALS_FILE=self.service.credentials(self.tmp_path), FCM_BASE_URL=self.service.base
        )
        return self

    def __exit__(self, *exc):
        self.service.__exit__(*exc)

    def register(self, user):
        return user.post("/push/devices", json={"kind": "fcm", "token": f"fcm-token-{user.username}"})

    def received(self):
        return [
            {
                "collapse": m["android"]["collapse_key"],
                "count": int(m["data"]["count"]),
                "badge": int(m["data"]["badge"]),
                "title": m["notification"]["title"],
                "body": m["notification"]["body"],
            }
            for m in self.service.received
        ]


class Apns:
    kind = "apns"

    def __init__(self, app, tmp_path, statuses=None):
        self.tls = self_signed(tmp_path, "localhost")
        self.service = ApnsService(self.tls, statuses)
        self.app, self.tmp_path = app, tmp_path

    def __enter__(self):
        self.service.__enter__()
        self.app.config.update(
            APNS_KEY_FILE=self.service.key_file(self.tmp_path),
            APNS_KEY_ID=ApnsService.KEY_ID,
            APNS_TEAM_ID=ApnsService.TEAM,
            APNS_BASE_URL=self.service.base,
            PUSH_CA_BUNDLE=str(self.tls[0]),
        )
        return self

    def __exit__(self, *exc):
        self.service.__exit__(*exc)

    def register(self, user):
        return user.post(
            "/push/devices", json={"kind": "apns", "token": APNS_TOKEN, "topic": ApnsService.BUNDLE}
        )

    def received(self):
        return [
            {
                "collapse": r["headers"]["apns-collapse-id"],
                "count": r["payload"]["chat"]["count"],
                "badge": r["payload"]["aps"]["badge"],
                "title": r["payload"]["aps"]["alert"]["title"],
                "body": r["payload"]["aps"]["alert"]["body"],
            }
            for r in self.service.received
        ]


PROVIDERS = [Fcm, Apns]


@pytest.fixture
def slow_delay(app):
    """A delay long enough that what a test does "within the delay" is done in time on a busy
    machine."""
    app.config["NOTIFY_DELAY_SECONDS"] = 5.0


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.kind)
def provider(request, app, tmp_path):
    with request.param(app, tmp_path) as running:
        yield running


def test_config_says_the_provider_is_enabled(provider, bob):
    assert bob.get("/push/config").json["data"][provider.kind] == {"enabled": True}


def test_an_offline_recipient_gets_exactly_one_notification_after_the_delay(app, provider, alice, bob):
    assert provider.register(bob).status_code == 200
    cid = alice.open_with(bob)
    alice.send(cid, "hello")
    # How soon after the delay it comes is for the benchmark to measure, not a timed assertion
    # (a loaded machine is late): the deadline only keeps a lost notification from hanging.
    wait_until(provider.received, app.config["NOTIFY_DELAY_SECONDS"] + 30, what="the notification")
    settle()
    code = bob.get("/conversation").json["data"][0]["code"]
    assert provider.received() == [
        {"collapse": code, "count": 1, "badge": 1, "title": "alice", "body": "New message from alice"}
    ]
    assert provider.service.refused == []
    (row,) = bob.get("/push/deliveries").json["data"]["items"]
    assert row["status"] == "sent" and row["kind"] == provider.kind


def test_an_online_recipient_who_reads_at_once_gets_none(slow_delay, provider, alice, bob):
    provider.register(bob)
    cid = alice.open_with(bob)
    alice.send(cid, "hello")
    bob.get("/message", query_string={"conversationid": cid})
    settle()
    assert provider.received() == []


def test_three_quick_messages_collapse_into_one(slow_delay, provider, alice, bob):
    provider.register(bob)
    cid = alice.open_with(bob)
    for text in ("one", "two", "three"):
        alice.send(cid, text)
    settle()
    (notification,) = provider.received()
    assert notification["count"] == 3 and notification["body"] == "3 new messages from alice"


def test_a_device_the_provider_says_is_gone_is_removed(app, tmp_path, alice, bob):
    for make, status in ((Fcm, 404), (Apns, 410)):
        with make(
            app, tmp_path / make.kind if (tmp_path / make.kind).mkdir() is None else tmp_path, [status]
        ) as provider:
            provider.register(bob)
            alice.send(alice.open_with(bob), f"to {make.kind}")
            settle()
            assert bob.get("/push/devices").json["data"] == []
            rows = bob.get("/push/deliveries").json["data"]["items"]
            assert rows[0]["status"] == "removed" and rows[0]["last_status_code"] == status


def test_a_5xx_is_retried_and_the_notification_arrives_once(provider, alice, bob):
    provider.service.statuses = [503]
    provider.register(bob)
    alice.send(alice.open_with(bob), "hello")
    settle()
    assert len(provider.received()) == 1
    (row,) = bob.get("/push/deliveries").json["data"]["items"]
    assert row["status"] == "sent" and row["attempts"] == 2


def test_apns_needs_a_hex_token_and_a_topic(app, tmp_path, bob):
    with Apns(app, tmp_path):
        response = bob.post("/push/devices", json={"kind": "apns", "token": "not hex!", "topic": "com.x"})
        assert response.status_code == 400 and "hex" in response.json["msg"]
        response = bob.post("/push/devices", json={"kind": "apns", "token": APNS_TOKEN})
        assert response.status_code == 400 and "topic" in str(response.json)


def test_a_hanging_provider_does_not_delay_another_users_event_stream(provider, alice, bob, make_user):
    hang = threading.Event()
    provider.service.hang = hang
    carol = make_user("carol")
    provider.register(carol)
    alice.send(alice.open_with(carol), "to carol")
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    try:
        wait_until(lambda: provider.service.attempts, 10, what="the provider to be called")  # it now hangs
        alice.send(cid, "to bob")
        (event,) = stream.events(1)  # arrives while the provider is still hanging
        assert event["data"]["content"] == "to bob" and not hang.is_set()
    finally:
        stream.close()
        hang.set()
