"""Webhooks through the test client, with a real local HTTP server as the receiver.

Tasks run in-process here (the embedded default): an event's delivery, and its retries,
happen on the service's background thread after the request that caused the event; the
receiver's record is read once that thread has settled (the real-broker path is in
tests/integration).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from chat import backends, webhooks
from chat.extensions import db
from chat.models import Webhook, WebhookDelivery
from chat.webhooks import addresses, ledger
from chat.webhooks import deliveries as attempts
from devstack import Trickler, wait_until
from tests.webhooks.receiver import Receiver, self_signed, settle

API = "/api/v3/webhooks"


def auth(user) -> dict:
    return {"Authorization": f"Bearer {user.session}"}


def create(client, user, url, **body):
    return client.post(API, json={"url": url, **body}, headers=auth(user))


def deliveries(client, user, **params):
    settle()
    response = client.get(f"{API}/deliveries", query_string=params, headers=auth(user))
    assert response.status_code == 200, response.json
    return response.json["data"]


# ---- registration --------------------------------------------------------------------------


def test_generated_secret_is_shown_once_and_stored_encrypted(client, alice):
    created = create(client, alice, "http://127.0.0.1:9/hook")
    assert created.status_code == 200, created.json
    data = created.json["data"]
    assert created.json["code"] == 0
    assert data["url"] == "http://127.0.0.1:9/hook" and isinstance(data["id"], str)
    secret = data["secret"]
    assert len(secret) >= 32

    listed = client.get(API, headers=auth(alice)).json["data"]["items"]
    assert listed == [
        {
            "id": data["id"],
            "url": data["url"],
            "created_at": data["created_at"],
            "format": "signed",
            "compress": False,
        }
    ]
    assert secret not in json.dumps(listed)

    row = db.session.get(Webhook, int(data["id"]))
    assert secret not in row.secret_encrypted
    assert webhooks.decrypt_secret(row.secret_encrypted) == secret


def test_given_secret_is_used_and_validated(client, alice):
    short = create(client, alice, "http://127.0.0.1:9/a", secret="too-short")
    assert short.status_code == 400 and short.json["code"] == 40000
    assert "secret" in short.json["data"]["errors"]

    given = create(client, alice, "http://127.0.0.1:9/a", secret="s" * 20)
    assert given.status_code == 200
    assert given.json["data"]["secret"] == "s" * 20
    row = db.session.get(Webhook, int(given.json["data"]["id"]))
    assert "s" * 20 not in row.secret_encrypted


def test_at_most_five_webhooks_per_user(client, alice, bob):
    ids = []
    for n in range(5):
        response = create(client, alice, f"http://127.0.0.1:9/{n}")
        assert response.status_code == 200, response.json
        ids.append(response.json["data"]["id"])
    sixth = create(client, alice, "http://127.0.0.1:9/6")
    assert sixth.status_code == 400 and sixth.json["code"] == 40000
    assert "5" in sixth.json["message"]
    assert create(client, bob, "http://127.0.0.1:9/6").status_code == 200  # the limit is per user

    assert client.delete(API, json={"id": ids[0]}, headers=auth(alice)).json["code"] == 0
    assert create(client, alice, "http://127.0.0.1:9/6").status_code == 200


def test_the_same_url_twice_is_a_conflict(client, alice):
    assert create(client, alice, "http://127.0.0.1:9/x").status_code == 200
    again = create(client, alice, "http://127.0.0.1:9/x")
    assert again.status_code == 409 and again.json["code"] == 40900


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": 42}, "url"),
        ({"url": ["http://127.0.0.1/"]}, "url"),
        ({"url": "ftp://127.0.0.1/hook"}, "url"),
        ({"url": "127.0.0.1/hook"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({"url": "https://127.0.0.1:0/"}, "url"),
        ({"url": "http://[::1/"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/"}, "url"),
        ({"url": "http://127.0.0.1/a b"}, "url"),
        ({"url": "http://127.0.0.1/" + "a" * 2040}, "url"),
        ({"url": "http://no-such-host.invalid/"}, "url"),
        ({"url": "http://127.0.0.1/", "secret": 12345}, "secret"),
    ],
)
def test_bad_registrations_get_a_clear_400(client, alice, body, field):
    response = client.post(API, json=body, headers=auth(alice))
    assert response.status_code == 400, response.json
    assert response.json["code"] == 40000
    assert field in response.json["data"]["errors"]
    assert response.json["message"]


def test_a_token_is_required(client):
    assert client.get(API).status_code == 401
    assert (
        client.post(API, json={"url": "http://127.0.0.1/"}, headers={"Authorization": "Bot nope"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "https://[::]/",
    ],
)
def test_private_addresses_are_refused_unless_allowed(app, client, alice, url):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    response = create(client, alice, url)
    assert response.status_code == 400, response.json
    assert response.json["code"] == 40000
    assert "public" in response.json["message"]
    assert client.get(API, headers=auth(alice)).json["data"]["items"] == []


def test_a_public_address_is_accepted(app, client, alice):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    # Registration only resolves the host; nothing is sent there (no event follows).
    assert create(client, alice, "http://93.184.216.34/hook").status_code == 200
    assert addresses.address_is_public("2606:4700:4700::1111")
    assert not addresses.address_is_public("2002:7f00:1::")  # 6to4 wrapping 127.0.0.1
    assert not addresses.address_is_public("64:ff9b::a00:1")  # NAT64 wrapping 10.0.0.1


def test_delete_unknown_and_not_yours_look_the_same(client, alice, bob):
    mine = create(client, alice, "http://127.0.0.1:9/").json["data"]["id"]
    theirs = client.delete(API, json={"id": mine}, headers=auth(bob))
    unknown = client.delete(API, json={"id": 999_999_999}, headers=auth(bob))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json == unknown.json and theirs.json["code"] == 40400
    assert client.delete(API, json={"id": "abc"}, headers=auth(bob)).status_code == 400
    assert client.delete(API, headers=auth(bob)).status_code == 400

    # the id may also come as a query parameter, or form-encoded
    assert client.delete(f"{API}?id={mine}", headers=auth(alice)).json["code"] == 0
    assert client.get(API, headers=auth(alice)).json["data"]["items"] == []
    again = create(client, alice, "http://127.0.0.1:9/").json["data"]["id"]
    assert client.delete(API, data={"id": again}, headers=auth(alice)).json["code"] == 0


# ---- delivery ------------------------------------------------------------------------------


def test_a_message_reaches_the_recipients_webhook_signed(client, alice, bob):
    with Receiver() as receiver:
        created = create(client, bob, receiver.url).json["data"]
        conversation = alice.open_with(bob)
        sent = alice.send(conversation, "hello over a webhook").json["data"]

        assert receiver.count() == 1
        got = receiver.requests[0]
        assert got.path == "/hook"
        assert got.signature_is_valid(created["secret"])
        assert not got.signature_is_valid("another secret of enough length")
        assert got.headers["X-Chat-Event"] == "message.created"
        assert got.headers["Content-Type"] == "application/json"
        assert abs(int(got.headers["X-Chat-Timestamp"]) - time.time()) < 300  # unix seconds
        body = json.loads(got.body)
        assert body["event"] == "message.created"
        assert body["delivery"] == got.headers["X-Chat-Delivery"]
        assert body["data"]["messagekey"] == sent["messagekey"]
        assert body["data"]["content"] == "hello over a webhook"
        assert body["data"]["conversationid"] == conversation

    log = deliveries(client, bob)
    assert log["meta"]["total"] == 1
    item = log["items"][0]
    assert item["id"] == got.headers["X-Chat-Delivery"]
    assert item["status"] == "delivered" and item["attempts"] == 1
    assert item["last_status_code"] == 200 and item["last_error"] is None
    assert item["delivered_at"] >= item["created_at"]
    assert item["webhook_id"] == created["id"]
    # The sender registered nothing and the recipient's webhook is not the sender's.
    assert deliveries(client, alice)["items"] == []


def test_read_receipts_reach_the_senders_webhook(client, alice, bob):
    with Receiver() as receiver:
        create(client, alice, receiver.url)
        conversation = alice.open_with(bob)
        key = alice.send(conversation, "read me").json["data"]["messagekey"]
        assert bob.get(f"/message?conversationid={conversation}").status_code == 200  # marks read
        events = [json.loads(r.body) for r in receiver.requests]
    assert [e["event"] for e in events] == ["message.read"]
    assert events[0]["data"]["messagekey"] == key


def test_a_failing_receiver_gets_the_event_on_the_third_try(client, alice, bob):
    with Receiver([500, 503]) as receiver:
        created = create(client, bob, receiver.url).json["data"]
        alice.send(alice.open_with(bob), "third time lucky")
        assert receiver.count() == 3
        ids = {r.headers["X-Chat-Delivery"] for r in receiver.requests}
        bodies = {r.body for r in receiver.requests}
        assert [r.headers["X-Chat-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
        assert all(r.signature_is_valid(created["secret"]) for r in receiver.requests)
    assert len(ids) == 1 and len(bodies) == 1  # the same delivery, the same bytes
    item = deliveries(client, bob)["items"][0]
    assert item["id"] in ids
    assert (item["status"], item["attempts"], item["last_status_code"]) == ("delivered", 3, 200)


def test_gone_stops_retries(client, alice, bob):
    with Receiver([410, 410, 410]) as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "anyone there?")
        assert receiver.count() == 1
    item = deliveries(client, bob)["items"][0]
    assert (item["status"], item["attempts"], item["last_status_code"]) == ("failed", 1, 410)
    assert "410" in item["last_error"]


def test_an_unreachable_receiver_waits_for_the_sweeper_then_gives_up(app, client, alice, bob):
    with Receiver([500] * 10) as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "hello?")
        eager_attempts = app.config["INPROCESS_RETRY_LIMIT"]
        assert receiver.count() == eager_attempts
        item = deliveries(client, bob)["items"][0]
        assert (item["status"], item["attempts"], item["last_status_code"]) == (
            "pending",
            eager_attempts,
            500,
        )
        assert item["last_error"] == "answered HTTP 500"
        assert item["next_attempt_at"] > item["created_at"]

        # Not yet due: the sweeper leaves it alone.
        assert webhooks.requeue_due(item["next_attempt_at"] - 1) == 0
        assert receiver.count() == eager_attempts
        # Due, and no task holds it (the in-process run stopped retrying): queued again at
        # once, and tried again.
        assert webhooks.requeue_due(item["next_attempt_at"]) == 1
        assert receiver.count() > eager_attempts
        # Past the give-up time: failed, and never tried again.
        count = receiver.count()
        past = item["created_at"] + int(app.config["WEBHOOK_GIVE_UP_AFTER"] * 1000) + 1
        assert webhooks.requeue_due(past) == 0
        assert receiver.count() == count
    item = deliveries(client, bob)["items"][0]
    assert item["status"] == "failed" and item["last_error"].startswith("gave up")


def test_https_receivers_get_the_host_name_checked_against_the_certificate(app, client, alice, bob, tmp_path):
    # The connection goes to the address checked a moment before, yet TLS still verifies the
    # URL's host name (SNI and certificate), so pinning costs https nothing.
    good = self_signed(tmp_path, "localhost")
    app.config["WEBHOOK_CA_BUNDLE"] = str(good[0])
    with Receiver(tls=good, host="localhost") as receiver:
        secret = create(client, bob, receiver.url).json["data"]["secret"]
        alice.send(alice.open_with(bob), "over tls")
        assert receiver.count() == 1
        assert receiver.requests[0].signature_is_valid(secret)
    assert deliveries(client, bob)["items"][0]["status"] == "delivered"


def test_an_https_certificate_for_another_name_is_refused(app, client, alice, bob, tmp_path):
    wrong = self_signed(tmp_path, "someone-else.test")
    app.config["WEBHOOK_CA_BUNDLE"] = str(wrong[0])
    with Receiver(tls=wrong, host="localhost") as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "to an impostor")
        assert receiver.count() == 0
    item = deliveries(client, bob)["items"][0]
    assert item["status"] == "pending" and item["last_error"].startswith("TLS failed")


@pytest.mark.parametrize(
    "scheme, interval",
    [("http", 0.3), ("https", 0.3), ("http", 0.05)],
    ids=["in-the-status-line", "https", "in-the-headers"],
)
def test_a_trickling_receiver_is_cut_off_at_the_attempt_deadline(
    app, client, alice, bob, tmp_path, scheme, interval
):
    # One byte of the answer at a time: every read succeeds well inside the read timeout, so
    # only a deadline on the whole attempt ends it. At 0.05 s a byte, a whole "200 OK" status
    # line is in before the deadline, and the headers never end: still not an answer.
    app.config.update(WEBHOOK_READ_TIMEOUT=1.0, WEBHOOK_ATTEMPT_TIMEOUT=1.5)
    backends.of(app).queue.retry_limit = 1  # one attempt, then the sweeper's turn
    tls = None
    if scheme == "https":
        tls = self_signed(tmp_path, "localhost")
        app.config["WEBHOOK_CA_BUNDLE"] = str(tls[0])
    with Trickler(interval=interval, tls=tls, host="localhost") as receiver:
        create(client, bob, receiver.url)
        started = time.monotonic()
        alice.send(alice.open_with(bob), "to a trickler")
        item = deliveries(client, bob)["items"][0]
        took = time.monotonic() - started
        assert receiver.connections == 1
        # The service hung up: the receiver's side of the connection is closed too.
        wait_until(lambda: receiver.open == 0, 3, what="the receiver's side to close")
    assert item["status"] == "pending" and item["attempts"] == 1
    assert item["last_error"] == "no complete response within 1.5 s"
    # The deadline is the behaviour under test: a receiver that never finishes would hold the
    # attempt for good without it; 1.5 s, with room for a busy machine around it.
    assert took < 5, f"the attempt took {took:.1f} s"


def test_a_message_deleted_for_everyone_is_announced(client, alice, bob):
    with Receiver() as receiver:
        create(client, bob, receiver.url)
        key = alice.send(alice.open_with(bob), "oops").json["data"]["messagekey"]
        settle()  # delivered before the deletion (one still pending would be withdrawn)
        assert alice.delete("/message", json={"messagekey": key, "type": 2}).json["code"] == 0
        events = [json.loads(r.body) for r in receiver.requests]
    assert [e["event"] for e in events] == ["message.created", "message.deleted"]
    assert events[1]["data"]["messagekey"] == key


def test_unpaired_surrogates_are_refused_not_a_500(client, alice):
    for body, field in (
        ({"url": "http://127.0.0.1/\ud800"}, "url"),
        ({"url": "http://127.0.0.1/", "secret": "\ud800" * 20}, "secret"),
    ):
        response = client.post(
            API, data=json.dumps(body), content_type="application/json", headers=auth(alice)
        )
        assert response.status_code == 400, response.json
        assert field in response.json["data"]["errors"]


def test_an_address_that_turned_private_is_refused_at_delivery(app, client, alice, bob):
    with Receiver() as receiver:
        create(client, bob, receiver.url)  # allowed while registering (testing config)
        app.config["WEBHOOK_ALLOW_PRIVATE"] = False  # as if the name now pointed inside
        alice.send(alice.open_with(bob), "rebound")
        assert receiver.count() == 0
    item = deliveries(client, bob)["items"][0]
    assert (item["status"], item["attempts"]) == ("failed", 1)
    assert "public" in item["last_error"]


def test_a_slow_receiver_holds_up_no_request(client, alice, bob, make_user):
    # The embedded default: an attempt goes out on the background thread after the commit,
    # with no transaction (no SQLite write lock) held while the receiver takes its time.
    release = threading.Event()
    with Receiver(hold=release) as receiver:
        create(client, bob, receiver.url)
        assert alice.send(alice.open_with(bob), "to a slow hook").status_code == 200
        assert receiver.arrived.wait(10)
        assert not receiver.answered.is_set(), "the send waited for the receiver"
        carol, dave = make_user(), make_user()
        assert carol.send(carol.open_with(dave), "meanwhile").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert not receiver.answered.is_set(), "other requests waited for the receiver"
        release.set()
        assert receiver.count() == 1
    assert deliveries(client, bob)["items"][0]["status"] == "delivered"


def test_a_delivered_delivery_is_not_sent_again(client, alice, bob):
    with Receiver() as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "once")
        assert receiver.count() == 1
        delivery_id = receiver.requests[0].headers["X-Chat-Delivery"]
        assert attempts.attempt(delivery_id) is None
        assert attempts.attempt(delivery_id, 0) is None
        assert webhooks.requeue_due(int(time.time() * 1000) + 10**9) == 0
        assert receiver.count() == 1


def test_a_stale_duplicate_task_does_nothing(client, alice, bob):
    with Receiver([500] * 10) as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "dup")
        delivery_id = receiver.requests[0].headers["X-Chat-Delivery"]
        count = receiver.count()
        assert attempts.attempt(delivery_id, 0) is None  # a copy of the first task
        assert receiver.count() == count
        later = attempts.attempt(delivery_id, count)  # the task that was due next
        assert later is not None and later.args == (delivery_id, count + 1)
        assert receiver.count() == count + 1
        assert 0 < later.seconds <= app_config_backoff_max(client)


def app_config_backoff_max(client) -> float:
    return client.application.config["WEBHOOK_BACKOFF_MAX"]


def test_events_for_a_user_without_webhooks_record_nothing(client, alice, bob):
    alice.send(alice.open_with(bob), "no hooks")
    assert db.session.query(WebhookDelivery).count() == 0


def test_deleting_a_webhook_removes_its_log(client, alice, bob):
    with Receiver() as receiver:
        hook = create(client, bob, receiver.url).json["data"]["id"]
        alice.send(alice.open_with(bob), "logged")
    assert deliveries(client, bob, webhook_id=hook)["meta"]["total"] == 1
    client.delete(API, json={"id": hook}, headers=auth(bob))
    assert deliveries(client, bob)["meta"]["total"] == 0


# ---- delivery log --------------------------------------------------------------------------


def test_the_delivery_log_pages_newest_first_and_is_private(client, alice, bob):
    with Receiver() as receiver:
        hook = create(client, bob, receiver.url).json["data"]["id"]
        other = create(client, bob, receiver.url + "2").json["data"]["id"]
        conversation = alice.open_with(bob)
        for n in range(3):
            alice.send(conversation, f"m{n}")
            time.sleep(0.002)  # distinct created_at, for the order
        assert receiver.count() == 6

    page = deliveries(client, bob, webhook_id=hook, page=1, page_size=2)
    assert page["meta"] == {"page": 1, "page_total": 2, "page_size": 2, "total": 3}
    rest = deliveries(client, bob, webhook_id=hook, page=2, page_size=2)
    items = page["items"] + rest["items"]
    assert [i["webhook_id"] for i in items] == [hook] * 3
    assert [i["created_at"] for i in items] == sorted((i["created_at"] for i in items), reverse=True)
    assert deliveries(client, bob)["meta"]["total"] == 6
    assert deliveries(client, bob, webhook_id=other)["meta"]["total"] == 3

    for params in ({"webhook_id": hook}, {"webhook_id": 999_999_999}):
        response = client.get(f"{API}/deliveries", query_string=params, headers=auth(alice))
        assert response.status_code == 404 and response.json["code"] == 40400
    for params in ({"page": 0}, {"page_size": 101}, {"page": "x"}, {"webhook_id": "x"}):
        response = client.get(f"{API}/deliveries", query_string=params, headers=auth(bob))
        assert response.status_code == 400 and response.json["code"] == 40000


# ---- receivers' answers ----------------------------------------------------------------------


def _pending_delivery(webhook_id: int, now: int) -> str:
    """A delivery as ``fan_out`` records it, without queueing its task (the tests run it)."""
    row = WebhookDelivery(
        id=f"00000000-0000-4000-8000-{now % 10**12:012d}",
        webhook_id=webhook_id,
        event="message.created",
        payload='{"event":"message.created"}',
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    db.session.add(row)
    db.session.commit()
    return row.id


def test_a_non_ascii_digit_retry_after_is_ignored_not_a_crash(client, alice, bob):
    # "²".isdigit() is True but float("²") raises: the attempt must still be recorded and
    # retried, the header read as absent.
    with Receiver([503], headers={"Retry-After": "²"}) as receiver:
        create(client, bob, receiver.url)
        alice.send(alice.open_with(bob), "superscript")
        assert receiver.count() == 2
    item = deliveries(client, bob)["items"][0]
    assert (item["status"], item["attempts"], item["last_status_code"]) == ("delivered", 2, 200)


def test_a_non_ascii_digit_retry_after_gives_an_ordinary_backoff(app, client, bob):
    with Receiver([503], headers={"Retry-After": "³"}) as receiver:  # latin-1, so sendable
        hook = int(create(client, bob, receiver.url).json["data"]["id"])
        delivery_id = _pending_delivery(hook, int(time.time() * 1000))
        later = attempts.attempt(delivery_id, 0)
    assert later is not None and 0 < later.seconds <= app.config["WEBHOOK_BACKOFF_MAX"]


# ---- waits the broker cannot hold ----------------------------------------------------------


def test_a_wait_longer_than_a_countdown_may_be_is_left_to_the_sweeper(app, client, bob):
    # A Celery countdown this long would outlive the broker's visibility timeout and be handed
    # out again while it waits: the delivery stays pending for the sweeper instead.
    app.config.update(CELERY_VISIBILITY_TIMEOUT=60, WEBHOOK_BACKOFF_MAX=3600)
    with Receiver([503], headers={"Retry-After": "120"}) as receiver:
        hook = int(create(client, bob, receiver.url).json["data"]["id"])
        now = int(time.time() * 1000)
        delivery_id = _pending_delivery(hook, now)

        assert attempts.attempt(delivery_id, 0) is None
        assert receiver.count() == 1
        row = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
        assert row.next_attempt_at >= now + 120_000  # the receiver's Retry-After, recorded
        due = row.next_attempt_at

        assert webhooks.requeue_due(due - 1) == 0  # not yet due
        assert receiver.count() == 1
        assert webhooks.requeue_due(due) == 1  # due: queued (run in-process here), delivered
        assert receiver.count() == 2
    row = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert (row.status, row.attempts) == ("delivered", 2)


def test_a_short_wait_is_a_countdown(app, client, bob):
    app.config.update(CELERY_VISIBILITY_TIMEOUT=60)  # testing backoff: at most 0.5 s
    with Receiver([500]) as receiver:
        hook = int(create(client, bob, receiver.url).json["data"]["id"])
        delivery_id = _pending_delivery(hook, int(time.time() * 1000))
        later = attempts.attempt(delivery_id, 0)
    assert later is not None and later.args == (delivery_id, 1)
    assert 0 < later.seconds <= ledger.longest_task_wait() == 30


def test_a_first_attempt_behind_a_backlog_is_not_queued_twice(app, client, bob):
    # fan_out queued its task; late behind other work is not lost.
    with Receiver() as receiver:
        hook = int(create(client, bob, receiver.url).json["data"]["id"])
        now = int(time.time() * 1000)
        _pending_delivery(hook, now)
        grace = int(app.config["WEBHOOK_REQUEUE_AFTER"] * 1000)
        assert webhooks.requeue_due(now + grace - 1) == 0
        assert receiver.count() == 0
        assert webhooks.requeue_due(now + grace) == 1  # that late, its task was lost
        assert receiver.count() == 1


# ---- what the delivery log keeps -----------------------------------------------------------


def _stored() -> list[WebhookDelivery]:
    db.session.expire_all()
    return db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)).all()


def test_a_finished_delivery_keeps_no_body(client, alice, bob):
    with Receiver([410]) as receiver:
        create(client, bob, receiver.url)
        chat = alice.open_with(bob)
        alice.send(chat, "failed for good")
        alice.send(chat, "delivered")
        assert receiver.count() == 2
    assert sorted(d.status for d in _stored()) == ["delivered", "failed"]
    assert [d.payload for d in _stored()] == ["", ""]


def test_deleting_a_message_withdraws_its_pending_deliveries(app, client, alice, bob):
    backends.of(app).queue.retry_limit = 1  # failed once, then pending for the sweeper
    with Receiver([500] * 5) as receiver:
        create(client, bob, receiver.url)
        chat = alice.open_with(bob)
        key = alice.send(chat, "regretted").json["data"]["messagekey"]
        other = alice.send(chat, "kept").json["data"]["messagekey"]
        settle()
        assert [d.status for d in _stored()] == ["pending", "pending"]
        assert alice.delete("/message", json={"messagekey": key, "type": 2}).json["code"] == 0
        settle()
    rows = {d.about: d for d in _stored()}
    assert rows[key].status == "failed" and rows[key].payload == ""
    assert rows[key].last_error == "not sent: the message was deleted"
    assert rows[other].status == "pending" and "kept" in rows[other].payload
    # The deletion itself is announced (without content), like any event.
    deleted = [d for d in _stored() if d.event == "message.deleted"]
    assert len(deleted) == 1 and "regretted" not in deleted[0].payload


def test_the_log_is_pruned_after_the_retention_and_capped_while_pending(app, client, alice, bob):
    backends.of(app).queue.retry_limit = 1
    app.config.update(WEBHOOK_LOG_RETENTION_HOURS=1, WEBHOOK_MAX_PENDING=2)
    with Receiver([200] + [500] * 20) as receiver:
        create(client, bob, receiver.url)
        chat = alice.open_with(bob)
        for n in range(5):
            alice.send(chat, f"m{n}")
        settle()
        assert receiver.count() == 5
    assert [d.status for d in _stored()] == ["delivered"] + ["pending"] * 4
    now = int(time.time() * 1000)
    assert webhooks.prune(now) == 2  # the two oldest of four pending: over the cap of 2
    statuses = [(d.status, d.last_error) for d in _stored()]
    assert statuses[0] == ("delivered", None)
    assert statuses[1:3] == [("failed", "dropped: more than 2 events were waiting for this webhook")] * 2
    assert [s for s, _ in statuses[3:]] == ["pending", "pending"]
    assert webhooks.prune(now + 3600 * 1000 + 10**6) == 3  # everything finished is past the retention
    assert [d.status for d in _stored()] == ["pending", "pending"]


def test_a_deliverys_endless_answer_is_not_read(app, client, alice, bob):
    # The receiver says 200 and then streams its body for ever: the status is the answer,
    # the body is never read, and the attempt ends well before the attempt deadline would.
    import socket as sockets

    app.config["WEBHOOK_ATTEMPT_TIMEOUT"] = 60.0
    listener = sockets.create_server(("127.0.0.1", 0))
    streamed = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
            try:
                while True:
                    conn.sendall(b" " * 65536)
                    streamed.append(1)
            except OSError:
                pass  # the service closed the connection

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        create(client, bob, f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
        alice.send(alice.open_with(bob), "to an endless answer")
        assert deliveries(client, bob)["items"][0]["status"] == "delivered"
        server.join(10)
        assert not server.is_alive(), "the service kept reading the answer"
    finally:
        listener.close()
