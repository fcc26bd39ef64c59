"""KOOK-format callbacks through the test client, with a real local HTTP server as the
receiver that decodes every body with khl.py's own ``Cert`` (so the format is KOOK's as the
SDK reads it): the challenge at registration, verify_token, zlib, encryption, sn kept on
retries, and events without a KOOK form left out."""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from khl import Cert

from chat import webhooks
from chat.extensions import db
from chat.models import Webhook
from devstack import Trickler
from tests.webhooks.receiver import settle

API = "/api/v3/webhooks"
VERIFY = "verify-me-0123"


class KookReceiver:
    """Answers KOOK's challenge (when ``answer_challenge``), then the scripted statuses."""

    def __init__(
        self,
        *,
        encrypt_key: str = "",
        compress: bool = True,
        answer_challenge: bool = True,
        statuses: list[int] | None = None,
    ):
        self.cert = Cert(token="unused", verify_token=VERIFY, encrypt_key=encrypt_key)
        self.packages: list[dict] = []
        self.raw: list[bytes] = []
        statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.raw.append(body)
                package = receiver.cert.decode_raw(zlib.decompress(body) if compress else body)
                receiver.packages.append(package)
                d = package["d"]
                if d.get("channel_type") == "WEBHOOK_CHALLENGE":
                    answer = {"challenge": d["challenge"] if answer_challenge else "wrong"}
                    self._answer(200, json.dumps(answer).encode())
                else:
                    self._answer(statuses.pop(0) if statuses else 200, b"")

            def _answer(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/khl-wh"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """The event callbacks received, once the service's in-process tasks have settled."""
        settle()
        return [p for p in self.packages if p["d"].get("channel_type") != "WEBHOOK_CHALLENGE"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(**kwargs) -> KookReceiver:
        made.append(KookReceiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def register(client, user, url, **body):
    return client.post(
        API,
        headers={"Authorization": f"Bearer {user.session}"},
        json={"url": url, "format": "kook", "verify_token": VERIFY, **body},
    )


@pytest.mark.parametrize(
    ("encrypt_key", "compress"), [("k" * 32, True), ("short key", False), ("", True), ("", False)]
)
def test_a_message_arrives_in_kooks_format(client, alice, bob, receivers, encrypt_key, compress):
    receiver = receivers(encrypt_key=encrypt_key, compress=compress)
    body = {"compress": compress, **({"encrypt_key": encrypt_key} if encrypt_key else {})}
    created = register(client, bob, receiver.url, **body)
    assert created.status_code == 200, created.json
    data = created.json["data"]
    assert (data["format"], data["compress"], data["verify_token"]) == ("kook", compress, VERIFY)
    assert data["encrypt_key"] == encrypt_key and "secret" not in data
    # The challenge came first, with the verify token.
    assert receiver.packages[0]["d"]["type"] == 255 and receiver.packages[0]["d"]["verify_token"] == VERIFY
    if encrypt_key:
        assert all(b"encrypt" in (zlib.decompress(r) if compress else r) for r in receiver.raw)

    conversation = alice.open_with(bob)
    key = alice.send(conversation, "hello, kook").json["data"]["messagekey"]
    [package] = receiver.events()
    assert (package["s"], package["sn"]) == (0, 1)
    d = package["d"]
    assert d["verify_token"] == VERIFY
    assert (d["channel_type"], d["type"], d["content"], d["msg_id"]) == ("PERSON", 1, "hello, kook", key)
    assert (d["author_id"], d["target_id"]) == (str(alice.id), str(bob.id))
    assert d["extra"]["author"]["username"] == alice.username
    assert len(d["extra"]["code"]) == 32


def test_sn_counts_up_and_a_retry_keeps_its_sn(client, alice, bob, receivers):
    receiver = receivers(statuses=[500])  # the first event fails once
    assert register(client, bob, receiver.url).status_code == 200
    conversation = alice.open_with(bob)
    alice.send(conversation, "first")
    alice.send(conversation, "second")
    # A read marker has no KOOK form: it takes no sn and is not sent.
    assert alice.get(f"/message?conversationid={conversation}").status_code == 200
    # Attempts run on one background thread: the retry of "first" may come after "second".
    sent = sorted((p["sn"], p["d"]["content"]) for p in receiver.events())
    assert sent == [(1, "first"), (1, "first"), (2, "second")]


def test_edits_and_deletes_arrive_as_system_events(client, alice, bob, receivers):
    receiver = receivers()
    assert register(client, bob, receiver.url).status_code == 200
    conversation = alice.open_with(bob)
    key = alice.send(conversation, "to be deleted").json["data"]["messagekey"]
    assert alice.delete(f"/message?messagekey={key}&type=2").status_code == 200
    kinds = [(p["d"]["type"], p["d"]["extra"].get("type")) for p in receiver.events()]
    assert kinds == [(1, 1), (255, "deleted_private_message")]
    body = receiver.events()[1]["d"]["extra"]["body"]
    assert (body["msg_id"], body["author_id"], body["target_id"]) == (key, str(alice.id), str(bob.id))


def test_a_url_that_fails_the_challenge_is_not_registered(client, bob, receivers):
    receiver = receivers(answer_challenge=False)
    response = register(client, bob, receiver.url)
    assert (response.status_code, response.json["code"]) == (400, 40000)
    assert "challenge" in response.json["message"]
    assert db.session.query(Webhook).count() == 0


def test_a_callback_that_cannot_be_reached_is_refused(client, bob):
    response = register(client, bob, "http://127.0.0.1:9/khl-wh")
    assert (response.status_code, response.json["code"]) == (400, 40000)
    assert db.session.query(Webhook).count() == 0


def test_bad_kook_settings_get_a_clear_400(client, bob, receivers):
    receiver = receivers()
    for body in ({"encrypt_key": "k" * 33}, {"format": "soap"}, {"verify_token": ""}):
        response = register(client, bob, receiver.url, **body)
        assert (response.status_code, response.json["code"]) == (400, 40000), body
    response = register(client, bob, receiver.url, encrypt_key="é" * 17)  # 34 bytes
    assert (response.status_code, response.json["code"]) == (400, 40000)


def test_the_secrets_are_stored_encrypted(client, bob, receivers):
    receiver = receivers(encrypt_key="stored-key-123")
    data = register(client, bob, receiver.url, encrypt_key="stored-key-123").json["data"]
    row = db.session.get(Webhook, int(data["id"]))
    assert VERIFY not in row.secret_encrypted and "stored-key-123" not in row.secret_encrypted
    assert json.loads(webhooks.decrypt_secret(row.secret_encrypted))["encrypt_key"] == "stored-key-123"


# ---- what a callback receiver can make the server do -------------------------------------


class HugeAnswer:
    """A receiver that answers KOOK's challenge correctly, but after ``padding`` bytes of
    JSON whitespace: valid JSON, which a server reading the whole answer would accept."""

    def __init__(self, padding: int):
        receiver = self
        self.challenges = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                frame = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                receiver.challenges += 1
                tail = json.dumps({"challenge": frame["d"]["challenge"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(padding + len(tail)))
                self.end_headers()
                try:
                    block = b" " * 65536
                    for _ in range(padding // len(block)):
                        self.wfile.write(block)
                    self.wfile.write(b" " * (padding % len(block)) + tail)
                except OSError:
                    pass  # the server stopped reading, as it should

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/khl-wh"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_huge_challenge_answer_is_not_read_to_its_end(client, bob):
    with HugeAnswer(padding=20 * 1024 * 1024) as receiver:
        response = register(client, bob, receiver.url, compress=False)
    assert response.status_code == 400
    assert "larger than 4096 bytes" in response.json["message"]
    assert receiver.challenges == 1


def test_a_small_challenge_answer_padded_within_the_limit_still_passes(client, bob):
    with HugeAnswer(padding=1000) as receiver:
        response = register(client, bob, receiver.url, compress=False)
    assert response.status_code == 200, response.json


def test_a_trickled_challenge_answer_is_given_up_at_the_attempt_deadline(app, client, bob):
    # Each byte comes well inside the per-read timeout: only a deadline on the whole
    # exchange ends it.
    app.config["WEBHOOK_ATTEMPT_TIMEOUT"] = 1.5
    answers = []
    with Trickler(interval=0.2) as receiver:
        worker = threading.Thread(
            target=lambda: answers.append(register(client, bob, receiver.url)), daemon=True
        )
        worker.start()
        worker.join(30)
        assert answers, "the registration was still waiting for the trickled answer after 30 s"
    [response] = answers
    assert response.status_code == 400
    assert "no complete response within 1.5 s" in response.json["message"]


def test_a_user_at_the_webhook_limit_makes_the_server_send_no_challenge(app, client, bob, receivers):
    app.config["WEBHOOK_MAX_PER_USER"] = 1
    first = receivers()
    assert register(client, bob, first.url).status_code == 200
    second = receivers()
    response = register(client, bob, second.url)
    assert response.status_code == 400
    assert "you already have 1 webhooks" in response.json["message"]
    assert second.packages == []  # nothing was sent to the address


def test_a_url_already_registered_gets_no_second_challenge(client, bob, receivers):
    receiver = receivers()
    assert register(client, bob, receiver.url).status_code == 200
    response = register(client, bob, receiver.url)
    assert response.status_code == 409
    assert len(receiver.packages) == 1  # only the first registration's challenge
