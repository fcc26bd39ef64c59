"""Search tests speak both dialects as bot users (no password hashing: fast)."""

from tests.kook.conftest import make_kook_user  # noqa: F401  (the fixture, shared)
