"""KOOK test helpers: a user who speaks both dialects (classic headers and a Bearer token)."""

from __future__ import annotations

import pytest

from tests.conftest import ClassicUser


class KookUser:
    """A registered user; ``get``/``post`` speak KOOK, ``classic`` speaks seed 000."""

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
def make_kook_user(make_user):
    def make(username: str | None = None) -> KookUser:
        return KookUser(make_user(username))

    return make


@pytest.fixture
def kalice(make_kook_user):
    return make_kook_user("kalice")


@pytest.fixture
def kbob(make_kook_user):
    return make_kook_user("kbob")
