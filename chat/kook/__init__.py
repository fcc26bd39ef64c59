"""KOOK v3 dialect (seed 003 and its companions): blueprints under ``/api/v3``.

Thin adapters over ``chat.services``: a chat opened here is the same row as a classic
conversation, and every rule (blocks, idempotency, counters) lives in the services.
"""
