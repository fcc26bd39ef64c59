"""The Celery broker transport: kombu's Redis transport, made to survive Redis going away.

When Redis dies under a worker, Celery closes the broken connection. Two things then reach
for a Redis client through that closed channel: the channel's own clean-up, which gives the
worker's unacknowledged messages back, and the acknowledgement of a task that finishes
after the connection broke. kombu builds a new client from connection details that are gone
and raises ``AttributeError`` ("'NoneType' object has no attribute 'hostname'" / "...
'client'"); that is not a connection error, so the worker takes it as unrecoverable and
exits, and nothing is pushed until someone restarts it. Seen with kombu 5.7 on a Redis
SIGKILL with tasks in flight.

Here a closed channel answers with a connection error instead (which Celery logs and
recovers from by reconnecting), and the give-back may fail. The messages concerned are
still in Redis's unacknowledged set, and come back after the visibility timeout, or were
lost with Redis's memory, and the sweepers queue their work again from the database.
``celery_config`` names this class as the broker transport.
"""

from __future__ import annotations

import logging

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except Exception as exc:  # noqa: BLE001 - whatever the torn-down connection raises
            log.warning(
                "could not give %d unacknowledged messages back to the broker (%s); the "
                "visibility timeout and the sweepers return them",
                len(self._delivered),
                exc,
            )
            self._delivered.clear()
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the connection to the broker was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
