"""Names that impersonate: nicknames without invisible or control characters, usernames
normalised with PRECIS (RFC 8265) and refused when confusable with an existing one, and
accounts made before these rules still able to log in."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from chat import create_app
from chat.errors import ServiceError
from chat.extensions import db
from chat.services import accounts
from config import TestingConfig
from tests.conftest import migrate


def _register(client, app_key, username, nickname=None):
    body = {"username": username, "password": "long enough"}
    if nickname is not None:
        body["nickname"] = nickname
    return client.post("/auth/register", headers={"X-APP-Key": app_key}, json=body)


@pytest.mark.parametrize(
    "nickname",
    [
        "evil\u202etxt.exe",  # right-to-left override
        "a\u202ab",
        "a\u2067b",  # embedding, isolate
        "zero\u200bwidth",
        "zero\u200dwidth",
        "zero\u200cwidth",
        "\u2060joined",
        "\ufeffbom",
        "bell\x07",
        "esc\x1b[31m",
        "next\x85line",
        "csi\x9b",  # C0 and C1 controls
    ],
)
def test_nicknames_refuse_invisible_and_control_characters(client, app_key, nickname):
    response = _register(client, app_key, "someone", nickname)
    assert response.status_code == 400, nickname
    assert "nickname" in response.json["data"]["errors"]
    assert "U+" in response.json["msg"]


def test_nicknames_keep_case_and_tidy_spaces(client, app_key):
    response = _register(client, app_key, "someone", "  Ann   Lee  ")
    assert response.status_code == 200
    assert response.json["data"]["nickname"] == "Ann Lee"
    assert _register(client, app_key, "emoji", "Zoë 😀").json["data"]["nickname"] == "Zoë 😀"


@pytest.mark.parametrize(
    "username", ["evil\u202eman", "zero\u200bwidth", "\ufeffbom", "bell\x07", "a\x85b", "x\u00b2"]
)
def test_usernames_refuse_what_the_profile_disallows(client, app_key, username):
    response = _register(client, app_key, username)
    assert response.status_code == 400, username
    assert "username" in response.json["data"]["errors"]


def test_usernames_are_normalised_and_confusables_refused(client, app_key, alice):
    for lookalike, why in [
        ("ａｌｉｃｅ", "taken"),  # fullwidth: the same name once widths are mapped
        ("ＡＬＩＣＥ", "taken"),
        ("\u0430lice", "similar"),  # Cyrillic a
        ("a1ice", "similar"),
        ("al\u0131ce", "similar"),  # dotless i
    ]:
        response = _register(client, app_key, lookalike)
        assert response.status_code == 409, lookalike
        assert why in response.json["msg"], (lookalike, response.json)
    made = _register(client, app_key, "ｂｏｂｂｙ  Ｔａｂｌｅｓ")
    assert made.status_code == 200
    assert made.json["data"]["username"] == "bobby Tables"  # widths mapped, spaces tidied, case kept


def test_login_and_lookup_take_any_width_or_case(client, app_key, alice):
    response = client.post(
        "/auth/login",
        headers={"X-APP-Key": app_key},
        json={"username": "ＡＬＩＣＥ", "password": "correct horse"},
    )
    assert response.status_code == 200, response.json
    assert response.json["data"]["user"]["id"] == alice.id
    assert accounts.find_user_by_code("Ａlice").id == alice.id


def test_existing_accounts_keep_working_after_the_upgrade(empty_database_url):
    """Rows made before the rules (lookalikes, a name the profile refuses) are kept: each
    still logs in with what it typed, the oldest of a confusable group holds the skeleton and
    the later ones are flagged with none, and no new lookalike can join them."""
    url = empty_database_url
    migrate(url, "upgrade", "0003_friend_request_pair")
    hashed = PasswordHasher(time_cost=1, memory_cost=1024).hash("long enough")
    legacy = [
        (100000001, "alice"),
        (100000002, "\u0430lice"),
        (100000003, "ａｌｉｃｅ"),
        (100000004, "evil\u202eman"),
        (100000005, "Straße"),
    ]
    engine = create_engine(url)
    with engine.begin() as conn:
        for n, (user_id, name) in enumerate(legacy):
            conn.execute(
                text(
                    "INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, "
                    "password_hash, is_bot, created_at) VALUES (:id, :name, :key, :name, '', '0001', :hash, "
                    "false, :created)"
                ),
                {"id": user_id, "name": name, "key": name.casefold(), "hash": hashed, "created": n},
            )
    engine.dispose()
    migrate(url, "upgrade")

    class Config(TestingConfig):
        SQLALCHEMY_DATABASE_URI = url

    app = create_app(Config)
    with app.app_context():
        try:
            for user_id, name in legacy:
                assert accounts.login(name, "long enough")[2].id == user_id, name
            flagged = dict(db.session.execute(text("SELECT id, username_skeleton FROM users")).all())
            assert flagged[100000001] is not None and flagged[100000004] is not None
            assert flagged[100000002] is None and flagged[100000003] is None
            for lookalike in ("a1ice", "strasse"):  # a skeleton and a key held by old accounts
                with pytest.raises(ServiceError) as refused:
                    accounts.register(lookalike, "long enough")
                assert refused.value.kind == "conflict", lookalike
                db.session.rollback()
        finally:
            db.session.remove()
            db.engine.dispose()
