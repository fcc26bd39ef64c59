"""Celery's settings, derived from the app's configuration (``config.load_config``).

Everything but where the broker is: ``chat.backends.celery_settings`` adds that (Redis, or
none in the embedded default, where no task goes to Celery at all: ``chat.runner`` runs them
in this process), and ``create_app`` stores the result as ``app.config["CELERY"]``. The
Celery app bound to Flask is made from them, and ``celery -A workers worker`` /
``celery -A workers beat`` find that app.
"""

from __future__ import annotations

from collections.abc import Mapping

from config import TASK_SOFT_TIME_LIMIT, TASK_TIME_LIMIT

# One queue per kind of work. The Procfile's ``worker`` takes push and counters, its
# ``webhooks`` worker only webhooks, so no receiver, however slow, holds a process that pushes
# (a worker started without -Q, as in development and tests, consumes all three).
QUEUES = ("push", "counters", "webhooks")
TASK_ROUTES = {
    "push_messages": {"queue": "push"},
    "deliver_message": {"queue": "push"},  # push_messages' name in the previous release (chat.delivery.push)
    # Drains a batched job's pile (chat.runner); queued on that job's own queue by name.
    "run_batches": {"queue": "push"},
    "sweep_pushes_and_reads": {"queue": "push"},
    "mark_read": {"queue": "counters"},
    "forget_message": {"queue": "push"},
    "deliver_webhook": {"queue": "webhooks"},
    "requeue_webhooks": {"queue": "webhooks"},
    # Device notifications call push services: the same isolated queue as webhooks.
    "notify_chat": {"queue": "webhooks"},
    "send_push": {"queue": "webhooks"},
    "sweep_notifications": {"queue": "webhooks"},
    # The object store is a network service: its calls wait on the network worker, never in
    # front of pushes.
    "purge_asset": {"queue": "webhooks"},
    "sweep_assets": {"queue": "webhooks"},
}


def webhook_time_limits(config: Mapping) -> tuple[float, float]:
    """(soft, hard) time limits of a webhook attempt's task, in seconds: the attempt's own
    deadline plus room for the database work around it. A delivery's lease outlasts the hard
    limit (``chat.webhooks.deliveries``), so no attempt is ever made while another still runs."""
    soft = config["WEBHOOK_ATTEMPT_TIMEOUT"] + 10
    return soft, soft + 10


def celery_settings(config: Mapping) -> dict:
    """Celery settings for an app configured with ``config``, but for the broker's address and
    connection settings (``chat.backends.celery_settings``)."""
    visibility = config["CELERY_VISIBILITY_TIMEOUT"]
    push_every = config["PUSH_SWEEP_INTERVAL_SECONDS"]
    webhooks_every = config["WEBHOOK_SWEEP_INTERVAL_SECONDS"]
    assets_every = config["ASSET_SWEEP_INTERVAL_SECONDS"]
    webhook_soft, webhook_hard = webhook_time_limits(config)
    return {
        "broker_transport_options": {
            # Redis has no acknowledgements: a message a worker took stays in an "unacked" set
            # and goes back to its queue once it is older than this. Keep it short (our tasks
            # take milliseconds) so a SIGKILLed worker's tasks come back soon; a task that runs
            # twice is harmless (every task here is idempotent).
            "visibility_timeout": visibility,
            # Look for such messages every few seconds rather than kombu's ~100 s.
            "unacked_restore_interval": max(1, min(10, visibility // 2)),
            "unacked_restore_throttle": 1,
            "max_retries": 0,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker waits for Redis to come back
        "task_publish_retry": False,  # the sweeper, not the request, retries a lost publish
        "task_ignore_result": True,
        "task_acks_late": True,
        # A worker killed mid-task (SIGKILL, OOM) gives its task back instead of acking it.
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "push",
        "task_queues": {name: {"routing_key": name} for name in QUEUES},
        "task_create_missing_queues": True,
        "task_routes": dict(TASK_ROUTES),
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_annotations": {
            "deliver_webhook": {"soft_time_limit": webhook_soft, "time_limit": webhook_hard},
            "send_push": {"soft_time_limit": webhook_soft, "time_limit": webhook_hard},
        },
        # Each sweep expires unrun after two intervals, so a backlog of sweeps never piles up
        # while no worker runs.
        "beat_schedule": {
            "sweep-pushes-and-reads": {
                "task": "sweep_pushes_and_reads",
                "schedule": push_every,
                "options": {"expires": push_every * 2},
            },
            "requeue-webhooks": {
                "task": "requeue_webhooks",
                "schedule": webhooks_every,
                "options": {"expires": webhooks_every * 2},
            },
            "sweep-notifications": {
                "task": "sweep_notifications",
                "schedule": push_every,
                "options": {"expires": push_every * 2},
            },
            "sweep-assets": {
                "task": "sweep_assets",
                "schedule": assets_every,
                "options": {"expires": assets_every * 2},
            },
        },
    }
