"""Every test here runs with an app whose event streams beat every 50 ms, so a quiet stream
says so at once; ``redis_url`` is the test Redis the Redis backends run on."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def quick_heartbeat(app):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05


@pytest.fixture
def redis_url():
    from tests.conftest import REDIS_URL

    return REDIS_URL
