"""Webhooks: users register URLs; every event on their stream is also POSTed there, signed.

``registry`` (register, list, delete, the delivery log), ``addresses`` (where a webhook may
go), ``signing`` (secrets kept encrypted, signatures), ``transport`` (one POST on the wire),
``deliveries`` (recorded with the event, attempted by a task, retried, swept, withdrawn when
their message is deleted, pruned after the retention), ``ledger`` (how a delivery is claimed,
retried and swept: the protocol webhook deliveries and device notifications share).
"""

from chat.webhooks.deliveries import (
    PENDING,
    attempt,
    backoff_seconds,
    prune,
    record,
    record_many,
    requeue_due,
    withdraw,
)
from chat.webhooks.registry import create, delete, delivery_log, list_for_user, reencrypt_secrets
from chat.webhooks.signing import decrypt_secret, encrypt_secret, signature

__all__ = [
    "PENDING",
    "attempt",
    "backoff_seconds",
    "create",
    "decrypt_secret",
    "delete",
    "delivery_log",
    "encrypt_secret",
    "list_for_user",
    "prune",
    "reencrypt_secrets",
    "record",
    "record_many",
    "requeue_due",
    "signature",
    "withdraw",
]
