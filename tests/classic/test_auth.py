"""Accounts and credentials: register, login, logout, app keys, both header spellings."""

from sqlalchemy import select

from chat.extensions import db
from chat.models import AppKey, Token, User
from chat.services import accounts, credentials


def test_register_returns_the_user(client, app_key):
    response = client.post(
        "/auth/register",
        headers={"X-APP-Key": app_key},
        json={"username": "Zoë", "password": "long enough", "nickname": "Z"},
    )
    assert response.status_code == 200
    user = response.json["data"]
    assert user["username"] == "Zoë" and user["nickname"] == "Z"
    assert user["id"] >= 100_000 and len(user["identify_num"]) == 4
    assert "password" not in user


def test_username_is_unique_case_insensitively(client, app_key, alice):
    response = client.post(
        "/auth/register",
        headers={"X-APP-Key": app_key},
        json={"username": "ALICE", "password": "long enough"},
    )
    assert response.status_code == 409
    assert response.json["code"] == 1 and "taken" in response.json["msg"]


def test_register_validates_fields(client, app_key):
    response = client.post(
        "/auth/register", headers={"X-APP-Key": app_key}, json={"username": "x" * 33, "password": "short"}
    )
    assert response.status_code == 400
    errors = response.json["data"]["errors"]
    assert set(errors) == {"username", "password"}


def test_register_needs_an_app_key(client):
    response = client.post("/auth/register", json={"username": "a", "password": "long enough"})
    assert response.status_code == 401
    assert "X-APP-Key" in response.json["msg"]


def test_revoked_app_key_is_refused(client, app, alice):
    name = db.session.scalar(select(AppKey.name))
    accounts.revoke_app_key(name)
    assert alice.get("/conversation").status_code == 401


def test_login_with_wrong_password_or_unknown_user_looks_the_same(client, app_key, alice):
    wrong = client.post(
        "/auth/login", headers={"X-APP-Key": app_key}, json={"username": "alice", "password": "nope nope"}
    )
    unknown = client.post(
        "/auth/login", headers={"X-APP-Key": app_key}, json={"username": "nobody", "password": "nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json


def test_secrets_are_stored_only_as_hashes(app, alice, app_key):
    user = db.session.scalar(select(User).where(User.username == "alice"))
    assert "correct horse" not in user.password_hash and user.password_hash.startswith("$argon2")
    hashes = db.session.scalars(select(Token.token_hash)).all()
    assert alice.session not in hashes and credentials.digest(alice.session) in hashes
    assert app_key not in db.session.scalars(select(AppKey.key_hash)).all()


def test_both_header_spellings_work(client, app_key, alice):
    response = client.get("/conversation", headers={"X-HA-Key": app_key, "X-HA-Session": alice.session})
    assert response.status_code == 200


def test_logout_revokes_the_session(alice):
    assert alice.post("/auth/logout").status_code == 200
    response = alice.get("/conversation")
    assert response.status_code == 401 and response.json["code"] == 1


def test_missing_or_bogus_session_is_401(client, app_key):
    assert client.get("/conversation", headers={"X-APP-Key": app_key}).status_code == 401
    response = client.get("/conversation", headers={"X-APP-Key": app_key, "X-APP-Session": "bogus"})
    assert response.status_code == 401


def test_a_username_that_folds_longer_than_32_is_refused(client, app_key):
    response = client.post(
        "/auth/register",
        headers={"X-APP-Key": app_key},
        json={"username": "ß" * 32, "password": "long enough"},
    )
    assert response.status_code == 400 and "username" in response.json["data"]["errors"]
    for password in ("\ud800 surrogate", "long enough"):
        response = client.post(
            "/auth/register", headers={"X-APP-Key": app_key}, json={"username": "ok", "password": password}
        )
        assert response.status_code == (400 if "\ud800" in password else 200)
