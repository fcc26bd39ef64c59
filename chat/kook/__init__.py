"""The KOOK-compatible API (KOOK v3): blueprints under ``/api/v3``.

Thin adapters over ``chat.services``: a chat opened here is the same row as a classic
conversation, and every rule (blocks, idempotency, counters) lives in the services.
"""
