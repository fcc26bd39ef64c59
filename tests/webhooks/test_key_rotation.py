"""Rotating SECRET_KEY: with the old key in SECRET_KEY_FALLBACKS every stored webhook secret
still signs; ``flask secrets rotate`` re-encrypts them with the new key; then the old key
can go, and deliveries still carry valid signatures."""

from __future__ import annotations

from config import load_config
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_webhooks import create


def test_the_fallbacks_come_from_the_environment_comma_separated():
    settings = load_config({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": " older , oldest,,"})
    assert settings["SECRET_KEY_FALLBACKS"] == ["older", "oldest"]
    assert load_config({})["SECRET_KEY_FALLBACKS"] == []


def test_a_key_rotated_with_a_fallback_then_re_encrypted_then_dropped_keeps_webhooks_signing(
    app, client, alice, bob
):
    conversation = alice.open_with(bob)
    with Receiver() as receiver:
        app.config["SECRET_KEY"] = "the key before the rotation"
        secret = create(client, bob, receiver.url).json["data"]["secret"]

        # 1. The new key, the old one as fallback: the stored secret still opens.
        app.config.update(
            SECRET_KEY="the key after the rotation", SECRET_KEY_FALLBACKS=["the key before the rotation"]
        )
        alice.send(conversation, "during the rotation")
        assert receiver.count() == 1  # delivered (settled) before the next step changes the keys
        # 2. Re-encrypt everything with the new key.
        result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "1 webhook secret re-encrypted with the current SECRET_KEY"
        # 3. The old key leaves: nothing depends on it any more.
        app.config["SECRET_KEY_FALLBACKS"] = []
        alice.send(conversation, "after the rotation")

        assert receiver.count() == 2
        assert all(got.signature_is_valid(secret) for got in receiver.requests)


def test_without_the_fallback_an_old_secret_is_reported_not_lost_silently(app, client, alice):
    app.config["SECRET_KEY"] = "first key"
    create(client, alice, "http://127.0.0.1:9/hook")
    app.config["SECRET_KEY"] = "second key"
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code == 1
    assert "1 could not be read with any configured key" in result.output
