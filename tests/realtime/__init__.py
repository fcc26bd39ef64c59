"""Tests of the realtime tier (``chat.realtime``), and the client every test that listens to
the event stream ``GET /api/v3/events`` through the test client uses: ``open_stream`` opens
one, ``Reader`` reads its events; ``dead_redis`` is a Redis that is "down"."""

from __future__ import annotations

import json

import redis

from chat.realtime import redis_client
from devstack import free_port


def open_stream(client, token=None, *, query=False, headers=None, **params):
    headers = dict(headers or {})
    if token and not query:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        params["token"] = token
    return client.get("/api/v3/events", headers=headers, query_string=params, buffered=False)


class Reader:
    """Reads an open stream's chunks and parses the events in them."""

    def __init__(self, response):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/event-stream"
        self.response = response
        self.chunks = iter(response.response)
        self.first = next(self.chunks).decode()

    def chunk(self) -> str:
        return next(self.chunks).decode()

    def events(self, count: int, limit: int = 50) -> list[dict]:
        found = []
        for _ in range(limit):
            for block in self.chunk().split("\n\n"):
                lines = [line for line in block.split("\n") if line and not line.startswith(":")]
                if lines:
                    fields = dict(line.split(": ", 1) for line in lines)
                    fields["data"] = json.loads(fields["data"])
                    found.append(fields)
            if len(found) >= count:
                return found
        raise AssertionError(f"only {len(found)} of {count} events arrived")

    def close(self):
        self.response.close()


def dead_redis() -> redis.Redis:
    """A client for a port where nothing listens: Redis is "down"."""
    return redis_client(f"redis://127.0.0.1:{free_port()}/0", 0.5)
