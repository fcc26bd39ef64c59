"""KOOK test helpers: a user who speaks both dialects (classic headers and a Bearer token).

The users are bots made by the accounts service (the same rows `flask bot create` makes): no
password hashing, so tests stay fast. A bot's token works as a classic session too.
"""

from __future__ import annotations

import itertools

import pytest

from chat.services import accounts
from tests.conftest import ClassicUser

_names = itertools.count(1)


class BotClassicUser(ClassicUser):
    """A ClassicUser whose session is a bot token (no register/login round trips)."""

    def __init__(self, client, app_key: str, username: str):
        self.client = client
        self.username = username
        user, token = accounts.create_bot(username)
        self.id = user.id
        self.session = token
        self.headers = {"X-APP-Key": app_key, "X-APP-Session": token}


class KookUser:
    """A registered user; ``get``/``post`` speak KOOK, ``classic`` speaks the classic API."""

    def __init__(self, classic: ClassicUser):
        self.classic = classic
        self.client = classic.client
        self.id = classic.id
        self.username = classic.username
        self.headers = {"Authorization": f"Bearer {classic.session}"}

    def get(self, path, **kwargs):
        return self.client.get(f"/api/v3{path}", headers=self.headers, **kwargs)

    def post(self, path, **kwargs):
        return self.client.post(f"/api/v3{path}", headers=self.headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs):
        """Call and insist on success; returns ``data``."""
        response = getattr(self, method)(path, **kwargs)
        assert response.status_code == 200, response.json
        assert response.json["code"] == 0, response.json
        return response.json["data"]

    def open_chat(self, other: "KookUser") -> str:
        return self.ok("post", "/user-chat/create", json={"target_id": str(other.id)})["code"]

    def send(self, other: "KookUser | None" = None, content: str = "hello", type: int = 1, **extra):
        body = {"type": type, "content": content, **extra}
        if other is not None:
            body["target_id"] = str(other.id)
        return self.post("/direct-message/create", json=body)


@pytest.fixture
def make_kook_user(client, app_key):
    def make(username: str | None = None) -> KookUser:
        return KookUser(BotClassicUser(client, app_key, username or f"kuser{next(_names)}"))

    return make


@pytest.fixture
def kalice(make_kook_user):
    return make_kook_user("kalice")


@pytest.fixture
def kbob(make_kook_user):
    return make_kook_user("kbob")
