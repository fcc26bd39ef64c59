"""Device notifications over Web Push, end to end against a local push service that checks
the VAPID signature and decrypts every payload with the subscription's private key.

Tasks run in-process here (the embedded default): the notification's delay and the push
service calls run on the service's background thread, never in the request; what arrived
is read once it has settled, or waited for with a deadline where the timing is the point.
The real worker processes are in tests/integration/test_notifications_workers.py.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from chat.extensions import db
from chat.models import PushDevice
from devstack import wait_until
from tests.conftest import ClassicUser
from tests.notifications.providers import WebPushService
from tests.realtime import Reader, open_stream
from tests.webhooks.receiver import settle

KOOK = "/api/v3"


def vapid_key(user) -> str:
    response = user.get("/push/config")
    assert response.status_code == 200, response.json
    return response.json["data"]["webpush"]["vapid_public_key"]


def register(user, subscription, *, kook=False):
    body = {"kind": "webpush", "subscription": subscription.json}
    if kook:
        return user.client.post(
            f"{KOOK}/push/devices", json=body, headers={"Authorization": f"Bearer {user.session}"}
        )
    return user.post("/push/devices", json=body)


@pytest.fixture
def service(alice):
    with WebPushService(vapid_key(alice)) as running:
        yield running


@pytest.fixture
def bob_device(bob, service):
    subscription = service.subscribe()
    response = register(bob, subscription)
    assert response.status_code == 200, response.json
    return subscription


@pytest.fixture
def slow_delay(app):
    """A delay long enough that what a test does "within the delay" (read, block, delete) is
    done in time on a busy machine."""
    app.config["NOTIFY_DELAY_SECONDS"] = 5.0


def deliveries(user):
    settle()
    response = user.get("/push/deliveries")
    assert response.status_code == 200, response.json
    return response.json["data"]["items"]


# ---- the configuration and devices -----------------------------------------------------------


def test_config_gives_the_vapid_key_and_the_delay_in_both_dialects(app, alice):
    classic = alice.get("/push/config").json
    kook = alice.client.get(f"{KOOK}/push/config", headers={"Authorization": f"Bearer {alice.session}"}).json
    assert classic["code"] == 0 and kook["code"] == 0 and kook["message"]
    assert classic["data"] == kook["data"]
    data = classic["data"]
    assert data["webpush"]["enabled"] is True and len(data["webpush"]["vapid_public_key"]) == 87
    assert data["fcm"] == {"enabled": False} and data["apns"] == {"enabled": False}
    assert data["notify_delay_seconds"] == round(app.config["NOTIFY_DELAY_SECONDS"])


def test_registering_the_same_endpoint_again_updates_it_and_moves_it_to_the_new_user(alice, bob, service):
    subscription = service.subscribe()
    first = register(bob, subscription).json["data"]
    again = register(bob, subscription).json["data"]
    assert first["id"] == again["id"] and first["endpoint"] == subscription.endpoint
    assert [d["id"] for d in bob.get("/push/devices").json["data"]] == [first["id"]]

    taken = register(alice, subscription, kook=True).json["data"]  # alice signs in on bob's browser
    assert taken["id"] == first["id"]
    assert bob.get("/push/devices").json["data"] == []
    mine = alice.get("/push/devices").json["data"]
    assert [d["id"] for d in mine] == [first["id"]] and "keys" not in mine[0]


def test_logging_out_takes_the_device_the_session_registered(bob, service, make_user):
    register(bob, service.subscribe())
    assert len(bob.get("/push/devices").json["data"]) == 1
    assert bob.post("/auth/logout").status_code == 200
    assert db.session.scalars(select(PushDevice)).all() == []


def test_a_device_is_removed_by_its_owner_only(alice, bob, bob_device):
    (device,) = bob.get("/push/devices").json["data"]
    assert alice.delete(f"/push/devices/{device['id']}").status_code == 404
    assert bob.delete("/push/devices/nope").status_code == 404
    response = bob.delete(f"/push/devices/{device['id']}")
    assert response.status_code == 200 and response.json["code"] == 0
    assert bob.get("/push/devices").json["data"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "webpush"}, "subscription"),
        ({"kind": "carrier-pigeon"}, "kind"),
        (
            {
                "kind": "webpush",
                "subscription": {"endpoint": "ftp://x/y", "keys": {"p256dh": "AA", "auth": "AA"}},
            },
            "subscription",
        ),
        (
            {
                "kind": "webpush",
                "subscription": {"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": "AA", "auth": "AA"}},
            },
            "subscription",
        ),
        ({"kind": "fcm", "token": "abc"}, "kind"),  # FCM is not configured here
    ],
)
def test_bad_devices_are_refused_with_a_message(bob, body, field):
    response = bob.post("/push/devices", json=body)
    assert response.status_code == 400, response.json
    assert response.json["code"] == 1 and field in str(response.json)


def test_endpoints_must_be_https_and_public_unless_private_is_allowed(app, app_key, service, app_with):
    user = ClassicUser(app_with(PUSH_ALLOW_PRIVATE=False), app_key, "strict", "correct horse")
    response = user.post("/push/devices", json={"kind": "webpush", "subscription": service.subscribe().json})
    assert response.status_code == 400 and "https" in response.json["msg"]
    public = service.subscribe().json | {"endpoint": "https://127.0.0.1/push/x"}
    response = user.post("/push/devices", json={"kind": "webpush", "subscription": public})
    assert response.status_code == 400 and "public addresses" in response.json["msg"]


# ---- the rule ------------------------------------------------------------------------------


def test_an_offline_recipient_gets_exactly_one_notification_after_the_delay(
    app, alice, bob, bob_device, service
):
    cid = alice.open_with(bob)
    assert alice.send(cid, "secret plans").status_code == 200
    # How soon after the delay it comes is for the benchmark to measure, not a timed assertion
    # (a loaded machine is late): the deadline only keeps a lost notification from hanging.
    (pushed,) = wait_until(
        lambda: service.for_subscription(bob_device),
        app.config["NOTIFY_DELAY_SECONDS"] + 30,
        what="the notification",
    )
    code = alice.get("/conversation").json["data"][0]["code"]
    assert pushed.notification == {
        "title": "alice",
        "body": "New message from alice",
        "tag": code,
        "conversationid": cid,
        "chat_code": code,
        "count": 1,
        "badge": 1,
        "retract": False,
    }
    assert "secret plans" not in str(pushed.notification)  # text is off by default
    assert pushed.headers["Topic"] == code and pushed.claims["sub"].startswith("mailto:")
    settle()
    assert len(service.for_subscription(bob_device)) == 1 and service.refused == []
    (row,) = deliveries(bob)
    assert row["status"] == "sent" and row["attempts"] == 1 and row["kind"] == "webpush"
    assert row["conversationid"] == cid and row["count"] == 1 and row["retract"] is False


def test_an_online_recipient_who_reads_at_once_gets_none(slow_delay, alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    alice.send(cid, "are you there?")
    (event,) = stream.events(1)
    assert event["event"] == "message.created"
    assert bob.get("/message", query_string={"conversationid": cid}).status_code == 200  # reads it
    stream.close()
    settle()
    assert service.received == [] and deliveries(bob) == []


def test_three_quick_messages_collapse_into_one_notification(slow_delay, alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    for text in ("one", "two", "three"):
        alice.send(cid, text)
    settle()
    (pushed,) = service.for_subscription(bob_device)
    assert pushed.notification["count"] == 3 and pushed.notification["badge"] == 3
    assert pushed.notification["body"] == "3 new messages from alice"


def test_a_later_message_replaces_the_notification_on_the_device(alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    alice.send(cid, "one")
    settle()
    alice.send(cid, "two")
    settle()
    first, second = service.for_subscription(bob_device)
    assert first.headers["Topic"] == second.headers["Topic"]  # the push service replaces it
    assert second.notification["count"] == 2 and second.notification["body"] == "2 new messages from alice"


def test_the_text_is_shown_only_when_the_user_turns_it_on(alice, bob, bob_device, service):
    assert bob.get("/push/settings").json["data"] == {"show_text": False}
    response = bob.client.put("/push/settings", json={"show_text": True}, headers=bob.headers)
    assert response.status_code == 200 and response.json["data"] == {"show_text": True}
    cid = alice.open_with(bob)
    alice.send(cid, "lunch at noon?")
    settle()
    (pushed,) = service.for_subscription(bob_device)
    assert pushed.notification["title"] == "alice" and pushed.notification["body"] == "lunch at noon?"


def test_a_muted_chat_does_not_notify_and_lists_show_it_in_both_dialects(alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    assert bob.post("/conversation/mute", json={"conversationid": cid, "mute": True}).status_code == 200
    (item,) = bob.get("/conversation").json["data"]
    assert item["muted"] is True
    kook = {"Authorization": f"Bearer {bob.session}"}
    (listed,) = bob.client.get(f"{KOOK}/user-chat/list", headers=kook).json["data"]["items"]
    assert listed["muted"] is True
    alice.send(cid, "hello?")
    settle()
    assert service.received == []

    response = bob.client.post(
        f"{KOOK}/user-chat/mute", json={"chat_code": item["code"], "mute": 0}, headers=kook
    )
    assert response.status_code == 200 and response.json["code"] == 0
    viewed = bob.client.get(f"{KOOK}/user-chat/view", query_string={"chat_code": item["code"]}, headers=kook)
    assert viewed.json["data"]["muted"] is False
    alice.send(cid, "now?")
    settle()
    assert len(service.for_subscription(bob_device)) == 1


def test_muting_a_chat_that_is_not_mine_is_not_found(alice, bob, make_user):
    cid = alice.open_with(bob)
    carol = make_user("carol")
    assert carol.post("/conversation/mute", json={"conversationid": cid, "mute": True}).status_code == 404


def test_a_sender_blocked_within_the_delay_never_notifies(slow_delay, alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    alice.send(cid, "hi")
    blocked = bob.client.post(
        f"{KOOK}/friend/block",
        json={"user_id": str(alice.id)},
        headers={"Authorization": f"Bearer {bob.session}"},
    )
    assert blocked.status_code == 200, blocked.json
    settle()
    assert service.received == []


def test_a_message_deleted_before_its_notification_is_not_notified(
    slow_delay, alice, bob, bob_device, service
):
    cid = alice.open_with(bob)
    key = alice.send(cid, "oops").json["data"]["messagekey"]
    assert alice.delete("/message", json={"messagekey": key, "type": 2}).status_code == 200
    settle()
    assert service.received == []


def test_a_message_deleted_after_its_notification_is_retracted_with_the_same_topic(
    alice, bob, bob_device, service
):
    cid = alice.open_with(bob)
    key = alice.send(cid, "oops").json["data"]["messagekey"]
    settle()
    alice.delete("/message", json={"messagekey": key, "type": 2})
    settle()
    shown, retraction = service.for_subscription(bob_device)
    assert retraction.notification["retract"] is True and retraction.notification["badge"] == 0
    assert retraction.headers["Topic"] == shown.headers["Topic"]


def test_reading_on_another_device_retracts_a_shown_notification(alice, bob, bob_device, service):
    cid = alice.open_with(bob)
    alice.send(cid, "hello")
    settle()
    bob.post("/message/read", json={"conversationid": cid})
    settle()
    shown, retraction = service.for_subscription(bob_device)
    assert (
        retraction.notification["retract"] is True
        and retraction.notification["tag"] == shown.notification["tag"]
    )
    bob.post("/message/read", json={"conversationid": cid})  # nothing more to retract
    settle()
    assert len(service.for_subscription(bob_device)) == 2


# ---- the push service's answers --------------------------------------------------------------


def test_a_410_removes_the_device(alice, bob, service):
    subscription = service.subscribe()
    register(bob, subscription)
    service.statuses = [410]
    alice.send(alice.open_with(bob), "hi")
    settle()
    assert bob.get("/push/devices").json["data"] == []
    (row,) = deliveries(bob)
    assert row["status"] == "removed" and row["last_status_code"] == 410 and "gone" in row["last_error"]


def test_a_429_and_a_503_are_retried_and_the_notification_arrives_once(alice, bob, bob_device, service):
    service.statuses = [429, 503]
    alice.send(alice.open_with(bob), "hi")
    settle()
    assert len(service.for_subscription(bob_device)) == 1
    (row,) = deliveries(bob)
    assert row["status"] == "sent" and row["attempts"] == 3


def test_a_refused_payload_fails_for_good_with_the_reason(alice, bob, bob_device, service):
    service.statuses = [400]
    alice.send(alice.open_with(bob), "hi")
    settle()
    (row,) = deliveries(bob)
    assert row["status"] == "failed" and row["attempts"] == 1 and "400" in row["last_error"]
    kook = bob.client.get(f"{KOOK}/push/deliveries", headers={"Authorization": f"Bearer {bob.session}"}).json
    assert (
        kook["code"] == 0
        and kook["data"]["items"][0]["id"] == row["id"]
        and kook["data"]["meta"]["total"] == 1
    )


def test_a_hanging_push_service_does_not_delay_another_users_event_stream(alice, bob, make_user):
    hang = threading.Event()
    with WebPushService(vapid_key(alice), hang=hang) as stuck:
        carol = make_user("carol")
        register(carol, stuck.subscribe())
        alice.send(alice.open_with(carol), "to carol")
        cid = alice.open_with(bob)
        stream = Reader(open_stream(bob.client, bob.session))
        wait_until(lambda: stuck.attempts, 10, what="the push service to be called")  # it now hangs
        alice.send(cid, "to bob")
        (event,) = stream.events(1)  # arrives while the push service is still hanging
        assert event["data"]["content"] == "to bob" and not hang.is_set()
        stream.close()
        hang.set()


def test_a_429_waits_at_least_its_retry_after_before_the_next_attempt(alice, bob, bob_device, service):
    service.statuses = [429]
    service.retry_after = "1"  # the backoff alone (0.2-0.5 s here) would be shorter
    alice.send(alice.open_with(bob), "hi")
    settle()
    first, second = service.attempted_at
    assert second - first >= 1.0
    assert len(service.for_subscription(bob_device)) == 1


def test_metrics_count_notifications_by_outcome_and_provider(app, alice, bob, bob_device, service):
    alice.send(alice.open_with(bob), "hi")
    settle()
    text = bob.client.get("/metrics").get_data(as_text=True)
    assert 'chat_push_notifications_total{outcome="sent",provider="webpush"}' in text


def test_the_vapid_key_is_made_once_and_kept_in_its_file(app, tmp_path):
    from chat.notifications import keys

    path = tmp_path / "instance" / "vapid-private.pem"
    app.config.update(VAPID_KEY_FILE=str(path), VAPID_PRIVATE_KEY=None)
    made = keys.public_key()
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    keys._loaded.clear()  # another process reads the same file
    assert keys.public_key() == made


def test_logout_takes_only_the_device_its_own_session_registered(client, app_key, bob, service):
    phone = register(bob, service.subscribe()).json["data"]
    login = client.post(
        "/auth/login", json={"username": "bob", "password": "correct horse"}, headers={"X-APP-Key": app_key}
    )
    laptop_session = {"X-APP-Key": app_key, "X-APP-Session": login.json["data"]["session"]}
    laptop = client.post(
        "/push/devices",
        json={"kind": "webpush", "subscription": service.subscribe().json},
        headers=laptop_session,
    ).json["data"]
    assert phone["current_session"] is True and laptop["current_session"] is True
    listed = {d["id"]: d["current_session"] for d in bob.get("/push/devices").json["data"]}
    assert listed == {phone["id"]: True, laptop["id"]: False}
    assert client.post("/auth/logout", headers=laptop_session).status_code == 200
    assert [d["id"] for d in bob.get("/push/devices").json["data"]] == [phone["id"]]
